use super::*;
use crate::store::prelude::*;

/// An op inserting `key` into `meta`, returning its rowid.
fn insert_op(key: &'static str) -> impl Fn(&Connection) -> Result<i64> + Send + 'static {
    move |c| {
        Ok(c.query_row(
            "INSERT INTO meta (key, value) VALUES (?1, 'v') RETURNING rowid",
            [key],
            |r| r.get(0),
        )?)
    }
}

async fn insert(s: &SqliteStore, key: &'static str) -> Result<i64> {
    s.grouped(insert_op(key)).await
}

#[tokio::test]
async fn a_failing_op_rolls_back_only_itself() {
    let (s, _d) = SqliteStore::temp().await;
    // Queue several at once so they share batches; the duplicate key fails.
    let (a, b, c) = tokio::join!(insert(&s, "k1"), insert(&s, "k1"), insert(&s, "k2"));
    assert!(a.is_ok());
    assert!(matches!(b, Err(Error::Sqlite(_))));
    assert!(c.is_ok());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key IN ('k1', 'k2')")
        .fetch_one(&s.reader)
        .await
        .expect("count");
    assert_eq!(n, 2);
    let st = s.group_commit_stats();
    assert_eq!(st.ops, 3);
    assert!(st.batches >= 1 && st.batches <= 3);
}

#[tokio::test]
async fn a_sql_error_after_writes_undoes_that_op_only() {
    let (s, _d) = SqliteStore::temp().await;
    let half = s.grouped(|c| {
        c.execute("INSERT INTO meta (key, value) VALUES ('half', 'v')", [])?;
        // `fleet_id` exists: a UNIQUE violation after a write.
        c.execute("INSERT INTO meta (key, value) VALUES ('fleet_id', 'x')", [])?;
        Ok(())
    });
    let (a, b, c) = tokio::join!(insert(&s, "before"), half, insert(&s, "after"));
    assert!(a.is_ok() && c.is_ok(), "{a:?} {c:?}");
    assert!(matches!(b, Err(Error::Sqlite(_))), "{b:?}");
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT key FROM meta WHERE key IN ('before', 'half', 'after') ORDER BY key",
    )
    .fetch_all(&s.reader)
    .await
    .expect("keys");
    assert_eq!(keys, vec!["after", "before"]);
    assert_eq!(s.group_commit_stats().replays, 1);
    assert_eq!(
        s.fleet_id(),
        sqlx::query_scalar::<_, String>("SELECT value FROM meta WHERE key = 'fleet_id'")
            .fetch_one(&s.reader)
            .await
            .expect("fleet id")
    );
}

#[tokio::test]
async fn single_statement_ops_fail_alone_too() {
    let (s, _d) = SqliteStore::temp().await;
    let single = |key: &'static str| {
        s.grouped(move |c| {
            c.execute("INSERT INTO meta (key, value) VALUES (?1, 'v')", [key])?;
            Ok(())
        })
    };
    let (a, b, c, d) = tokio::join!(
        insert(&s, "s1"),
        single("s1"),
        single("s2"),
        insert(&s, "s3")
    );
    assert!(a.is_ok() && c.is_ok() && d.is_ok());
    assert!(matches!(b, Err(Error::Sqlite(_))), "{b:?}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meta WHERE key LIKE 's%'")
        .fetch_one(&s.reader)
        .await
        .expect("count");
    assert_eq!(n, 3);
}

#[tokio::test]
async fn a_panicking_op_fails_its_batch_and_the_writer_goes_on() {
    let (s, _d) = SqliteStore::temp().await;
    let r: Result<()> = s
        .grouped(|_c| -> Result<()> { panic!("an operation that panics") })
        .await;
    assert!(matches!(r, Err(Error::Commit(_))), "{r:?}");
    assert!(insert(&s, "after-panic").await.is_ok());
}

#[tokio::test]
async fn concurrent_ops_share_a_commit() {
    let (s, _d) = SqliteStore::temp().await;
    let keys: Vec<&'static str> = (0..50)
        .map(|i| &*Box::leak(format!("key{i}").into_boxed_str()))
        .collect();
    let all = futures_util::future::join_all(keys.iter().map(|k| insert(&s, k))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    let st = s.group_commit_stats();
    assert_eq!(st.ops, 50);
    // join_all queues every op before the writer runs the second batch.
    assert!(st.batches < 50, "{st:?}");
}

#[tokio::test]
async fn ops_of_one_batch_run_in_queue_order() {
    use crate::store::GrantRequest;
    use crate::store::testutil::enrolled;
    use crate::store::testutil::new_job;
    use baton_proto::{CompleteRequest, Completion, JobKind, JobResult, JobState};

    let (s, _d) = SqliteStore::temp().await;
    enrolled(&s.store(), "a1", &["g"]).await;
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
    let done = |token| CompleteRequest {
        started_after_ms: None,
        token,
        completion: Completion::Succeeded,
        result: JobResult::default(),
        error: None,
    };
    // Grant then completion of the same job, queued together: the
    // completion sees the grant (token 1).
    let a = s
        .submit(new_job("g", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    let one = done(1);
    let (g, c) = tokio::join!(s.grant(&req, 2), s.complete(a.id, "a1", &one, 3));
    assert_eq!(g.expect("grant").grants[0].token, 1);
    assert_eq!(c.expect("complete").0, JobState::Succeeded);
    // Completion queued before the grant: refused, the grant stands.
    let b = s
        .submit(new_job("g", None, "h"), 4)
        .await
        .expect("submit")
        .job;
    let (c, g) = tokio::join!(s.complete(b.id, "a1", &one, 5), s.grant(&req, 5));
    assert!(c.is_err(), "{c:?}");
    let g = g.expect("grant");
    assert_eq!((g.grants[0].job_id, g.grants[0].token), (b.id, 1));
    assert_eq!(s.get_job(b.id).await.expect("get").state, JobState::Running);
}

/// Throughput of the hot path through the writer (no HTTP): submit in
/// batches, grant 32 at a time, complete each with its audit row.
/// `cargo test --release -p baton-controller --lib store::writer::tests::bench -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn bench_submit_grant_complete() {
    use crate::store::GrantRequest;
    use crate::store::SyncMode;
    use crate::store::audit::AuditRecord;
    use crate::store::jobs::NewBatch;
    use crate::store::testutil::enrolled;
    use crate::store::testutil::new_job;
    use baton_proto::{CompleteRequest, Completion, JobKind, JobResult};

    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(
        SqliteStore::open(&dir.path().join("b.db"), SyncMode::Full)
            .await
            .expect("open"),
    );
    enrolled(&s.store(), "a1", &["g"]).await;
    let n = 10_000usize;
    let t0 = Instant::now();
    for _ in 0..n / 1000 {
        let jobs = (0..1000).map(|_| new_job("g", None, "h")).collect();
        s.submit_batch(
            NewBatch {
                jobs,
                idempotency_key: None,
                request_hash: "b".into(),
            },
            1,
        )
        .await
        .expect("batch");
    }
    let submitted = t0.elapsed();
    let before = s.group_commit_stats();
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (s, groups, kinds) = (s.clone(), groups.clone(), kinds.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let req = GrantRequest {
                    agent_id: "a1",
                    groups: &groups,
                    kinds: &kinds,
                    connections: &[],
                    stores: &[],
                    max: 32,
                };
                let g = s.grant(&req, 2).await.expect("grant");
                if g.grants.is_empty() {
                    break;
                }
                let done = futures_util::future::join_all(g.grants.iter().map(|g| {
                    let s = s.clone();
                    let (id, token) = (g.job_id, g.token);
                    async move {
                        let req = CompleteRequest {
                            started_after_ms: None,
                            token,
                            completion: Completion::Succeeded,
                            result: JobResult::default(),
                            error: None,
                        };
                        s.complete(id, "a1", &req, 3).await.expect("complete");
                        let a = AuditRecord {
                            actor: "agent:a1".into(),
                            role: "agent".into(),
                            action: "POST /v1/jobs/{id}/complete".into(),
                            target: format!("/v1/jobs/{id}/complete"),
                            status: 200,
                            error: None,
                        };
                        s.audit_grouped(&a, 3).await.expect("audit");
                    }
                }));
                done.await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    let total = t0.elapsed();
    let after = s.group_commit_stats();
    let batches = after.batches - before.batches;
    let ops = after.ops - before.ops;
    println!(
        "{n} jobs: submit {submitted:?}, total {total:?} = {:.0} jobs/s; grant+complete+audit: {batches} commits, {ops} ops, {:.1} ops/commit, {:.0} commits/s",
        n as f64 / total.as_secs_f64(),
        ops as f64 / batches as f64,
        batches as f64 / (total - submitted).as_secs_f64(),
    );
}

#[tokio::test]
async fn a_success_records_attempt_and_job_and_keeps_the_checks() {
    use crate::store::GrantRequest;
    use crate::store::testutil::enrolled;
    use crate::store::testutil::new_job;
    use baton_proto::{AttemptOutcome, CompleteRequest, Completion, JobKind, JobResult, JobState};

    let (s, _d) = SqliteStore::temp().await;
    enrolled(&s.store(), "a1", &["g"]).await;
    enrolled(&s.store(), "a2", &["g"]).await;
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let grant = |agent| GrantRequest {
        agent_id: agent,
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    let ok = CompleteRequest {
        started_after_ms: None,
        token: 1,
        completion: Completion::Succeeded,
        result: JobResult {
            stdout: "out".into(),
            ..JobResult::default()
        },
        error: None,
    };
    let a = s
        .submit(new_job("g", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    let g = s.grant(&grant("a1"), 10).await.expect("grant");
    assert_eq!(g.grants[0].token, 1);
    // Not the holder: refused, nothing written.
    assert!(matches!(
        s.complete(a.id, "a2", &ok, 11).await,
        Err(Error::Forbidden(_))
    ));
    // Past the deadline (TTL 15 s): lease lost, even before the reaper.
    assert!(matches!(
        s.complete(a.id, "a1", &ok, 10 + 15_000).await,
        Err(Error::LeaseLost(_))
    ));
    assert_eq!(s.get_job(a.id).await.expect("get").state, JobState::Running);
    let (state, dup, grp, _) = s.complete(a.id, "a1", &ok, 12).await.expect("complete");
    assert_eq!(
        (state, dup, grp.as_str()),
        (JobState::Succeeded, false, "g")
    );
    let v = s.get_job(a.id).await.expect("get");
    assert_eq!(v.state, JobState::Succeeded);
    assert_eq!(v.attempts_spent, 1);
    assert_eq!(v.lease_agent, None);
    assert_eq!(v.error, None);
    assert!(v.finished_at.is_some());
    assert_eq!(v.result.as_ref().map(|r| r.stdout.as_str()), Some("out"));
    assert_eq!(v.attempts[0].outcome, Some(AttemptOutcome::Succeeded));
    assert!(v.attempts[0].ended_at.is_some());
    assert_eq!(
        v.attempts[0].result.as_ref().map(|r| r.stdout.as_str()),
        Some("out")
    );
    // The outbox redelivers it: recognised.
    let (state, dup, _, _) = s.complete(a.id, "a1", &ok, 13).await.expect("again");
    assert_eq!((state, dup), (JobState::Succeeded, true));
}

#[tokio::test]
async fn commit_failure_reaches_every_op() {
    let (s, _d) = SqliteStore::temp().await;
    // An op that leaves the transaction unable to commit: a deferred
    // foreign key violation is checked at COMMIT.
    let r = s
        .grouped(|c| {
            c.execute_batch("PRAGMA defer_foreign_keys = ON")?;
            c.execute(
                "INSERT INTO attempts (job_id, number, agent_id, token, started_at) VALUES (424242, 1, 'a', 1, 0)",
                [],
            )?;
            Ok(())
        })
        .await;
    assert!(matches!(r, Err(Error::Commit(_))), "{r:?}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM attempts")
        .fetch_one(&s.reader)
        .await
        .expect("count");
    assert_eq!(n, 0);
    // The writer goes on after a failed batch.
    assert!(insert(&s, "after").await.is_ok());
}

/// A writer connection that comes back to the pool still inside a
/// transaction sqlx cannot end (its ROLLBACK fails) is closed, not handed
/// out again; one that comes back clean is reused.
#[tokio::test]
async fn a_connection_stuck_in_a_transaction_is_not_reused() {
    let (s, _d) = SqliteStore::temp().await;
    let marked = |name: &'static str| {
        let pool = s.writer.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM temp.sqlite_master WHERE name = ?")
                .bind(name)
                .fetch_one(&pool)
                .await
                .expect("look")
        }
    };
    // A connection-local mark: a temp table lives as long as its connection.
    sqlx::query("CREATE TEMP TABLE mark (x)")
        .execute(&s.writer)
        .await
        .expect("mark");
    {
        let mut tx = s.writer.begin().await.expect("begin");
        sqlx::query("INSERT INTO temp.mark VALUES (1)")
            .execute(&mut *tx)
            .await
            .expect("write");
    }
    assert_eq!(marked("mark").await, 1, "a clean connection is reused");
    {
        let mut tx = s.writer.begin().await.expect("begin");
        // SQLite commits behind sqlx's back: the ROLLBACK the dropped
        // transaction queues fails, and sqlx still counts one open.
        sqlx::query("COMMIT")
            .execute(&mut *tx)
            .await
            .expect("commit behind sqlx's back");
    }
    assert_eq!(marked("mark").await, 0, "the stuck connection was replaced");
    assert!(insert(&s, "after").await.is_ok());
}

/// The batches' own connection has the writer pool's settings: the sync
/// mode the store was opened with, foreign keys, no auto-checkpoint (the
/// checkpointer copies the WAL), the journal size limit.
#[tokio::test]
async fn the_writer_connection_has_the_store_settings() {
    let (s, _d) = SqliteStore::temp().await;
    let pragmas = s
        .grouped(|c| {
            let get = |p: &str| -> Result<i64> {
                Ok(c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))?)
            };
            Ok([
                get("synchronous")?,
                get("foreign_keys")?,
                get("wal_autocheckpoint")?,
                get("journal_size_limit")?,
            ])
        })
        .await
        .expect("pragmas");
    let limit = crate::store::sqlite::checkpoint::Policy::DEFAULT.journal_limit as i64;
    // `temp` opens with `SyncMode::Normal` (1); FULL is 2.
    assert_eq!(pragmas, [1, 1, 0, limit]);
    let full = tempfile::tempdir().expect("tempdir");
    let f = SqliteStore::open(&full.path().join("f.db"), crate::store::SyncMode::Full)
        .await
        .expect("open");
    let sync: i64 = f
        .grouped(|c| Ok(c.query_row("PRAGMA synchronous", [], |r| r.get(0))?))
        .await
        .expect("synchronous");
    assert_eq!(sync, 2);
}

/// `close` closes the writer's connection: operations queued after it fail
/// instead of writing behind a closed store.
#[tokio::test]
async fn after_close_the_writer_refuses_work() {
    let (s, _d) = SqliteStore::temp().await;
    assert!(insert(&s, "before").await.is_ok());
    s.close().await;
    let r = insert(&s, "after").await;
    assert!(r.is_err(), "{r:?}");
}

async fn insert_deferred(s: &SqliteStore, key: &'static str) -> Result<i64> {
    s.grouped_deferred(insert_op(key)).await
}

/// A deferrable operation alone is held until the next operation comes,
/// runs ahead of it and shares its commit; the newcomer is not held.
#[tokio::test]
async fn a_deferred_op_waits_for_the_next_and_shares_its_commit() {
    let (s, _d) = SqliteStore::temp().await;
    s.batcher.set_defer(Duration::from_secs(60));
    let before = s.group_commit_stats().batches;
    let held = tokio::spawn({
        let s = s.clone();
        async move { insert_deferred(&s, "held").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.is_finished(), "the deferred op committed alone");
    let next = tokio::time::timeout(Duration::from_secs(10), insert(&s, "next"))
        .await
        .expect("the op that is not deferrable waited for the deferral")
        .expect("next");
    let held = held.await.expect("join").expect("held");
    assert!(held < next, "queue order: held {held}, next {next}");
    let st = s.group_commit_stats();
    assert_eq!(st.batches - before, 1, "one commit for both");
}

/// With nothing else coming, a deferrable operation commits by itself once
/// it waited its time.
#[tokio::test]
async fn a_lone_deferred_op_commits_after_its_wait() {
    let (s, _d) = SqliteStore::temp().await;
    s.batcher.set_defer(Duration::from_millis(30));
    let id = tokio::time::timeout(Duration::from_secs(10), insert_deferred(&s, "alone"))
        .await
        .expect("the deferred op never committed")
        .expect("alone");
    let on_disk: i64 = sqlx::query_scalar("SELECT rowid FROM meta WHERE key = 'alone'")
        .fetch_one(&s.reader)
        .await
        .expect("row");
    assert_eq!(on_disk, id);
}
