use super::*;

#[tokio::test]
async fn wake_bumps_the_generation_and_wakes_registered_pollers() {
    let w = Wakers::default();
    w.wake("db"); // nobody polls `db` yet: nothing to remember
    let g = w.get("db");
    assert_eq!(g.generation(), 0);
    let other = w.get("web");
    let waiting = g.notify.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    w.wake("db");
    assert_eq!(g.generation(), 1);
    assert_eq!(other.generation(), 0, "other groups keep their generation");
    // The registered poller was woken (it completes without another wake).
    waiting.await;
    assert!(Arc::ptr_eq(&g, &w.get("db")));
}

#[test]
fn the_reaper_sleeps_until_the_next_deadline_but_at_most_a_second() {
    assert_eq!(reaper_sleep(None, 0), REAPER_MAX_SLEEP);
    assert_eq!(reaper_sleep(Some(300), 0), Duration::from_millis(301));
    assert_eq!(reaper_sleep(Some(-5), 0), Duration::from_millis(1));
    // A deadline an hour away (a clock that was wrong when it was computed)
    // is looked at again within a second.
    assert_eq!(reaper_sleep(Some(3_600_000), 0), REAPER_MAX_SLEEP);
    assert_eq!(reaper_sleep(Some(i64::MAX), i64::MIN), REAPER_MAX_SLEEP);
}

/// A lease whose deadline moves from an hour away to the past without a
/// kick (what a wrong clock did: renewed by a heartbeat stamped an hour
/// back) is expired within about a second, not when the hour has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_meets_a_deadline_that_moved_earlier_without_a_kick() {
    use baton_proto::{JobKind, RetryPolicy};

    use crate::store::GrantRequest;

    let (store, _dir) = crate::store::testutil::store().await;
    let ttl = 5_000u64;
    let new = crate::store::testutil::noop_job(ttl, RetryPolicy::default());
    let id = store.submit(new, 0).await.expect("submit").job.id;
    let hour = 3_600_000;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        max: 1,
    };
    let granted = store.grant(&req, now_ms() + hour).await.expect("grant");
    assert_eq!(granted.grants.len(), 1);
    let wakers = Arc::new(Wakers::default());
    let shutdown = CancellationToken::new();
    let reaper = tokio::spawn(reaper(
        store.clone(),
        wakers,
        Arc::new(Notify::new()),
        shutdown.clone(),
    ));
    // Let the reaper see the hour-away deadline and go to sleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .heartbeat(id, "a1", 1, None, "", now_ms() - ttl as i64 - 1)
        .await
        .expect("heartbeat");
    let moved = std::time::Instant::now();
    while store
        .next_lease_deadline()
        .await
        .expect("deadline")
        .is_some()
    {
        assert!(
            moved.elapsed() < Duration::from_millis(2_500),
            "the overdue lease was not expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    reaper.await.expect("reaper");
}
