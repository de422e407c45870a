//! Tolerant getters over `serde_json` values: the only place that decides what a wrong type means.
//!
//! Meta's payloads vary (ids as strings or numbers, timestamps in seconds, milliseconds or strings,
//! placeholders in dashboard tests), so each getter answers `None` (or `false`) for anything it cannot
//! read, instead of failing the whole event.

use super::{EventError, ExternalId};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A JSON object, as parsed from an event.
pub(super) type Object = Map<String, Value>;

/// Below this, a timestamp is taken to be in seconds (100 000 000 000 s is in the year 5138; in
/// milliseconds it is March 1973, long before Meta's messaging existed).
const SECONDS_CUTOFF: i64 = 100_000_000_000;

/// 9999-12-31T23:59:59.999Z: later values are nonsense, and capping keeps every timestamp convertible
/// by `chrono`.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// Parses the raw event. Only input that is not a JSON object is an error. A valid object that
/// `serde_json::Value` cannot hold (a number such as `1e400`, nesting past its recursion limit) keeps its
/// top-level keys, with each unreadable member replaced by `null`, so it still classifies (as `Unknown`).
pub(super) fn parse_object(raw: &str) -> Result<Object, EventError> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(EventError::NotAnObject {
            found: type_name(&other),
        }),
        Err(error) => {
            let members: BTreeMap<String, &RawValue> = match serde_json::from_str(raw) {
                Ok(members) => members,
                Err(_) => return Err(EventError::NotJson(error)),
            };
            Ok(members
                .into_iter()
                .map(|(key, raw)| (key, serde_json::from_str(raw.get()).unwrap_or(Value::Null)))
                .collect())
        }
    }
}

/// The JSON type of a value, for error messages.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The member `key` when it is an object.
pub(super) fn object<'a>(parent: &'a Object, key: &str) -> Option<&'a Object> {
    parent.get(key).and_then(Value::as_object)
}

/// A text member: a non-empty string, or a number's text (Meta says every property is a string, but
/// examples disagree). Empty strings count as absent.
pub(super) fn text(parent: &Object, key: &str) -> Option<String> {
    match parent.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An id: a non-empty string, or an integer kept as its decimal text. Floats are refused: an id that
/// went through floating point has lost digits.
pub(super) fn id(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// The id member `key` (e.g. `app_id`), string or number.
pub(super) fn id_member(parent: &Object, key: &str) -> Option<String> {
    parent.get(key).and_then(id)
}

/// A party (`sender`/`recipient`): `{"id": …}`, or Messenger's `{"user_ref": …}` when there is no id;
/// a bare id in place of the object is accepted too.
pub(super) fn party(parent: &Object, key: &str) -> Option<ExternalId> {
    let value = parent.get(key)?;
    let found = match value.as_object() {
        Some(party) => id_member(party, "id").or_else(|| id_member(party, "user_ref")),
        None => id(value),
    };
    found.map(ExternalId)
}

/// A boolean flag such as `is_echo`: `true`, `"true"` or `1` count; anything else (or absence) is false.
pub(super) fn flag(parent: &Object, key: &str) -> bool {
    match parent.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// A timestamp in milliseconds since the Unix epoch, from a number or a numeric string, in seconds or
/// milliseconds (see [`SECONDS_CUTOFF`]). Placeholders, non-positive and absurd values are `None`.
pub(super) fn timestamp_ms(value: Option<&Value>) -> Option<i64> {
    let raw = number(value?)?;
    if !raw.is_finite() || raw < 1.0 || raw > MAX_TIMESTAMP_MS as f64 {
        return None;
    }
    // In range by the check above, so the conversion neither saturates nor wraps.
    let whole = raw.trunc() as i64;
    Some(if whole < SECONDS_CUTOFF {
        whole * 1000
    } else {
        whole
    })
}

/// A count such as `num_edit`: a non-negative integer from a number or a numeric string.
pub(super) fn count(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .filter(|n| *n >= 0)
}

/// A number, or a string holding one (`"1527459824"`).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_i64().map(|i| i as f64).or_else(|| n.as_f64()),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}
