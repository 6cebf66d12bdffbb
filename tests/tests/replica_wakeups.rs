//! Wake-ups across controller replicas with the real binaries: two
//! controllers on one PostgreSQL database, one agent polling replica B
//! only (20 s holds). A job submitted through replica A runs on the agent
//! well before B's held poll would end on its own; so does one submitted
//! after B's listener connection was killed (the periodic look), and with
//! `poll_only` (no LISTEN at all).
//!
//! Needs PostgreSQL: `BATON_TEST_PG_URL` (a superuser URL, as
//! `scripts/test` sets); skips without it unless `BATON_TEST_REQUIRE_PG=1`.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_tests::proc::{Agent, AgentOpts, Controller};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// How long a job may take from submit to success here: a wake-up, not
/// the end of a 20 s hold.
const BOUND: Duration = Duration::from_secs(5);

/// The admin URL, or `None` (with the reason printed) to skip.
fn admin_url() -> Option<String> {
    match std::env::var("BATON_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BATON_TEST_REQUIRE_PG").as_deref() != Ok("1"),
                "BATON_TEST_REQUIRE_PG=1 but BATON_TEST_PG_URL is not set"
            );
            eprintln!("skipped: no PostgreSQL (set BATON_TEST_PG_URL, as scripts/test does)");
            None
        }
    }
}

/// A fresh database on the server of `admin`; its URL.
async fn database(admin: &str, name: &str) -> String {
    let mut c = PgConnection::connect(admin).await.expect("connect");
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect("create database");
    }
    let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
    let host_end = base[base.find("://").map_or(0, |i| i + 3)..]
        .find('/')
        .map_or(base.len(), |i| base.find("://").map_or(0, |j| j + 3) + i);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{name}{q}", &base[..host_end])
}

/// Replica A (it runs `init`) and replica B (it joins the same database).
async fn replicas(root: &Path, url: &str, poll_only: bool) -> (Controller, Controller) {
    let store = format!("poll_hold = \"20s\"\n[store]\nurl = \"{url}\"\npoll_only = {poll_only}\n");
    let a = Controller::start(&root.join("a"), &store)
        .await
        .expect("replica a");
    // B: the same config in its own dir, started without `init` (the admin
    // token is in the shared database).
    let dir = root.join("b");
    std::fs::create_dir_all(&dir).expect("dir b");
    let config = dir.join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nallow_plain_http = true\n{store}",
            dir.display()
        ),
    )
    .expect("config b");
    let mut b = Controller {
        proc: None,
        dir: dir.clone(),
        state_dir: dir,
        config,
        addr: "127.0.0.1:0".parse().expect("addr"),
        admin_token: a.admin_token.clone(),
        ca: None,
        env: Vec::new(),
    };
    b.restart().await.expect("replica b");
    (a, b)
}

/// Submit a noop through `a`; wait for it to succeed (run by the agent
/// polling the other replica).
async fn runs_at_once(a: &Controller, what: &str) {
    let api = a.api();
    let job = api
        .submit(json!({"group": "default", "spec": {"kind": "noop"}}))
        .await
        .expect("submit");
    let sent = Instant::now();
    let done = api.wait_terminal(job.id, BOUND).await.unwrap_or_else(|e| {
        panic!("{what}: the job did not run within {BOUND:?} of its submit: {e}")
    });
    assert_eq!(done.state, JobState::Succeeded, "{what}: {done:?}");
    eprintln!("{what}: succeeded {:?} after the submit", sent.elapsed());
}

async fn scenario(poll_only: bool) {
    let Some(admin) = admin_url() else {
        return;
    };
    baton_tests::init_crypto();
    let name = format!("baton_e2e_wake_{}_{poll_only}", std::process::id());
    let url = database(&admin, &name).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = replicas(tmp.path(), &url, poll_only).await;
    let mut opts = AgentOpts::new("agent-1");
    opts.enrollment_token = Some(
        a.api()
            .enrollment_token(&opts.groups)
            .await
            .expect("enrollment token"),
    );
    let _agent = Agent::start(tmp.path(), &b.url(), opts).expect("agent");
    a.api()
        .wait_online(1, Duration::from_secs(30))
        .await
        .expect("online");
    // Its next poll is held on B with nothing to do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mode = if poll_only { "poll_only" } else { "listening" };
    runs_at_once(&a, mode).await;
    if !poll_only {
        let mut c = PgConnection::connect(&url).await.expect("connect");
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&mut c)
        .await
        .expect("terminate");
        assert_eq!(killed.len(), 2, "one listener per replica");
        runs_at_once(&a, "listeners killed").await;
    } else {
        let mut c = PgConnection::connect(&url).await.expect("connect");
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&mut c)
        .await
        .expect("pg_stat_activity");
        assert_eq!(n, 0, "poll_only: nobody listens");
    }
    drop((a, b));
    let mut c = PgConnection::connect(&admin).await.expect("connect");
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut c)
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_submitted_on_one_replica_runs_on_an_agent_of_the_other() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_only_replicas_still_hand_work_to_each_others_agents() {
    scenario(true).await;
}
