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

/// A webhook receiver in the test: answers the scripted statuses, then 200;
/// records headers and bodies.
struct Rx {
    url: String,
    got: Arc<std::sync::Mutex<Vec<Got>>>,
}

/// One request: headers and body.
type Got = (axum::http::HeaderMap, Vec<u8>);

async fn receiver(script: Vec<u16>) -> Rx {
    use axum::http::StatusCode;
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let script = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        script,
    )));
    let (g, sc) = (got.clone(), script.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (g, sc) = (g.clone(), sc.clone());
            async move {
                g.lock().expect("lock").push((h, body.to_vec()));
                let code = sc.lock().expect("lock").pop_front().unwrap_or(200);
                StatusCode::from_u16(code).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Rx { url, got }
}

fn hook(name: &str, url: &str, events: &[&str]) -> Webhook {
    Webhook {
        name: name.into(),
        url: reqwest::Url::parse(url).expect("url"),
        ca_file: None,
        secret: crate::config::Secret::new("service-test-secret-123"),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        groups: vec![],
        labels: BTreeMap::new(),
    }
}

fn config(webhooks: Vec<Webhook>) -> NotificationsConfig {
    NotificationsConfig {
        webhooks,
        offline_after: Duration::from_secs(60),
        ..NotificationsConfig::default()
    }
}

/// An offline agent, a stale schedule and a job that succeeded after a
/// retry, ten minutes ago, in a fresh store.
async fn three_causes(s: &Store) {
    let t0 = store::now_ms() - 600_000;
    crate::store::testutil::enrolled(s, "db1", &["g"]).await;
    let caps = baton_proto::agent::Capabilities::default();
    let groups = vec!["g".to_string()];
    let seen = crate::store::agents::AgentSeen {
        id: "db1",
        groups: &groups,
        capabilities: &caps,
        version: "1",
        os: "linux",
        free_slots: 1,
        metrics: None,
    };
    s.agent_polled(&seen, t0).await.expect("agent");
    let spec = serde_json::from_value(json!({
        "name": "nightly", "group": "g", "every_ms": 3_600_000, "alert_after_ms": 1000,
    }))
    .expect("spec");
    let cursor = crate::store::schedules::Cursor::Set {
        cursor: None,
        next_fire_at: None,
    };
    s.put_schedule(&spec, cursor, true, t0)
        .await
        .expect("schedule");
    crate::store::conformance::notifications::two_attempts(
        s,
        baton_proto::Completion::Succeeded,
        t0,
    )
    .await;
}

#[tokio::test]
async fn the_service_sends_signed_events_to_matching_webhooks_and_retries_failures() {
    let (sq, _dir) = crate::store::sqlite::SqliteStore::temp().await;
    let s = sq.store();
    three_causes(&s).await;
    let rx = receiver(vec![500]).await;
    let counters = Arc::new(DeliveryCounters::default());
    let hooks = vec![
        hook("all", &rx.url, &[]),
        hook("failures", &format!("{}-never", rx.url), &["job_failed"]),
    ];
    let n = Notifier::new(s.clone(), &config(hooks.clone()), counters.clone()).expect("notifier");
    n.once(true).await.expect("pass");
    let got = rx.got.lock().expect("lock").clone();
    let shown: Vec<String> = got
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(
        got.len(),
        3,
        "three events, all to `all`, none to `failures`: {shown:?}"
    );
    let mut events = Vec::new();
    for (h, body) in &got {
        let ts: i64 = h["x-baton-timestamp"]
            .to_str()
            .expect("ts")
            .parse()
            .expect("int");
        assert_eq!(
            h["x-baton-signature"].to_str().expect("sig"),
            sign(b"service-test-secret-123", ts, body)
        );
        let b: WebhookBody = serde_json::from_slice(body).expect("body");
        assert_eq!(b.webhook, "all");
        assert!(b.text.starts_with("Baton: "), "{}", b.text);
        events.push(b.event);
    }
    events.sort();
    assert_eq!(
        events,
        [
            "agent_offline",
            "job_succeeded_after_retry",
            "schedule_stale"
        ]
    );
    assert_eq!(
        counters.snapshot(),
        (2, 1, 0),
        "two delivered, one 500 to retry"
    );
    let pending = s
        .list_deliveries(Some(DeliveryState::Pending), None, 10)
        .await;
    let pending = pending.expect("list").deliveries;
    assert_eq!((pending.len(), pending[0].last_status), (1, Some(500)));
    // A second look writes no second event for the same causes.
    n.once(true).await.expect("pass");
    assert_eq!(rx.got.lock().expect("lock").len(), 3);
    // Once due, the retry goes to a webhook that is gone: failed, not resent.
    tokio::time::sleep(backoff(1) + Duration::from_millis(1500)).await;
    let gone = Notifier::new(s.clone(), &config(vec![hooks[1].clone()]), counters.clone());
    gone.expect("notifier").once(false).await.expect("pass");
    let failed = s
        .list_deliveries(Some(DeliveryState::Failed), None, 10)
        .await;
    let failed = failed.expect("list").deliveries;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("no longer configured"))
    );
    assert_eq!(counters.snapshot(), (2, 1, 1));
    assert_eq!(rx.got.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn an_event_older_than_max_age_is_failed_without_a_send() {
    let (sq, _dir) = crate::store::sqlite::SqliteStore::temp().await;
    let s = sq.store();
    let long_ago = store::now_ms() - 2 * 86_400_000;
    crate::store::conformance::notifications::two_attempts(
        &s,
        baton_proto::Completion::Failed { retryable: true },
        long_ago,
    )
    .await;
    let rx = receiver(vec![]).await;
    let counters = Arc::new(DeliveryCounters::default());
    let n = Notifier::new(
        s.clone(),
        &config(vec![hook("all", &rx.url, &[])]),
        counters.clone(),
    );
    n.expect("notifier").once(false).await.expect("pass");
    assert!(
        rx.got.lock().expect("lock").is_empty(),
        "an old event was sent"
    );
    let failed = s
        .list_deliveries(Some(DeliveryState::Failed), None, 10)
        .await;
    let failed = failed.expect("list").deliveries;
    assert_eq!((failed.len(), failed[0].event.as_str()), (1, "job_failed"));
    assert!(
        failed[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("max_age"))
    );
    assert_eq!(counters.snapshot(), (0, 0, 1));
}

/// An HTTPS receiver on loopback with a self-signed certificate: answers
/// 200 to every request. Returns its URL and the certificate (PEM).
async fn tls_receiver() -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    let pem = key.cert.pem();
    let der = key.cert.der().clone();
    let pk =
        rustls::pki_types::PrivateKeyDer::try_from(key.signing_key.serialize_der()).expect("key");
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![der], pk)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 64 << 10];
                let _ = tls.read(&mut buf).await;
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = tls.write_all(ok).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, pem)
}

#[tokio::test]
async fn a_pinned_ca_is_trusted_and_an_unknown_issuer_is_not() {
    let (sq, dir) = crate::store::sqlite::SqliteStore::temp().await;
    let s = sq.store();
    crate::store::conformance::notifications::two_attempts(
        &s,
        baton_proto::Completion::Failed { retryable: true },
        store::now_ms() - 1000,
    )
    .await;
    let (url, pem) = tls_receiver().await;
    let ca = dir.path().join("hook-ca.pem");
    std::fs::write(&ca, pem).expect("write");
    let pinned = Webhook {
        ca_file: Some(ca),
        ..hook("pinned", &url, &[])
    };
    let counters = Arc::new(DeliveryCounters::default());
    let cfg = config(vec![pinned, hook("system-roots", &url, &[])]);
    let n = Notifier::new(s.clone(), &cfg, counters.clone()).expect("notifier");
    n.once(false).await.expect("pass");
    let all = s
        .list_deliveries(None, None, 10)
        .await
        .expect("list")
        .deliveries;
    let by = |name: &str| all.iter().find(|d| d.webhook == name).expect(name).clone();
    let pinned = by("pinned");
    assert_eq!(
        (pinned.state, pinned.last_status),
        (DeliveryState::Delivered, Some(200)),
        "{pinned:?}"
    );
    let system = by("system-roots");
    assert_eq!(system.state, DeliveryState::Pending, "{system:?}");
    assert!(
        system
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("certificate")),
        "{system:?}"
    );
}
