//! Retention with several replicas on one database (PostgreSQL only; what
//! is pruned and kept is the conformance suite's).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use super::*;
use crate::store::postgres::testutil;

/// Call `prune` until it deletes nothing; what it deleted in all.
async fn drain<F, Fut>(prune: F) -> u64
where
    F: Fn() -> Fut,
    Fut: Future<Output = crate::store::Result<u64>>,
{
    let mut total = 0;
    loop {
        match prune().await.expect("prune") {
            0 => return total,
            n => total += n,
        }
    }
}

/// A cancelled job finished at `at` with one attempt, in run `run` if any.
async fn finished_job(c: &sqlx::PgPool, at: i64, run: Option<i64>) {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, created_at, updated_at,
                           finished_at, run_id, step)
         VALUES ('g', 'noop', '{}', '{}', 1000, 'cancelled', 0, 0, 0, $1, $2, $3) RETURNING id",
    )
    .bind(at)
    .bind(run)
    .bind(run.map(|_| format!("s{at}")))
    .fetch_one(c)
    .await
    .expect("job");
    sqlx::query(
        "INSERT INTO attempts (job_id, number, agent_id, token, started_at, ended_at, outcome)
         VALUES ($1, 1, 'a1', 1, 0, $2, 'cancelled')",
    )
    .bind(id)
    .bind(at)
    .execute(c)
    .await
    .expect("attempt");
}

/// A failed pipeline run ended at `at` with two steps, each with its job.
async fn ended_run(c: &sqlx::PgPool, at: i64) {
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO pipeline_runs (pipeline, spec, state, created_at, updated_at, finished_at)
         VALUES ('p', '{}', 'failed', 0, 0, $1) RETURNING id",
    )
    .bind(at)
    .fetch_one(c)
    .await
    .expect("run");
    for step in 0..2 {
        finished_job(c, at + step, Some(run)).await;
        sqlx::query("INSERT INTO run_steps (run_id, step, state) VALUES ($1, $2, 'failed')")
            .bind(run)
            .bind(format!("s{}", at + step))
            .execute(c)
            .await
            .expect("step");
    }
}

async fn count(c: &sqlx::PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(c)
        .await
        .expect("count")
}

/// Two replicas run retention at the same time, in small batches: nothing
/// fails, every old row goes, and each row is counted once, by the replica
/// that deleted it (the two replicas' counts add up to the rows there were).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_pruning_at_once_delete_and_count_each_row_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let pool = a.pool.clone();
    for i in 0..300 {
        finished_job(&pool, 1_000 + i, None).await;
    }
    for i in 0..40 {
        ended_run(&pool, 1_000 + 10 * i).await;
    }
    for i in 0..200 {
        sqlx::query("INSERT INTO audit (at, actor, role, action, target, status) VALUES ($1, 'x', 'admin', 'POST', '/', 200)")
            .bind(1_000 + i)
            .execute(&pool)
            .await
            .expect("audit");
    }
    let sweep = |s: Arc<PgStore>| {
        tokio::spawn(async move {
            let runs = drain(|| s.prune_runs(100_000, 3)).await;
            let jobs = drain(|| s.prune_jobs(100_000, 16)).await;
            let audit = drain(|| s.prune_audit(100_000, 16)).await;
            (runs, jobs, audit)
        })
    };
    // Three sweeps on each replica (as three and three replicas would).
    let sweeps: Vec<_> = [&a, &b, &a, &b, &a, &b]
        .into_iter()
        .map(|s| sweep(s.clone()))
        .collect();
    let mut done = (0, 0, 0);
    for t in sweeps {
        let (runs, jobs, audit) = t.await.expect("sweep");
        done = (done.0 + runs, done.1 + jobs, done.2 + audit);
    }
    assert_eq!(done, (40, 300, 200), "(runs, jobs, audit rows) deleted");
    for table in ["jobs", "attempts", "pipeline_runs", "run_steps", "audit"] {
        assert_eq!(count(&pool, table).await, 0, "{table} emptied");
    }
    let (pa, pb) = (a.pruned(), b.pruned());
    let sum = PrunedSnapshot {
        jobs: pa.jobs + pb.jobs,
        attempts: pa.attempts + pb.attempts,
        audit: pa.audit + pb.audit,
        occurrences: 0,
        runs: pa.runs + pb.runs,
        run_steps: pa.run_steps + pb.run_steps,
    };
    let want = PrunedSnapshot {
        jobs: 380,
        attempts: 380,
        audit: 200,
        occurrences: 0,
        runs: 40,
        run_steps: 80,
    };
    assert_eq!(sum, want, "a {pa:?} b {pb:?}");
}

/// `(schedule, state) → count` of a table with those columns.
async fn by_state(c: &sqlx::PgPool, table: &str) -> BTreeMap<(i64, String), i64> {
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT schedule_id, state, SUM(count)::bigint FROM {table} GROUP BY schedule_id, state"
    )))
    .fetch_all(c)
    .await
    .expect("by state");
    rows.into_iter().map(|(s, st, n)| ((s, st), n)).collect()
}

/// Two replicas prune the occurrences of the same schedules at the same
/// time: the pruned totals plus the rows left are exactly what there was,
/// per schedule and state (a batch that summed rows another replica was
/// deleting would count them twice), and the replicas' own counts add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn occurrence_totals_stay_exact_when_two_replicas_prune_at_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let pool = a.pool.clone();
    const PER: i64 = 150;
    for s in 0..4 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO schedules (name, spec, created_at, updated_at) VALUES ($1, '{}', 0, 0) RETURNING id",
        )
        .bind(format!("s{s}"))
        .fetch_one(&pool)
        .await
        .expect("schedule");
        for i in 0..PER {
            let state = ["skipped", "missed", "fired"][(i % 3) as usize];
            let n = 1 + i % 4; // a range of n nominal times
            sqlx::query(
                "INSERT INTO occurrences (schedule_id, nominal, last_nominal, count, trigger, state, recorded_at)
                 VALUES ($1, $2, $3, $4, 'schedule', $5, $2)",
            )
            .bind(id)
            .bind(1_000 + 10 * i)
            .bind((n > 1).then_some(1_000 + 10 * i + n - 1))
            .bind(n)
            .bind(state)
            .execute(&pool)
            .await
            .expect("occurrence");
        }
    }
    let there = by_state(&pool, "occurrences").await;
    // Four sweeps on each replica (as four and four replicas would).
    let mut sweeps = Vec::new();
    for s in [&a, &b, &a, &b, &a, &b, &a, &b] {
        let s = s.clone();
        sweeps.push(tokio::spawn(async move {
            drain(|| s.prune_occurrences(100_000, 7)).await
        }));
    }
    let mut n = 0;
    for t in sweeps {
        n += t.await.expect("sweep");
    }
    assert_eq!(n, 4 * (PER as u64 - 1), "all but each newest");
    assert_eq!(a.pruned().occurrences + b.pruned().occurrences, n);
    assert_eq!(
        count(&pool, "occurrences").await,
        4,
        "each schedule's newest stays"
    );
    let mut now = by_state(&pool, "occurrences_pruned").await;
    for (k, n) in by_state(&pool, "occurrences").await {
        *now.entry(k).or_default() += n;
    }
    assert_eq!(now, there, "pruned totals + rows left = rows there were");
}
