//! JSON parsing that refuses duplicate object keys.
//!
//! `serde_json::Value` keeps the last of two equal keys without a word, so
//! `{"camera_id": "a", "camera_id": "b"}` would silently configure camera `b`; a client with a
//! bug in its serialiser deserves a 400 that says which key instead. This is a `Value` built by
//! a visitor that checks each map's keys as it goes (same nesting limit as serde_json: 128).

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::{Map, Value};
use std::fmt;

/// Parses `bytes` as JSON; a duplicate key anywhere is an error naming it.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
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
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(StrictValue)?;
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format!("duplicate key '{shown}' in an object")));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let s = br#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": {}}}"#;
        assert_eq!(from_slice(s).unwrap(), serde_json::from_slice::<serde_json::Value>(s).unwrap());
        assert_eq!(from_slice(b"[]").unwrap(), json!([]));
    }

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        assert!(from_slice(br#"{"a": 1, "a": 2}"#).unwrap_err().to_string().contains("duplicate key 'a'"));
        assert!(from_slice(br#"[{"p": {"x": 1, "x": 1}}]"#).unwrap_err().to_string().contains("duplicate key 'x'"));
    }

    #[test]
    fn refuses_trailing_garbage_and_deep_nesting() {
        assert!(from_slice(b"{} x").is_err());
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(from_slice(deep.as_bytes()).is_err());
    }
}
