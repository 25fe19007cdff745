//! Items: building them from entities, decoding them, and the condition expressions that guard writes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use dps_core::store::Precondition;
use dps_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::layout::{self, IndexKey, ItemKey};

/// One DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The key attributes of an item.
pub(crate) fn key_of(key: &ItemKey) -> Item {
    HashMap::from([(layout::PK.to_string(), s(&key.pk)), (layout::SK.to_string(), s(&key.sk))])
}

/// A string attribute of an item.
pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// A whole item for an entity: keys, index keys, type, etag and the entity's wire-form JSON.
pub(crate) fn entity_item<T: Serialize>(
    key: &ItemKey,
    kind: &'static str,
    index: Option<&IndexKey>,
    etag: &str,
    entity: &T,
) -> Result<Item> {
    let doc = serde_json::to_string(entity).map_err(|e| Error::internal(format!("cannot encode {kind}: {e}")))?;
    let mut item = key_of(key);
    item.insert(layout::TYPE.into(), s(kind));
    item.insert(layout::ETAG.into(), s(etag));
    item.insert(layout::DOC.into(), s(doc));
    if let Some(index) = index {
        item.insert(layout::GSI1PK.into(), s(&index.pk));
        item.insert(layout::GSI1SK.into(), s(&index.sk));
    }
    Ok(item)
}

/// Decode the entity held by an item.
pub(crate) fn decode<T: DeserializeOwned>(item: &Item) -> Result<T> {
    let doc = get_s(item, layout::DOC).ok_or_else(|| Error::internal("stored item has no doc attribute"))?;
    serde_json::from_str(doc).map_err(|e| Error::internal(format!("cannot decode stored item: {e}")))
}

/// The enrollment of `kind` in an item's `doc`.
pub(crate) fn decode_enrollment(
    kind: dps_core::model::EnrollmentKind,
    item: &Item,
) -> Result<dps_core::model::AnyEnrollment> {
    let doc = get_s(item, layout::DOC).ok_or_else(|| Error::internal("stored item has no doc attribute"))?;
    dps_core::model::AnyEnrollment::from_json(kind, doc.as_bytes())
        .map_err(|e| Error::internal(format!("cannot decode stored item: {e}")))
}

/// A condition expression with its placeholders.
#[derive(Debug, Clone, Default)]
pub(crate) struct Condition {
    pub expression: String,
    pub names: HashMap<String, String>,
    pub values: Option<HashMap<String, AttributeValue>>,
}

impl Condition {
    fn exists(yes: bool) -> Self {
        let f = if yes { "attribute_exists" } else { "attribute_not_exists" };
        Self {
            expression: format!("{f}(#pk)"),
            names: HashMap::from([("#pk".into(), layout::PK.into())]),
            values: None,
        }
    }

    fn etag_is(tag: &str) -> Self {
        Self {
            expression: "#etag = :etag".into(),
            names: HashMap::from([("#etag".into(), layout::ETAG.into())]),
            values: Some(HashMap::from([(":etag".into(), s(quoted(tag)))])),
        }
    }

    /// Both conditions.
    pub(crate) fn and(mut self, other: Condition) -> Self {
        self.expression = format!("({}) AND ({})", self.expression, other.expression);
        self.names.extend(other.names);
        if let Some(values) = other.values {
            self.values.get_or_insert_with(HashMap::new).extend(values);
        }
        self
    }

    /// `attribute = value` for a string attribute.
    pub(crate) fn equals(attribute: &str, value: &str) -> Self {
        let name = format!("#{attribute}");
        let placeholder = format!(":{attribute}");
        Self {
            expression: format!("{name} = {placeholder}"),
            names: HashMap::from([(name, attribute.to_string())]),
            values: Some(HashMap::from([(placeholder, s(value))])),
        }
    }

    /// The item must exist.
    pub(crate) fn must_exist() -> Self {
        Self::exists(true)
    }
}

/// The condition of a put under `precondition` (`None` = unconditional).
pub(crate) fn put_condition(precondition: &Precondition) -> Option<Condition> {
    match precondition {
        Precondition::None => None,
        Precondition::NotExists => Some(Condition::exists(false)),
        Precondition::Matches(tag) if tag.trim() == "*" => Some(Condition::exists(true)),
        Precondition::Matches(tag) => Some(Condition::etag_is(tag)),
    }
}

/// The condition of a delete under `precondition`: the item must exist, with this etag if one is given.
/// (`NotExists` makes no sense for a delete; callers answer it without writing.)
pub(crate) fn delete_condition(precondition: &Precondition) -> Condition {
    match precondition {
        Precondition::Matches(tag) if tag.trim() != "*" => Condition::etag_is(tag),
        _ => Condition::exists(true),
    }
}

/// The error of a write whose condition failed; `existed` tells whether the item was there (from
/// `ReturnValuesOnConditionCheckFailure=ALL_OLD`).
pub(crate) fn condition_failed(precondition: &Precondition, what: &str, existed: bool) -> Error {
    match (precondition, existed) {
        (Precondition::NotExists, true) => Error::Conflict(format!("{what} already exists")),
        (Precondition::Matches(_), true) => Error::PreconditionFailed(format!("{what}: etag does not match")),
        (_, false) => Error::not_found(format!("{what} not found")),
        // An unconditional write has no condition to fail; a concurrent writer must have won.
        (Precondition::None, true) => Error::Conflict(format!("{what} was changed concurrently")),
    }
}

/// The stored form of an If-Match value: quoted, without a weak prefix.
fn quoted(tag: &str) -> String {
    let tag = tag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    format!("\"{}\"", tag.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_compared_in_stored_form() {
        assert_eq!(quoted("abc"), "\"abc\"");
        assert_eq!(quoted("W/\"abc\""), "\"abc\"");
        assert_eq!(quoted(" \"abc\" "), "\"abc\"");
    }

    #[test]
    fn conditions() {
        assert!(put_condition(&Precondition::None).is_none());
        assert_eq!(put_condition(&Precondition::NotExists).unwrap().expression, "attribute_not_exists(#pk)");
        assert_eq!(put_condition(&Precondition::Matches("*".into())).unwrap().expression, "attribute_exists(#pk)");
        let c = put_condition(&Precondition::Matches("x".into())).unwrap().and(Condition::equals("nameKey", "a"));
        assert_eq!(c.expression, "(#etag = :etag) AND (#nameKey = :nameKey)");
        assert_eq!(c.values.unwrap().len(), 2);
        assert_eq!(delete_condition(&Precondition::None).expression, "attribute_exists(#pk)");
    }
}
