use super::*;
use crate::roundtrip::check;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("ts")
}

#[test]
fn webhook_body_roundtrip() {
    check(&WebhookBody {
        id: 7,
        event: "job_failed".into(),
        subject: "42".into(),
        groups: vec!["nightly".into()],
        labels: BTreeMap::from([("team".into(), "db".into())]),
        at: at(1_790_000_000_000),
        detail: serde_json::json!({"job_id": 42, "attempts": 3, "error": "exit 1"}),
        webhook: "ops".into(),
        text: "Job 42 (nightly) failed after 3 attempts: exit 1".into(),
    });
}

#[test]
fn delivery_list_roundtrip() {
    let d = DeliveryView {
        id: 1,
        notification_id: 7,
        event: "agent_offline".into(),
        subject: "db1".into(),
        webhook: "ops".into(),
        state: DeliveryState::Pending,
        attempts: 2,
        last_status: Some(500),
        last_error: Some("HTTP 500".into()),
        event_at: at(1_790_000_000_000),
        next_at: Some(at(1_790_000_004_000)),
        updated_at: at(1_790_000_002_000),
    };
    let done = DeliveryView {
        state: DeliveryState::Delivered,
        last_status: Some(200),
        last_error: None,
        next_at: None,
        ..d.clone()
    };
    check(&DeliveryList {
        deliveries: vec![d, done],
        next_before: Some(1),
    });
    check(&DeliveryList {
        deliveries: vec![],
        next_before: None,
    });
}

#[test]
fn states_parse_back() {
    for s in [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ] {
        assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
    }
    assert_eq!(DeliveryState::parse("sent"), None);
}
