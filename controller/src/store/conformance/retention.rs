//! Retention: what is pruned, in what order, and what is never touched.

use baton_proto::drill::DrillMethod;
use baton_proto::{CompleteRequest, Completion, JobKind, JobResult, JobState};

use crate::store::audit::AuditRecord;
use crate::store::drills::NewDrill;
use crate::store::retention::PrunedSnapshot;
use crate::store::testutil::new_job;
use crate::store::{Error, GrantRequest, Store, rows_ts};

/// Grant one job of group `g` to `a1` at `now`; its id and token.
async fn grant_one(s: &Store, now: i64) -> (i64, i64) {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        max: 1,
    };
    let g = s.grant(&req, now).await.expect("grant").grants;
    assert_eq!(g.len(), 1, "one job granted at {now}");
    (g[0].job_id, g[0].token)
}

async fn exists(s: &Store, id: i64) -> bool {
    match s.get_job(id).await {
        Ok(_) => true,
        Err(Error::NotFound(n)) if n == id => false,
        Err(e) => panic!("get {id}: {e}"),
    }
}

/// Conformance case: finished jobs older than the bound go with their
/// attempts, at most `max` per call, oldest first; queued, running, recent
/// and drill jobs stay.
pub async fn old_finished_jobs_go_oldest_first_and_everything_else_stays(s: &Store) {
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let j = s.submit(new_job("g", None, "h"), 1).await.expect("submit");
        jobs.push(j.job.id);
    }
    // 0, 1: cancelled at 1 000 and 1 001; 2: succeeded at 1 003 after one
    // attempt; 3: running; 4: queued; 5: cancelled at 50 000 (recent).
    s.cancel(jobs[0], 1_000).await.expect("cancel");
    s.cancel(jobs[1], 1_001).await.expect("cancel");
    let (id, token) = grant_one(s, 1_002).await;
    assert_eq!(id, jobs[2]);
    let done = CompleteRequest {
        token,
        completion: Completion::Succeeded,
        result: JobResult::default(),
        error: None,
    };
    let (state, _, _) = s.complete(id, "a1", &done, 1_003).await.expect("complete");
    assert_eq!(state, JobState::Succeeded);
    assert_eq!(grant_one(s, 1_004).await.0, jobs[3]);
    s.cancel(jobs[5], 50_000).await.expect("cancel");
    // A drill's job, finished long ago: kept (its report is read from it).
    let drill = NewDrill {
        group: "g".into(),
        method: DrillMethod::Crash,
        duration_ms: 1_000,
        lease_ttl_ms: 1_000,
        rto_ms: 10_000,
        created_by: "token:test".into(),
    };
    let d = s
        .create_drill(&drill, new_job("g", None, "d"), 1)
        .await
        .expect("drill");
    let drill_job = d.job_id.expect("drill job");
    s.cancel(drill_job, 999).await.expect("cancel");

    // Bounded: two per call, oldest first.
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 2);
    assert!(!exists(s, jobs[0]).await);
    assert!(!exists(s, jobs[1]).await);
    assert!(
        exists(s, jobs[2]).await,
        "the newer one waits for the next call"
    );
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 1);
    assert_eq!(s.prune_jobs(10_000, 2).await.expect("prune"), 0);
    assert!(!exists(s, jobs[2]).await);
    for id in [jobs[3], jobs[4], jobs[5], drill_job] {
        assert!(exists(s, id).await, "job {id} is kept");
    }
    assert_eq!(
        s.get_job(jobs[3]).await.expect("running").state,
        JobState::Running
    );
    assert_eq!(
        s.pruned(),
        PrunedSnapshot {
            jobs: 3,
            attempts: 1,
            audit: 0
        }
    );
}

/// Conformance case: audit rows older than the bound go, at most `max` per
/// call; newer ones stay.
pub async fn old_audit_rows_go_in_bounded_batches(s: &Store) {
    for i in 0..30 {
        let r = AuditRecord {
            actor: format!("token:t{i}"),
            role: "admin".into(),
            action: "POST /v1/jobs".into(),
            target: "/v1/jobs".into(),
            status: 201,
            error: None,
        };
        let at = if i < 25 { 1_000 + i } else { 100_000 };
        s.audit_grouped(&r, at).await.expect("audit");
    }
    let mut n = 0;
    loop {
        let k = s.prune_audit(50_000, 10).await.expect("prune");
        if k == 0 {
            break;
        }
        assert!(k <= 10, "{k} rows in one call");
        n += k;
    }
    assert_eq!(n, 25);
    assert_eq!(s.pruned().audit, 25);
    let left = s.list_audit(None, None, 100).await.expect("list");
    assert_eq!(left.entries.len(), 5);
    assert!(left.entries.iter().all(|e| e.at == rows_ts(100_000)));
    assert!(s.incremental_vacuum(1_000).await.expect("vacuum") >= 0);
}
