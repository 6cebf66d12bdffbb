use super::*;
use crate::roundtrip::check;

#[test]
fn error_roundtrip() {
    let e = ErrorBody::new(ErrorCode::LeaseLost, "stale token", Some("token".into()));
    check(&e);
    let wire = serde_json::to_value(&e).expect("json");
    assert_eq!(wire["error"]["code"], "lease_lost");
    assert_eq!(e.error.code.status(), 409);
    check(&ErrorBody::new(ErrorCode::BadRequest, "x", None));
    let e = ErrorBody::new(ErrorCode::StoreUnavailable, "disk full", None);
    check(&e);
    assert_eq!(
        serde_json::to_value(&e).expect("json")["error"]["code"],
        "store_unavailable"
    );
    assert_eq!(e.error.code.status(), 503);
    let e = ErrorBody::new(
        ErrorCode::Unprocessable,
        "cycle",
        Some("steps[1].depends_on[0]".into()),
    );
    check(&e);
    assert_eq!(
        serde_json::to_value(&e).expect("json")["error"]["code"],
        "unprocessable"
    );
    assert_eq!(e.error.code.status(), 422);
}
