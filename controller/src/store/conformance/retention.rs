//! Retention: what is pruned, in what order, and what is never touched.

use baton_proto::drill::DrillMethod;
use baton_proto::pipeline::{PipelineSpec, RunState, StepCondition, StepSpec};
use baton_proto::schedule::OccurrenceState;
use baton_proto::{CompleteRequest, Completion, JobKind, JobResult, JobState};

use super::schedules::{occ, run_one, spec};
use crate::store::audit::AuditRecord;
use crate::store::drills::NewDrill;
use crate::store::retention::PrunedSnapshot;
use crate::store::schedules::{Cursor, Firing};
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
        stores: &[],
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
        started_after_ms: None,
        token,
        completion: Completion::Succeeded,
        result: JobResult::default(),
        error: None,
    };
    let (state, _, _, _) = s.complete(id, "a1", &done, 1_003).await.expect("complete");
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
        agent: None,
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
            ..PrunedSnapshot::default()
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

/// Record `state` occurrence `nominal` of schedule `id` at `now` (no cursor
/// move, like a trigger); its job, if it fired.
async fn record(s: &Store, id: i64, nominal: i64, state: OccurrenceState, now: i64) -> Option<i64> {
    let firing = Firing {
        schedule_id: id,
        advance: None,
        occurrences: vec![occ(nominal, state)],
        cancel_active: false,
        supersede_pending: false,
        default_lease_ttl_ms: 15_000,
    };
    s.fire(&firing, now).await.expect("fire").occurrences[0].job_id
}

async fn nominals(s: &Store, id: i64) -> Vec<i64> {
    let mut n: Vec<i64> = s
        .history(id, None, 100)
        .await
        .expect("history")
        .iter()
        .map(|o| o.nominal_at.timestamp_millis())
        .collect();
    n.sort_unstable();
    n
}

/// Conformance case: old schedule occurrences go, at most `max` per call,
/// oldest first; a pending one, the newest of a schedule and one whose job
/// has not ended stay; the schedule's totals and its last success do not
/// change; a schedule's last successful job outlives `job_keep`.
pub async fn old_occurrences_go_but_totals_pending_newest_and_last_success_stay(s: &Store) {
    let (sched, _) = s
        .put_schedule(&spec("s"), Cursor::Keep, true, 0)
        .await
        .expect("create");
    let id = sched.id;
    record(s, id, 1_000, OccurrenceState::Skipped, 1_000).await;
    record(s, id, 2_000, OccurrenceState::Missed, 2_000).await;
    let ok = record(s, id, 3_000, OccurrenceState::Fired, 3_000).await;
    assert_eq!(
        run_one(s, "a1", Completion::Succeeded, "", 3_100).await,
        ok.expect("job")
    );
    let cancelled = record(s, id, 4_000, OccurrenceState::Fired, 4_000)
        .await
        .expect("job");
    s.cancel(cancelled, 4_100).await.expect("cancel");
    let queued = record(s, id, 5_000, OccurrenceState::Fired, 5_000)
        .await
        .expect("job");
    record(s, id, 6_000, OccurrenceState::Pending, 6_000).await;
    record(s, id, 7_000, OccurrenceState::Skipped, 7_000).await;
    s.follow_up(7_500, 100, 15_000).await.expect("follow up");
    let before = s.schedule_stats(id).await.expect("stats");
    assert_eq!(
        (
            before.counts.fired,
            before.counts.pending,
            before.counts.skipped,
            before.counts.missed
        ),
        (3, 1, 2, 1)
    );
    let totals = s.occurrence_totals().await.expect("totals");

    // The bound is both nominal and record time.
    assert_eq!(s.prune_occurrences(1_500, 10).await.expect("prune"), 1);
    assert_eq!(s.prune_occurrences(100_000, 2).await.expect("prune"), 2);
    assert_eq!(nominals(s, id).await, [4_000, 5_000, 6_000, 7_000]);
    assert_eq!(s.prune_occurrences(100_000, 10).await.expect("prune"), 1);
    assert_eq!(s.prune_occurrences(100_000, 10).await.expect("prune"), 0);
    assert_eq!(
        nominals(s, id).await,
        [5_000, 6_000, 7_000],
        "queued job, pending, newest stay"
    );
    assert_eq!(s.pruned().occurrences, 4);
    // Jobs: the cancelled one goes; the last success stays.
    assert_eq!(s.prune_jobs(100_000, 10).await.expect("prune"), 1);
    assert!(!exists(s, cancelled).await);
    let after = s.schedule_stats(id).await.expect("stats");
    assert_eq!(after.counts, before.counts, "totals count pruned rows");
    assert_eq!(after.last_success_at, Some(3_101));
    assert_eq!(
        after.last.map(|o| o.nominal_at),
        before.last.map(|o| o.nominal_at)
    );
    assert_eq!(s.occurrence_totals().await.expect("totals"), totals);

    // The queued job ends and the pending occurrence starts: 5 000 may go,
    // and the older success no longer is the last one.
    assert_eq!(
        run_one(s, "a1", Completion::Succeeded, "", 8_000).await,
        queued
    );
    s.follow_up(8_100, 100, 15_000).await.expect("follow up");
    let totals = s.occurrence_totals().await.expect("totals");
    assert_eq!((totals.fired, totals.pending), (4, 0));
    assert_eq!(s.prune_occurrences(100_000, 10).await.expect("prune"), 1);
    assert_eq!(nominals(s, id).await, [6_000, 7_000]);
    assert_eq!(s.prune_jobs(100_000, 10).await.expect("prune"), 1);
    assert!(!exists(s, ok.expect("job")).await);
    assert!(exists(s, queued).await, "the newest success stays");
    assert_eq!(
        s.schedule_stats(id).await.expect("stats").last_success_at,
        Some(8_001)
    );
    assert_eq!(s.occurrence_totals().await.expect("totals"), totals);

    // Deleting the schedule takes its pruned totals too.
    s.delete_schedule("s").await.expect("delete");
    assert_eq!(
        s.occurrence_totals().await.expect("totals"),
        Default::default()
    );
}

fn one_step(name: &str) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        group: "g".into(),
        timeout_ms: Some(1_000),
        steps: vec![StepSpec {
            name: "a".into(),
            depends_on: Vec::new(),
            on: StepCondition::Success,
            same_agent_as: None,
            group: None,
            job: spec("x").job.expect("template"),
        }],
    }
}

/// Start a run of `p` at `now` and run its step to success; the run.
async fn succeeded_run(s: &Store, p: &str, now: i64) -> i64 {
    let id = s
        .start_run(p, None, 15_000, now)
        .await
        .expect("start")
        .run
        .id;
    run_one(s, "a1", Completion::Succeeded, "", now + 10).await;
    s.follow_up(now + 20, 100, 15_000).await.expect("follow up");
    assert_eq!(s.get_run(id).await.expect("run").state, RunState::Succeeded);
    id
}

fn gone(r: Result<baton_proto::pipeline::RunView, Error>) -> bool {
    matches!(r, Err(Error::Missing(_)))
}

/// Conformance case: ended pipeline runs older than the bound go with their
/// steps and their steps' jobs (which `prune_jobs` leaves to them), at most
/// `max` per call, oldest first; a running run and the last success of a
/// schedule stay.
pub async fn ended_runs_go_with_their_steps_and_jobs(s: &Store) {
    s.put_pipeline(&one_step("p"), true, 0).await.expect("put");
    let done = succeeded_run(s, "p", 10).await;
    let done_job = s.get_run(done).await.expect("run").steps[0]
        .job_id
        .expect("job");
    let failed = s
        .start_run("p", None, 15_000, 100)
        .await
        .expect("start")
        .run
        .id;
    assert_eq!(s.expire_runs(1_100).await.expect("expire"), vec![failed]);
    s.follow_up(1_150, 100, 15_000).await.expect("follow up");
    let running = s
        .start_run("p", None, 15_000, 1_200)
        .await
        .expect("start")
        .run;
    let running_job = running.steps[0].job_id.expect("job");

    // Their steps' jobs are old, but stay while their runs do.
    assert_eq!(s.prune_jobs(100_000, 10).await.expect("prune"), 0);
    assert!(exists(s, done_job).await);
    assert_eq!(
        s.prune_runs(1_000, 10).await.expect("prune"),
        1,
        "ended before 1 000"
    );
    assert!(gone(s.get_run(done).await));
    assert!(!exists(s, done_job).await, "its job went with it");
    assert_eq!(s.prune_runs(100_000, 10).await.expect("prune"), 1);
    assert!(gone(s.get_run(failed).await));
    assert_eq!(s.prune_runs(100_000, 10).await.expect("prune"), 0);
    assert_eq!(
        s.get_run(running.id).await.expect("running").state,
        RunState::Running
    );
    assert!(exists(s, running_job).await);
    let p = s.pruned();
    assert_eq!((p.runs, p.run_steps, p.jobs, p.attempts), (2, 2, 2, 1));

    // A schedule's last successful run stays until a newer one succeeds.
    s.cancel_run(running.id, 1_300).await.expect("cancel");
    s.follow_up(1_310, 100, 15_000).await.expect("follow up");
    let mut sched = spec("nightly");
    sched.job = None;
    sched.pipeline = Some("p".into());
    let (sched, _) = s
        .put_schedule(&sched, Cursor::Keep, true, 0)
        .await
        .expect("schedule");
    let mut scheduled = Vec::new();
    for nominal in [2_000, 3_000] {
        let firing = Firing {
            schedule_id: sched.id,
            advance: None,
            occurrences: vec![occ(nominal, OccurrenceState::Fired)],
            cancel_active: false,
            supersede_pending: false,
            default_lease_ttl_ms: 15_000,
        };
        let run = s.fire(&firing, nominal).await.expect("fire").occurrences[0]
            .run_id
            .expect("run");
        run_one(s, "a1", Completion::Succeeded, "", nominal + 10).await;
        s.follow_up(nominal + 20, 100, 15_000)
            .await
            .expect("follow up");
        scheduled.push(run);
        if nominal == 2_000 {
            assert_eq!(
                s.prune_runs(100_000, 10).await.expect("prune"),
                1,
                "the cancelled one"
            );
            assert!(s.get_run(run).await.is_ok(), "the last success stays");
        }
    }
    assert_eq!(s.prune_runs(100_000, 10).await.expect("prune"), 1);
    assert!(gone(s.get_run(scheduled[0]).await));
    assert!(s.get_run(scheduled[1]).await.is_ok());
    assert_eq!(
        s.schedule_stats(sched.id)
            .await
            .expect("stats")
            .last_success_at,
        Some(3_020)
    );
}
