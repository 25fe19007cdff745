//! Registration records, with the by-group index kept in step in the same transaction.

use std::ops::Bound;

use dps_core::error::{Error, Result};
use dps_core::model::{IndividualEnrollment, RegistrationRecord};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, key, new_etag};
use redb::{ReadTransaction, WriteTransaction};

use crate::tables::{
    ENROLLMENTS, REGISTRATIONS, REGISTRATIONS_BY_GROUP, from_json, get_scoped, internal, row, to_json,
};

/// What a device's registration reads: its individual enrollment and its record, from one snapshot.
pub(crate) fn device_context(txn: &ReadTransaction, scope: &str, id: &str) -> Result<DeviceContext> {
    Ok(DeviceContext {
        enrollment: get_scoped(txn, ENROLLMENTS, scope, id, from_json::<IndividualEnrollment>)?,
        record: get_scoped(txn, REGISTRATIONS, scope, id, from_json::<RegistrationRecord>)?,
    })
}

pub(crate) fn get(txn: &ReadTransaction, scope: &str, id: &str) -> Result<Option<RegistrationRecord>> {
    get_scoped(txn, REGISTRATIONS, scope, id, from_json)
}

pub(crate) fn put(
    txn: &WriteTransaction,
    scope: &str,
    mut record: RegistrationRecord,
    precondition: Precondition,
) -> Result<RegistrationRecord> {
    let id = key(&record.registration_id);
    let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
    let old: Option<RegistrationRecord> = row(&records, scope, &id)?;
    precondition.check("Registration", old.as_ref().map(|r| r.etag.as_deref().unwrap_or_default()))?;
    record.etag = Some(new_etag());
    records.insert((scope, id.as_str()), to_json(&record)?.as_slice()).map_err(internal)?;

    let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
    if let Some(old_group) = old.and_then(|r| r.enrollment_group_id) {
        by_group.remove((scope, key(&old_group).as_str(), id.as_str())).map_err(internal)?;
    }
    if let Some(group) = &record.enrollment_group_id {
        by_group.insert((scope, key(group).as_str(), id.as_str()), ()).map_err(internal)?;
    }
    Ok(record)
}

pub(crate) fn delete(txn: &WriteTransaction, scope: &str, id: &str, precondition: Precondition) -> Result<()> {
    let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
    let old: RegistrationRecord =
        row(&records, scope, id)?.ok_or_else(|| Error::not_found("Registration not found"))?;
    precondition.check("Registration", Some(old.etag.as_deref().unwrap_or_default()))?;
    records.remove((scope, id)).map_err(internal)?;
    if let Some(group) = &old.enrollment_group_id {
        let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
        by_group.remove((scope, key(group).as_str(), id)).map_err(internal)?;
    }
    Ok(())
}

/// A page of the records of one group, in registration ID order, through the by-group index.
pub(crate) fn page(
    txn: &ReadTransaction,
    scope: &str,
    group: &str,
    page: PageRequest,
) -> Result<Page<RegistrationRecord>> {
    let index = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
    let records = txn.open_table(REGISTRATIONS).map_err(internal)?;
    let start = match &page.continuation {
        Some(after) => Bound::Excluded((scope, group, after.as_str())),
        None => Bound::Included((scope, group, "")),
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
        let record =
            row(&records, scope, id)?.ok_or_else(|| internal(format!("index names a missing record '{id}'")))?;
        items.push(record);
        last = Some(id.to_string());
    }
    Ok(Page { items, continuation: None })
}
