use super::*;
use crate::store::audit::AuditRecord;
use crate::store::prelude::*;
use crate::store::testutil::new_job;

async fn finish(s: &SqliteStore, id: i64, state: &str, at: i64) {
    sqlx::query("UPDATE jobs SET state = ?1, finished_at = ?2 WHERE id = ?3")
        .bind(state)
        .bind(at)
        .bind(id)
        .execute(&s.writer)
        .await
        .expect("finish");
    sqlx::query(
        "INSERT INTO attempts (job_id, number, agent_id, token, started_at, ended_at, outcome) VALUES (?1, 1, 'a', 1, 0, ?2, 'succeeded')",
    )
    .bind(id)
    .bind(at)
    .execute(&s.writer)
    .await
    .expect("attempt");
}

async fn ids(s: &SqliteStore) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM jobs ORDER BY id")
        .fetch_all(&s.reader)
        .await
        .expect("ids")
}

#[tokio::test]
async fn old_finished_jobs_go_in_batches_and_everything_else_stays() {
    let (s, _d) = SqliteStore::temp().await;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        jobs.push(
            s.submit(new_job("g", None, "h"), 1)
                .await
                .expect("submit")
                .job
                .id,
        );
    }
    // 1-4 old and finished, 5 old but a drill's, 6 recent, 7 running, 8 queued.
    for (i, state) in ["succeeded", "failed", "cancelled", "succeeded", "succeeded"]
        .iter()
        .enumerate()
    {
        finish(&s, jobs[i], state, 1_000 + i as i64).await;
    }
    finish(&s, jobs[5], "succeeded", 50_000).await;
    sqlx::query("UPDATE jobs SET state = 'running', finished_at = NULL WHERE id = ?")
        .bind(jobs[6])
        .execute(&s.writer)
        .await
        .expect("running");
    sqlx::query(
        "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state, created_by, created_at, updated_at) VALUES ('g', 'crash', 1, 1, 1, ?, 'passed', 't', 0, 0)",
    )
    .bind(jobs[4])
    .execute(&s.writer)
    .await
    .expect("drill");

    // Bounded: two per batch, oldest first.
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 2);
    assert_eq!(ids(&s).await, jobs[2..].to_vec());
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 2);
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 0);
    assert_eq!(ids(&s).await, jobs[4..].to_vec());
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM attempts WHERE job_id NOT IN (SELECT id FROM jobs)",
    )
    .fetch_one(&s.reader)
    .await
    .expect("orphans");
    assert_eq!(orphans, 0);
    assert_eq!(
        s.pruned(),
        PrunedSnapshot {
            jobs: 4,
            attempts: 4,
            ..PrunedSnapshot::default()
        }
    );
}

#[tokio::test]
async fn old_audit_rows_go_and_the_file_gives_pages_back() {
    let (s, _d) = SqliteStore::temp().await;
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&s.writer)
        .await
        .expect("mode");
    assert_eq!(mode, 2, "new databases use incremental vacuum");
    let big = "x".repeat(4000);
    for i in 0..300 {
        let r = AuditRecord {
            actor: "anonymous@127.0.0.1".into(),
            role: "anonymous".into(),
            action: "POST /x".into(),
            target: big.clone(),
            status: 401,
            error: None,
        };
        s.audit_grouped(&r, if i < 290 { 1_000 } else { 100_000 })
            .await
            .expect("audit");
    }
    let pages = |s: &SqliteStore| {
        let w = s.writer.clone();
        async move {
            sqlx::query_scalar::<_, i64>("PRAGMA page_count")
                .fetch_one(&w)
                .await
                .expect("pages")
        }
    };
    let before = pages(&s).await;
    let mut n = 0;
    loop {
        let k = s.prune_audit(50_000, 100).await.expect("prune");
        if k == 0 {
            break;
        }
        assert!(k <= 100);
        n += k;
    }
    assert_eq!(n, 290);
    assert_eq!(s.pruned().audit, 290);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit")
        .fetch_one(&s.reader)
        .await
        .expect("count");
    assert_eq!(left, 10);
    let free = s.incremental_vacuum(100_000).await.expect("vacuum");
    assert_eq!(free, 0);
    let after = pages(&s).await;
    assert!(after < before / 2, "pages {before} -> {after}");
}

/// A pruning batch walks `jobs_finished` in `finished_at` order and stops at
/// its limit; it does not gather and sort every finished job (what the
/// planner did while `jobs_state` held finished jobs, before migration 0014).
#[tokio::test]
async fn old_jobs_walk_the_finished_index_in_order() {
    let (s, _d) = SqliteStore::temp().await;
    let detail = s.query_plan(old_jobs!(), &[1_000, 10]).await;
    assert!(
        detail
            .iter()
            .any(|d| d == "SEARCH jobs USING INDEX jobs_finished (finished_at<?)"),
        "{detail:?}"
    );
    assert!(
        !detail
            .iter()
            .any(|d| d.contains("TEMP B-TREE FOR ORDER BY")),
        "{detail:?}"
    );
}
