use std::collections::BTreeMap;

use baton_proto::agent::AgentView;
use chrono::DateTime;
use serde_json::json;

use super::*;
use crate::store::schedules::StoredSchedule;

#[test]
fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
    // python3: hmac.new(b'0123456789abcdef', b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert_eq!(
        sign(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
        "sha256=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
    );
    assert_ne!(
        sign(b"0123456789abcdef", 1_700_000_001, br#"{"a":1}"#),
        sign(b"0123456789abcdef", 1_700_000_000, br#"{"a":1}"#),
        "the timestamp is signed"
    );
}

#[test]
fn backoff_grows_and_is_capped() {
    for n in 1..40 {
        let d = backoff(n);
        assert!(d >= Duration::from_secs(1), "{n}: {d:?}");
        assert!(d <= Duration::from_secs(600), "{n}: {d:?}");
    }
    assert!(backoff(6) > backoff(1), "doubles");
}

fn agent(id: &str, seen_ms: i64, revoked: bool) -> AgentView {
    serde_json::from_value(json!({
        "id": id, "groups": ["g"], "capabilities": {}, "version": "1", "os": "linux",
        "last_seen": DateTime::from_timestamp_millis(seen_ms).expect("ts"),
        "online": false, "free_slots": 0, "leases": [],
        "revoked_at": revoked.then(|| DateTime::from_timestamp_millis(1).expect("ts")),
    }))
    .expect("agent view")
}

#[test]
fn an_agent_offline_past_the_threshold_is_one_event_per_silence() {
    let agents = [
        agent("old", 1_000, false),
        agent("new", 9_500, false),
        agent("gone", 0, true),
    ];
    let e = offline_events(&agents, 10_000, 5_000);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].event, "agent_offline");
    assert_eq!(e[0].subject, "old");
    assert_eq!(e[0].groups, vec!["g".to_string()]);
    // The same silence seen later is the same cause.
    let later = offline_events(&agents, 20_000, 5_000);
    assert_eq!(later[0].dedup, e[0].dedup);
    assert_eq!(later.len(), 2, "`new` is offline by now");
}

fn schedule(alert: Option<u64>) -> StoredSchedule {
    StoredSchedule {
        id: 3,
        spec: serde_json::from_value(json!({
            "name": "nightly", "group": "g", "every_ms": 60_000, "alert_after_ms": alert,
        }))
        .expect("spec"),
        paused: false,
        paused_at: None,
        resumed_at: None,
        cursor: None,
        next_fire_at: None,
        created_at: 1_000,
        updated_at: 1_000,
    }
}

#[test]
fn a_schedule_is_stale_once_its_last_success_is_older_than_alert_after() {
    assert_eq!(stale_event(&schedule(None), None, 1_000_000), None);
    let s = schedule(Some(10_000));
    assert_eq!(stale_event(&s, Some(5_000), 15_000), None);
    let e = stale_event(&s, Some(5_000), 15_001).expect("stale");
    assert_eq!(
        (e.event.as_str(), e.subject.as_str()),
        ("schedule_stale", "nightly")
    );
    assert_eq!(e.groups, vec!["g".to_string()]);
    let never = stale_event(&s, None, 20_000).expect("never succeeded");
    assert_ne!(never.dedup, e.dedup, "a new spell is a new event");
}

fn event(name: &str, subject: &str, detail: serde_json::Value) -> StoredEvent {
    StoredEvent {
        id: 1,
        event: name.into(),
        subject: subject.into(),
        groups: vec!["nightly".into()],
        labels: BTreeMap::new(),
        detail,
        at: 0,
    }
}

#[test]
fn each_event_has_a_line_of_text() {
    let cases = [
        (
            event(
                "job_failed",
                "42",
                json!({"attempts": 3, "error": "exit 1"}),
            ),
            "Baton: job 42 (nightly) failed after 3 attempt(s): exit 1",
        ),
        (
            event("job_succeeded_after_retry", "42", json!({"attempts": 2})),
            "Baton: job 42 (nightly) succeeded after 2 attempts",
        ),
        (
            event(
                "pipeline_failed",
                "7",
                json!({"pipeline": "etl", "error": "step x failed"}),
            ),
            "Baton: pipeline etl run 7 failed: step x failed",
        ),
        (
            event(
                "drill_failed",
                "5",
                json!({"method": "crash", "verdict": "failed"}),
            ),
            "Baton: drill 5 (crash, group nightly) ended failed",
        ),
        (
            event(
                "occurrence_missed",
                "s",
                json!({"count": 2, "nominal_at": 0, "reason": "down"}),
            ),
            "Baton: schedule s missed 2 occurrence(s) from 1970-01-01T00:00:00+00:00 (down)",
        ),
        (
            event("schedule_stale", "s", json!({"last_success_at": null})),
            "Baton: schedule s has never succeeded",
        ),
        (
            event(
                "agent_offline",
                "db1",
                json!({"last_seen_at": "2026-01-01T00:00:00Z"}),
            ),
            "Baton: agent db1 (nightly) offline, last seen 2026-01-01T00:00:00Z",
        ),
    ];
    for (e, want) in cases {
        assert_eq!(text(&e), want);
    }
}
