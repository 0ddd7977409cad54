//! Reading JSON the way the two parsers here need it: typed field readers that tell "absent"
//! from "the wrong type" (naming the type found, never the value), and a strict parser that
//! refuses duplicate keys.
//!
//! Which parser reads what, deliberately: the credential document is parsed strictly — a file
//! with two `refreshToken` keys is ambiguous, and it is refused before anything is spent. A token
//! answer is parsed as the `claude` CLI parses it (`JSON.parse`: the last duplicate wins): once
//! the endpoint answered 2xx the refresh token sent is spent, and refusing the answer would
//! throw away the only live login.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::scrub::scrub;

/// The JSON type of `value`, as a message would say it.
pub const fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The string at `key`: `Ok(None)` when absent or `null`, `Err` naming the type found otherwise.
pub fn text<'a>(
    object: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, &'static str> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(type_name(other)),
    }
}

/// The number at `key`: `Ok(None)` when absent or `null`, `Err` naming the type found otherwise.
pub fn number<'a>(
    object: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Number>, &'static str> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(other) => Err(type_name(other)),
    }
}

/// The list of strings at `key`: `Ok(None)` when absent or `null`, `Err` naming the type found
/// when it or one of its items is something else.
pub fn strings(
    object: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, &'static str> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(type_name(other)),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(type_name(other)),
    }
}

/// Parse `text` as JSON, refusing duplicate object keys. The error says where, never what.
pub fn parse_strict(text: &str) -> Result<Value, String> {
    serde_json::from_str::<Strict>(text)
        .map(|Strict(value)| value)
        .map_err(|e| e.to_string())
}

/// The key under which serde_json (with `arbitrary_precision`) passes a number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// A JSON value that refuses duplicate object keys. serde_json's own depth limit (128) still
/// applies, so hostile nesting fails cleanly instead of overflowing the stack.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // serde_json hands a number over as this one-entry map, its text unchanged, so that
            // a number is written back as it was written.
            if key == NUMBER_TOKEN && object.is_empty() {
                let text: String = map.next_value()?;
                let number: Number = text.parse().map_err(de::Error::custom)?;
                return Ok(Value::Number(number));
            }
            if object.contains_key(&key) {
                let shown: String = scrub(&key).chars().take(40).collect();
                return Err(de::Error::custom(format_args!("duplicate key `{shown}`")));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readers_tell_absent_from_the_wrong_type() {
        let Value::Object(object) = json!({"s": "x", "n": 1, "l": ["a"], "z": null, "b": true})
        else {
            unreachable!()
        };
        assert_eq!(text(&object, "s"), Ok(Some("x")));
        assert_eq!(text(&object, "z"), Ok(None));
        assert_eq!(text(&object, "missing"), Ok(None));
        assert_eq!(text(&object, "n"), Err("a number"));
        assert_eq!(
            number(&object, "n").map(|n| n.map(|n| n.to_string())),
            Ok(Some("1".into()))
        );
        assert_eq!(number(&object, "b"), Err("a boolean"));
        assert_eq!(strings(&object, "l"), Ok(Some(vec!["a".to_owned()])));
        assert_eq!(strings(&object, "s"), Err("a string"));
        let Value::Object(mixed) = json!({"l": ["a", 1]}) else {
            unreachable!()
        };
        assert_eq!(strings(&mixed, "l"), Err("a number"));
    }

    #[test]
    fn the_strict_parser_refuses_duplicate_keys_at_any_depth() {
        assert!(
            parse_strict(r#"{"a":{"b":1,"b":2}}"#)
                .unwrap_err()
                .contains("duplicate key `b`")
        );
        assert_eq!(
            parse_strict(r#"{"a":[1,{"b":2}]}"#).unwrap(),
            json!({"a":[1,{"b":2}]})
        );
    }
}
