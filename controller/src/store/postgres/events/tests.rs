//! Signals between two replicas (two `PgStore`s on one scratch database).

use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::store::postgres::testutil;
use crate::store::prelude::*;

/// Two replicas on one fresh database (`None`: no PostgreSQL, skip).
async fn replicas(poll_only_b: bool) -> Option<(PgStore, PgStore, String, testutil::Scratch)> {
    let (url, guard) = testutil::scratch_database().await?;
    let a = PgStore::open(&testutil::options(&url))
        .await
        .expect("open a");
    let mut ob = testutil::options(&url);
    ob.poll_only = poll_only_b;
    let b = PgStore::open(&ob).await.expect("open b");
    Some((a, b, url, guard))
}

async fn next(rx: &mut mpsc::Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a message within 10 s")
        .expect("listener alive")
}

#[tokio::test]
async fn a_signal_from_one_replica_reaches_the_other_not_itself() {
    let Some((a, b, _url, _g)) = replicas(false).await else {
        return;
    };
    let mut ra = a.subscribe().expect("a listens");
    let mut rb = b.subscribe().expect("b listens");
    assert_eq!(next(&mut ra).await, Inbound::Up);
    assert_eq!(next(&mut rb).await, Inbound::Up);
    let sent = [
        Signal::Work(vec!["etl".into()]),
        Signal::Cancel(vec!["agt_1".into()]),
    ];
    a.publish(&sent).await.expect("publish");
    assert_eq!(next(&mut rb).await, Inbound::Signal(sent[0].clone()));
    assert_eq!(next(&mut rb).await, Inbound::Signal(sent[1].clone()));
    // A hears B's, but never its own.
    b.publish(&[Signal::Work(vec!["x".into()])])
        .await
        .expect("publish");
    assert_eq!(
        next(&mut ra).await,
        Inbound::Signal(Signal::Work(vec!["x".into()]))
    );
}

#[tokio::test]
async fn a_revoke_clears_the_other_replicas_credential_cache() {
    let Some((a, b, _url, _g)) = replicas(false).await else {
        return;
    };
    let mut rb = b.subscribe().expect("b listens");
    assert_eq!(next(&mut rb).await, Inbound::Up);
    let before = b.auth_cache().epoch();
    // As the identity paths send it (inside their transaction).
    sqlx::query("NOTIFY baton_events, 'r'")
        .execute(&a.pool)
        .await
        .expect("notify");
    assert_eq!(next(&mut rb).await, Inbound::Signal(Signal::Revoke));
    assert!(b.auth_cache().epoch() > before, "cache cleared");
}

/// Whether `cache` trusts, now, an agent entry cached 3 s ago (past the
/// short life): only while its listener vouches for it.
fn trusts_an_old_agent_entry(cache: &AuthCache) -> bool {
    use crate::credentials::{AgentPrincipal, Principal};
    let key = crate::credentials::cache_key("baton_agent_x");
    let p = Principal::Agent(AgentPrincipal {
        id: "a1".into(),
        allowed_groups: vec![],
    });
    let now = std::time::Instant::now();
    cache.insert(key, p, cache.epoch(), now - Duration::from_secs(3));
    cache.get(&key, now).is_some()
}

async fn wait_trust(cache: &AuthCache, want: bool) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while trusts_an_old_agent_entry(cache) != want {
        assert!(
            std::time::Instant::now() < end,
            "the cache never came to trust={want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hearing_its_own_heartbeats_lets_the_cache_trust_agents_longer() {
    let Some((a, b, url, _g)) = replicas(false).await else {
        return;
    };
    assert!(
        !trusts_an_old_agent_entry(b.auth_cache()),
        "not before it listens"
    );
    let mut rb = b.subscribe().expect("b listens");
    assert_eq!(next(&mut rb).await, Inbound::Up);
    wait_trust(b.auth_cache(), true).await;
    // The other replica never hears b's heartbeats as signals, nor does b.
    let mut ra = a.subscribe().expect("a listens");
    assert_eq!(next(&mut ra).await, Inbound::Up);
    tokio::time::sleep(HEARTBEAT_EVERY * 3).await;
    assert!(ra.try_recv().is_err(), "a heard a heartbeat as a signal");
    assert!(rb.try_recv().is_err(), "b heard a heartbeat as a signal");
    // A revoke from a clears b's cache as ever.
    wait_trust(b.auth_cache(), true).await;
    sqlx::query("NOTIFY baton_events, 'r'")
        .execute(&a.pool)
        .await
        .expect("notify");
    assert_eq!(next(&mut rb).await, Inbound::Signal(Signal::Revoke));
    // Its listener lost and back: the cache was cleared on `Up`, and is
    // trusted again once a heartbeat is heard on the new connection.
    let pids = testutil::listeners(&url).await;
    for pid in pids {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&a.pool)
            .await
            .expect("terminate");
    }
    assert_eq!(next(&mut rb).await, Inbound::Down);
    assert_eq!(next(&mut rb).await, Inbound::Up);
    wait_trust(b.auth_cache(), true).await;
}

#[tokio::test]
async fn a_poll_only_replica_trusts_its_cache_for_the_short_life_only() {
    let Some((_a, b, _url, _g)) = replicas(true).await else {
        return;
    };
    assert!(b.subscribe().is_none());
    tokio::time::sleep(HEARTBEAT_EVERY * 3).await;
    assert!(!trusts_an_old_agent_entry(b.auth_cache()));
}

#[tokio::test]
async fn a_killed_listener_is_reported_down_then_up_again() {
    let Some((a, b, url, _g)) = replicas(false).await else {
        return;
    };
    let mut rb = b.subscribe().expect("b listens");
    assert_eq!(next(&mut rb).await, Inbound::Up);
    let pids = testutil::listeners(&url).await;
    assert_eq!(pids.len(), 1, "one listener session: {pids:?}");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .execute(&a.pool)
        .await
        .expect("terminate");
    assert_eq!(next(&mut rb).await, Inbound::Down);
    assert_eq!(next(&mut rb).await, Inbound::Up);
    // Listening again: signals arrive.
    a.publish(&[Signal::Work(vec!["g".into()])])
        .await
        .expect("publish");
    assert_eq!(
        next(&mut rb).await,
        Inbound::Signal(Signal::Work(vec!["g".into()]))
    );
}

#[tokio::test]
async fn poll_only_never_listens() {
    let Some((_a, b, url, _g)) = replicas(true).await else {
        return;
    };
    assert!(b.subscribe().is_none());
    assert!(testutil::listeners(&url).await.is_empty());
}

/// A queued job inserted by hand (the jobs area is not needed).
async fn queued(s: &PgStore, group: &str, not_before: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, created_at, updated_at) \
         VALUES ($1, 'noop', '{}', '{}', 30000, 'queued', $2, 0, 0) RETURNING id",
    )
    .bind(group)
    .bind(not_before)
    .fetch_one(&s.pool)
    .await
    .expect("insert job")
}

fn fingerprint(l: &Looked, group: &str) -> Option<String> {
    l.work
        .iter()
        .find(|w| w.group == group)
        .map(|w| w.fingerprint.clone())
}

#[tokio::test]
async fn the_look_sees_ready_work_and_every_change_of_it() {
    let Some((a, _b, _url, _g)) = replicas(false).await else {
        return;
    };
    let groups = vec!["g".to_owned(), "h".to_owned()];
    let look = |now| {
        let a = &a;
        let groups = &groups;
        async move { a.look(groups, &[], false, now).await.expect("look") }
    };
    assert!(look(100).await.work.is_empty());
    let j = queued(&a, "g", 0).await;
    queued(&a, "other", 0).await;
    queued(&a, "h", 500).await;
    let first = look(100).await;
    assert_eq!(first.work.len(), 1, "only g is ready at 100: {first:?}");
    let f1 = fingerprint(&first, "g");
    assert_eq!(fingerprint(&look(100).await, "g"), f1, "nothing changed");
    assert!(
        fingerprint(&look(600).await, "h").is_some(),
        "h's backoff ended"
    );
    // Granted and requeued: same job, larger token → another fingerprint.
    sqlx::query("UPDATE jobs SET last_token = last_token + 1 WHERE id = $1")
        .bind(j)
        .execute(&a.pool)
        .await
        .expect("requeue");
    assert_ne!(fingerprint(&look(100).await, "g"), f1);
}

#[tokio::test]
async fn the_look_finds_cancelled_leases_and_drained_agents() {
    let Some((a, _b, _url, _g)) = replicas(false).await else {
        return;
    };
    let j = queued(&a, "g", 0).await;
    sqlx::query(
        "UPDATE jobs SET state = 'running', lease_agent = 'agt_1', lease_token = 3, \
         lease_expires_at = 99999, cancel_requested = TRUE WHERE id = $1",
    )
    .bind(j)
    .execute(&a.pool)
    .await
    .expect("running");
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen, drained_at) \
         VALUES ('agt_2', '[\"g\",\"h\"]', '{}', '1', 'linux', 0, 0, 5)",
    )
    .execute(&a.pool)
    .await
    .expect("agent");
    let agents = vec!["agt_1".to_owned()];
    let l = a.look(&[], &agents, true, 100).await.expect("look");
    assert_eq!(l.cancels, vec![(j, 3, "agt_1".to_owned())]);
    assert_eq!(
        l.drained,
        vec![("agt_2".to_owned(), vec!["g".to_owned(), "h".to_owned()])]
    );
    let l = a.look(&[], &[], false, 100).await.expect("look");
    assert!(l.cancels.is_empty() && l.drained.is_empty(), "{l:?}");
}

/// What the periodic look costs (a measurement, not a test):
/// `cargo test -p baton-controller --lib measure_the_look -- --ignored --nocapture`.
/// 10,000 agents (10 drained), 50 groups polled here, 1,000 queued jobs,
/// 100 agents holding polls for cancel notices.
#[tokio::test]
#[ignore = "a measurement"]
async fn measure_the_look() {
    let Some((a, _b, _url, _g)) = replicas(false).await else {
        return;
    };
    sqlx::query(
        "INSERT INTO agents (id, groups, capabilities, version, os, first_seen, last_seen, metrics, drained_at) \
         SELECT 'agt_' || i, '[\"g' || (i % 50) || '\"]', '{\"kinds\":[\"noop\"],\"connections\":[]}', '1', 'linux', 0, 0, \
                '{\"cpu\":1.0,\"mem\":2.0,\"disk\":3.0}', CASE WHEN i % 1000 = 0 THEN 5 END \
         FROM generate_series(1, 10000) AS i",
    )
    .execute(&a.pool)
    .await
    .expect("agents");
    sqlx::query(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, created_at, updated_at) \
         SELECT 'g' || (i % 50), 'noop', '{}', '{}', 30000, 'queued', 0, 0, 0 FROM generate_series(1, 1000) AS i",
    )
    .execute(&a.pool)
    .await
    .expect("jobs");
    sqlx::query("ANALYZE")
        .execute(&a.pool)
        .await
        .expect("analyze");
    let groups: Vec<String> = (0..50).map(|i| format!("g{i}")).collect();
    let agents: Vec<String> = (1..=100).map(|i| format!("agt_{i}")).collect();
    for drains in [false, true] {
        let n = 200;
        let t = std::time::Instant::now();
        for _ in 0..n {
            a.look(&groups, &agents, drains, 1).await.expect("look");
        }
        eprintln!(
            "look (drains read: {drains}): {:.2} ms each",
            t.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
        );
    }
    let n = 500;
    let t = std::time::Instant::now();
    for i in 0..n {
        a.publish(&[Signal::Work(vec![format!("g{}", i % 50)])])
            .await
            .expect("publish");
    }
    eprintln!(
        "publish (one NOTIFY): {:.3} ms each",
        t.elapsed().as_secs_f64() * 1000.0 / f64::from(n)
    );
}
