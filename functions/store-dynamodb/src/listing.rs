//! Paged listings through the overloaded GSI, over one or several index partitions (shards).
//!
//! A page queries every shard concurrently for the items after the continuation key, merges them in key order
//! and cuts the page. The continuation is the last key returned, so pages stay in ascending key order across
//! shards. GSI reads are eventually consistent (DynamoDB offers nothing else on a GSI).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dps_core::store::{Page, PageRequest};
use dps_core::{Error, Result};
use futures::future::try_join_all;

use crate::item::{self, Item};
use crate::{DynamoStore, errors, layout};

/// Whether a listed item is where the entity it claims to be is kept: `at` gives that table key from the item's
/// index sort key (the entity's lower-cased ID). A writer that may put items only into some partitions (the
/// device function's role: record partitions) could give one any index keys; such an item is left out of every
/// listing but the one of its own kind, and logged.
pub(crate) fn in_place(found: &Item, at: impl Fn(&str) -> layout::ItemKey) -> bool {
    let (pk, sk) = (item::get_s(found, layout::PK), item::get_s(found, layout::SK));
    let expected = item::get_s(found, layout::GSI1SK).map(at);
    let ok = expected.as_ref().is_some_and(|e| pk == Some(e.pk.as_str()) && sk == Some(e.sk.as_str()));
    if !ok {
        tracing::warn!(pk, sk, "a listed item is not where its entity is kept: left out");
    }
    ok
}

/// One page of the entities indexed under `index_pks`, each kept at the table key `at` gives for its ID (others
/// are left out: [`in_place`]) and read from its item by `decode`.
pub(crate) async fn query<T>(
    store: &DynamoStore,
    index_pks: Vec<String>,
    page: PageRequest,
    at: impl Fn(&str) -> layout::ItemKey,
    decode: impl Fn(&Item) -> Result<T>,
) -> Result<Page<T>> {
    let after = page.continuation.as_deref().map(decode_token).transpose()?;
    let max_items = page.max_items.max(1);
    // One more than a page, so a shard that has more is known without an empty extra page.
    let limit = i32::try_from(max_items + 1).unwrap_or(i32::MAX);
    let shards = index_pks.iter().map(|pk| query_shard(store, pk, after.as_deref(), limit));
    let results = try_join_all(shards).await?;

    // A shard cut short (by Limit or by the 1 MB response cap) is only complete up to its last key: items
    // of other shards beyond that key wait for the next page.
    let mut bound: Option<String> = None;
    let mut merged: Vec<(String, Item)> = Vec::new();
    for (items, truncated) in results {
        if truncated
            && let Some(last) = items.last().and_then(|i| item::get_s(i, layout::GSI1SK))
            && bound.as_deref().is_none_or(|b| last < b)
        {
            bound = Some(last.to_string());
        }
        merged.extend(items.into_iter().filter_map(|i| Some((item::get_s(&i, layout::GSI1SK)?.to_string(), i))));
    }
    merged.retain(|(sk, _)| bound.as_deref().is_none_or(|b| sk.as_str() <= b));
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let more = merged.len() > max_items || bound.is_some();
    merged.truncate(max_items);
    let continuation = match merged.last() {
        Some((last, _)) if more => Some(URL_SAFE_NO_PAD.encode(last)),
        _ => None,
    };
    let items = merged.iter().filter(|(_, i)| in_place(i, &at)).map(|(_, i)| decode(i)).collect::<Result<Vec<T>>>()?;
    Ok(Page { items, continuation })
}

/// Items of one index partition after `after`, and whether the partition has more.
async fn query_shard(store: &DynamoStore, pk: &str, after: Option<&str>, limit: i32) -> Result<(Vec<Item>, bool)> {
    let mut request = store
        .client
        .query()
        .table_name(&*store.table)
        .index_name(layout::GSI1)
        .expression_attribute_names("#pk", layout::GSI1PK)
        .expression_attribute_values(":pk", item::s(pk))
        .limit(limit);
    request = match after {
        Some(after) => request
            .key_condition_expression("#pk = :pk AND #sk > :after")
            .expression_attribute_names("#sk", layout::GSI1SK)
            .expression_attribute_values(":after", item::s(after)),
        None => request.key_condition_expression("#pk = :pk"),
    };
    let out = request.send().await.map_err(|e| errors::sdk("Query", e))?;
    let truncated = out.last_evaluated_key.as_ref().is_some_and(|k| !k.is_empty());
    Ok((out.items.unwrap_or_default(), truncated))
}

fn decode_token(token: &str) -> Result<String> {
    let bad = || Error::invalid("Invalid continuation token");
    let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = URL_SAFE_NO_PAD.encode("dev-1");
        assert_eq!(decode_token(&token).unwrap(), "dev-1");
        assert!(matches!(decode_token("%%%"), Err(Error::Invalid(_))));
    }
}
