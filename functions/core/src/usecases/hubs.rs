//! Making a hub's registry match a registration (the hub port, `crate::hubs`), and keeping linked hubs'
//! connector credentials sealed.
//!
//! Order of a registration that assigns a device to a hub with a connector: (move with migration: read the twin
//! from the old hub) → create or update the device in the new hub → issue its certificate from the CSR → apply
//! the twin → write the record → remove the device from the old hub. A failure before the record is written
//! turns the registration into `failed` with the hub's error code; the device stays where the previous record
//! says (a partial create in another hub is owed a removal). A removal that fails is kept in the record
//! (`pendingHubRemovals`) and retried at the device's next registration. So the record always says every hub
//! the device may be in.
//!
//! A record that owes removals to hubs with connectors is written with a settling lease (`settling_until`,
//! [`SETTLE_LEASE`]): until the removals are settled (the record written again without it) or the lease runs
//! out, other registrations of the device wait before they read the device context they decide on
//! ([`Dps::settled_context`]). Without it, a registration moving the device back to the hub being left could
//! create it there just before the late removal took it out again: the newer record would say assigned, and the
//! device would be in no hub. Removals still unanswered [`SETTLE_BUDGET`] after the record was written are
//! abandoned (kept owed), well inside the lease, so none lands after another registration may proceed.

use std::time::Duration;

use tokio::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Dps;
use super::device::Registration;
use crate::error::{Error, Result};
use crate::hubs::{HubDevice, HubFailure, HubFailureKind, HubTarget, HubTwin};
use crate::model::{
    AnyEnrollment, AttestationType, HubConnection, HubDeviceRef, Instance, LinkedHub, RegistrationRecord,
    RegistrationStatus,
};
use crate::sas::derive_device_key;
use crate::store::{DeviceContext, Precondition};

/// How long a record owing hub removals holds off other registrations of its device.
pub(super) const SETTLE_LEASE: Duration = Duration::from_secs(30);
/// How long the owed removals may take before the ones not answered are abandoned (and stay owed).
const SETTLE_BUDGET: Duration = Duration::from_secs(20);
/// How long a registration waits for another registration of its device to settle before it answers 429.
const SETTLE_WAIT: Duration = Duration::from_secs(10);

fn unix_millis() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Clock difference between two writers tolerated in a lease's expiry.
const CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How much of a record's settling lease is left (None: it holds none, or it ran out). A lease that claims to
/// run longer than any writer takes one is not honoured: a record cannot hold a device off for longer.
fn settling_left(record: &RegistrationRecord) -> Option<Duration> {
    let left = Duration::from_millis(u64::try_from(record.settling_until? - unix_millis()).ok()?);
    if left > SETTLE_LEASE + CLOCK_SKEW {
        tracing::warn!(registration_id = %record.registration_id, "settling lease beyond any writer's: ignored");
        return None;
    }
    (!left.is_zero()).then_some(left)
}

/// The settling lease a record about to be written takes: one when it owes a removal to a hub with a connector.
pub(super) fn settling_lease(instance: &Instance, record: &RegistrationRecord) -> Option<i64> {
    let owes = record.pending_hub_removals.iter().any(|owed| connection(instance, &owed.hub).is_some());
    owes.then(|| unix_millis().saturating_add(SETTLE_LEASE.as_millis() as i64))
}

/// The linked hub named `host`, if it has a connector.
fn connection<'a>(instance: &'a Instance, host: &str) -> Option<&'a HubConnection> {
    instance.linked_hubs.iter().find(|h| h.host_name.eq_ignore_ascii_case(host)).and_then(|h| h.connector.as_ref())
}

/// Where a registration puts the device: its hub and ID there, and the hub it leaves (with its ID there).
#[derive(Clone, Copy)]
struct Placement<'a> {
    hub: &'a str,
    device_id: &'a str,
    moved_from: Option<&'a str>,
    old_device_id: &'a str,
}

fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl Dps {
    /// Make the hubs match `record` (decided, not yet written). On a hub failure the record becomes a failed
    /// registration that leaves the device where it was. Returns the hub device this attempt (perhaps) created
    /// or changed, so that a retried write can still account for it. The caller drops owed removals that name
    /// the hub the record ends up assigning ([`settle_owed`]).
    pub(super) async fn sync_hubs(
        &self,
        r: &Registration<'_>,
        record: &mut RegistrationRecord,
    ) -> Option<HubDeviceRef> {
        record.pending_hub_removals = r.previous.map(|p| p.pending_hub_removals.clone()).unwrap_or_default();
        if record.status != RegistrationStatus::Assigned {
            return None;
        }
        let hub = record.assigned_hub.clone().expect("an assigned record names its hub");
        let device_id = record.device_id.clone().unwrap_or_else(|| record.registration_id.clone());
        let moved_from = r.current_hub.filter(|current| !same(current, &hub));
        let old_device_id = r.previous.and_then(|p| p.device_id.clone()).unwrap_or_else(|| device_id.clone());
        let mut touched = false;
        let placement = Placement { hub: &hub, device_id: &device_id, moved_from, old_device_id: &old_device_id };
        match self.provision_in_hub(r, record, &placement, &mut touched).await {
            Ok(()) => {
                if let Some(old) = moved_from.filter(|old| connection(r.instance, old).is_some()) {
                    owe(record, HubDeviceRef { hub: old.to_string(), device_id: old_device_id });
                }
            }
            Err(failure) => {
                tracing::warn!(
                    scope = %r.instance.id_scope,
                    registration_id = %record.registration_id,
                    hub = %hub,
                    code = failure.code(),
                    "hub write failed: {}",
                    failure.message
                );
                // A device (perhaps) created in a hub the record will not assign it to is owed a removal.
                if touched && (moved_from.is_some() || r.current_hub.is_none()) {
                    owe(record, HubDeviceRef { hub: hub.clone(), device_id: device_id.clone() });
                }
                record.status = RegistrationStatus::Failed;
                record.error_code = Some(failure.code());
                record.error_message = Some(if failure.message.contains(hub.as_str()) {
                    failure.message.clone()
                } else {
                    format!("IoT hub '{hub}': {}", failure.message)
                });
                record.assigned_hub = r.current_hub.map(str::to_string);
                record.substatus = r.previous.and_then(|p| p.substatus);
                record.initial_twin = None;
                record.payload = None;
                record.issued_certificate_chain = None;
                if r.current_hub.is_none() {
                    record.initial_hub = None;
                }
            }
        }
        touched.then_some(HubDeviceRef { hub, device_id })
    }

    /// Create or update the device in `hub` with its twin (and certificate); nothing for a record-only hub.
    async fn provision_in_hub(
        &self,
        r: &Registration<'_>,
        record: &mut RegistrationRecord,
        placement: &Placement<'_>,
        touched: &mut bool,
    ) -> Result<(), HubFailure> {
        let Placement { hub, device_id, moved_from, old_device_id } = *placement;
        let Some(link) = connection(r.instance, hub) else {
            if r.req.csr.is_some() {
                return Err(HubFailure::new(
                    HubFailureKind::CertificateRefused,
                    "the hub is linked without a connector (record only) and issues no certificates",
                ));
            }
            return Ok(());
        };
        let spec = r.attested.enrollment.spec();
        let policy = spec.reprovision_policy.unwrap_or_default();
        let initial = || record.initial_twin.clone().or_else(|| spec.initial_twin.clone());
        let twin = match moved_from {
            // Migration: the twin the device has in its old hub (a record-only old hub has none to give: the
            // initial twin then).
            Some(old) if policy.migrate_device_data => match connection(r.instance, old) {
                Some(old_link) => {
                    let credentials = self.open_credentials(old_link).await?;
                    let target = target(old, old_link, credentials.as_deref());
                    let found = self.connector(old_link)?.read_twin(target, old_device_id).await?;
                    found.or_else(|| initial().map(|t| HubTwin::from_initial_twin(&t)))
                }
                None => initial().map(|t| HubTwin::from_initial_twin(&t)),
            },
            Some(_) => initial().map(|t| HubTwin::from_initial_twin(&t)),
            // First assignment, or a reset in place under the reset policy ("factory reset without changing hubs").
            None if r.current_hub.is_none() || (policy.update_hub_assignment && !policy.migrate_device_data) => {
                initial().map(|t| HubTwin::from_initial_twin(&t))
            }
            None => None,
        };
        let connector = self.connector(link)?;
        let credentials = self.open_credentials(link).await?;
        let target = target(hub, link, credentials.as_deref());
        let device = hub_device(r, device_id);
        *touched = true;
        connector.upsert_device(target, &device).await?;
        if let Some(csr) = &r.req.csr {
            let chain = connector.issue_certificate(target, &device, csr).await?;
            record.issued_certificate_chain = Some(chain.iter().map(|der| STANDARD.encode(der)).collect());
        }
        if let Some(twin) = &twin {
            connector.apply_twin(target, device_id, twin).await?;
        }
        Ok(())
    }

    /// The device context a registration decides on, once no other registration of the device holds a
    /// settling lease (it waits up to [`SETTLE_WAIT`], then answers 429 with the lease's remaining time).
    pub(super) async fn settled_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            let context = self.store.device_context(scope, registration_id).await?;
            let Some(left) = context.record.as_ref().and_then(settling_left) else {
                return Ok(context);
            };
            if started.elapsed() + pause > SETTLE_WAIT {
                return Err(Error::Throttled {
                    message: "Another registration of this device is still removing it from a hub; retry later".into(),
                    retry_after_secs: u32::try_from(left.as_secs() + 1).unwrap_or(u32::MAX),
                });
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Make the removals `written` owes (within [`SETTLE_BUDGET`]); the record is written again when some
    /// succeeded or it holds a settling lease, which that write gives back.
    pub(super) async fn settle_hub_removals(
        &self,
        instance: &Instance,
        written: RegistrationRecord,
    ) -> RegistrationRecord {
        if written.pending_hub_removals.is_empty() {
            return written;
        }
        let mut done = vec![false; written.pending_hub_removals.len()];
        let removals = async {
            for (owed, done) in written.pending_hub_removals.iter().zip(done.iter_mut()) {
                // A hub unlinked since (or linked without a connector now) can no longer be reached: dropped.
                let Some(link) = connection(instance, &owed.hub) else {
                    tracing::warn!(hub = %owed.hub, device_id = %owed.device_id, "removal dropped: the hub has no connector now");
                    *done = true;
                    continue;
                };
                match self.remove_from(&owed.hub, link, &owed.device_id).await {
                    Ok(()) => *done = true,
                    Err(failure) => {
                        tracing::warn!(hub = %owed.hub, device_id = %owed.device_id, "hub removal failed: {}", failure.message)
                    }
                }
            }
        };
        if tokio::time::timeout(SETTLE_BUDGET, removals).await.is_err() {
            tracing::warn!(registration_id = %written.registration_id, "hub removals abandoned after {SETTLE_BUDGET:?}: kept owed");
        }
        let left: Vec<HubDeviceRef> = written
            .pending_hub_removals
            .iter()
            .zip(&done)
            .filter(|(_, done)| !**done)
            .map(|(o, _)| o.clone())
            .collect();
        if left.len() == written.pending_hub_removals.len() && written.settling_until.is_none() {
            return written;
        }
        let mut settled = written.clone();
        settled.pending_hub_removals = left;
        settled.settling_until = None;
        let precondition = Precondition::Matches(written.etag.clone().unwrap_or_default());
        match self.store.put_registration(&instance.id_scope, settled, precondition.into()).await {
            Ok(rewritten) => rewritten,
            // A concurrent registration wrote since: it carries the removals and settles them itself.
            Err(_) => written,
        }
    }

    async fn remove_from(&self, hub: &str, link: &HubConnection, device_id: &str) -> Result<(), HubFailure> {
        let credentials = self.open_credentials(link).await?;
        self.connector(link)?.remove_device(target(hub, link, credentials.as_deref()), device_id).await
    }

    fn connector(&self, link: &HubConnection) -> Result<&std::sync::Arc<dyn crate::hubs::HubConnector>, HubFailure> {
        self.hubs.get(link.kind).ok_or_else(|| {
            HubFailure::new(
                HubFailureKind::NotConfigured,
                format!("this deployment has no {} connector", link.kind.as_str()),
            )
        })
    }

    async fn open_credentials(&self, link: &HubConnection) -> Result<Option<String>, HubFailure> {
        let Some(sealed) = &link.credentials else {
            return Ok(None);
        };
        let not_configured =
            || HubFailure::new(HubFailureKind::NotConfigured, "the hub's credentials cannot be opened");
        let secrets = self.secret_box().map_err(|_| not_configured())?;
        secrets.open(sealed).await.map(Some).map_err(|_| not_configured())
    }

    /// Linked hubs as a service API write sends them, made ready to store: each connector's kind must exist
    /// in this deployment and accept its settings; plaintext credentials are sealed; a hub sent without
    /// credentials keeps its current ones when its kind is unchanged.
    pub(super) async fn prepare_linked_hubs(&self, before: &Instance, hubs: &mut [LinkedHub]) -> Result<()> {
        for hub in hubs.iter_mut() {
            let Some(link) = hub.connector.as_mut() else {
                continue;
            };
            let connector = self.hubs.get(link.kind).ok_or_else(|| {
                let kinds: Vec<&str> = self.hubs.kinds().map(|k| k.as_str()).collect();
                Error::invalid(format!(
                    "Linked hub '{}': this deployment has no {} connector (available: {})",
                    hub.host_name,
                    link.kind.as_str(),
                    if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }
                ))
            })?;
            // Credentials sent are new; none sent keeps the current ones, but only where they would go to the same
            // place (same kind and settings): moving a hub's url must come with its secret again.
            let (plain, kept) = match link.credentials.take() {
                Some(plain) => (Some(plain), None),
                None => match connection(before, &hub.host_name)
                    .filter(|old| old.kind == link.kind && old.settings == link.settings)
                    .and_then(|old| old.credentials.clone())
                {
                    Some(sealed) => (Some(self.secret_box()?.open(&sealed).await?), Some(sealed)),
                    None => (None, None),
                },
            };
            connector
                .check_settings(&link.settings, plain.as_deref())
                .map_err(|message| Error::invalid(format!("Linked hub '{}': {message}", hub.host_name)))?;
            link.credentials_set = false;
            link.credentials = match (kept, plain) {
                (Some(sealed), _) => Some(sealed),
                (None, Some(plain)) => Some(self.secret_box()?.seal(&plain).await?),
                (None, None) => None,
            };
        }
        Ok(())
    }

    /// The deployment's secret box (a service API write with credentials needs one).
    fn secret_box(&self) -> Result<&std::sync::Arc<dyn crate::hubs::SecretBox>> {
        self.secrets
            .as_ref()
            .ok_or_else(|| Error::invalid("This deployment cannot store hub credentials (no secret key is configured)"))
    }
}

/// Add `owed` to the record's removals (once).
pub(super) fn owe(record: &mut RegistrationRecord, owed: HubDeviceRef) {
    if !record.pending_hub_removals.iter().any(|o| same(&o.hub, &owed.hub) && o.device_id == owed.device_id) {
        record.pending_hub_removals.push(owed);
    }
}

/// A removal is never owed to the hub the record assigns the device to (under its device ID there).
pub(super) fn settle_owed(record: &mut RegistrationRecord) {
    let (assigned, id) = (record.assigned_hub.clone(), record.device_id.clone());
    record.pending_hub_removals.retain(|owed| {
        !(assigned.as_deref().is_some_and(|a| same(a, &owed.hub)) && id.as_deref() == Some(&owed.device_id))
    });
}

fn target<'a>(hub: &'a str, link: &'a HubConnection, credentials: Option<&'a str>) -> HubTarget<'a> {
    HubTarget { host_name: hub, settings: &link.settings, credentials }
}

/// The device as a hub registers it: its ID, how it authenticates there, its capabilities.
fn hub_device(r: &Registration<'_>, device_id: &str) -> HubDevice {
    let spec = r.attested.enrollment.spec();
    let registration_id = &r.req.caller.registration_id;
    let symmetric_keys = match (r.attested.kind, &r.attested.enrollment) {
        (AttestationType::SymmetricKey, enrollment) => spec.attestation.symmetric_key.as_ref().and_then(|keys| {
            let (primary, secondary) = (keys.primary_key.clone()?, keys.secondary_key.clone()?);
            match enrollment {
                AnyEnrollment::Individual(_) => Some((primary, secondary)),
                AnyEnrollment::Group(_) => Some((
                    derive_device_key(&primary, registration_id).ok()?,
                    derive_device_key(&secondary, registration_id).ok()?,
                )),
            }
        }),
        // The key the TPM challenge issued (the device signs its hub tokens with it, as with Azure).
        (AttestationType::Tpm, _) => r.attested.device_key.clone().map(|key| (key.clone(), key)),
        _ => None,
    };
    let x509 = r.attested.kind == AttestationType::X509;
    HubDevice {
        device_id: device_id.to_string(),
        registration_id: registration_id.clone(),
        attestation: r.attested.kind,
        symmetric_keys,
        certificate: if x509 { r.req.caller.client_certificates.first().cloned() } else { None },
        ca_signed: x509 && matches!(r.attested.enrollment, AnyEnrollment::Group(_)),
        iot_edge: spec.capabilities.as_ref().is_some_and(|c| c.iot_edge),
    }
}
