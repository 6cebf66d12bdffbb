//! Notifications: events written by the state changes themselves, fanned
//! out by filter, claimed once, retried, recorded.

use std::collections::BTreeMap;

use baton_proto::notify::DeliveryState;
use baton_proto::{CompleteRequest, Completion, FencingToken, JobKind, JobResult, RetryPolicy};

use crate::store::notifications::{Attempt, NewNotification, Route};
use crate::store::testutil::noop_job;
use crate::store::{GrantRequest, Store};

fn route(name: &str, groups: &[&str]) -> Route {
    Route {
        name: name.into(),
        events: vec![],
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        labels: BTreeMap::new(),
    }
}

/// Run a job of group `g` (max 2 attempts) to its end: the first attempt
/// fails, the second ends with `last`.
pub(crate) async fn two_attempts(s: &Store, last: Completion, t0: i64) -> baton_proto::JobId {
    let retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff_ms: 1,
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    let id = s
        .submit(noop_job(5000, retry), t0)
        .await
        .expect("submit")
        .job
        .id;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    for (i, completion) in [Completion::Failed { retryable: true }, last]
        .into_iter()
        .enumerate()
    {
        let now = t0 + 100 * (i as i64 + 1);
        let req = GrantRequest {
            agent_id: "a1",
            groups: &groups,
            kinds: &kinds,
            connections: &[],
            stores: &[],
            max: 1,
        };
        let g = s.grant(&req, now).await.expect("grant");
        let token: FencingToken = g.grants[0].token;
        let done = CompleteRequest {
            started_after_ms: None,
            token,
            completion,
            result: JobResult::default(),
            error: Some("boom".into()),
        };
        s.complete(id, "a1", &done, now + 10)
            .await
            .expect("complete");
    }
    id
}

/// Conformance case `a_failed_job_is_one_event_sent_to_matching_webhooks_until_delivered`.
pub async fn a_failed_job_is_one_event_sent_to_matching_webhooks_until_delivered(s: &Store) {
    let id = two_attempts(s, Completion::Failed { retryable: true }, 0).await;
    let routes = [route("g-hook", &["g"]), route("other-hook", &["other"])];
    assert_eq!(s.fan_out(&routes, 1000, 10).await.expect("fan out"), 1);
    assert_eq!(s.fan_out(&routes, 1000, 10).await.expect("fan out"), 0);
    let c = s.claim_deliveries(1000, 5000, 10).await.expect("claim");
    assert_eq!(
        c.len(),
        1,
        "one delivery: the other group's webhook gets none"
    );
    assert_eq!(c[0].webhook, "g-hook");
    assert_eq!(c[0].attempts, 0);
    assert_eq!(c[0].event.event, "job_failed");
    assert_eq!(c[0].event.subject, id.to_string());
    assert_eq!(c[0].event.groups, vec!["g".to_string()]);
    assert_eq!(c[0].event.detail["attempts"], 2);
    assert_eq!(c[0].event.detail["error"], "boom");
    // Claimed: nobody else gets it until the claim ends.
    assert!(
        s.claim_deliveries(1001, 5000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let failed = Attempt {
        status: Some(500),
        error: Some("HTTP 500".into()),
        next: DeliveryState::Pending,
        next_at: 3000,
    };
    s.record_attempt(c[0].id, &failed, 1100)
        .await
        .expect("record");
    assert!(
        s.claim_deliveries(2999, 5000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let c = s.claim_deliveries(3000, 5000, 10).await.expect("claim");
    assert_eq!(c[0].attempts, 1);
    let pending = s
        .list_deliveries(Some(DeliveryState::Pending), None, 10)
        .await;
    let pending = pending.expect("list");
    assert_eq!(pending.deliveries[0].last_status, Some(500));
    let ok = Attempt {
        status: Some(204),
        error: None,
        next: DeliveryState::Delivered,
        next_at: 3100,
    };
    s.record_attempt(c[0].id, &ok, 3100).await.expect("record");
    assert!(
        s.claim_deliveries(99_999, 5000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let all = s.list_deliveries(None, None, 10).await.expect("list");
    assert_eq!(all.deliveries.len(), 1);
    let d = &all.deliveries[0];
    assert_eq!(
        (d.state, d.attempts, d.last_status),
        (DeliveryState::Delivered, 2, Some(204))
    );
    assert_eq!(d.last_error, None);
    assert_eq!(d.next_at, None);
    let failed = s
        .list_deliveries(Some(DeliveryState::Failed), None, 10)
        .await;
    assert!(failed.expect("list").deliveries.is_empty());
}

/// Conformance case `a_success_after_a_retry_and_service_events_are_written_once`.
pub async fn a_success_after_a_retry_and_service_events_are_written_once(s: &Store) {
    let id = two_attempts(s, Completion::Succeeded, 0).await;
    let offline = NewNotification {
        event: "agent_offline".into(),
        dedup: "agent_offline:db1:500".into(),
        subject: "db1".into(),
        groups: vec!["g".into()],
        labels: BTreeMap::new(),
        detail: serde_json::json!({"last_seen_at": 500}),
        at: 900,
    };
    assert!(s.notify(&offline).await.expect("notify"));
    assert!(
        !s.notify(&offline).await.expect("notify again"),
        "a second write of one cause"
    );
    let routes = [route("all", &[])];
    assert_eq!(s.fan_out(&routes, 1000, 10).await.expect("fan out"), 2);
    let c = s.claim_deliveries(1000, 5000, 1).await.expect("claim");
    assert_eq!(c.len(), 1, "limit");
    // A claim that ran out (its replica died mid-send) is taken again.
    let again = s.claim_deliveries(6000, 5000, 10).await.expect("claim");
    assert_eq!(again.len(), 2);
    let mut events: Vec<_> = again
        .iter()
        .map(|c| (c.event.event.clone(), c.event.subject.clone()))
        .collect();
    events.sort();
    assert_eq!(
        events,
        vec![
            ("agent_offline".to_string(), "db1".to_string()),
            ("job_succeeded_after_retry".to_string(), id.to_string()),
        ]
    );
    let page = s.list_deliveries(None, None, 1).await.expect("list");
    assert_eq!(page.deliveries.len(), 1);
    let next = page.next_before.expect("more");
    let rest = s.list_deliveries(None, Some(next), 10).await.expect("list");
    assert_eq!(rest.deliveries.len(), 1);
    assert_eq!(rest.next_before, None);
}

/// The events in the outbox, fanned out to a catch-all route: `(event, subject)`.
async fn events(s: &Store) -> Vec<(String, String)> {
    s.fan_out(&[route("all", &[])], 0, 1000)
        .await
        .expect("fan out");
    let c = s
        .claim_deliveries(i64::MAX / 4, 1, 1000)
        .await
        .expect("claim");
    let mut out: Vec<_> = c
        .into_iter()
        .map(|c| (c.event.event, c.event.subject))
        .collect();
    out.sort();
    out
}

/// Conformance case `a_failed_drill_is_an_event`.
pub async fn a_failed_drill_is_an_event(s: &Store) {
    super::drills::rto_shorter_than_the_takeover_fails_with_the_reason(s).await;
    let e = events(s).await;
    assert!(e.iter().any(|(ev, _)| ev == "drill_failed"), "{e:?}");
}

/// Conformance case `a_failed_run_is_an_event`.
pub async fn a_failed_run_is_an_event(s: &Store) {
    super::pipelines::a_failure_runs_its_handler_skips_the_rest_and_retry_reruns_only_those(s)
        .await;
    let e = events(s).await;
    assert!(e.iter().any(|(ev, _)| ev == "pipeline_failed"), "{e:?}");
}

/// Conformance case `missed_occurrences_are_events`.
pub async fn missed_occurrences_are_events(s: &Store) {
    super::schedules::ranges_count_in_full_and_spans_are_found(s).await;
    let e = events(s).await;
    assert!(e.iter().any(|(ev, _)| ev == "occurrence_missed"), "{e:?}");
}

/// Conformance case `old_events_go_once_their_deliveries_ended`.
pub async fn old_events_go_once_their_deliveries_ended(s: &Store) {
    for (i, at) in [100, 200, 5000].into_iter().enumerate() {
        let e = NewNotification {
            event: "agent_offline".into(),
            dedup: format!("agent_offline:a{i}:0"),
            subject: format!("a{i}"),
            groups: vec![],
            labels: BTreeMap::new(),
            detail: serde_json::json!({}),
            at,
        };
        s.notify(&e).await.expect("notify");
    }
    assert_eq!(
        s.prune_notifications(1000, 10).await.expect("prune"),
        0,
        "not fanned out yet"
    );
    s.fan_out(&[route("all", &[])], 6000, 10)
        .await
        .expect("fan out");
    let c = s.claim_deliveries(6000, 1000, 10).await.expect("claim");
    let a0 = c.iter().find(|c| c.event.subject == "a0").expect("a0");
    let done = Attempt {
        status: Some(200),
        error: None,
        next: DeliveryState::Delivered,
        next_at: 6100,
    };
    s.record_attempt(a0.id, &done, 6100).await.expect("record");
    // a0: old and delivered; a1: old but pending; a2: new.
    assert_eq!(s.prune_notifications(1000, 10).await.expect("prune"), 1);
    let left = s
        .list_deliveries(None, None, 10)
        .await
        .expect("list")
        .deliveries;
    let mut subjects: Vec<_> = left.iter().map(|d| d.subject.as_str()).collect();
    subjects.sort();
    assert_eq!(subjects, ["a1", "a2"]);
    assert_eq!(s.prune_notifications(1000, 10).await.expect("prune"), 0);
}
