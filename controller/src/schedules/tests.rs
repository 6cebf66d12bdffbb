use baton_proto::pipeline::{PipelineSpec, RunState, StepCondition, StepSpec};
use baton_proto::schedule::{
    BackfillRequest, Catchup, JobTemplate, OccurrenceState, OccurrenceTrigger, Overlap,
    ScheduleSpec,
};
use baton_proto::{CompleteRequest, Completion, JobKind, JobResult, JobSpec, JobState, NoopSpec};

use super::*;
use crate::store::GrantRequest;
use crate::store::testutil;

/// 2027-01-03T00:00:00Z.
const T0: i64 = 1_798_934_400_000;
const MIN: i64 = 60_000;

async fn service(started_at: i64) -> (Schedules, tempfile::TempDir) {
    let (store, dir) = testutil::store().await;
    let limits = JobLimits {
        default_lease_ttl_ms: 15_000,
        max_spec_bytes: 64 << 10,
    };
    (Schedules::new(Jobs::new(store), limits, started_at), dir)
}

fn every_minute(name: &str) -> ScheduleSpec {
    let mut s: ScheduleSpec = serde_json::from_value(serde_json::json!({
        "name": name, "group": "g", "cron": "* * * * *", "tz": "Europe/Berlin",
        "job": {"spec": {"kind": "noop"}}
    }))
    .expect("spec");
    s.job = Some(JobTemplate {
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        retry: Default::default(),
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    });
    s
}

async fn look(svc: &Schedules, now: i64) {
    let mut triggers = timer::Triggers::default();
    timer::look(svc, &mut triggers, &mut 0, now)
        .await
        .expect("look");
}

/// Grant group `g`'s next job (noop or command) to agent `a1`.
async fn grant_next(svc: &Schedules, now: i64) -> baton_proto::Grant {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Noop, JobKind::Command];
    let req = GrantRequest {
        agent_id: "a1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 1,
    };
    let g = svc.jobs.grant(&req, now).await.expect("grant");
    g.grants.into_iter().next().expect("a job")
}

/// Grant group `g`'s next job to `a1` and end it as `how`.
async fn finish_next(svc: &Schedules, how: Completion, now: i64) -> i64 {
    let grant = grant_next(svc, now).await;
    let done = CompleteRequest {
        started_after_ms: None,
        token: grant.token,
        completion: how,
        result: JobResult::default(),
        error: None,
    };
    svc.jobs
        .complete(grant.job_id, "a1", &done, now + 1)
        .await
        .expect("complete");
    grant.job_id
}

#[tokio::test]
async fn refused_definitions_name_the_field() {
    let (svc, _d) = service(T0).await;
    let mut bad = every_minute("x");
    bad.cron = Some("61 * * * *".into());
    let e = svc.put(bad, true, T0).await.expect_err("cron");
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "cron"),
        "{e}"
    );
    let mut bad = every_minute("x");
    bad.tz = Some("Mars/Olympus".into());
    let e = svc.put(bad, true, T0).await.expect_err("tz");
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "tz"),
        "{e}"
    );
    let mut bad = every_minute("x");
    bad.job = None;
    bad.pipeline = Some("nope".into());
    let e = svc.put(bad, true, T0).await.expect_err("pipeline");
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "pipeline"),
        "{e}"
    );
    let mut bad = every_minute("x");
    if let Some(job) = bad.job.as_mut() {
        job.lease_ttl_ms = Some(1);
    }
    let e = svc.put(bad, true, T0).await.expect_err("ttl");
    assert!(
        matches!(&e, Error::Invalid { field, .. } if field == "job.lease_ttl_ms"),
        "{e}"
    );
    assert!(svc.list(T0).await.expect("list").schedules.is_empty());
}

#[tokio::test]
async fn each_occurrence_fires_once_and_a_replace_keeps_the_cursor() {
    let (svc, _d) = service(T0).await;
    let (view, created) = svc.put(every_minute("m"), true, T0 + 1).await.expect("put");
    assert!(created);
    assert_eq!(view.next_at.map(|t| t.timestamp_millis()), Some(T0 + MIN));
    look(&svc, T0 + 2).await;
    assert!(
        svc.history("m", None, 10)
            .await
            .expect("h")
            .occurrences
            .is_empty()
    );
    look(&svc, T0 + MIN + 5).await;
    look(&svc, T0 + MIN + 6).await;
    let h = svc.history("m", None, 10).await.expect("h").occurrences;
    assert_eq!(h.len(), 1, "{h:?}");
    assert_eq!(
        (h[0].state, h[0].trigger),
        (OccurrenceState::Fired, OccurrenceTrigger::Schedule)
    );
    // Same trigger, another template: the cursor stays.
    let mut changed = every_minute("m");
    changed.overlap = Overlap::Allow;
    let (view, created) = svc
        .put(changed, false, T0 + MIN + 7)
        .await
        .expect("replace");
    assert!(!created);
    assert_eq!(
        view.next_at.map(|t| t.timestamp_millis()),
        Some(T0 + 2 * MIN)
    );
    // Another trigger: it restarts from now.
    let mut hourly = every_minute("m");
    hourly.cron = Some("0 * * * *".into());
    let (view, _) = svc.put(hourly, false, T0 + MIN + 8).await.expect("replace");
    assert_eq!(
        view.next_at.map(|t| t.timestamp_millis()),
        Some(T0 + 60 * MIN)
    );
    let next = svc.next("m", 2, T0 + MIN + 9).await.expect("next");
    assert_eq!(next.tz, "Europe/Berlin");
    assert_eq!(next.occurrences[0].local, "2027-01-03T02:00:00+01:00");
}

#[tokio::test]
async fn after_downtime_catchup_all_runs_each_missed_occurrence_in_order() {
    // The controller (re)started at T0 + 5 min + 30 s: occurrences 1..=5
    // passed while it was down.
    let started = T0 + 5 * MIN + 30_000;
    let (svc, _d) = service(started).await;
    let mut s = every_minute("c");
    s.catchup = Catchup::All;
    svc.put(s, true, T0 + 1).await.expect("put");
    look(&svc, started).await;
    let h = svc.history("c", None, 10).await.expect("h").occurrences;
    let states: Vec<_> = h.iter().rev().map(|o| (o.trigger, o.state)).collect();
    assert_eq!(states.len(), 5, "{h:?}");
    assert_eq!(
        states[0],
        (OccurrenceTrigger::Catchup, OccurrenceState::Fired)
    );
    assert!(
        states[1..].iter().all(|s| s.1 == OccurrenceState::Pending),
        "{states:?}"
    );
    // Each ends, the next oldest starts: in order, never two at once.
    let mut order = Vec::new();
    for i in 0..5 {
        let now = started + 1000 * (i + 1);
        order.push(finish_next(&svc, Completion::Succeeded, now).await);
        look(&svc, now + 10).await;
    }
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let view = svc.get("c", started + 10_000).await.expect("view");
    assert_eq!((view.counts.fired, view.counts.pending), (5, 0));
    assert!(view.last_success_at.is_some());
}

#[tokio::test]
async fn after_downtime_catchup_latest_runs_one_and_records_the_rest_missed() {
    let started = T0 + 5 * MIN + 30_000;
    let (svc, _d) = service(started).await;
    svc.put(every_minute("l"), true, T0 + 1).await.expect("put");
    look(&svc, started).await;
    let view = svc.get("l", started).await.expect("view");
    assert_eq!((view.counts.fired, view.counts.missed), (1, 4), "{view:?}");
    let h = svc.history("l", None, 10).await.expect("h").occurrences;
    let missed = h
        .iter()
        .find(|o| o.state == OccurrenceState::Missed)
        .expect("missed");
    assert!(
        missed
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("not running")),
        "{missed:?}"
    );
}

#[tokio::test]
async fn trigger_now_and_backfill_respect_overlap_and_record_each_once() {
    let (svc, _d) = service(T0).await;
    svc.put(every_minute("b"), true, T0).await.expect("put");
    let fired = svc.trigger_now("b", T0 + 10).await.expect("trigger");
    assert_eq!(fired.occurrences[0].trigger, OccurrenceTrigger::Manual);
    assert_eq!(fired.occurrences[0].state, OccurrenceState::Fired);
    // Still queued: a second trigger under `skip` does not start another.
    let again = svc.trigger_now("b", T0 + 20).await.expect("trigger");
    assert_ne!(
        again.occurrences[0].state,
        OccurrenceState::Fired,
        "{again:?}"
    );
    finish_next(&svc, Completion::Succeeded, T0 + 30).await;
    let range = BackfillRequest {
        from: crate::store::rows_ts(T0 - 3 * MIN),
        to: crate::store::rows_ts(T0 - MIN),
    };
    let b = svc.backfill("b", &range, T0 + 40).await.expect("backfill");
    let states: Vec<_> = b.occurrences.iter().map(|o| o.state).collect();
    assert_eq!(
        states,
        [
            OccurrenceState::Fired,
            OccurrenceState::Pending,
            OccurrenceState::Pending
        ]
    );
    let b2 = svc.backfill("b", &range, T0 + 50).await.expect("again");
    assert!(b2.occurrences.is_empty());
    assert_eq!(b2.already, 3);
}

#[tokio::test]
async fn a_schedule_can_run_a_pipeline_and_pause_stops_it() {
    let (svc, _d) = service(T0).await;
    let step = |name: &str, deps: &[&str]| StepSpec {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        on: StepCondition::Success,
        same_agent_as: None,
        group: None,
        job: JobTemplate {
            spec: JobSpec::Noop(NoopSpec::default()),
            priority: 0,
            retry: Default::default(),
            timeout_ms: None,
            lease_ttl_ms: None,
            labels: Default::default(),
        },
    };
    let p = PipelineSpec {
        name: "nightly".into(),
        group: "g".into(),
        timeout_ms: None,
        steps: vec![step("dump", &[]), step("verify", &["dump"])],
    };
    svc.put_pipeline(p, true, T0).await.expect("pipeline");
    let mut s = every_minute("n");
    s.job = None;
    s.pipeline = Some("nightly".into());
    svc.put(s, true, T0 + 1).await.expect("schedule");
    look(&svc, T0 + MIN + 1).await;
    let h = svc.history("n", None, 10).await.expect("h").occurrences;
    let run = h[0].run_id.expect("a run");
    finish_next(&svc, Completion::Succeeded, T0 + MIN + 2).await;
    look(&svc, T0 + MIN + 3).await;
    finish_next(&svc, Completion::Succeeded, T0 + MIN + 4).await;
    look(&svc, T0 + MIN + 5).await;
    let run = svc.get_run(run).await.expect("run");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.schedule.as_deref(), Some("n"));
    // Paused: nothing fires; on resume the passed ones are missed (latest:
    // the newest within the window runs once).
    svc.set_paused("n", true, T0 + MIN + 10)
        .await
        .expect("pause");
    look(&svc, T0 + 4 * MIN + 1).await;
    let h = svc.history("n", None, 10).await.expect("h").occurrences;
    assert_eq!(h.len(), 1, "{h:?}");
    svc.set_paused("n", false, T0 + 4 * MIN + 2)
        .await
        .expect("resume");
    look(&svc, T0 + 4 * MIN + 3).await;
    let view = svc.get("n", T0 + 4 * MIN + 4).await.expect("view");
    assert_eq!(view.counts.fired, 2, "{view:?}");
    assert_eq!(view.counts.missed, 2, "{view:?}");
    let h = svc.history("n", None, 10).await.expect("h").occurrences;
    assert!(
        h.iter()
            .filter(|o| o.state == OccurrenceState::Missed)
            .all(|o| o.reason.as_deref().is_some_and(|r| r.contains("paused"))),
        "{h:?}"
    );
    let jobs: Vec<_> = svc
        .store()
        .list_jobs(&crate::store::jobs::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("jobs")
        .jobs;
    assert!(jobs.iter().any(|j| j.state == JobState::Queued));
}

/// Cancelling a run wakes the holders of its running steps, so their held
/// polls answer with the cancel notice at once.
#[tokio::test]
async fn cancelling_a_run_wakes_the_holder_of_its_running_step() {
    let (svc, _d) = service(T0).await;
    let p: PipelineSpec = serde_json::from_value(serde_json::json!({
        "name": "one", "group": "g",
        "steps": [{"name": "only", "job": {"spec": {"kind": "noop"}}}]
    }))
    .expect("pipeline");
    svc.put_pipeline(p, true, T0).await.expect("pipeline");
    let run = svc.run("one", T0 + 1).await.expect("run");
    grant_next(&svc, T0 + 2).await;
    let wait = svc.jobs.agent_wait("a1");
    let mut woken = Box::pin(wait.notify.notified());
    woken.as_mut().enable();
    svc.cancel_run(run.id, T0 + 3).await.expect("cancel");
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("the step's holder was not woken");
}

#[tokio::test]
async fn cancel_previous_tells_the_holder_of_the_job_it_replaces() {
    let (svc, _d) = service(T0).await;
    let mut spec = every_minute("r");
    spec.overlap = Overlap::CancelPrevious;
    svc.put(spec, true, T0).await.expect("put");
    svc.trigger_now("r", T0 + 10).await.expect("first");
    grant_next(&svc, T0 + 20).await;
    let wait = svc.jobs.agent_wait("a1");
    let mut woken = Box::pin(wait.notify.notified());
    woken.as_mut().enable();
    // A newer occurrence replaces the running job: its holder is told now,
    // not at its next heartbeat.
    svc.trigger_now("r", T0 + 30).await.expect("second");
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("the replaced job's holder was not woken");
    assert!(svc.jobs.cancel_mark("a1").is_some(), "the holder is marked");
}
