//! In-memory cache of rarely changing configuration (instances, enrollment groups) with a short TTL.
//! Writes made through this process invalidate it at once; writes made elsewhere (another Lambda instance)
//! are seen after at most the TTL. A load that started before an invalidation is not cached (generation check),
//! so a slow read cannot put an old value back after a write made through this process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::groups::GroupSet;
use crate::model::Instance;

type Entry<T> = (Instant, Arc<T>);

pub(crate) struct ConfigCache {
    ttl: Duration,
    by_scope: Mutex<HashMap<String, Entry<Instance>>>,
    host_to_scope: Mutex<HashMap<String, String>>,
    groups: Mutex<HashMap<String, Entry<GroupSet>>>,
    generation: AtomicU64,
}

/// The cache generation a load started in; pass it back when storing the loaded value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generation(u64);

impl ConfigCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            by_scope: Mutex::default(),
            host_to_scope: Mutex::default(),
            groups: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Call before reading from the store a value that will be cached.
    pub(crate) fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::SeqCst))
    }

    fn current(&self, loaded_in: Generation) -> bool {
        self.ttl > Duration::ZERO && self.generation.load(Ordering::SeqCst) == loaded_in.0
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

    pub(crate) fn put_instance(&self, instance: Arc<Instance>, loaded_in: Generation) {
        if !self.current(loaded_in) {
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
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.by_scope.lock().expect("cache lock").remove(&scope.to_ascii_lowercase());
    }

    pub(crate) fn groups(&self, scope: &str) -> Option<Arc<GroupSet>> {
        let map = self.groups.lock().expect("cache lock");
        self.fresh(map.get(&scope.to_ascii_lowercase()))
    }

    pub(crate) fn put_groups(&self, scope: &str, groups: Arc<GroupSet>, loaded_in: Generation) {
        if !self.current(loaded_in) {
            return;
        }
        self.groups.lock().expect("cache lock").insert(scope.to_ascii_lowercase(), (Instant::now(), groups));
    }

    pub(crate) fn forget_groups(&self, scope: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.groups.lock().expect("cache lock").remove(&scope.to_ascii_lowercase());
    }
}
