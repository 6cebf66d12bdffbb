#[test]
fn percentages_are_clamped() {
    let p: crate::Progress = serde_json::from_str(r#"{"percent": 1e308}"#).expect("parse");
    assert_eq!(p.percent, Some(100.0));
    let p: crate::Progress = serde_json::from_str(r#"{"percent": -3}"#).expect("parse");
    assert_eq!(p.percent, Some(0.0));
    let p: crate::Progress = serde_json::from_str(r#"{"percent": 42.5}"#).expect("parse");
    assert_eq!(p.percent, Some(42.5));
    let p: crate::Progress = serde_json::from_str(r#"{}"#).expect("parse");
    assert_eq!(p.percent, None);
}
