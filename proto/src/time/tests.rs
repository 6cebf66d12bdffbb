use chrono::TimeZone;

use super::*;

#[test]
fn three_fractional_digits_always() {
    let whole = Utc
        .with_ymd_and_hms(2026, 12, 5, 14, 50, 7)
        .single()
        .expect("time");
    assert_eq!(rfc3339_ms(&whole), "2026-12-05T14:50:07.000Z");
    let nanos = whole + chrono::Duration::nanoseconds(123_987_654);
    assert_eq!(
        rfc3339_ms(&nanos),
        "2026-12-05T14:50:07.123Z",
        "cut, not rounded"
    );
    let micro = whole + chrono::Duration::microseconds(5);
    assert_eq!(rfc3339_ms(&micro), "2026-12-05T14:50:07.000Z");
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct At {
    #[serde(with = "ms")]
    at: DateTime<Utc>,
}

#[test]
fn serde_adapter_writes_the_format_and_reads_rfc3339() {
    let t = Utc
        .with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .expect("time")
        + chrono::Duration::milliseconds(60);
    let json = serde_json::to_string(&At { at: t }).expect("json");
    assert_eq!(json, r#"{"at":"2026-01-02T03:04:05.060Z"}"#);
    let back: At = serde_json::from_str(&json).expect("read");
    assert_eq!(back.at, t);
    let other: At = serde_json::from_str(r#"{"at":"2026-01-02T04:04:05.06+01:00"}"#).expect("read");
    assert_eq!(other.at, t);
}
