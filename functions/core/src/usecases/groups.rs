//! An instance's enrollment groups as registrations use them, built once per load of the group list and cached
//! with it: each symmetric-key group's keys with their HMAC key schedule done ([`GroupKey`]), and an index of the
//! registration ID prefixes groups declare, so that a device is tried only against groups that cover it.

use std::collections::HashMap;
use std::ops::Deref;

use crate::model::{AttestationType, EnrollmentGroup};
use crate::sas::GroupKey;

/// The groups of one instance (in group ID order, as the store lists them) and what SAS attestation needs.
pub(crate) struct GroupSet {
    groups: Vec<EnrollmentGroup>,
    /// Per group (same index): its symmetric keys, prepared (empty for other attestation kinds).
    keys: Vec<Vec<GroupKey>>,
    /// Lower-cased group ID → index (the group on a device's record is found without a scan).
    by_id: HashMap<String, usize>,
    /// Lower-cased declared prefix → the symmetric-key groups declaring it, in group order.
    by_prefix: HashMap<String, Vec<usize>>,
    /// Lengths of the declared prefixes, longest first (which heads of a registration ID to look up).
    prefix_lengths: Vec<usize>,
    /// Symmetric-key groups that declare no prefix, in group order.
    undeclared: Vec<usize>,
}

impl Deref for GroupSet {
    type Target = [EnrollmentGroup];
    fn deref(&self) -> &[EnrollmentGroup] {
        &self.groups
    }
}

impl GroupSet {
    pub(crate) fn new(groups: Vec<EnrollmentGroup>) -> Self {
        let mut keys = Vec::with_capacity(groups.len());
        let by_id = groups.iter().enumerate().map(|(i, g)| (g.enrollment_group_id.to_ascii_lowercase(), i)).collect();
        let (mut by_prefix, mut undeclared) = (HashMap::<String, Vec<usize>>::new(), Vec::new());
        for (index, group) in groups.iter().enumerate() {
            keys.push(symmetric_keys(group));
            if group.spec.attestation.kind != AttestationType::SymmetricKey {
                continue;
            }
            match &group.registration_id_prefix {
                Some(prefix) => by_prefix.entry(prefix.to_ascii_lowercase()).or_default().push(index),
                None => undeclared.push(index),
            }
        }
        let mut prefix_lengths: Vec<usize> = by_prefix.keys().map(String::len).collect();
        prefix_lengths.sort_unstable_by(|a, b| b.cmp(a));
        prefix_lengths.dedup();
        Self { groups, keys, by_id, by_prefix, prefix_lengths, undeclared }
    }

    /// The prepared symmetric keys of the group at `index`.
    pub(crate) fn keys(&self, index: usize) -> &[GroupKey] {
        &self.keys[index]
    }

    /// The index of the group `id` (case-insensitive).
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.by_id.get(&id.to_ascii_lowercase()).copied()
    }

    /// The symmetric-key groups a device `registration_id` may belong to, in the order they are tried: groups
    /// whose declared prefix it starts with (longest prefix first), then the groups that declare none. Costs one
    /// hash lookup per distinct prefix length, not one comparison per group.
    pub(crate) fn symmetric_candidates(&self, registration_id: &str) -> impl Iterator<Item = usize> + '_ {
        let lower = registration_id.to_ascii_lowercase();
        let declared: Vec<usize> = self
            .prefix_lengths
            .iter()
            .filter_map(|&len| lower.get(..len))
            .filter_map(|head| self.by_prefix.get(head))
            .flatten()
            .copied()
            .collect();
        declared.into_iter().chain(self.undeclared.iter().copied())
    }
}

fn symmetric_keys(group: &EnrollmentGroup) -> Vec<GroupKey> {
    let attestation = &group.spec.attestation;
    match (attestation.kind, attestation.symmetric_key.as_ref()) {
        (AttestationType::SymmetricKey, Some(keys)) => [keys.primary_key.as_deref(), keys.secondary_key.as_deref()]
            .into_iter()
            .flatten()
            .filter_map(GroupKey::new)
            .collect(),
        _ => Vec::new(),
    }
}
