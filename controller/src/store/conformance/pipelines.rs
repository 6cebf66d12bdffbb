use baton_proto::pipeline::{PipelineSpec, RunState, StepCondition, StepSpec, StepState};
use baton_proto::schedule::JobTemplate;
use baton_proto::{CommandSpec, Completion, JobKind, JobSpec, JobState, RetryPolicy};

use super::schedules::run_one;
use crate::store::testutil::enrolled;
use crate::store::{Error, GrantRequest, Store};

fn command(program: &str, args: &[&str]) -> JobTemplate {
    JobTemplate {
        spec: JobSpec::Command(CommandSpec {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        }),
        priority: 0,
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    }
}

fn step(name: &str, deps: &[&str], on: StepCondition, job: JobTemplate) -> StepSpec {
    StepSpec {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        on,
        same_agent_as: None,
        group: None,
        job,
    }
}

fn pipeline(name: &str, steps: Vec<StepSpec>) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        group: "g".into(),
        timeout_ms: None,
        steps,
    }
}

fn states(run: &baton_proto::pipeline::RunView) -> Vec<(&str, StepState)> {
    run.steps
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect()
}

async fn granted_to(s: &Store, agent: &str, now: i64) -> Vec<i64> {
    let groups = vec!["g".to_string()];
    let kinds = vec![JobKind::Command];
    s.grant(
        &GrantRequest {
            agent_id: agent,
            groups: &groups,
            kinds: &kinds,
            connections: &[],
            stores: &[],
            max: 5,
        },
        now,
    )
    .await
    .expect("grant")
    .grants
    .iter()
    .map(|g| g.job_id)
    .collect()
}

/// Conformance case `a_run_follows_its_graph_pins_and_resolves`.
pub async fn a_run_follows_its_graph_pins_and_resolves(s: &Store) {
    enrolled(s, "a1", &["g"]).await;
    enrolled(s, "a2", &["g"]).await;
    let mut read = step(
        "read",
        &["dump"],
        StepCondition::Success,
        command("cat", &["${steps.dump.result.stdout}"]),
    );
    read.same_agent_as = Some("dump".into());
    let spec = pipeline(
        "p",
        vec![
            step(
                "dump",
                &[],
                StepCondition::Success,
                command("echo", &["hi"]),
            ),
            read,
        ],
    );
    let (view, created) = s.put_pipeline(&spec, true, 0).await.expect("put");
    assert!(created && view.last_run.is_none());
    let started = s.start_run("p", None, 15_000, 10).await.expect("start");
    assert_eq!(started.woken, vec!["g".to_string()]);
    assert_eq!(
        states(&started.run),
        [("dump", StepState::Queued), ("read", StepState::Pending)]
    );
    run_one(s, "a1", Completion::Succeeded, "/var/dumps/x.sql.zst", 20).await;
    let followed = s.follow_up(30, 100, 15_000).await.expect("follow up");
    assert_eq!(followed.jobs.len(), 1);
    let run = s.get_run(started.run.id).await.expect("run");
    assert_eq!(
        states(&run),
        [("dump", StepState::Succeeded), ("read", StepState::Queued)]
    );
    assert_eq!(run.steps[0].agent.as_deref(), Some("a1"));
    let read_job = s
        .get_job(run.steps[1].job_id.expect("job"))
        .await
        .expect("job");
    match &read_job.spec {
        JobSpec::Command(c) => assert_eq!(c.args, ["/var/dumps/x.sql.zst"]),
        other => panic!("{other:?}"),
    }
    // Pinned: another agent of the group is not given it.
    assert!(granted_to(s, "a2", 40).await.is_empty());
    assert_eq!(granted_to(s, "a1", 41).await, [read_job.id]);
    let token = s.get_job(read_job.id).await.expect("job").attempts[0].token;
    s.complete(
        read_job.id,
        "a1",
        &baton_proto::CompleteRequest {
            started_after_ms: None,
            token,
            completion: Completion::Succeeded,
            result: Default::default(),
            error: None,
        },
        50,
    )
    .await
    .expect("complete");
    let followed = s.follow_up(60, 100, 15_000).await.expect("follow up");
    assert_eq!(followed.runs_ended, vec![started.run.id]);
    let run = s.get_run(started.run.id).await.expect("run");
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(run.finished_at.map(|t| t.timestamp_millis()), Some(60));
    let listed = s.list_runs("p", None, 10).await.expect("runs");
    assert_eq!(listed.runs.len(), 1);
}

/// Conformance case `a_failure_runs_its_handler_skips_the_rest_and_retry_reruns_only_those`.
pub async fn a_failure_runs_its_handler_skips_the_rest_and_retry_reruns_only_those(s: &Store) {
    let spec = pipeline(
        "f",
        vec![
            step("prep", &[], StepCondition::Success, command("true", &[])),
            step(
                "work",
                &["prep"],
                StepCondition::Success,
                command("false", &[]),
            ),
            step(
                "after",
                &["work"],
                StepCondition::Success,
                command("echo", &["done"]),
            ),
            step(
                "alert",
                &["work"],
                StepCondition::Failure,
                command("mail", &["dba"]),
            ),
        ],
    );
    s.put_pipeline(&spec, true, 0).await.expect("put");
    let id = s
        .start_run("f", None, 15_000, 0)
        .await
        .expect("start")
        .run
        .id;
    let prep = run_one(s, "a1", Completion::Succeeded, "", 10).await;
    s.follow_up(20, 100, 15_000).await.expect("follow");
    run_one(s, "a1", Completion::Failed { retryable: false }, "", 30).await;
    s.follow_up(40, 100, 15_000).await.expect("follow");
    let run = s.get_run(id).await.expect("run");
    assert_eq!(
        states(&run),
        [
            ("prep", StepState::Succeeded),
            ("work", StepState::Failed),
            ("after", StepState::Skipped),
            ("alert", StepState::Queued),
        ]
    );
    run_one(s, "a1", Completion::Succeeded, "", 50).await;
    s.follow_up(60, 100, 15_000).await.expect("follow");
    let run = s.get_run(id).await.expect("run");
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.error.as_deref().is_some_and(|e| e.contains("work")),
        "{run:?}"
    );
    // Retry: `prep` keeps its job; `work` runs again, the rest decide again.
    let retried = s.retry_run(id, 15_000, 70).await.expect("retry");
    assert_eq!(retried.run.attempt, 2);
    assert_eq!(retried.run.state, RunState::Running);
    assert_eq!(retried.run.steps[0].job_id, Some(prep));
    assert_eq!(
        states(&retried.run),
        [
            ("prep", StepState::Succeeded),
            ("work", StepState::Queued),
            ("after", StepState::Pending),
            ("alert", StepState::Pending),
        ]
    );
    run_one(s, "a1", Completion::Succeeded, "", 80).await;
    s.follow_up(90, 100, 15_000).await.expect("follow");
    run_one(s, "a1", Completion::Succeeded, "", 100).await;
    s.follow_up(110, 100, 15_000).await.expect("follow");
    let run = s.get_run(id).await.expect("run");
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    assert_eq!(run.steps[3].state, StepState::Skipped);
    let again = s.retry_run(id, 15_000, 120).await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");
}

/// Conformance case `cancel_and_timeout_stop_a_run_once_its_steps_stop`.
pub async fn cancel_and_timeout_stop_a_run_once_its_steps_stop(s: &Store) {
    let spec = pipeline(
        "c",
        vec![
            step("a", &[], StepCondition::Success, command("sleep", &["60"])),
            step("b", &["a"], StepCondition::Success, command("echo", &[])),
        ],
    );
    s.put_pipeline(&spec, true, 0).await.expect("put");
    let id = s
        .start_run("c", None, 15_000, 0)
        .await
        .expect("start")
        .run
        .id;
    let running = granted_to(s, "a1", 10).await;
    let cancelled = s.cancel_run(id, 20).await.expect("cancel");
    // Its step is still running: the run waits for it to stop.
    assert_eq!(cancelled.run.state, RunState::Running);
    assert_eq!(cancelled.run.steps[1].state, StepState::Cancelled);
    let job = s.get_job(running[0]).await.expect("job");
    assert!(job.cancel_requested);
    s.complete(
        job.id,
        "a1",
        &baton_proto::CompleteRequest {
            started_after_ms: None,
            token: job.attempts[0].token,
            completion: Completion::Cancelled,
            result: Default::default(),
            error: None,
        },
        30,
    )
    .await
    .expect("complete");
    s.follow_up(40, 100, 15_000).await.expect("follow");
    assert_eq!(s.get_run(id).await.expect("run").state, RunState::Cancelled);
    // A timeout: a queued step ends at once, the run fails.
    let mut timed = spec.clone();
    timed.name = "t".into();
    timed.timeout_ms = Some(1000);
    s.put_pipeline(&timed, true, 0).await.expect("put");
    let t = s
        .start_run("t", None, 15_000, 100)
        .await
        .expect("start")
        .run;
    assert_eq!(t.deadline_at.map(|d| d.timestamp_millis()), Some(1100));
    assert_eq!(s.next_run_deadline().await.expect("deadline"), Some(1100));
    assert!(s.expire_runs(1099).await.expect("early").is_empty());
    assert_eq!(s.expire_runs(1100).await.expect("expire"), vec![t.id]);
    let t = s.get_run(t.id).await.expect("run");
    assert_eq!(t.state, RunState::Failed);
    assert!(
        t.error.as_deref().is_some_and(|e| e.contains("timed out")),
        "{t:?}"
    );
    let job = s
        .get_job(t.steps[0].job_id.expect("job"))
        .await
        .expect("job");
    assert_eq!(job.state, JobState::Cancelled);
}

/// Conformance case `pipelines_are_named_once_and_kept_while_scheduled`.
pub async fn pipelines_are_named_once_and_kept_while_scheduled(s: &Store) {
    let spec = pipeline(
        "n",
        vec![step("a", &[], StepCondition::Success, command("true", &[]))],
    );
    s.put_pipeline(&spec, true, 0).await.expect("put");
    assert!(matches!(
        s.put_pipeline(&spec, true, 1).await,
        Err(Error::Conflict(_))
    ));
    let (_, created) = s.put_pipeline(&spec, false, 2).await.expect("replace");
    assert!(!created);
    let mut sched = super::schedules::spec("nightly");
    sched.job = None;
    sched.pipeline = Some("n".into());
    s.put_schedule(&sched, crate::store::schedules::Cursor::Keep, true, 3)
        .await
        .expect("schedule");
    let refused = s.delete_pipeline("n").await;
    assert!(
        matches!(&refused, Err(Error::Conflict(m)) if m.contains("nightly")),
        "{refused:?}"
    );
    s.delete_schedule("nightly").await.expect("delete schedule");
    s.delete_pipeline("n").await.expect("delete");
    assert!(matches!(s.get_pipeline("n").await, Err(Error::Missing(_))));
    assert!(s.list_pipelines().await.expect("list").is_empty());
    assert!(matches!(
        s.start_run("n", None, 1, 4).await,
        Err(Error::Missing(_))
    ));
}

/// Conformance case `a_step_pinned_to_a_revoked_agent_fails_with_the_reason`.
pub async fn a_step_pinned_to_a_revoked_agent_fails_with_the_reason(s: &Store) {
    enrolled(s, "a1", &["g"]).await;
    let mut read = step(
        "read",
        &["dump"],
        StepCondition::Success,
        command("cat", &[]),
    );
    read.same_agent_as = Some("dump".into());
    let spec = pipeline(
        "r",
        vec![
            step("dump", &[], StepCondition::Success, command("echo", &[])),
            read,
        ],
    );
    s.put_pipeline(&spec, true, 0).await.expect("put");
    let id = s
        .start_run("r", None, 15_000, 0)
        .await
        .expect("start")
        .run
        .id;
    run_one(s, "a1", Completion::Succeeded, "", 10).await;
    s.revoke_agent("a1", 15).await.expect("revoke");
    s.follow_up(20, 100, 15_000).await.expect("follow");
    let run = s.get_run(id).await.expect("run");
    assert_eq!(run.state, RunState::Failed);
    let reason = run.steps[1].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("a1") && reason.contains("revoked"),
        "{reason}"
    );
    assert!(run.steps[1].job_id.is_none());
}

/// Conformance case `a_queued_step_whose_agent_is_gone_fails_and_its_run_ends`.
pub async fn a_queued_step_whose_agent_is_gone_fails_and_its_run_ends(s: &Store) {
    enrolled(s, "a1", &["g"]).await;
    let mut read = step(
        "read",
        &["dump"],
        StepCondition::Success,
        command("cat", &[]),
    );
    read.same_agent_as = Some("dump".into());
    let spec = pipeline(
        "s",
        vec![
            step("dump", &[], StepCondition::Success, command("echo", &[])),
            read,
        ],
    );
    s.put_pipeline(&spec, true, 0).await.expect("put");
    let id = s
        .start_run("s", None, 15_000, 0)
        .await
        .expect("start")
        .run
        .id;
    run_one(s, "a1", Completion::Succeeded, "", 10).await;
    s.follow_up(20, 100, 15_000).await.expect("follow");
    // Seen recently enough: it waits for its agent.
    assert!(s.fail_stranded(30, -1).await.expect("none").is_empty());
    let run = s.get_run(id).await.expect("run");
    assert_eq!(run.steps[1].state, StepState::Queued);
    let failed = s.fail_stranded(40, 1_000_000).await.expect("stranded");
    assert_eq!(failed, vec![run.steps[1].job_id.expect("job")]);
    s.follow_up(50, 100, 15_000).await.expect("follow");
    let run = s.get_run(id).await.expect("run");
    assert_eq!(run.state, RunState::Failed);
    let reason = run.steps[1].reason.as_deref().unwrap_or_default();
    assert!(
        reason.contains("a1") && reason.contains("not been seen"),
        "{reason}"
    );
}
