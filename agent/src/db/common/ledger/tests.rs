//! Replayed data, without a server.

use serde_json::json;

use super::*;

#[test]
fn replayed_data_says_so() {
    let c = Committed {
        data: json!({"result_sets": [], "affected_rows": 1, "ledger": "committed"}),
        attempt: 1,
        token: 4,
        committed_at: json!("2024-01-02T03:04:05.000001"),
    };
    let d = replayed(&c);
    assert_eq!(d["ledger"], "replayed");
    assert_eq!(d["affected_rows"], 1);
    assert_eq!(d["replayed_from"]["token"], 4);
    assert_eq!(d["replayed_from"]["attempt"], 1);
}
