//! The controller's start with several replicas on one PostgreSQL database.

use std::sync::Arc;

use super::create_admin_token;
use crate::store::Store;
use crate::store::postgres::{PgStore, testutil};

/// Replicas starting together on an empty database all start: the one
/// whose admin token lost the race for the name starts without one (two
/// may still each create one under different names: `init` first avoids
/// that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_all_start() {
    let Some((url, _g)) = testutil::scratch_database().await else {
        return;
    };
    let open = || async {
        let s = PgStore::open(&testutil::options(&url)).await.expect("open");
        Store::new(Arc::new(s))
    };
    let (a, b) = (open().await, open().await);
    for round in 0..10 {
        let (ra, rb) = tokio::join!(
            create_admin_token(&a, "first-start"),
            create_admin_token(&b, "first-start")
        );
        let (ra, rb) = (ra.expect("replica a starts"), rb.expect("replica b starts"));
        assert!(
            ra.is_some() || rb.is_some(),
            "round {round}: no admin token"
        );
        // Again from no active admin token.
        sqlx::query("UPDATE operator_tokens SET revoked_at = 1 WHERE revoked_at IS NULL")
            .execute(&mut *acquire(&url).await)
            .await
            .expect("revoke");
    }
}

async fn acquire(url: &str) -> Box<sqlx::PgConnection> {
    Box::new(
        <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .expect("connect"),
    )
}

/// Two replicas wired as `run` wires them (app state, background tasks,
/// HTTP routes): a job submitted through replica A's API is granted to an
/// agent whose poll is held on replica B well before its 20 s hold ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_on_one_replica_is_granted_to_a_poll_held_on_the_other() {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use baton_proto::auth::{AGENT_SECRET_PREFIX, OPERATOR_PREFIX, Role};
    use serde_json::json;
    use tokio_util::sync::CancellationToken;

    use super::{Tasks, app_state};
    use crate::config::{Config, Flags};
    use crate::credentials::hash_secret;

    let Some((url, _g)) = testutil::scratch_database().await else {
        return;
    };
    let open = || async {
        let s = PgStore::open(&testutil::options(&url)).await.expect("open");
        Store::new(Arc::new(s))
    };
    let (a, b) = (open().await, open().await);
    let op = format!("{OPERATOR_PREFIX}replicas");
    a.create_operator_token("t1", "ops", Role::Operator, &hash_secret(&op), "test", 0)
        .await
        .expect("operator token");
    let groups = vec!["g".to_owned()];
    a.create_enrollment_token("e1", "e1", &groups, "", "test", i64::MAX, 0)
        .await
        .expect("enrollment token");
    let secret = format!("{AGENT_SECRET_PREFIX}replicas");
    a.enroll("e1", "a1", &hash_secret(&secret), "test", 0)
        .await
        .expect("enroll");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = BTreeMap::from([(
        "BATON_CONTROLLER_ALLOW_PLAIN_HTTP".to_owned(),
        "true".to_owned(),
    )]);
    let flags = Flags {
        state_dir: Some(dir.path().to_owned()),
        ..Flags::default()
    };
    let config = Config::load(None, &env, &flags).expect("config");
    let shutdown = CancellationToken::new();
    let replica = |store: &Store| {
        let state = app_state(store, &config, &shutdown);
        let notifier = crate::notify::Notifier::new(
            store.clone(),
            &config.notifications,
            state.notify_counters.clone(),
        )
        .expect("notifier");
        let tasks = Tasks::spawn(&state, &config, notifier, &shutdown);
        state.ready.store(true, Ordering::Release);
        (state, tasks)
    };
    let ((sa, ta), (sb, tb)) = (replica(&a), replica(&b));
    let listening = Instant::now() + Duration::from_secs(10);
    while testutil::listeners(&url).await.len() < 2 {
        assert!(Instant::now() < listening, "the replicas did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let poll = json!({
        "groups": ["g"], "free_slots": 1, "wait_ms": 20_000,
        "capabilities": {"kinds": ["noop"], "connections": []},
        "version": "test", "os": "linux",
    });
    let held = tokio::spawn(call(sb, "/v1/agents/a1/poll", secret, poll));
    tokio::time::sleep(Duration::from_millis(500)).await;
    if held.is_finished() {
        panic!("the poll answered before any work: {:?}", held.await);
    }
    let job = json!({"group": "g", "spec": {"kind": "noop"}, "allow_unplaced": true});
    let (status, submitted) = call(sa, "/v1/jobs", op, job).await;
    assert_eq!(status, 201, "{submitted}");
    let (status, answer) = tokio::time::timeout(Duration::from_secs(3), held)
        .await
        .expect("the poll held on B was not woken by the submit on A")
        .expect("join");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["grants"][0]["job_id"], submitted["id"], "{answer}");
    shutdown.cancel();
    ta.join().await;
    tb.join().await;
}

/// POST `body` to `path` on `state`'s routes with `bearer`: status and JSON.
async fn call(
    state: crate::api::AppState,
    path: &str,
    bearer: String,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    let req = Request::post(path)
        .header("authorization", format!("Bearer {bearer}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = crate::api::router(state)
        .oneshot(req)
        .await
        .expect("answered");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}
