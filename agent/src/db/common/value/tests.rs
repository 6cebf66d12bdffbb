//! base64 and float conversion.

use super::*;

#[test]
fn floats_json_cannot_hold_become_text() {
    assert_eq!(float_json(1.5), serde_json::json!(1.5));
    assert_eq!(float_json(f64::NAN), Json::String("NaN".into()));
    assert_eq!(float_json(f64::INFINITY), Json::String("inf".into()));
}
