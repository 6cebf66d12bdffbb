//! Submissions with two replicas (two stores on one database) at once.
//! Skips without `BATON_TEST_PG_URL`.

use std::time::Instant;

use baton_proto::{CompleteRequest, Completion, JobKind, JobResult};

use crate::store::Error;
use crate::store::jobs::{JobStore, NewBatch};
use crate::store::lease::{GrantRequest, LeaseStore};
use crate::store::postgres::testutil::{pg, two_replicas};
use crate::store::testutil::new_job;

/// Issue 17 point 2: the same idempotency key submitted on both replicas
/// at the same moment makes one job, and both are answered with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_on_two_replicas_at_once_is_one_job() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    for i in 0..30 {
        let key = format!("k{i}");
        let (x, y) = tokio::join!(
            a.submit(new_job("g", Some(&key), "h"), i),
            b.submit(new_job("g", Some(&key), "h"), i),
        );
        let (x, y) = (x.expect("a"), y.expect("b"));
        assert_eq!(x.job.id, y.job.id, "key {key}");
        assert!(x.created != y.created, "key {key}: exactly one created");
        assert_eq!(x.job, y.job);
    }
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(a.pool())
        .await
        .expect("count");
    assert_eq!(jobs, 30);
}

/// The same for a keyed batch: one set of jobs, the same ids in both
/// answers; and another body with the key at the same time is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_key_on_two_replicas_at_once_is_one_batch() {
    let Some((a, b, _guard)) = two_replicas().await else {
        return;
    };
    let batch = |key: &str, hash: &str| NewBatch {
        jobs: (0..5).map(|_| new_job("g", None, "x")).collect(),
        idempotency_key: Some(key.to_owned()),
        request_hash: hash.into(),
    };
    for i in 0..20 {
        let key = format!("b{i}");
        let (x, y) = tokio::join!(
            a.submit_batch(batch(&key, "B"), i),
            b.submit_batch(batch(&key, "B"), i),
        );
        let (x, y) = (x.expect("a"), y.expect("b"));
        let ids = |s: &crate::store::jobs::BatchSubmitted| -> Vec<i64> {
            s.jobs.iter().map(|j| j.id).collect()
        };
        assert_eq!(ids(&x), ids(&y), "key {key}");
        assert!(x.created != y.created, "key {key}: exactly one created");
        // A conflicting body at the same time as a replay.
        let (r, c) = tokio::join!(
            a.submit_batch(batch(&key, "B"), i),
            b.submit_batch(batch(&key, "other"), i),
        );
        assert_eq!(ids(&r.expect("replay")), ids(&x));
        assert!(matches!(c, Err(Error::IdempotencyConflict(_))), "{c:?}");
    }
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(a.pool())
        .await
        .expect("count");
    assert_eq!(jobs, 100);
}

/// A keyed batch whose ids are not consecutive (another replica inserted
/// in between: simulated by moving one job's id) still replays as itself.
#[tokio::test]
async fn a_batch_replays_by_its_first_job_not_by_an_id_range() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    let batch = || NewBatch {
        jobs: (0..3).map(|_| new_job("g", None, "x")).collect(),
        idempotency_key: Some("k".into()),
        request_hash: "B".into(),
    };
    let first = s.submit_batch(batch(), 1).await.expect("batch");
    let ids: Vec<i64> = first.jobs.iter().map(|j| j.id).collect();
    sqlx::query("UPDATE jobs SET id = id + 1000 WHERE id = $1")
        .bind(ids[1])
        .execute(s.pool())
        .await
        .expect("move the second job");
    s.submit(new_job("g", None, "y"), 2)
        .await
        .expect("another job");
    let again = s.submit_batch(batch(), 3).await.expect("replay");
    assert!(!again.created);
    assert_eq!(
        again.jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![ids[0], ids[2], ids[1] + 1000]
    );
}

/// Round trips on this machine's PostgreSQL (not a test of speed: prints
/// the figures for the report). `cargo test … -- --ignored --nocapture
/// store::postgres::jobs::tests::round_trips`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn round_trips() {
    let Some((s, _guard)) = pg().await else {
        return;
    };
    const N: usize = 2000;
    // The floor on this machine: a round trip, and an empty commit's fsync.
    sqlx::query("CREATE TABLE floor (x BIGINT)")
        .execute(s.pool())
        .await
        .expect("table");
    let t = Instant::now();
    for _ in 0..500 {
        sqlx::query("SELECT 1")
            .execute(s.pool())
            .await
            .expect("select");
    }
    let select = t.elapsed() / 500;
    let t = Instant::now();
    for i in 0..500i64 {
        sqlx::query("INSERT INTO floor VALUES ($1)")
            .bind(i)
            .execute(s.pool())
            .await
            .expect("insert");
    }
    let commit = t.elapsed() / 500;
    let t = Instant::now();
    for i in 0..N {
        s.submit(new_job("g", None, "h"), i as i64)
            .await
            .expect("submit");
    }
    let submit = t.elapsed() / N as u32;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    let t = Instant::now();
    let mut held = Vec::with_capacity(N);
    for _ in 0..N {
        let g = s.grant(&req, 10_000).await.expect("grant");
        held.push(g.grants[0].clone());
    }
    let grant = t.elapsed() / N as u32;
    let t = Instant::now();
    for g in &held {
        let done = CompleteRequest {
            started_after_ms: None,
            token: g.token,
            completion: Completion::Succeeded,
            result: JobResult::default(),
            error: None,
        };
        s.complete(g.job_id, "a1", &done, 20)
            .await
            .expect("complete");
    }
    let complete = t.elapsed() / N as u32;
    // Concurrent single submits (16 at a time) for throughput.
    let t = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..N / 16 {
                    s.submit(new_job("g", None, "h"), i as i64)
                        .await
                        .expect("submit");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let per_s = N as f64 / t.elapsed().as_secs_f64();
    eprintln!(
        "PostgreSQL round trips (sequential, mean of {N}): submit {submit:?}, grant {grant:?}, \
         complete {complete:?}; 16 concurrent single submits: {per_s:.0} jobs/s; \
         floor: SELECT 1 {select:?}, one-row INSERT (a commit) {commit:?}"
    );
}
