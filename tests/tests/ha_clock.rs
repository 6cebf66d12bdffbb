//! Replicas whose hosts' wall clocks are an hour off (libfaketime) share
//! leases correctly: each replica's clock is anchored to the database's
//! (ARCHITECTURE.md "Several controllers"), so a lease granted by one
//! replica is neither ended early by a replica an hour ahead nor kept
//! for an hour by one an hour behind. Without the anchor, the replica an
//! hour ahead ends every lease the others grant at its first look, and a
//! job runs twice. Needs PostgreSQL and libfaketime (skips, saying why,
//! without them).

use std::time::Duration;

use baton_proto::JobState;
use baton_tests::faketime::FakeClock;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::postgres;
use baton_tests::proc::{AgentOpts, Controller};
use serde_json::json;

#[tokio::test]
async fn replicas_an_hour_ahead_or_behind_neither_end_nor_keep_others_leases() {
    baton_tests::require_postgres!();
    if let Some(why) = FakeClock::unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let pg = postgres::shared().await.expect("postgres");
    let db = pg.create_database("baton_ha_clock").expect("database");
    let url = pg.url_of(&db);
    let mut c = HaCluster::start_with(1, 0, &url, HaOpts::default(), |_| {})
        .await
        .expect("replica 0 (true clock)");
    let extra = format!("allow_plain_http = true\n[store]\nurl = \"{url}\"\n");
    let mut clocks = Vec::new();
    for (i, offset) in [(1, 3600), (2, -3600)] {
        let clock = FakeClock::new(&c.tmp.path().join(format!("faketime-{i}.rc"))).expect("clock");
        clock.set_offset_s(offset).expect("offset");
        let ctl = Controller::join(
            &c.tmp.path().join(format!("ctl-{i}")),
            "127.0.0.1:0",
            &extra,
            &c.admin_token,
            clock.env(),
        )
        .await
        .expect("skewed replica");
        c.controllers.push(ctl);
        clocks.push(clock);
    }
    // One agent per replica, each talking to that replica only.
    let urls = c.urls();
    for (i, u) in urls.iter().enumerate() {
        let mut o = AgentOpts::new(&format!("agent-{i}"));
        o.groups = vec![format!("g{i}")];
        c.add_agent_at(o, std::slice::from_ref(u))
            .await
            .expect("agent");
    }
    c.wait_agents_online().await.expect("online");
    // A job per replica's agent, running 3 lease TTLs: granted and renewed
    // by that replica while the others' reapers look at it.
    let api = c.api(0);
    let mut ids = Vec::new();
    for i in 0..urls.len() {
        let j = api
            .submit(json!({
                "group": format!("g{i}"),
                "spec": {"kind": "noop", "sleep_ms": 6000},
                "lease_ttl_ms": 2000,
                "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0},
            }))
            .await
            .expect("submit");
        ids.push(j.id);
    }
    for id in ids {
        let j = api
            .wait_terminal(id, Duration::from_secs(60))
            .await
            .expect("job ends");
        assert_eq!(j.state, JobState::Succeeded, "job {id}: {j:?}");
        assert_eq!(
            j.attempts.len(),
            1,
            "job {id} was granted again: a replica with a skewed clock ended its lease: {:?}",
            j.attempts
        );
    }
    drop(clocks);
    drop(c);
    let _ = pg.drop_database(&db);
}
