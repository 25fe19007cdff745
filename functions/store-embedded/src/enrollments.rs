//! Individual enrollments and groups: stored alike, one table per kind, keyed (scope, ID).

use std::ops::Bound;

use dps_core::error::{Error, Result};
use dps_core::model::{AnyEnrollment, EnrollmentKind, OperationCount};
use dps_core::store::{Page, PageRequest, Precondition, key, new_etag};
use redb::ReadableTable;

use crate::EmbeddedStore;
use crate::operations::count;
use crate::tables::{current_etag, enrollment_table, get_scoped, internal, to_json};

fn parse(kind: EnrollmentKind) -> impl Fn(&[u8]) -> Result<AnyEnrollment> {
    move |bytes| AnyEnrollment::from_json(kind, bytes).map_err(internal)
}

impl EmbeddedStore {
    pub(crate) async fn enrollment(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        id: &str,
    ) -> Result<Option<AnyEnrollment>> {
        let (scope, id) = (key(scope), key(id));
        self.read_now(|txn| get_scoped(txn, enrollment_table(kind), &scope, &id, parse(kind)))
    }

    /// Conditionally write an enrollment: read, check, write with a fresh etag, in one transaction.
    pub(crate) async fn save_enrollment(
        &self,
        scope: &str,
        mut enrollment: AnyEnrollment,
        precondition: Precondition,
        meter: Option<OperationCount>,
    ) -> Result<AnyEnrollment> {
        let (scope, id, kind) = (key(scope), key(enrollment.id()), enrollment.kind());
        self.write(move |txn| {
            let mut table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
            let current = current_etag(&table.get((scope.as_str(), id.as_str())).map_err(internal)?)?;
            precondition.check(kind.what(), current.as_deref())?;
            enrollment.set_etag(new_etag());
            table.insert((scope.as_str(), id.as_str()), to_json(&enrollment)?.as_slice()).map_err(internal)?;
            count(txn, &scope, meter.as_ref())?;
            Ok(enrollment)
        })
        .await
    }

    pub(crate) async fn remove_enrollment(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        id: &str,
        precondition: Precondition,
        meter: Option<OperationCount>,
    ) -> Result<()> {
        let (scope, id) = (key(scope), key(id));
        self.write(move |txn| {
            let what = kind.what();
            let mut table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
            let current = current_etag(&table.get((scope.as_str(), id.as_str())).map_err(internal)?)?
                .ok_or_else(|| Error::not_found(format!("{what} not found")))?;
            precondition.check(what, Some(&current))?;
            table.remove((scope.as_str(), id.as_str())).map_err(internal)?;
            count(txn, &scope, meter.as_ref())?;
            Ok(())
        })
        .await
    }

    /// A page of one scope's enrollments of `kind`, in key order; the continuation is the last key returned.
    pub(crate) async fn enrollment_page(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        let scope = key(scope);
        self.read(move |txn| {
            let table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
            let start = match &page.continuation {
                Some(after) => Bound::Excluded((scope.as_str(), after.as_str())),
                None => Bound::Included((scope.as_str(), "")),
            };
            let max = page.max_items.max(1);
            let parse = parse(kind);
            let mut items = Vec::new();
            let mut last = None;
            for entry in table.range::<(&str, &str)>((start, Bound::Unbounded)).map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
                let (entry_scope, id) = k.value();
                if entry_scope != scope {
                    break;
                }
                if items.len() == max {
                    return Ok(Page { items, continuation: last });
                }
                items.push(parse(v.value())?);
                last = Some(id.to_string());
            }
            Ok(Page { items, continuation: None })
        })
        .await
    }
}
