//! Presence cache: change detection, flushes, the offline window, drain.

use baton_proto::{Capabilities, ConnectionInfo, JobKind};

use super::*;
use crate::store::testutil::{enrolled, store};

fn caps() -> Capabilities {
    Capabilities {
        kinds: vec![JobKind::Command],
        connections: vec![ConnectionInfo {
            name: "main".into(),
            kind: "mysql".into(),
        }],
        stores: Vec::new(),
    }
}

fn seen<'a>(
    id: &'a str,
    groups: &'a [String],
    caps: &'a Capabilities,
    version: &'a str,
    free: u32,
) -> AgentSeen<'a> {
    AgentSeen {
        id,
        groups,
        capabilities: caps,
        version,
        os: "linux",
        free_slots: free,
        metrics: None,
    }
}

/// A store with agent `a1` enrolled for group `db`.
async fn a1() -> (Store, tempfile::TempDir) {
    let (s, d) = store().await;
    enrolled(&s, "a1", &["db"]).await;
    (s, d)
}

/// Agent `a1` polls group `db` through `p`, advertising `caps`, `version`
/// and `free` slots, having seen the group at generation `gens`.
async fn poll(
    p: &Presence,
    s: &Store,
    caps: &Capabilities,
    version: &str,
    free: u32,
    gens: &[u64],
    now: i64,
) -> Polled {
    let groups = ["db".to_string()];
    p.polled(s, &seen("a1", &groups, caps, version, free), gens, now)
        .await
        .expect("poll")
}

/// `(last_seen, free_slots, version, online)` of agent `id` as the store shows it.
async fn stored(s: &Store, id: &str, now: i64, window: i64) -> (i64, u32, String, bool) {
    let list = s.list_agents(now, window).await.expect("list");
    let a = list.iter().find(|a| a.id == id).expect("agent");
    (
        a.last_seen.timestamp_millis(),
        a.free_slots,
        a.version.clone(),
        a.online,
    )
}

#[tokio::test]
async fn writes_durable_changes_at_once_and_the_rest_on_flush() {
    let (s, _d) = a1().await;
    let p = Presence::default();
    let caps = caps();

    // First poll: the enrolled row has no capabilities yet, so it is written.
    let first = poll(&p, &s, &caps, "1.0", 2, &[0], 1000).await;
    assert_eq!(
        first.drained,
        Some(false),
        "the first poll reads the drain state"
    );
    assert_eq!(
        stored(&s, "a1", 1000, 100).await,
        (1000, 2, "1.0".into(), true)
    );

    // Same durable part: nothing is written until the flush.
    let again = poll(&p, &s, &caps, "1.0", 1, &[0], 5000).await;
    assert_eq!(
        again,
        Polled {
            drained: None,
            epoch: first.epoch
        },
        "a poll that changed nothing durable skips the store"
    );
    assert_eq!(
        stored(&s, "a1", 5000, 100).await,
        (1000, 2, "1.0".into(), false)
    );
    assert_eq!(p.flush(&s).await.expect("flush"), 1);
    assert_eq!(
        stored(&s, "a1", 5000, 100).await,
        (5000, 1, "1.0".into(), true)
    );
    assert_eq!(p.flush(&s).await.expect("flush"), 0, "nothing new to write");

    // A new version is durable: written by the poll itself.
    let upgraded = poll(&p, &s, &caps, "1.1", 1, &[0], 6000).await;
    assert_eq!(upgraded.drained, Some(false));
    assert_ne!(
        upgraded.epoch, first.epoch,
        "a new durable part, a new epoch"
    );
    assert_eq!(
        stored(&s, "a1", 6000, 100).await,
        (6000, 1, "1.1".into(), true)
    );

    // New capabilities too.
    let mut more = caps.clone();
    more.kinds.push(JobKind::Sql);
    assert!(
        poll(&p, &s, &more, "1.1", 1, &[0], 6500)
            .await
            .drained
            .is_some()
    );
    let list = s.list_agents(6500, 100).await.expect("list");
    assert_eq!(list[0].capabilities, more);
}

#[tokio::test]
async fn a_restart_does_not_rewrite_an_unchanged_row() {
    let (s, _d) = a1().await;
    let caps = caps();
    let before = Presence::default();
    poll(&before, &s, &caps, "1.0", 1, &[0], 1000).await;
    // A new controller process: an empty cache, the same row.
    let after = Presence::default();
    let r = poll(&after, &s, &caps, "1.0", 1, &[0], 2000).await;
    assert_eq!(r.drained, Some(false));
    assert_eq!(
        stored(&s, "a1", 2000, 5000).await.0,
        1000,
        "the row matched: no write, last_seen waits for the flush"
    );
    after.flush(&s).await.expect("flush");
    assert_eq!(stored(&s, "a1", 2000, 5000).await.0, 2000);
}

#[tokio::test]
async fn online_window_follows_the_flushed_last_seen() {
    let (s, _d) = a1().await;
    let p = Presence::default();
    let caps = caps();
    poll(&p, &s, &caps, "1.0", 1, &[0], 1000).await;
    for t in [10_000, 20_000, 30_000] {
        poll(&p, &s, &caps, "1.0", 1, &[0], t).await;
        p.flush(&s).await.expect("flush");
        assert!(stored(&s, "a1", t + 5_000, 10_000).await.3, "online at {t}");
    }
    assert!(
        !stored(&s, "a1", 40_001, 10_000).await.3,
        "offline once the window passed without a poll"
    );
    // A late flush never moves last_seen back.
    s.flush_presence(&[PresenceRow {
        id: "a1".into(),
        last_seen: 5,
        free_slots: 1,
        metrics: None,
    }])
    .await
    .expect("flush");
    assert_eq!(stored(&s, "a1", 30_000, 10_000).await.0, 30_000);
}

#[tokio::test]
async fn shutdown_flush_persists_and_a_failed_flush_keeps_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.db");
    let s = Store::open(&path, crate::store::SyncMode::Normal)
        .await
        .expect("open");
    enrolled(&s, "a1", &["db"]).await;
    let p = Presence::default();
    let caps = caps();
    poll(&p, &s, &caps, "1.0", 1, &[0], 1000).await;
    p.flush(&s).await.expect("flush");
    poll(&p, &s, &caps, "1.0", 3, &[0], 7000).await;
    s.close().await;
    assert!(
        p.flush(&s).await.is_err(),
        "a closed store cannot be written"
    );
    // The controller's last flush at shutdown (here: after a reopen).
    let s = Store::open(&path, crate::store::SyncMode::Normal)
        .await
        .expect("reopen");
    assert_eq!(p.flush(&s).await.expect("flush"), 1, "the rows were kept");
    s.close().await;
    let s = Store::open(&path, crate::store::SyncMode::Normal)
        .await
        .expect("reopen");
    assert_eq!(
        stored(&s, "a1", 7000, 1000).await,
        (7000, 3, "1.0".into(), true)
    );
}

#[tokio::test]
async fn drain_is_read_by_the_first_poll_and_known_answers_follow_generations() {
    let (s, _d) = a1().await;
    let p = Presence::default();
    let caps = caps();
    let first = poll(&p, &s, &caps, "1.0", 1, &[4], 1000).await;
    s.set_drain("a1", true, 1100).await.expect("drain");
    // A restarted controller reads the drain on the first poll.
    let fresh = Presence::default();
    let after = poll(&fresh, &s, &caps, "1.0", 1, &[4], 1200).await;
    assert_eq!(after.drained, Some(true));
    assert_eq!(
        fresh.known("a1", after.epoch, &[4]).map(|k| k.drained),
        Some(true)
    );
    // A wake-up in its group (drain and resume wake it) invalidates the answer.
    assert_eq!(fresh.known("a1", after.epoch, &[5]), None);
    s.set_drain("a1", false, 1400).await.expect("resume");
    assert!(!s.agent_drained("a1").await.expect("drained"));

    // An empty grant is remembered until a wake-up or the backoff's end.
    let idle = |generation, ready_at| Known {
        generations: vec![generation],
        drained: false,
        idle: Some(ready_at),
    };
    p.remember("a1", first.epoch, idle(6, Some(2000)));
    let k = p.known("a1", first.epoch, &[6]).expect("known");
    assert!(k.nothing_to_grant(1999));
    assert!(!k.nothing_to_grant(2000), "a matching job's backoff ended");
    assert_eq!(p.known("a1", first.epoch, &[7]), None);
    assert_eq!(p.known("nobody", first.epoch, &[6]), None);
    assert!(idle(6, None).nothing_to_grant(i64::MAX));
    let never_idle = Known {
        idle: None,
        ..idle(6, None)
    };
    assert!(!never_idle.nothing_to_grant(0));

    // New capabilities: what polls with the old ones found no longer applies,
    // and a late answer of an old poll is not remembered.
    let mut more = caps.clone();
    more.kinds.push(JobKind::Sql);
    let changed = poll(&p, &s, &more, "1.0", 1, &[6], 3000).await;
    assert_ne!(changed.epoch, first.epoch);
    assert_eq!(p.known("a1", first.epoch, &[6]), None);
    p.remember("a1", first.epoch, idle(6, None));
    assert_eq!(
        p.known("a1", changed.epoch, &[6]).map(|k| k.idle),
        Some(None),
        "the new capabilities have not been looked for yet"
    );
}

#[tokio::test]
async fn a_flush_writes_metrics_in_batches_and_skips_unknown_agents() {
    let (s, _d) = store().await;
    let n = crate::store::agents::FLUSH_BATCH + 3;
    for i in 0..n {
        enrolled(&s, &format!("a{i}"), &["db"]).await;
    }
    let metrics = HostMetrics {
        cpu_percent: Some(12.5),
        memory_used_bytes: Some(1 << 30),
        ..HostMetrics::default()
    };
    let mut rows: Vec<PresenceRow> = (0..n)
        .map(|i| PresenceRow {
            id: format!("a{i}"),
            last_seen: 9000 + i as i64,
            free_slots: 3,
            metrics: (i == 0).then(|| metrics.clone()),
        })
        .collect();
    rows.push(PresenceRow {
        id: "nobody".into(),
        last_seen: 1,
        free_slots: 1,
        metrics: None,
    });
    s.flush_presence(&rows).await.expect("flush");
    let list = s.list_agents(9000, 60_000).await.expect("list");
    assert_eq!(list.len(), n, "no row for an unknown id");
    for a in &list {
        let i: usize = a.id[1..].parse().expect("index");
        assert_eq!(a.last_seen.timestamp_millis(), 9000 + i as i64);
        assert_eq!(a.free_slots, 3);
        assert_eq!(a.metrics, (i == 0).then(|| metrics.clone()));
    }
}

/// Two controllers on one PostgreSQL database: an agent that advertised
/// something else on replica B, then comes back to replica A with what A
/// saw before, has the row corrected by A (it compares with the store
/// again after being away), not left with B's advertisement.
#[tokio::test]
async fn an_agent_back_from_another_replica_is_compared_with_the_store_again() {
    use std::sync::Arc;

    use crate::store::postgres::{PgStore, testutil as pg};

    let Some((url, _g)) = pg::scratch_database().await else {
        return;
    };
    let open = || async {
        Store::new(Arc::new(
            PgStore::open(&pg::options(&url)).await.expect("open"),
        ))
    };
    let (sa, sb) = (open().await, open().await);
    enrolled(&sa, "a1", &["db"]).await;
    let (on_a, on_b) = (Presence::default(), Presence::default());
    let (x, mut y) = (caps(), caps());
    y.kinds.push(JobKind::Noop);
    let caps_of = |s: Store| async move {
        let list = s.list_agents(0, 1).await.expect("list");
        list.iter()
            .find(|a| a.id == "a1")
            .expect("agent")
            .capabilities
            .clone()
    };
    poll(&on_a, &sa, &x, "1.0", 1, &[0], 1_000).await;
    poll(&on_b, &sb, &y, "1.0", 1, &[0], 2_000).await;
    assert_eq!(caps_of(sa.clone()).await, y, "B wrote what it saw");
    // Back on A within a hold: A trusts what it saw (no read).
    poll(&on_a, &sa, &x, "1.0", 1, &[0], 3_000).await;
    assert_eq!(caps_of(sa.clone()).await, y);
    // Back on A after being away: compared with the row again, corrected.
    poll(&on_a, &sa, &x, "1.0", 1, &[0], 3_000 + AWAY_MS + 1).await;
    assert_eq!(caps_of(sa.clone()).await, x, "A corrected the row");
}
