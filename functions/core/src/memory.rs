//! An in-memory [`Store`] for unit tests and experiments: one mutex over ordered maps, so every conditional
//! write is checked and applied atomically. Nothing survives the process.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::model::{
    AnyEnrollment, EnrollmentKind, Instance, OperationCount, OperationKind, RegistrationRecord, TpmChallenge,
};
use crate::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write, key, new_etag, unix_now};

/// (scope key, ID key).
type Key = (String, String);

#[derive(Default)]
struct State {
    instances: BTreeMap<String, Instance>,
    enrollments: BTreeMap<Key, AnyEnrollment>,
    groups: BTreeMap<Key, AnyEnrollment>,
    registrations: BTreeMap<Key, RegistrationRecord>,
    operations: BTreeMap<(String, String, OperationKind), u64>,
    tpm_challenges: BTreeMap<Key, TpmChallenge>,
}

/// A [`Store`] held in memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Every [`Store::add_operations`] fails (tests: a count made on its own, as a crash between two writes would
    /// lose it).
    lose_separate_counts: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose counts made on their own ([`Store::add_operations`]) are lost, answered
    /// `Unavailable`, while counts that ride on a write ([`Write::meter`]) are kept: tests of metering use it to show
    /// that every write is counted in the write itself.
    #[cfg(feature = "testing")]
    pub fn losing_separate_counts() -> Self {
        Self { lose_separate_counts: true, ..Self::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied write: each write is one map operation.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn k(scope: &str, id: &str) -> Key {
    (key(scope), key(id))
}

impl State {
    fn enrollments(&mut self, kind: EnrollmentKind) -> &mut BTreeMap<Key, AnyEnrollment> {
        match kind {
            EnrollmentKind::Individual => &mut self.enrollments,
            EnrollmentKind::Group => &mut self.groups,
        }
    }

    /// Count `meter` (if any) in the same critical section as the write it counts.
    fn count(&mut self, scope: &str, meter: Option<OperationCount>) {
        if let Some(m) = meter {
            *self.operations.entry((key(scope), m.date, m.kind)).or_default() += m.count;
        }
    }
}

fn put<T: Clone>(
    map: &mut BTreeMap<Key, T>,
    at: Key,
    mut item: T,
    precondition: &Precondition,
    what: &str,
    etag_of: fn(&T) -> Option<&str>,
    set_etag: fn(&mut T, String),
) -> Result<T> {
    precondition.check(what, map.get(&at).map(|current| etag_of(current).unwrap_or_default()))?;
    set_etag(&mut item, new_etag());
    map.insert(at, item.clone());
    Ok(item)
}

fn delete<T>(
    map: &mut BTreeMap<Key, T>,
    at: Key,
    precondition: &Precondition,
    what: &str,
    etag_of: fn(&T) -> Option<&str>,
) -> Result<()> {
    let current = map.get(&at).ok_or_else(|| Error::not_found(format!("{what} not found")))?;
    precondition.check(what, Some(etag_of(current).unwrap_or_default()))?;
    map.remove(&at);
    Ok(())
}

/// A page of the items of `scope` whose keys pass `keep`; the continuation is the last key returned.
fn page<T: Clone>(map: &BTreeMap<Key, T>, scope: &str, page: &PageRequest, keep: impl Fn(&T) -> bool) -> Page<T> {
    let scope = key(scope);
    let start = match &page.continuation {
        Some(after) => Bound::Excluded((scope.clone(), after.clone())),
        None => Bound::Included((scope.clone(), String::new())),
    };
    let max = page.max_items.max(1);
    let mut items = Vec::new();
    let mut last = None;
    let mut more = false;
    for ((s, id), item) in map.range((start, Bound::Unbounded)) {
        if *s != scope {
            break;
        }
        if !keep(item) {
            continue;
        }
        if items.len() == max {
            more = true;
            break;
        }
        items.push(item.clone());
        last = Some(id.clone());
    }
    Page { items, continuation: if more { last } else { None } }
}

fn enrollment_etag(e: &AnyEnrollment) -> Option<&str> {
    e.etag()
}
fn record_etag(r: &RegistrationRecord) -> Option<&str> {
    r.etag.as_deref()
}
fn challenge_etag(c: &TpmChallenge) -> Option<&str> {
    c.etag.as_deref()
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_instance(&self, mut instance: Instance) -> Result<Instance> {
        let mut state = self.state();
        let taken = state.instances.values().any(|i| {
            key(&i.id_scope) == key(&instance.id_scope)
                || i.name == instance.name
                || key(&i.service_host_name) == key(&instance.service_host_name)
        });
        if taken {
            return Err(Error::Conflict("An instance with this ID scope, name or host name exists".into()));
        }
        instance.etag = Some(new_etag());
        state.instances.insert(key(&instance.id_scope), instance.clone());
        Ok(instance)
    }

    async fn update_instance(&self, mut instance: Instance, precondition: Precondition) -> Result<Instance> {
        let mut state = self.state();
        let at = key(&instance.id_scope);
        let current = state.instances.get(&at).map(|i| i.etag.clone().unwrap_or_default());
        precondition.check("Instance", current.as_deref())?;
        instance.etag = Some(new_etag());
        state.instances.insert(at, instance.clone());
        Ok(instance)
    }

    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        Ok(self.state().instances.get(&key(id_scope)).cloned())
    }

    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        let host = key(host_name);
        Ok(self.state().instances.values().find(|i| key(&i.service_host_name) == host).cloned())
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        Ok(self.state().instances.values().cloned().collect())
    }

    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>> {
        Ok(self.state().enrollments(kind).get(&k(scope, id)).cloned())
    }

    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment> {
        let (kind, at) = (enrollment.kind(), k(scope, enrollment.id()));
        let mut state = self.state();
        let precondition = &write.precondition;
        let written =
            put(state.enrollments(kind), at, enrollment, precondition, kind.what(), enrollment_etag, |e, t| {
                e.set_etag(t)
            })?;
        state.count(scope, write.meter);
        Ok(written)
    }

    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()> {
        let mut state = self.state();
        delete(state.enrollments(kind), k(scope, id), &write.precondition, kind.what(), enrollment_etag)?;
        state.count(scope, write.meter);
        Ok(())
    }

    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        request: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        Ok(page(self.state().enrollments(kind), scope, &request, |_| true))
    }

    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        let state = self.state();
        let at = k(scope, registration_id);
        Ok(DeviceContext {
            enrollment: match state.enrollments.get(&at) {
                Some(AnyEnrollment::Individual(e)) => Some(e.clone()),
                _ => None,
            },
            record: state.registrations.get(&at).cloned(),
        })
    }

    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        Ok(self.state().registrations.get(&k(scope, registration_id)).cloned())
    }

    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        let mut state = self.state();
        let at = k(scope, &record.registration_id);
        let precondition = &write.precondition;
        let written = put(&mut state.registrations, at, record, precondition, "Registration", record_etag, |r, t| {
            r.etag = Some(t)
        })?;
        state.count(scope, write.meter);
        Ok(written)
    }

    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        let mut state = self.state();
        delete(&mut state.registrations, k(scope, registration_id), &write.precondition, "Registration", record_etag)?;
        state.count(scope, write.meter);
        Ok(())
    }

    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        request: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let group = key(group_id);
        Ok(page(&self.state().registrations, scope, &request, |r| {
            r.enrollment_group_id.as_deref().is_some_and(|g| key(g) == group)
        }))
    }

    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        if self.lose_separate_counts {
            return Err(Error::Unavailable("the separate counter write was lost".into()));
        }
        self.state().count(scope, Some(OperationCount { date: date.to_string(), kind, count }));
        Ok(())
    }

    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        let scope = key(scope);
        let state = self.state();
        Ok(state
            .operations
            .iter()
            .filter(|((s, date, _), _)| *s == scope && date.as_str() >= from && date.as_str() <= to)
            .map(|((_, date, kind), count)| OperationCount { date: date.clone(), kind: *kind, count: *count })
            .collect())
    }

    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        let found = self.state().tpm_challenges.get(&k(scope, registration_id)).cloned();
        Ok(found.filter(|c| !c.expired(unix_now())))
    }

    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        let mut state = self.state();
        let at = k(scope, &challenge.registration_id);
        // An expired challenge is absent for the precondition too, as for reads.
        if state.tpm_challenges.get(&at).is_some_and(|c| c.expired(unix_now())) {
            state.tpm_challenges.remove(&at);
        }
        put(&mut state.tpm_challenges, at, challenge, &precondition, "TPM challenge", challenge_etag, |c, t| {
            c.etag = Some(t)
        })
    }
}
