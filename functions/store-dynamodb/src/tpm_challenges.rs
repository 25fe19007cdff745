//! TPM challenges: one item per device in the device's partition (sk `tpmChallenge`), with the `ttl` attribute
//! set to its expiry so that DynamoDB removes it. Until it does, an expired item reads as absent, and the write
//! conditions treat it as absent too (`ttl` is part of them), so a new challenge always replaces a dead one.

use std::collections::HashMap;

use dps_core::Result;
use dps_core::model::TpmChallenge;
use dps_core::store::{Precondition, new_etag, unix_now};

use crate::item::{self, Condition, Item, condition_failed};
use crate::{DynamoStore, layout};

const WHAT: &str = "TPM challenge";

fn live(found: &Item, now: i64) -> bool {
    let expires = found.get(layout::TTL).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    expires.is_some_and(|at| now < at)
}

/// The write condition: `precondition`, where an expired item counts as absent.
fn condition(precondition: &Precondition, now: i64) -> Option<Condition> {
    let names = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let now = HashMap::from([(":now".to_string(), item::n(now))]);
    match precondition {
        Precondition::None => None,
        Precondition::NotExists => Some(Condition {
            expression: "attribute_not_exists(#pk) OR #ttl <= :now".into(),
            names: names(&[("#pk", layout::PK), ("#ttl", layout::TTL)]),
            values: Some(now),
        }),
        Precondition::Matches(tag) => {
            let alive = Condition {
                expression: "#ttl > :now".into(),
                names: names(&[("#ttl", layout::TTL)]),
                values: Some(now),
            };
            let tag = if tag.trim() == "*" { None } else { Some(tag) };
            Some(match tag {
                None => alive,
                Some(tag) => item::put_condition(&Precondition::Matches(tag.clone()))?.and(alive),
            })
        }
    }
}

impl DynamoStore {
    pub(crate) async fn tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        let found = self.get_item(&layout::tpm_challenge(scope, registration_id)).await?;
        let now = unix_now();
        let challenge = found.filter(|i| live(i, now)).map(|i| item::decode::<TpmChallenge>(&i)).transpose()?;
        Ok(challenge.filter(|c| !c.expired(now)))
    }

    pub(crate) async fn save_tpm_challenge(
        &self,
        scope: &str,
        mut challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        let key = layout::tpm_challenge(scope, &challenge.registration_id);
        let etag = new_etag();
        challenge.etag = Some(etag.clone());
        let mut record = item::entity_item(&key, "tpmChallenge", None, &etag, &challenge)?;
        record.insert(layout::TTL.into(), item::n(challenge.expires_at));
        let now = unix_now();
        match self.put_if(record, condition(&precondition, now)).await? {
            Ok(()) => Ok(challenge),
            Err(old) => Err(condition_failed(&precondition, WHAT, old.is_some_and(|old| live(&old, now)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_items_count_as_absent_in_conditions() {
        assert!(condition(&Precondition::None, 5).is_none());
        let create = condition(&Precondition::NotExists, 5).unwrap();
        assert_eq!(create.expression, "attribute_not_exists(#pk) OR #ttl <= :now");
        let consume = condition(&Precondition::Matches("x".into()), 5).unwrap();
        assert_eq!(consume.expression, "(#etag = :etag) AND (#ttl > :now)");
    }
}
