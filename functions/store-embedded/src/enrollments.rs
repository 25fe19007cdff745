//! Individual enrollments and groups: stored alike, one table per kind, keyed (scope, ID).

use std::ops::Bound;

use dps_core::error::{Error, Result};
use dps_core::model::{AnyEnrollment, EnrollmentKind};
use dps_core::store::{Page, PageRequest, Precondition, key, new_etag};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use crate::tables::{current_etag, enrollment_table, get_scoped, internal, to_json};

fn parse(kind: EnrollmentKind) -> impl Fn(&[u8]) -> Result<AnyEnrollment> {
    move |bytes| AnyEnrollment::from_json(kind, bytes).map_err(internal)
}

pub(crate) fn get(txn: &ReadTransaction, kind: EnrollmentKind, scope: &str, id: &str) -> Result<Option<AnyEnrollment>> {
    get_scoped(txn, enrollment_table(kind), scope, id, parse(kind))
}

/// Conditionally write an enrollment: read, check, write with a fresh etag.
pub(crate) fn put(
    txn: &WriteTransaction,
    scope: &str,
    mut enrollment: AnyEnrollment,
    precondition: Precondition,
) -> Result<AnyEnrollment> {
    let (id, kind) = (key(enrollment.id()), enrollment.kind());
    let mut table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
    let current = current_etag(&table.get((scope, id.as_str())).map_err(internal)?)?;
    precondition.check(kind.what(), current.as_deref())?;
    enrollment.set_etag(new_etag());
    table.insert((scope, id.as_str()), to_json(&enrollment)?.as_slice()).map_err(internal)?;
    Ok(enrollment)
}

pub(crate) fn delete(
    txn: &WriteTransaction,
    scope: &str,
    kind: EnrollmentKind,
    id: &str,
    precondition: Precondition,
) -> Result<()> {
    let what = kind.what();
    let mut table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
    let current = current_etag(&table.get((scope, id)).map_err(internal)?)?
        .ok_or_else(|| Error::not_found(format!("{what} not found")))?;
    precondition.check(what, Some(&current))?;
    table.remove((scope, id)).map_err(internal)?;
    Ok(())
}

/// A page of one scope's enrollments of `kind`, in key order; the continuation is the last key returned.
pub(crate) fn page(
    txn: &ReadTransaction,
    scope: &str,
    kind: EnrollmentKind,
    page: PageRequest,
) -> Result<Page<AnyEnrollment>> {
    let table = txn.open_table(enrollment_table(kind)).map_err(internal)?;
    let start = match &page.continuation {
        Some(after) => Bound::Excluded((scope, after.as_str())),
        None => Bound::Included((scope, "")),
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
}
