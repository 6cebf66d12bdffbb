use baton_proto::notify::{DeliveryList, DeliveryState, DeliveryView};
use chrono::{TimeZone, Utc};

use super::body;

fn delivery(id: i64, state: DeliveryState, error: Option<&str>) -> DeliveryView {
    DeliveryView {
        id,
        notification_id: 10 + id,
        event: "job_failed".into(),
        subject: format!("job {id}"),
        webhook: "ops".into(),
        state,
        attempts: 3,
        last_status: error.map(|_| 500),
        last_error: error.map(str::to_owned),
        event_at: Utc.timestamp_millis_opt(1_700_000_000_000).unwrap(),
        next_at: None,
        updated_at: Utc.timestamp_millis_opt(1_700_000_001_000).unwrap(),
    }
}

/// Each delivery is a row with its state, attempts and last answer; text is
/// escaped; the filter keeps the chosen state; a next page is linked.
#[test]
fn deliveries_render_as_rows_with_their_state_and_last_answer() {
    let list = DeliveryList {
        deliveries: vec![
            delivery(2, DeliveryState::Pending, Some("<refused>")),
            delivery(1, DeliveryState::Delivered, None),
        ],
        next_before: Some(1),
    };
    let page = body(&list, Some(DeliveryState::Pending)).into_string();
    assert!(page.contains("id=\"delivery-2\""), "{page}");
    assert!(page.contains("id=\"delivery-1\""), "{page}");
    assert!(page.contains("st st-run"), "{page}");
    assert!(page.contains("st st-ok"), "{page}");
    assert!(page.contains("HTTP 500 &lt;refused&gt;"), "{page}");
    assert!(!page.contains("<refused>"), "unescaped: {page}");
    assert!(page.contains("value=\"pending\" selected"), "{page}");
    assert!(
        page.contains("/ui/notifications?before=1&amp;state=pending"),
        "{page}"
    );
}

#[test]
fn no_delivery_says_so() {
    let list = DeliveryList {
        deliveries: vec![],
        next_before: None,
    };
    let page = body(&list, None).into_string();
    assert!(page.contains("No deliveries."), "{page}");
    assert!(!page.contains("Older deliveries"));
}
