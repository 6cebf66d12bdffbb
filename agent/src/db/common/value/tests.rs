//! base64 and float conversion.

use super::*;

#[test]
fn base64_roundtrip() {
    for n in 0..20u8 {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let text = base64::encode(&data);
        assert_eq!(text.len() % 4, 0);
        assert_eq!(base64::decode(&text), Ok(data.clone()));
        assert_eq!(base64::decode(text.trim_end_matches('=')), Ok(data));
    }
    assert_eq!(base64::encode(b"Man"), "TWFu");
    assert_eq!(base64::encode(b"Ma"), "TWE=");
    assert_eq!(base64::decode("TQ=="), Ok(b"M".to_vec()));
    assert!(base64::decode("TQ=").is_err());
    assert!(base64::decode("T===").is_err());
}

#[test]
fn floats_json_cannot_hold_become_text() {
    assert_eq!(float_json(1.5), serde_json::json!(1.5));
    assert_eq!(float_json(f64::NAN), Json::String("NaN".into()));
    assert_eq!(float_json(f64::INFINITY), Json::String("inf".into()));
}
