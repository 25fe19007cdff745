//! Service API use cases over either kind of enrollment ([`Enrollment`]): create or replace, read, delete,
//! the attestation mechanism, queries. Validation is in `validation.rs`, bulk operations in `bulk.rs`.

use super::{CallMeter, Caller, Dps, now};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::{printable, validate_id};
use crate::model::{AttestationMechanism, Enrollment, EnrollmentKind, Instance, Right};
use crate::store::{EnrollmentStore, Page, PageRequest, Precondition};

/// Page size when the caller sends no `x-ms-max-item-count`.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served.
pub const MAX_PAGE_SIZE: usize = 1000;

impl Dps {
    /// Create or replace an enrollment (`If-Match` makes it conditional); returned without keys.
    pub async fn put_enrollment<E: Enrollment>(
        &self,
        caller: &Caller,
        id: &str,
        enrollment: E,
        if_match: Option<&str>,
    ) -> Result<E> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered_write(caller, |meter| async move {
            let precondition = if_match.map(|t| Precondition::Matches(t.into()));
            let written = self.put_item(&caller.instance, id, enrollment, precondition, &meter).await;
            self.forget_enrollments::<E>(caller);
            written.map(E::without_secrets)
        })
        .await
    }

    /// Read an enrollment (keys removed).
    pub async fn get_enrollment<E: Enrollment>(&self, caller: &Caller, id: &str) -> Result<E> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { self.get_item::<E>(caller, id).await.map(E::without_secrets) }).await
    }

    /// Delete an enrollment (the registration records of its devices stay).
    pub async fn delete_enrollment<E: Enrollment>(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered_write(caller, |meter| async move {
            let deleted = self.delete_item::<E>(caller, id, if_match, &meter).await;
            self.forget_enrollments::<E>(caller);
            deleted
        })
        .await
    }

    /// The enrollment's attestation mechanism, keys included.
    pub async fn enrollment_attestation<E: Enrollment>(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<AttestationMechanism> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { Ok(self.get_item::<E>(caller, id).await?.spec().attestation.clone()) }).await
    }

    /// A page of enrollments (keys removed).
    pub async fn query_enrollments<E: Enrollment>(
        &self,
        caller: &Caller,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<E>> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async {
            check_query(query)?;
            let page = self.store.page::<E>(caller.scope(), bounded(page)).await?;
            Ok(Page {
                items: page.items.into_iter().map(E::without_secrets).collect(),
                continuation: page.continuation,
            })
        })
        .await
    }

    /// Groups are cached for attestation: a change through this process is seen at once.
    pub(super) fn forget_enrollments<E: Enrollment>(&self, caller: &Caller) {
        if E::KIND == EnrollmentKind::Group {
            self.cache.forget_groups(caller.scope());
        }
    }

    async fn get_item<E: Enrollment>(&self, caller: &Caller, id: &str) -> Result<E> {
        validate_id(E::KIND.id_name(), id)?;
        self.store
            .load::<E>(caller.scope(), id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{} '{id}' not found", E::KIND.what())))
    }

    pub(super) async fn delete_item<E: Enrollment>(
        &self,
        caller: &Caller,
        id: &str,
        if_match: Option<&str>,
        meter: &CallMeter,
    ) -> Result<()> {
        validate_id(E::KIND.id_name(), id)?;
        let count = meter.take();
        let removed =
            self.store.remove::<E>(caller.scope(), id, Precondition::if_match(if_match).counting(count.clone()));
        removed.await.inspect_err(|_| meter.unused(count))?;
        self.emit(|| Event::enrollment_deleted::<E>(caller.scope(), id)).await;
        Ok(())
    }

    /// Validate and write one enrollment. `precondition` None = upsert, which still writes conditionally on
    /// what it read so that keys and creation time are kept consistently under concurrent writers.
    pub(super) async fn put_item<E: Enrollment>(
        &self,
        instance: &Instance,
        path_id: &str,
        item: E,
        precondition: Option<Precondition>,
        meter: &CallMeter,
    ) -> Result<E> {
        let what = E::KIND.what();
        validate_id(E::KIND.id_name(), path_id)?;
        if !item.id().eq_ignore_ascii_case(path_id) {
            return Err(Error::invalid(format!(
                "The {} in the body ('{}') does not match the path",
                E::KIND.id_name(),
                printable(item.id())
            )));
        }
        item.check_kind_rules()?;
        let mut item = item;
        super::x509::fill_x509(&mut item.spec_mut().attestation, E::KIND, instance)?;
        self.check_spec(instance, item.spec()).await?;
        let scope = &instance.id_scope;
        for _ in 0..3 {
            let existing = self.store.load::<E>(scope, path_id).await?;
            if let Some(pre) = &precondition {
                // An If-Match on an absent entity is a failed precondition (412), as HTTP has it.
                pre.check(what, existing.as_ref().and_then(E::etag)).map_err(|e| match e {
                    Error::NotFound(_) => Error::PreconditionFailed(format!("{what}: etag does not match")),
                    other => other,
                })?;
            }
            if E::KIND == EnrollmentKind::Group && existing.is_none() {
                self.check_group_cap(instance).await?;
            }
            // A custom allocation definition is checked (e.g. that its policy exists) only when it changes, so an
            // enrollment naming a since-deleted policy can still be disabled or edited otherwise.
            let old_spec = existing.as_ref().map(|e| e.spec());
            let custom_changed = old_spec.is_none_or(|o| {
                o.allocation_policy != item.spec().allocation_policy
                    || o.custom_allocation_definition != item.spec().custom_allocation_definition
            });
            if custom_changed {
                self.check_custom(instance, item.spec()).await?;
            }
            let mut candidate = item.clone();
            let now = now();
            let spec = candidate.spec_mut();
            spec.created_date_time_utc =
                Some(existing.as_ref().and_then(|e| e.spec().created_date_time_utc).unwrap_or(now));
            spec.last_updated_date_time_utc = Some(now);
            super::validation::fill_keys(&mut spec.attestation, existing.as_ref().map(|e| &e.spec().attestation));
            let guard = match &existing {
                Some(e) => Precondition::Matches(e.etag().unwrap_or_default().to_string()),
                None => Precondition::NotExists,
            };
            let count = meter.take();
            let saved = self.store.save(scope, candidate, guard.counting(count.clone())).await;
            if saved.is_err() {
                meter.unused(count);
            }
            match saved {
                Ok(written) => {
                    self.emit(|| Event::enrollment_written(scope, &written, existing.is_none())).await;
                    return Ok(written);
                }
                Err(Error::Conflict(_) | Error::PreconditionFailed(_) | Error::NotFound(_))
                    if precondition.is_none() =>
                {
                    continue;
                }
                Err(Error::Conflict(_) | Error::NotFound(_)) | Err(Error::PreconditionFailed(_)) => {
                    return Err(Error::PreconditionFailed(format!("{what}: etag does not match")));
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::Conflict(format!("{what} '{path_id}' is being changed concurrently; retry")))
    }
}

impl Dps {
    /// A new group must fit under [`crate::Settings::max_groups`]. The count is the cached group list, so
    /// concurrent creates through several processes may pass it by a few: a bound on work, not an invariant.
    async fn check_group_cap(&self, instance: &Instance) -> Result<()> {
        let max = self.settings.max_groups;
        if self.groups(&instance.id_scope).await?.len() >= max {
            return Err(Error::invalid(format!("This instance has the most enrollment groups allowed ({max})")));
        }
        Ok(())
    }
}

/// A page request within bounds: the default size for 0, at most [`MAX_PAGE_SIZE`].
pub(super) fn bounded(page: PageRequest) -> PageRequest {
    let max_items = match page.max_items {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    PageRequest { max_items, ..page }
}

/// Only the query `*` (all items) is supported, as the SDKs send it (or `SELECT * FROM <collection>`).
fn check_query(query: &str) -> Result<()> {
    let q = query.trim();
    let select_all = |collection: &str| {
        let mut words = q.split_ascii_whitespace();
        let expected = ["select", "*", "from", collection];
        expected.iter().all(|w| words.next().is_some_and(|got| got.eq_ignore_ascii_case(w))) && words.next().is_none()
    };
    // Any collection the service knows is accepted (the SDKs send their own kind's).
    let mut known = EnrollmentKind::ALL.iter().map(|k| k.collection()).chain(["registrations"]);
    if q.is_empty() || q == "*" || known.any(select_all) {
        Ok(())
    } else {
        Err(Error::invalid(format!("Unsupported query '{}': only \"*\" is supported", printable(q))))
    }
}
