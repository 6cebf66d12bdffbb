//! `baton-controller migrate-store` end to end: a controller on SQLite runs
//! jobs, stops; its store is copied into PostgreSQL; a controller on
//! PostgreSQL serves the same jobs, tokens and agent identity — the old
//! admin token works, the enrolled agent polls without enrolling again, new
//! ids continue after the copied ones — and the SQLite file is unchanged.
//! Needs PostgreSQL (skips, saying why, without it).

use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use baton_tests::postgres;
use baton_tests::proc::{Agent, Controller, bin};
use nix::sys::signal::Signal;
use serde_json::json;
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);

fn noop() -> serde_json::Value {
    json!({"group": "default", "spec": {"kind": "noop"}})
}

#[tokio::test]
async fn a_populated_sqlite_store_moves_to_postgres_and_the_fleet_carries_on() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect("postgres");
    let db = pg.create_database("baton_migrate").expect("database");
    let url = pg.url_of(&db);

    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let mut old = Vec::new();
    for _ in 0..5 {
        let j = c.api.submit(noop()).await.expect("submit");
        old.push(c.api.wait_terminal(j.id, WAIT).await.expect("ends"));
    }
    assert!(old.iter().all(|j| j.state == JobState::Succeeded));
    let viewer = c
        .api
        .operator_token("reader", "viewer")
        .await
        .expect("viewer");

    // Stop both processes cleanly; the SQLite file is then complete.
    for a in &mut c.agents {
        if let Some(p) = a.proc.as_mut() {
            p.signal(Signal::SIGTERM).expect("term agent");
            p.wait_exit(WAIT).expect("agent exits");
        }
    }
    let p = c.controller.proc.as_mut().expect("controller");
    p.signal(Signal::SIGTERM).expect("term controller");
    p.wait_exit(WAIT).expect("controller exits");
    let sqlite = c.controller.state_dir.join("baton.db");
    let before = sha2::Sha256::digest(std::fs::read(&sqlite).expect("read"));

    let out = std::process::Command::new(bin("baton-controller").expect("bin"))
        .args(["migrate-store", "--from"])
        .arg(format!("sqlite:{}", sqlite.display()))
        .args(["--to", &url])
        .output()
        .expect("migrate-store");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "migrate-store failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("counts match"), "{stdout}");
    assert_eq!(
        sha2::Sha256::digest(std::fs::read(&sqlite).expect("read")),
        before,
        "the SQLite file changed"
    );
    // A second copy into the now populated database is refused.
    let again = std::process::Command::new(bin("baton-controller").expect("bin"))
        .args(["migrate-store", "--from"])
        .arg(format!("sqlite:{}", sqlite.display()))
        .args(["--to", &url])
        .output()
        .expect("migrate-store again");
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // A controller on PostgreSQL, with the admin token of the SQLite one.
    let dir = c.tmp.path().join("controller-pg");
    let extra = format!("allow_plain_http = true\n[store]\nurl = \"{url}\"\n");
    let ctl = Controller::join(
        &dir,
        "127.0.0.1:0",
        &extra,
        &c.controller.admin_token,
        vec![],
    )
    .await
    .expect("controller on postgres");
    let api = ctl.api();
    for j in &old {
        let moved = api.job(j.id).await.expect("copied job");
        assert_eq!(moved.state, JobState::Succeeded);
        assert_eq!(moved.attempts.len(), j.attempts.len());
        assert_eq!(moved.attempts[0].token, j.attempts[0].token);
    }
    let as_viewer = api.with_token(&viewer);
    assert!(
        as_viewer.job(old[0].id).await.is_ok(),
        "the viewer token was not copied"
    );

    // The enrolled agent polls the new controller with its old identity.
    let mut opts = c.agents[0].opts.clone();
    opts.enrollment_token = None;
    let _agent = Agent::start(c.tmp.path(), &ctl.url(), opts).expect("agent");
    let j = api.submit(noop()).await.expect("submit on postgres");
    assert!(
        j.id > old.iter().map(|j| j.id).max().expect("ids"),
        "ids restarted"
    );
    let done = api.wait_terminal(j.id, WAIT).await.expect("new job ends");
    assert_eq!(done.state, JobState::Succeeded);
    drop(ctl);
    let _ = pg.drop_database(&db);
}
