//! Validates events against the consumer's contract, the JSON Schemas in `docs/schema/`.
//!
//! [`super::xrange`] runs every stream entry it returns through [`check_entry`], so each test
//! that reads events from Redis also proves the docs describe them. The published schemas
//! allow extra fields (a consumer must ignore what it does not know), but here every object
//! schema is *closed* (`additionalProperties: false` added wherever `properties` is listed):
//! a field the service emits without documenting it fails the test that sees it.
//!
//! The `jsonschema` crate does the validation (draft 2020-12, formats checked); only the
//! closing of the schemas is ours.

use jsonschema::{Registry, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The event types the schemas describe (one `docs/schema/<type>.json` each).
pub const EVENT_TYPES: [&str; 5] = ["motion", "detection", "object", "anpr", "counts"];

/// `docs/schema/` of this checkout.
pub fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema")
}

fn load(name: &str) -> Value {
    let p = schema_dir().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Adds `additionalProperties: false` to every object schema that lists `properties`.
fn close(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("properties") && !m.contains_key("additionalProperties") {
                m.insert("additionalProperties".into(), Value::Bool(false));
            }
            m.values_mut().for_each(close);
        }
        Value::Array(a) => a.iter_mut().for_each(close),
        _ => {}
    }
}

/// One compiled validator per event type, over the closed schemas.
fn validators() -> &'static HashMap<&'static str, Validator> {
    static V: OnceLock<HashMap<&'static str, Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let mut common = load("common.json");
        close(&mut common);
        let id = common["$id"].as_str().expect("common.json has an $id").to_string();
        let registry: &'static Registry<'static> =
            Box::leak(Box::new(Registry::new().add(id, common).and_then(|r| r.prepare()).expect("common.json is a valid schema resource")));
        EVENT_TYPES
            .iter()
            .map(|t| {
                let mut s = load(&format!("{t}.json"));
                close(&mut s);
                let v = jsonschema::options()
                    .with_registry(registry)
                    .should_validate_formats(true)
                    .build(&s)
                    .unwrap_or_else(|e| panic!("docs/schema/{t}.json does not compile: {e}"));
                (*t, v)
            })
            .collect()
    })
}

/// Panics, naming every violation, unless `event` is valid against its type's closed schema.
pub fn check_event(event: &Value) {
    let t = event["event_type"].as_str().unwrap_or_else(|| panic!("event without a string event_type: {event}"));
    let v = validators()
        .get(t)
        .unwrap_or_else(|| panic!("event_type {t:?} has no schema in docs/schema/ (add one and document it in docs/events.md): {event}"));
    let errors: Vec<String> = v.iter_errors(event).map(|e| format!("  at {:?}: {e}", e.instance_path().as_str())).collect();
    assert!(errors.is_empty(), "a {t} event does not match docs/schema/{t}.json:\n{}\nevent: {event}", errors.join("\n"));
}

/// Checks one stream entry: the payload against its schema, and the entry's own fields
/// (`event_type`, `camera_id`, `timestamp`) against the payload's.
pub fn check_entry(fields: &HashMap<String, String>) {
    let Some(payload) = fields.get("payload") else { return };
    let event: Value = serde_json::from_str(payload).unwrap_or_else(|e| panic!("payload is not JSON ({e}): {payload}"));
    check_event(&event);
    for k in ["event_type", "camera_id", "timestamp"] {
        assert_eq!(fields.get(k).map(String::as_str), event[k].as_str(), "entry field {k} differs from the payload's: {fields:?}");
    }
}

/// [`check_event`] for an event a test took straight from a stage, before the publisher
/// stamped its `instance_id`.
pub fn check_unpublished(event: &analytics_service::events::Event) {
    let mut v = serde_json::to_value(event).expect("an event serialises");
    if v["instance_id"] == "" {
        v["instance_id"] = "test-instance".into();
    }
    check_event(&v);
}
