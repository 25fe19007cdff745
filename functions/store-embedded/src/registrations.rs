//! Registration records, with the by-group index kept in step and the operation counted in the same transaction.

use std::ops::Bound;

use dps_core::error::{Error, Result};
use dps_core::model::{IndividualEnrollment, OperationCount, RegistrationRecord};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, key, new_etag};
use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::operations::count;
use crate::tables::{ENROLLMENTS, REGISTRATIONS, REGISTRATIONS_BY_GROUP, from_json, get_scoped, internal, to_json};

impl EmbeddedStore {
    pub(crate) async fn device_rows(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        let (scope, id) = (key(scope), key(registration_id));
        self.read_now(|txn| {
            Ok(DeviceContext {
                enrollment: get_scoped(txn, ENROLLMENTS, &scope, &id, from_json::<IndividualEnrollment>)?,
                record: get_scoped(txn, REGISTRATIONS, &scope, &id, from_json::<RegistrationRecord>)?,
            })
        })
    }

    pub(crate) async fn registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        let (scope, id) = (key(scope), key(registration_id));
        self.read_now(|txn| get_scoped(txn, REGISTRATIONS, &scope, &id, from_json))
    }

    pub(crate) async fn save_registration(
        &self,
        scope: &str,
        mut record: RegistrationRecord,
        precondition: Precondition,
        meter: Option<OperationCount>,
    ) -> Result<RegistrationRecord> {
        let (scope, id) = (key(scope), key(&record.registration_id));
        self.write(move |txn| {
            let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let old: Option<RegistrationRecord> = records
                .get((scope.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            precondition.check("Registration", old.as_ref().map(|r| r.etag.as_deref().unwrap_or_default()))?;
            record.etag = Some(new_etag());
            records.insert((scope.as_str(), id.as_str()), to_json(&record)?.as_slice()).map_err(internal)?;

            let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
            if let Some(old_group) = old.and_then(|r| r.enrollment_group_id) {
                by_group.remove((scope.as_str(), key(&old_group).as_str(), id.as_str())).map_err(internal)?;
            }
            if let Some(group) = &record.enrollment_group_id {
                by_group.insert((scope.as_str(), key(group).as_str(), id.as_str()), ()).map_err(internal)?;
            }
            count(txn, &scope, meter.as_ref())?;
            Ok(record)
        })
        .await
    }

    pub(crate) async fn remove_registration(
        &self,
        scope: &str,
        registration_id: &str,
        precondition: Precondition,
        meter: Option<OperationCount>,
    ) -> Result<()> {
        let (scope, id) = (key(scope), key(registration_id));
        self.write(move |txn| {
            let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let old: RegistrationRecord = records
                .get((scope.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| from_json(v.value()))
                .transpose()?
                .ok_or_else(|| Error::not_found("Registration not found"))?;
            precondition.check("Registration", Some(old.etag.as_deref().unwrap_or_default()))?;
            records.remove((scope.as_str(), id.as_str())).map_err(internal)?;
            if let Some(group) = &old.enrollment_group_id {
                let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
                by_group.remove((scope.as_str(), key(group).as_str(), id.as_str())).map_err(internal)?;
            }
            count(txn, &scope, meter.as_ref())?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn registration_page(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let (scope, group) = (key(scope), key(group_id));
        self.read(move |txn| {
            let index = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
            let records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let start = match &page.continuation {
                Some(after) => Bound::Excluded((scope.as_str(), group.as_str(), after.as_str())),
                None => Bound::Included((scope.as_str(), group.as_str(), "")),
            };
            let max = page.max_items.max(1);
            let mut items = Vec::new();
            let mut last = None;
            for entry in index.range::<(&str, &str, &str)>((start, Bound::Unbounded)).map_err(internal)? {
                let (k, _) = entry.map_err(internal)?;
                let (entry_scope, entry_group, id) = k.value();
                if entry_scope != scope || entry_group != group {
                    break;
                }
                if items.len() == max {
                    return Ok(Page { items, continuation: last });
                }
                let record = records.get((scope.as_str(), id)).map_err(internal)?;
                let record = record.ok_or_else(|| internal(format!("index names a missing record '{id}'")))?;
                items.push(from_json(record.value())?);
                last = Some(id.to_string());
            }
            Ok(Page { items, continuation: None })
        })
        .await
    }
}
