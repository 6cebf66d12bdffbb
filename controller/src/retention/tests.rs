use super::*;

#[test]
fn the_period_follows_the_shortest_keep() {
    let d = |s| Some(Duration::from_secs(s));
    assert_eq!(Policy::default().period(), None);
    let p = Policy {
        job_keep: d(30 * 86_400),
        audit_keep: d(90 * 86_400),
    };
    assert_eq!(p.period(), d(300));
    let p = Policy {
        job_keep: None,
        audit_keep: d(2),
    };
    assert_eq!(p.period(), d(1));
    let p = Policy {
        job_keep: d(60),
        audit_keep: None,
    };
    assert_eq!(p.period(), d(15));
}

#[tokio::test]
async fn a_sweep_prunes_occurrences_in_batches_and_keeps_the_newest() {
    use baton_proto::schedule::OccurrenceState;

    use crate::store::conformance::schedules::{occ, spec};
    use crate::store::schedules::{Cursor, Firing};

    let (store, _dir) = crate::store::testutil::store().await;
    let (sched, _) = store
        .put_schedule(&spec("s"), Cursor::Keep, true, 0)
        .await
        .expect("create");
    let n = i64::from(BATCH) + 100;
    let firing = Firing {
        schedule_id: sched.id,
        advance: None,
        occurrences: (1..=n)
            .map(|i| occ(i * 1_000, OccurrenceState::Missed))
            .collect(),
        cancel_active: false,
        supersede_pending: false,
        default_lease_ttl_ms: 15_000,
    };
    store.fire(&firing, n * 1_000).await.expect("fire");
    let policy = Policy {
        job_keep: Some(Duration::from_secs(3600)),
        audit_keep: None,
    };
    sweep(&store, &policy, &CancellationToken::new())
        .await
        .expect("sweep");
    assert_eq!(
        store.pruned().occurrences,
        n as u64 - 1,
        "all but the newest"
    );
    let left = store.history(sched.id, None, 10).await.expect("history");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].nominal_at.timestamp_millis(), n * 1_000);
    assert_eq!(
        store
            .schedule_stats(sched.id)
            .await
            .expect("stats")
            .counts
            .missed,
        n as u64
    );
}
