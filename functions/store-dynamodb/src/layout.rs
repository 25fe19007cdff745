//! The single-table layout: key attributes, key shapes of every item type, and shard counts.
//! docs/dynamodb.md describes the same layout for people; keep the two in step.

use dps_core::model::{EnrollmentKind, OperationKind};
use dps_core::store::key;

/// Partition key attribute of the table.
pub const PK: &str = "pk";
/// Sort key attribute of the table.
pub const SK: &str = "sk";
/// The one global secondary index, overloaded for every listing.
pub const GSI1: &str = "gsi1";
/// Partition key attribute of [`GSI1`].
pub const GSI1PK: &str = "gsi1pk";
/// Sort key attribute of [`GSI1`].
pub const GSI1SK: &str = "gsi1sk";
/// TTL attribute (epoch seconds); DynamoDB deletes items whose value is in the past.
pub const TTL: &str = "ttl";

/// The entity, as its wire-form JSON.
pub(crate) const DOC: &str = "doc";
/// Instance items only: the service API's access policies (keys included), apart from `doc` so that the device
/// function's role can be refused them (`dynamodb:Attributes`).
pub(crate) const ACCESS_KEYS: &str = "accessKeys";
/// The entity's etag (quoted, as in the doc): the optimistic concurrency guard.
pub(crate) const ETAG: &str = "etag";
/// Item type, for people reading the table and for exports.
pub(crate) const TYPE: &str = "type";
/// Counter value.
pub(crate) const COUNT: &str = "n";
/// Lower-cased instance name / host name on instance items (immutability checks).
pub(crate) const NAME_KEY: &str = "nameKey";
pub(crate) const HOST_KEY: &str = "hostKey";
/// ID scope on instance host items.
pub(crate) const SCOPE: &str = "scope";

/// GSI partitions per scope for the enrollment listing (bulk imports write up to ~1,000 items/s per shard).
pub const ENROLLMENT_SHARDS: u32 = 4;
/// GSI partitions per group for the registrations-by-group listing: every first registration of a group's
/// device writes here, so a factory line booting a million devices spreads over these.
pub const REGISTRATION_SHARDS: u32 = 8;
/// Counter items per scope and day and kind; increments pick one at random, reads sum them.
pub const COUNTER_SHARDS: u32 = 32;

/// Key of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemKey {
    pub pk: String,
    pub sk: String,
}

/// Position of an item in [`GSI1`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexKey {
    pub pk: String,
    pub sk: String,
}

pub(crate) fn instance(scope: &str) -> ItemKey {
    ItemKey { pk: format!("inst#{}", key(scope)), sk: "instance".into() }
}

pub(crate) fn instance_index(scope: &str) -> IndexKey {
    IndexKey { pk: "instances".into(), sk: key(scope) }
}

pub(crate) const INSTANCES_INDEX_PK: &str = "instances";

/// Reserves an instance name (holds the owning scope).
pub(crate) fn instance_name(name: &str) -> ItemKey {
    ItemKey { pk: format!("iname#{}", key(name)), sk: "instanceName".into() }
}

/// Reserves a service host name and holds a copy of the instance, so the service API finds it in one read.
pub(crate) fn instance_host(host: &str) -> ItemKey {
    ItemKey { pk: format!("ihost#{}", key(host)), sk: "instanceHost".into() }
}

/// Partition of one device's individual enrollment (written by the service API only).
pub(crate) fn device_pk(scope: &str, registration_id: &str) -> String {
    format!("{}#dev#{}", key(scope), key(registration_id))
}

/// Partition of what the registration path writes for one device: its registration record and its TPM
/// challenge. Apart from [`device_pk`] so that the device function's role may write here (`dynamodb:LeadingKeys`
/// `*#rec#*`) and cannot replace an enrollment; `device_context` reads both partitions in one BatchGetItem.
pub(crate) fn record_pk(scope: &str, registration_id: &str) -> String {
    format!("{}#rec#{}", key(scope), key(registration_id))
}

pub(crate) const ENROLLMENT_SK: &str = "enrollment";
pub(crate) const REGISTRATION_SK: &str = "registration";
/// A device's pending TPM challenge (expiring through [`TTL`]).
pub(crate) const TPM_CHALLENGE_SK: &str = "tpmChallenge";

pub(crate) fn enrollment(scope: &str, registration_id: &str) -> ItemKey {
    ItemKey { pk: device_pk(scope, registration_id), sk: ENROLLMENT_SK.into() }
}

pub(crate) fn enrollment_index(scope: &str, registration_id: &str) -> IndexKey {
    let shard = shard_of(registration_id, ENROLLMENT_SHARDS);
    IndexKey { pk: enrollment_index_pk(scope, shard), sk: key(registration_id) }
}

pub(crate) fn enrollment_index_pks(scope: &str) -> Vec<String> {
    (0..ENROLLMENT_SHARDS).map(|s| enrollment_index_pk(scope, s)).collect()
}

fn enrollment_index_pk(scope: &str, shard: u32) -> String {
    format!("{}#enrollments#{shard}", key(scope))
}

pub(crate) fn tpm_challenge(scope: &str, registration_id: &str) -> ItemKey {
    ItemKey { pk: record_pk(scope, registration_id), sk: TPM_CHALLENGE_SK.into() }
}

pub(crate) fn registration(scope: &str, registration_id: &str) -> ItemKey {
    ItemKey { pk: record_pk(scope, registration_id), sk: REGISTRATION_SK.into() }
}

/// Layout 1 kept records and TPM challenges in the device partition (`{scope}#dev#{id}`, with the
/// enrollment): the partition [`crate::migrate`] moves such an item to.
pub(crate) fn record_pk_of_legacy(pk: &str) -> Option<String> {
    let (scope, id) = pk.split_once("#dev#")?;
    Some(format!("{scope}#rec#{id}"))
}

/// Only records of group-admitted devices are indexed (a sparse index).
pub(crate) fn registration_index(scope: &str, group_id: &str, registration_id: &str) -> IndexKey {
    let shard = shard_of(registration_id, REGISTRATION_SHARDS);
    IndexKey { pk: registration_index_pk(scope, group_id, shard), sk: key(registration_id) }
}

pub(crate) fn registration_index_pks(scope: &str, group_id: &str) -> Vec<String> {
    (0..REGISTRATION_SHARDS).map(|s| registration_index_pk(scope, group_id, s)).collect()
}

fn registration_index_pk(scope: &str, group_id: &str, shard: u32) -> String {
    format!("{}#grp#{}#registrations#{shard}", key(scope), key(group_id))
}

pub(crate) fn group(scope: &str, group_id: &str) -> ItemKey {
    ItemKey { pk: format!("{}#grp#{}", key(scope), key(group_id)), sk: "group".into() }
}

/// Groups are few and written by operators only: one index partition per scope.
pub(crate) fn group_index(scope: &str, group_id: &str) -> IndexKey {
    IndexKey { pk: group_index_pk(scope), sk: key(group_id) }
}

pub(crate) fn group_index_pk(scope: &str) -> String {
    format!("{}#groups", key(scope))
}

/// Where an enrollment of either kind is kept, with its item type (`enrollment`, `group`).
pub(crate) fn enrollment_of(kind: EnrollmentKind, scope: &str, id: &str) -> (ItemKey, &'static str) {
    match kind {
        EnrollmentKind::Individual => (enrollment(scope, id), "enrollment"),
        EnrollmentKind::Group => (group(scope, id), "group"),
    }
}

/// The listing position of an enrollment of either kind.
pub(crate) fn enrollment_index_of(kind: EnrollmentKind, scope: &str, id: &str) -> IndexKey {
    match kind {
        EnrollmentKind::Individual => enrollment_index(scope, id),
        EnrollmentKind::Group => group_index(scope, id),
    }
}

/// The index partitions a listing of one kind reads.
pub(crate) fn enrollment_index_pks_of(kind: EnrollmentKind, scope: &str) -> Vec<String> {
    match kind {
        EnrollmentKind::Individual => enrollment_index_pks(scope),
        EnrollmentKind::Group => vec![group_index_pk(scope)],
    }
}

/// Counter shard partitions are per scope (all days and kinds of one shard together), so a date range is
/// one Query per shard.
pub(crate) fn counter(scope: &str, shard: u32, date: &str, kind: OperationKind) -> ItemKey {
    ItemKey { pk: counter_pk(scope, shard), sk: format!("{date}#{}", kind.as_str()) }
}

pub(crate) fn counter_pk(scope: &str, shard: u32) -> String {
    format!("{}#ops#{shard}", key(scope))
}

/// Sort key bounds covering every kind of the days `from..=to`.
pub(crate) fn counter_range(from: &str, to: &str) -> (String, String) {
    (format!("{from}#"), format!("{to}#~"))
}

/// Parse a counter sort key back into its day and kind.
pub(crate) fn parse_counter_sk(sk: &str) -> Option<(String, OperationKind)> {
    let (date, kind) = sk.split_once('#')?;
    let kind = OperationKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
    Some((date.to_string(), kind))
}

/// A stable shard for an identifier (FNV-1a of its storage key), the same on every machine and release.
pub(crate) fn shard_of(id: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key(id).bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_per_entity() {
        assert_eq!(enrollment("0ne00AB", "Dev-1"), enrollment("0NE00ab", "dev-1"));
        assert_ne!(enrollment("s", "a").pk, registration("s", "a").pk, "records are apart from enrollments");
        assert_eq!(registration("s", "a").pk, tpm_challenge("s", "a").pk);
        assert_ne!(enrollment("s", "a").pk, enrollment("s", "b").pk);
        assert_ne!(enrollment("s1", "a").pk, enrollment("s2", "a").pk);
        assert_eq!(enrollment_index("s", "Dev-1"), enrollment_index("S", "dev-1"));
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("device-1", 8), shard_of("DEVICE-1", 8));
        let mut seen = [0u32; REGISTRATION_SHARDS as usize];
        for i in 0..8000 {
            seen[shard_of(&format!("device-{i}"), REGISTRATION_SHARDS) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "uneven shards: {seen:?}");
    }

    #[test]
    fn counter_keys_round_trip() {
        let k = counter("S", 3, "2026-01-02", OperationKind::ReRegistration);
        assert_eq!(k.pk, "s#ops#3");
        assert_eq!(parse_counter_sk(&k.sk), Some(("2026-01-02".into(), OperationKind::ReRegistration)));
        let (lo, hi) = counter_range("2026-01-02", "2026-01-02");
        assert!(lo.as_str() < k.sk.as_str() && k.sk.as_str() < hi.as_str());
    }
}
