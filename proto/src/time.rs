//! The one time format of manifests and job results: RFC 3339 in UTC with
//! exactly three fractional digits, `2026-12-05T14:50:07.123Z`.
//!
//! [`rfc3339_ms`] formats a time; [`ms`] is the serde adapter for
//! `#[serde(with = "baton_proto::time::ms")]` on a `DateTime<Utc>` field
//! (reading accepts any RFC 3339 time). Durations are not computed from two
//! such strings: they come from a monotonic clock where they are measured.

use chrono::{DateTime, SecondsFormat, Utc};

/// `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (cut, not rounded, to milliseconds).
pub fn rfc3339_ms(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde adapter for a `DateTime<Utc>` written as [`rfc3339_ms`].
pub mod ms {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write as [`super::rfc3339_ms`].
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_ms(t))
    }

    /// Read any RFC 3339 time.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

#[cfg(test)]
mod tests;
