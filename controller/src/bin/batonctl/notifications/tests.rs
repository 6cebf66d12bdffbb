use baton_proto::notify::DeliveryView;
use chrono::DateTime;

use super::*;

#[test]
fn the_table_shows_each_delivery_and_its_last_result() {
    let at = DateTime::from_timestamp_millis(1_790_000_000_000).expect("ts");
    let list = DeliveryList {
        deliveries: vec![DeliveryView {
            id: 3,
            notification_id: 2,
            event: "job_failed".into(),
            subject: "42".into(),
            webhook: "ops".into(),
            state: DeliveryState::Pending,
            attempts: 1,
            last_status: Some(500),
            last_error: Some("HTTP 500".into()),
            event_at: at,
            next_at: Some(at),
            updated_at: at,
        }],
        next_before: None,
    };
    let t = render(&list);
    for want in ["job_failed", "42", "ops", "pending", "500", "HTTP 500"] {
        assert!(t.contains(want), "{want} missing:\n{t}");
    }
    let args = LsArgs {
        state: Some(StateArg::Failed),
        limit: Some(5),
        before: None,
    };
    assert_eq!(
        args.pairs(),
        vec![("state", "failed".to_owned()), ("limit", "5".to_owned())]
    );
}
