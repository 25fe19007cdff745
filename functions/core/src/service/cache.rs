//! In-memory cache of rarely changing configuration (instances, enrollment groups) with a short TTL.
//! Writes made through this process invalidate it at once; writes made elsewhere (another Lambda instance)
//! are seen after at most the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::{EnrollmentGroup, Instance};

type Entry<T> = (Instant, Arc<T>);

pub(crate) struct ConfigCache {
    ttl: Duration,
    by_scope: Mutex<HashMap<String, Entry<Instance>>>,
    host_to_scope: Mutex<HashMap<String, String>>,
    groups: Mutex<HashMap<String, Entry<Vec<EnrollmentGroup>>>>,
}

impl ConfigCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { ttl, by_scope: Mutex::default(), host_to_scope: Mutex::default(), groups: Mutex::default() }
    }

    fn fresh<T>(&self, entry: Option<&Entry<T>>) -> Option<Arc<T>> {
        entry.filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    pub(crate) fn instance_by_scope(&self, scope: &str) -> Option<Arc<Instance>> {
        let map = self.by_scope.lock().expect("cache lock");
        self.fresh(map.get(&scope.to_ascii_lowercase()))
    }

    pub(crate) fn instance_by_host(&self, host: &str) -> Option<Arc<Instance>> {
        let scope = self.host_to_scope.lock().expect("cache lock").get(&host.to_ascii_lowercase()).cloned()?;
        self.instance_by_scope(&scope)
    }

    pub(crate) fn put_instance(&self, instance: Arc<Instance>) {
        if self.ttl.is_zero() {
            return;
        }
        let scope = instance.id_scope.to_ascii_lowercase();
        self.host_to_scope
            .lock()
            .expect("cache lock")
            .insert(instance.service_host_name.to_ascii_lowercase(), scope.clone());
        self.by_scope.lock().expect("cache lock").insert(scope, (Instant::now(), instance));
    }

    pub(crate) fn forget_instance(&self, scope: &str) {
        self.by_scope.lock().expect("cache lock").remove(&scope.to_ascii_lowercase());
    }

    pub(crate) fn groups(&self, scope: &str) -> Option<Arc<Vec<EnrollmentGroup>>> {
        let map = self.groups.lock().expect("cache lock");
        self.fresh(map.get(&scope.to_ascii_lowercase()))
    }

    pub(crate) fn put_groups(&self, scope: &str, groups: Arc<Vec<EnrollmentGroup>>) {
        if self.ttl.is_zero() {
            return;
        }
        self.groups.lock().expect("cache lock").insert(scope.to_ascii_lowercase(), (Instant::now(), groups));
    }

    pub(crate) fn forget_groups(&self, scope: &str) {
        self.groups.lock().expect("cache lock").remove(&scope.to_ascii_lowercase());
    }
}
