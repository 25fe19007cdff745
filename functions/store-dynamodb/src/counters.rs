//! Sharded daily operation counters: an increment touches one random shard, a read sums all shards.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use dps_core::Result;
use dps_core::model::{OperationCount, OperationKind};
use futures::future::try_join_all;

use crate::item::{self, Item};
use crate::layout::{self, ItemKey};
use crate::{DynamoStore, errors};

/// An `ADD` of `count` to one counter shard, with its placeholders.
pub(crate) struct Increment {
    pub key: ItemKey,
    pub expression: String,
    pub names: HashMap<String, String>,
    pub values: HashMap<String, AttributeValue>,
}

/// Epoch seconds at which a counter of day `date` may go: the end of that day plus `keep`.
fn expires_at(date: &str, keep: Duration) -> Option<u64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(date, &format).ok()?;
    let end = day.next_day()?.midnight().assume_utc().unix_timestamp();
    Some(u64::try_from(end).ok()? + keep.as_secs())
}

impl DynamoStore {
    pub(crate) fn counter_increment(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Increment {
        let shard = rand::random_range(0..layout::COUNTER_SHARDS);
        let mut names = HashMap::from([("#n".to_string(), layout::COUNT.to_string())]);
        let mut values = HashMap::from([(":n".to_string(), item::n(count))]);
        let mut expression = "ADD #n :n".to_string();
        if let Some(expires) = self.counter_retention.and_then(|keep| expires_at(date, keep)) {
            expression.push_str(" SET #ttl = :ttl");
            names.insert("#ttl".into(), layout::TTL.into());
            values.insert(":ttl".into(), item::n(expires));
        }
        Increment { key: layout::counter(scope, shard, date, kind), expression, names, values }
    }

    pub(crate) async fn save_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        let inc = self.counter_increment(scope, date, kind, count);
        self.client
            .update_item()
            .table_name(&*self.table)
            .set_key(Some(item::key_of(&inc.key)))
            .update_expression(inc.expression)
            .set_expression_attribute_names(Some(inc.names))
            .set_expression_attribute_values(Some(inc.values))
            .send()
            .await
            .map_err(|e| errors::sdk("UpdateItem", e))?;
        Ok(())
    }

    /// Sum of every shard for the days `from..=to`: one Query per shard, run concurrently.
    pub(crate) async fn operation_counts(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        let (low, high) = layout::counter_range(from, to);
        let shards =
            (0..layout::COUNTER_SHARDS).map(|shard| self.counter_shard(layout::counter_pk(scope, shard), &low, &high));
        let mut sums: BTreeMap<(String, OperationKind), u64> = BTreeMap::new();
        for items in try_join_all(shards).await? {
            for found in items {
                let Some((date, kind)) = item::get_s(&found, layout::SK).and_then(layout::parse_counter_sk) else {
                    continue;
                };
                let count = found.get(layout::COUNT).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<u64>().ok());
                *sums.entry((date, kind)).or_default() += count.unwrap_or(0);
            }
        }
        Ok(sums
            .into_iter()
            .filter(|(_, c)| *c > 0)
            .map(|((date, kind), count)| OperationCount { date, kind, count })
            .collect())
    }

    async fn counter_shard(&self, pk: String, low: &str, high: &str) -> Result<Vec<Item>> {
        self.client
            .query()
            .table_name(&*self.table)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
            .expression_attribute_names("#pk", layout::PK)
            .expression_attribute_names("#sk", layout::SK)
            .expression_attribute_values(":pk", item::s(&pk))
            .expression_attribute_values(":low", item::s(low))
            .expression_attribute_values(":high", item::s(high))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| errors::sdk("Query", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_expire_after_their_day() {
        let keep = Duration::from_secs(400 * 86_400);
        let at = expires_at("2030-01-01", keep).unwrap();
        assert_eq!(at, 1_893_542_400 + 400 * 86_400);
        assert!(expires_at("not a date", keep).is_none());
    }
}
