//! The entities: each read or conditional write of the `Store` port over the tables (see the crate docs), with
//! the indexes kept in step in the same batch. A write checks before it writes (see `writer.rs`).

use std::ops::Bound;

use dps_core::error::{Error, Result};
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, IndividualEnrollment, Instance, OperationCount, OperationKind, RegistrationRecord,
    TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, new_etag, unix_now};
use fjall::{Keyspace, Readable, Snapshot};
use serde::de::DeserializeOwned;

use crate::engine::{Get, Tables, Txn, from_json, internal, key, last_part, to_json};

fn row<T: DeserializeOwned>(r: &impl Get, table: &Keyspace, at: &[u8]) -> Result<Option<T>> {
    r.read(table, at)?.map(|v| from_json(&v)).transpose()
}

/// The etag inside a stored entity's JSON.
fn etag_at(r: &impl Get, table: &Keyspace, at: &[u8]) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Tagged {
        #[serde(default)]
        etag: Option<String>,
    }
    Ok(row::<Tagged>(r, table, at)?.map(|t| t.etag.unwrap_or_default()))
}

/// Up to `page.max_items` rows of `table` under `prefix` (parts before the ID), after the continuation, parsed.
fn page_of<T>(
    snap: &Snapshot,
    table: &Keyspace,
    prefix: &[&str],
    page: &PageRequest,
    mut parse: impl FnMut(&str, &[u8]) -> Result<T>,
) -> Result<Page<T>> {
    let mut lower = key(prefix);
    lower.push(0);
    let mut upper = lower.clone();
    *upper.last_mut().expect("not empty") = 1;
    let start = match &page.continuation {
        Some(after) => Bound::Excluded([lower.as_slice(), after.as_bytes()].concat()),
        None => Bound::Included(lower),
    };
    let max = page.max_items.max(1);
    let (mut items, mut last) = (Vec::new(), None);
    for entry in snap.range(table, (start, Bound::Excluded(upper))) {
        let (k, v) = entry.into_inner().map_err(internal)?;
        if items.len() == max {
            return Ok(Page { items, continuation: last });
        }
        let id = last_part(&k)?;
        items.push(parse(id, &v)?);
        last = Some(id.to_string());
    }
    Ok(Page { items, continuation: None })
}

fn enrollment_table(t: &Tables, kind: EnrollmentKind) -> &Keyspace {
    match kind {
        EnrollmentKind::Individual => &t.enrollments,
        EnrollmentKind::Group => &t.groups,
    }
}

// Instances, with their host name and name reserved in index tables.

pub(crate) fn create_instance(t: &Tables, txn: &mut Txn, mut instance: Instance) -> Result<Instance> {
    let scope = key(&[&dps_core::store::key(&instance.id_scope)]);
    let host = key(&[&dps_core::store::key(&instance.service_host_name)]);
    let name = key(&[&instance.name]);
    if txn.read(&t.instances, &scope)?.is_some() {
        return Err(Error::Conflict(format!("ID scope '{}' is taken", instance.id_scope)));
    }
    if txn.read(&t.instance_hosts, &host)?.is_some() {
        return Err(Error::Conflict(format!("Host name '{}' is taken", instance.service_host_name)));
    }
    if txn.read(&t.instance_names, &name)?.is_some() {
        return Err(Error::Conflict(format!("Instance name '{}' is taken", instance.name)));
    }
    instance.etag = Some(new_etag());
    txn.insert(&t.instances, scope.clone(), to_json(&instance)?);
    txn.insert(&t.instance_hosts, host, scope.clone());
    txn.insert(&t.instance_names, name, scope);
    Ok(instance)
}

pub(crate) fn update_instance(
    t: &Tables,
    txn: &mut Txn,
    mut instance: Instance,
    pre: Precondition,
) -> Result<Instance> {
    let scope = key(&[&dps_core::store::key(&instance.id_scope)]);
    pre.check("Instance", etag_at(txn, &t.instances, &scope)?.as_deref())?;
    instance.etag = Some(new_etag());
    txn.insert(&t.instances, scope, to_json(&instance)?);
    Ok(instance)
}

pub(crate) fn instance_by_scope(t: &Tables, snap: &Snapshot, scope: &str) -> Result<Option<Instance>> {
    row(snap, &t.instances, &key(&[scope]))
}

pub(crate) fn instance_by_host(t: &Tables, snap: &Snapshot, host: &str) -> Result<Option<Instance>> {
    match snap.read(&t.instance_hosts, &key(&[host]))? {
        Some(scope) => row(snap, &t.instances, &scope),
        None => Ok(None),
    }
}

pub(crate) fn all_instances(t: &Tables, snap: &Snapshot) -> Result<Vec<Instance>> {
    snap.iter(&t.instances).map(|entry| from_json(&entry.value().map_err(internal)?)).collect()
}

// Individual enrollments and groups: one table per kind.

fn parse_enrollment(kind: EnrollmentKind) -> impl Fn(&str, &[u8]) -> Result<AnyEnrollment> {
    move |_, bytes| AnyEnrollment::from_json(kind, bytes).map_err(internal)
}

pub(crate) fn get_enrollment(
    t: &Tables,
    snap: &Snapshot,
    kind: EnrollmentKind,
    scope: &str,
    id: &str,
) -> Result<Option<AnyEnrollment>> {
    snap.read(enrollment_table(t, kind), &key(&[scope, id]))?.map(|v| parse_enrollment(kind)(id, &v)).transpose()
}

pub(crate) fn put_enrollment(
    t: &Tables,
    txn: &mut Txn,
    scope: &str,
    mut enrollment: AnyEnrollment,
    pre: Precondition,
) -> Result<AnyEnrollment> {
    let kind = enrollment.kind();
    let (table, at) = (enrollment_table(t, kind), key(&[scope, &dps_core::store::key(enrollment.id())]));
    pre.check(kind.what(), etag_at(txn, table, &at)?.as_deref())?;
    enrollment.set_etag(new_etag());
    txn.insert(table, at, to_json(&enrollment)?);
    Ok(enrollment)
}

pub(crate) fn delete_enrollment(
    t: &Tables,
    txn: &mut Txn,
    scope: &str,
    kind: EnrollmentKind,
    id: &str,
    pre: Precondition,
) -> Result<()> {
    let (table, at, what) = (enrollment_table(t, kind), key(&[scope, id]), kind.what());
    let current = etag_at(txn, table, &at)?.ok_or_else(|| Error::not_found(format!("{what} not found")))?;
    pre.check(what, Some(&current))?;
    txn.remove(table, at);
    Ok(())
}

pub(crate) fn enrollment_page(
    t: &Tables,
    snap: &Snapshot,
    scope: &str,
    kind: EnrollmentKind,
    page: PageRequest,
) -> Result<Page<AnyEnrollment>> {
    page_of(snap, enrollment_table(t, kind), &[scope], &page, parse_enrollment(kind))
}

// Registration records, with the by-group index kept in step.

pub(crate) fn device_context(t: &Tables, snap: &Snapshot, scope: &str, id: &str) -> Result<DeviceContext> {
    let at = key(&[scope, id]);
    Ok(DeviceContext {
        enrollment: row::<IndividualEnrollment>(snap, &t.enrollments, &at)?,
        record: row(snap, &t.registrations, &at)?,
    })
}

pub(crate) fn get_registration(
    t: &Tables,
    snap: &Snapshot,
    scope: &str,
    id: &str,
) -> Result<Option<RegistrationRecord>> {
    row(snap, &t.registrations, &key(&[scope, id]))
}

pub(crate) fn put_registration(
    t: &Tables,
    txn: &mut Txn,
    scope: &str,
    mut record: RegistrationRecord,
    pre: Precondition,
) -> Result<RegistrationRecord> {
    let id = dps_core::store::key(&record.registration_id);
    let at = key(&[scope, &id]);
    let old: Option<RegistrationRecord> = row(txn, &t.registrations, &at)?;
    pre.check("Registration", old.as_ref().map(|r| r.etag.as_deref().unwrap_or_default()))?;
    record.etag = Some(new_etag());
    txn.insert(&t.registrations, at, to_json(&record)?);
    if let Some(old_group) = old.and_then(|r| r.enrollment_group_id) {
        txn.remove(&t.registrations_by_group, key(&[scope, &dps_core::store::key(&old_group), &id]));
    }
    if let Some(group) = &record.enrollment_group_id {
        txn.insert(&t.registrations_by_group, key(&[scope, &dps_core::store::key(group), &id]), Vec::new());
    }
    Ok(record)
}

pub(crate) fn delete_registration(t: &Tables, txn: &mut Txn, scope: &str, id: &str, pre: Precondition) -> Result<()> {
    let at = key(&[scope, id]);
    let old: RegistrationRecord =
        row(txn, &t.registrations, &at)?.ok_or_else(|| Error::not_found("Registration not found"))?;
    pre.check("Registration", Some(old.etag.as_deref().unwrap_or_default()))?;
    txn.remove(&t.registrations, at);
    if let Some(group) = &old.enrollment_group_id {
        txn.remove(&t.registrations_by_group, key(&[scope, &dps_core::store::key(group), id]));
    }
    Ok(())
}

pub(crate) fn registration_page(
    t: &Tables,
    snap: &Snapshot,
    scope: &str,
    group: &str,
    page: PageRequest,
) -> Result<Page<RegistrationRecord>> {
    page_of(snap, &t.registrations_by_group, &[scope, group], &page, |id, _| {
        row(snap, &t.registrations, &key(&[scope, id]))?
            .ok_or_else(|| internal(format!("index names a missing record '{id}'")))
    })
}

// Operation counters: one row per (scope, day, kind), a little-endian u64.

pub(crate) fn add_count(
    t: &Tables,
    txn: &mut Txn,
    scope: &str,
    date: &str,
    kind: OperationKind,
    count: u64,
) -> Result<()> {
    let at = key(&[scope, date, kind.as_str()]);
    let current = txn.read(&t.operations, &at)?.map(|v| counter(&v)).transpose()?.unwrap_or(0);
    txn.insert(&t.operations, at, current.saturating_add(count).to_le_bytes().to_vec());
    Ok(())
}

fn counter(bytes: &[u8]) -> Result<u64> {
    Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| internal("a counter is not 8 bytes"))?))
}

pub(crate) fn count(t: &Tables, txn: &mut Txn, scope: &str, meter: Option<&OperationCount>) -> Result<()> {
    match meter {
        Some(m) => add_count(t, txn, scope, &m.date, m.kind, m.count),
        None => Ok(()),
    }
}

pub(crate) fn operations(
    t: &Tables,
    snap: &Snapshot,
    scope: &str,
    from: &str,
    to: &str,
) -> Result<Vec<OperationCount>> {
    let mut out = Vec::new();
    let mut upper = key(&[scope]);
    upper.push(1);
    for entry in snap.range(&t.operations, (Bound::Included(key(&[scope, from])), Bound::Excluded(upper))) {
        let (k, v) = entry.into_inner().map_err(internal)?;
        let mut parts = k.split(|b| *b == 0).skip(1).map(std::str::from_utf8);
        let (Some(Ok(date)), Some(Ok(kind))) = (parts.next(), parts.next()) else { continue };
        if date > to {
            break;
        }
        if let Some(kind) = OperationKind::ALL.into_iter().find(|k| k.as_str() == kind) {
            out.push(OperationCount { date: date.to_string(), kind, count: counter(&v)? });
        }
    }
    out.sort_by(|a, b| (&a.date, a.kind).cmp(&(&b.date, b.kind)));
    Ok(out)
}

// TPM challenges: an expired row reads as absent and counts as absent for a precondition.

pub(crate) fn get_tpm_challenge(t: &Tables, snap: &Snapshot, scope: &str, id: &str) -> Result<Option<TpmChallenge>> {
    let challenge: Option<TpmChallenge> = row(snap, &t.tpm_challenges, &key(&[scope, id]))?;
    Ok(challenge.filter(|c| !c.expired(unix_now())))
}

pub(crate) fn put_tpm_challenge(
    t: &Tables,
    txn: &mut Txn,
    scope: &str,
    mut challenge: TpmChallenge,
    pre: Precondition,
) -> Result<TpmChallenge> {
    let at = key(&[scope, &dps_core::store::key(&challenge.registration_id)]);
    let current: Option<TpmChallenge> = row(txn, &t.tpm_challenges, &at)?;
    let current = current.filter(|c| !c.expired(unix_now()));
    pre.check("TPM challenge", current.as_ref().map(|c| c.etag.as_deref().unwrap_or_default()))?;
    challenge.etag = Some(new_etag());
    txn.insert(&t.tpm_challenges, at, to_json(&challenge)?);
    Ok(challenge)
}
