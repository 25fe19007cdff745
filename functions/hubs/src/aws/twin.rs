//! A twin in IoT Core terms: tags as thing attributes, desired properties as the classic shadow's desired state.
//!
//! Attributes are strings of a narrow character set, so tags are encoded as follows (docs/hub-aws-iot-core.md):
//! a string is stored as is, a number or a boolean as its JSON text (`42`, `1.5`, `true`), a null or an empty
//! string is no attribute (AWS reads an empty value as "remove"); arrays, objects, and strings or names outside
//! AWS's patterns and lengths are refused, naming the tag. Read back, every attribute is a string: a migrated
//! twin's number and boolean tags arrive as their text.

use std::collections::HashMap;

use dps_core::hubs::HubFailure;
use serde_json::{Map, Value};

use super::errors::refused;

/// Longest attribute name.
const MAX_NAME: usize = 128;
/// Longest attribute value.
const MAX_VALUE: usize = 800;

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.,@/:#-".contains(c)
}

fn value_char(c: char) -> bool {
    name_char(c) || "=[]".contains(c)
}

/// The attributes for `tags` on thing `thing`, at most `max` of them.
pub(crate) fn attributes(
    thing: &str,
    tags: &Map<String, Value>,
    max: usize,
) -> Result<HashMap<String, String>, HubFailure> {
    let mut out = HashMap::new();
    for (name, value) in tags {
        let text = match value {
            Value::Null => continue,
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(_) | Value::Object(_) => {
                return Err(refused(format!(
                    "Tag '{name}' of thing '{thing}' is an array or object: AWS IoT Core thing attributes hold \
                     strings, numbers and booleans only"
                )));
            }
        };
        if name.is_empty() || name.len() > MAX_NAME || !name.chars().all(name_char) {
            return Err(refused(format!(
                "Tag name '{}' of thing '{thing}' is not a valid AWS IoT Core attribute name (1 to {MAX_NAME} of \
                 letters, digits and _.,@/:#-)",
                name.chars().take(MAX_NAME).collect::<String>()
            )));
        }
        if text.len() > MAX_VALUE || !text.chars().all(value_char) {
            return Err(refused(format!(
                "Tag '{name}' of thing '{thing}' has a value AWS IoT Core attributes cannot hold (at most \
                 {MAX_VALUE} of letters, digits and _.,@/:#=[]-)"
            )));
        }
        out.insert(name.clone(), text);
    }
    if out.len() > max {
        return Err(refused(format!(
            "Thing '{thing}' would get {} attributes from its tags; AWS IoT Core allows {max} {}",
            out.len(),
            if max == 3 {
                "on a thing without a thing type (set the hub's thingType for up to 50)"
            } else {
                "per thing"
            }
        )));
    }
    Ok(out)
}

/// Tags from a thing's attributes (all strings).
pub(crate) fn tags(attributes: Option<&HashMap<String, String>>) -> Map<String, Value> {
    attributes.into_iter().flatten().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()
}

/// The shadow update that turns desired state `old` into `new`: `new`, plus a null for every key (at any
/// depth) that `old` has and `new` has not, since a shadow update merges. `None` when nothing changes.
pub(crate) fn desired_update(old: &Map<String, Value>, new: &Map<String, Value>) -> Option<Map<String, Value>> {
    let patch = diff(old, new);
    (!patch.is_empty()).then_some(patch)
}

fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, value) in new {
        match (old.get(key), value) {
            (_, Value::Null) => {}
            (Some(Value::Object(o)), Value::Object(n)) => {
                let inner = diff(o, n);
                if !inner.is_empty() {
                    patch.insert(key.clone(), Value::Object(inner));
                }
            }
            (Some(o), n) if o == n => {}
            (_, n) => {
                // An object replacing a scalar (or nothing) needs no nulls inside it.
                patch.insert(key.clone(), n.clone());
            }
        }
    }
    for key in old.keys() {
        if new.get(key).is_none_or(Value::is_null) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn tags_become_string_attributes() {
        let attrs = attributes(
            "t",
            &map(json!({"site": "plant-7", "floor": 3, "ratio": 1.5, "on": true, "gone": null, "empty": ""})),
            50,
        )
        .unwrap();
        let expected: HashMap<String, String> = [("site", "plant-7"), ("floor", "3"), ("ratio", "1.5"), ("on", "true")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        assert_eq!(attrs, expected);
        assert_eq!(tags(Some(&expected))["floor"], json!("3"));
    }

    #[test]
    fn refuses_what_attributes_cannot_hold() {
        for (tags, needle) in [
            (json!({"a": [1]}), "Tag 'a' of thing 't' is an array or object"),
            (json!({"a": {"b": 1}}), "is an array or object"),
            (json!({"a b": "x"}), "Tag name 'a b' of thing 't' is not a valid"),
            (json!({"a": "x y"}), "Tag 'a' of thing 't' has a value"),
            (json!({"a": "x".repeat(801)}), "has a value"),
            (
                json!({"a": "1", "b": "2", "c": "3", "d": "4"}),
                "would get 4 attributes from its tags; AWS IoT Core allows 3",
            ),
        ] {
            let err = attributes("t", &map(tags.clone()), 3).expect_err(&tags.to_string());
            assert!(err.message.contains(needle), "{tags}: {}", err.message);
        }
        assert!(attributes("t", &map(json!({"a": "1", "b": "2", "c": "3", "d": "4"})), 50).is_ok());
    }

    #[test]
    fn desired_update_replaces_with_nulls_for_removed_keys() {
        let old = map(json!({"keep": 1, "change": "a", "drop": true, "nested": {"x": 1, "y": 2}, "obj": {"z": 1}}));
        let new = map(json!({"keep": 1, "change": "b", "nested": {"x": 1}, "obj": 5, "added": [1, 2]}));
        let update = desired_update(&old, &new).unwrap();
        assert_eq!(
            Value::Object(update),
            json!({"change": "b", "drop": null, "nested": {"y": null}, "obj": 5, "added": [1, 2]})
        );
        assert_eq!(desired_update(&new, &new), None, "an applied twin needs no update");
        assert_eq!(desired_update(&Map::new(), &Map::new()), None);
        assert_eq!(Value::Object(desired_update(&old, &Map::new()).unwrap())["nested"], Value::Null);
    }
}
