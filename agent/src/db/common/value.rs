//! Value helpers both engines share when they turn results into JSON and
//! job parameters into values: base64 for bytes, floats that JSON cannot
//! hold (NaN, infinities) as text.

use serde_json::Value as Json;

/// A float as a JSON number, or as text when JSON has no number for it.
pub fn float_json(d: f64) -> Json {
    serde_json::Number::from_f64(d).map_or_else(|| Json::String(d.to_string()), Json::Number)
}

/// Standard base64 (RFC 4648, `+/`, padding optional on input), shared with
/// the controller through `baton_proto`.
pub use baton_proto::base64;

#[cfg(test)]
mod tests;
