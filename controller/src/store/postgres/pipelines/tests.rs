//! Pipelines on two replicas (two [`PgStore`]s on one database): what one
//! run's concurrent deciders must not do twice. Skips without
//! `BATON_TEST_PG_URL`.

use std::time::Duration;

use baton_proto::pipeline::{PipelineSpec, RunState, StepCondition, StepSpec};
use baton_proto::schedule::{JobTemplate, RunId};
use baton_proto::{CommandSpec, JobSpec, RetryPolicy};
use sqlx::postgres::PgConnection;

use super::super::testutil;
use super::advance::Advanced;
use super::{PgStore, advance_in, cancel_run_in};
use crate::store::Error;
use crate::store::pipelines::PipelineStore;

fn step(name: &str, deps: &[&str]) -> StepSpec {
    StepSpec {
        name: name.into(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        on: StepCondition::Success,
        same_agent_as: None,
        group: None,
        job: JobTemplate {
            spec: JobSpec::Command(CommandSpec {
                program: "true".into(),
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
        },
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

/// The job of step `name` of run `run`.
async fn job_of(s: &PgStore, run: RunId, name: &str) -> i64 {
    let view = s.get_run(run).await.expect("run");
    let step = view.steps.iter().find(|x| x.name == name).expect("step");
    step.job_id.expect("queued")
}

/// End job `id` as its completion would (the follow-up then advances the
/// run).
async fn succeed(s: &PgStore, id: i64, now: i64) {
    sqlx::query(
        "UPDATE jobs SET state = 'succeeded', finished_at = $1, updated_at = $1, followup = TRUE
         WHERE id = $2",
    )
    .bind(now)
    .bind(id)
    .execute(s.pool())
    .await
    .expect("end job");
}

/// How many jobs were queued for step `name` of run `run`.
async fn jobs_of_step(s: &PgStore, run: RunId, name: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE run_id = $1 AND step = $2")
        .bind(run)
        .bind(name)
        .fetch_one(s.pool())
        .await
        .expect("count")
}

/// Wait until another session of this database waits for a lock, or
/// `done` says the other side finished: the two transactions overlap.
async fn until_blocked_or_done(s: &PgStore, done: &tokio::task::JoinHandle<impl Sized>) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(s.pool())
        .await
        .expect("pg_stat_activity");
        if waiting > 0 || done.is_finished() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the second replica neither waited for a lock nor finished within 5 s");
}

/// Follow up the end of a step of run `run` on replica `s`, in one
/// transaction as the follow-up does.
async fn follow_up(s: &PgStore, run: RunId, now: i64) -> Advanced {
    s.tx(move |c| {
        Box::pin(async move {
            let mut woken = Vec::new();
            advance_in(c, run, 15_000, now, &mut woken).await
        })
    })
    .await
    .expect("advance")
}

/// A run `fan` whose steps `a` and `b` are queued, and `join` waits for both.
async fn fan_run(s: &PgStore) -> RunId {
    let spec = pipeline(
        "fan",
        vec![step("a", &[]), step("b", &[]), step("join", &["a", "b"])],
    );
    s.put_pipeline(&spec, false, 0).await.expect("put");
    s.start_run("fan", None, 15_000, 10)
        .await
        .expect("start")
        .run
        .id
}

#[tokio::test]
async fn two_replicas_ending_two_parallel_steps_queue_the_join_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let run = fan_run(&a).await;
    succeed(&a, job_of(&a, run, "a").await, 20).await;
    succeed(&a, job_of(&a, run, "b").await, 20).await;
    // Replica A follows up step a and has not committed yet when replica B
    // follows up step b: B must decide from what A decided.
    let mut tx = a.pool().begin().await.expect("begin");
    let mut woken = Vec::new();
    let first = advance_in(&mut tx, run, 15_000, 30, &mut woken)
        .await
        .expect("advance on a");
    assert!(!first.ended_now);
    assert_eq!(woken, ["g"]);
    let b2 = b.clone();
    let second = tokio::spawn(async move { follow_up(&b2, run, 31).await });
    until_blocked_or_done(&a, &second).await;
    tx.commit().await.expect("commit a");
    let second = second.await.expect("replica b");
    assert!(!second.ended_now);
    assert_eq!(jobs_of_step(&a, run, "join").await, 1, "join queued once");
    let view = b.get_run(run).await.expect("run");
    assert_eq!(view.state, RunState::Running);
}

#[tokio::test]
async fn two_replicas_racing_step_ends_queue_each_step_once_and_end_the_run_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    for round in 0..20 {
        let spec = pipeline(
            &format!("fan{round}"),
            vec![step("a", &[]), step("b", &[]), step("join", &["a", "b"])],
        );
        a.put_pipeline(&spec, false, 0).await.expect("put");
        let run = b
            .start_run(&spec.name, None, 15_000, 10)
            .await
            .expect("start")
            .run
            .id;
        succeed(&a, job_of(&a, run, "a").await, 20).await;
        succeed(&b, job_of(&b, run, "b").await, 20).await;
        tokio::join!(follow_up(&a, run, 30), follow_up(&b, run, 30));
        assert_eq!(jobs_of_step(&a, run, "join").await, 1, "round {round}");
        succeed(&a, job_of(&a, run, "join").await, 40).await;
        let (x, y) = tokio::join!(follow_up(&a, run, 50), follow_up(&b, run, 50));
        assert!(
            x.ended_now ^ y.ended_now,
            "round {round}: the run ends once ({x:?}, {y:?})"
        );
        let view = a.get_run(run).await.expect("run");
        assert_eq!(view.state, RunState::Succeeded, "round {round}");
    }
}

/// Cancel run `run` on replica `s` (`cancel_run`).
async fn cancel(s: &PgStore, run: RunId, now: i64) -> Result<RunState, Error> {
    s.tx(move |c: &mut PgConnection| {
        Box::pin(async move { Ok(cancel_run_in(c, run, now).await?.run.state) })
    })
    .await
}

#[tokio::test]
async fn a_cancel_racing_the_last_step_end_ends_the_run_once_with_one_state() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let spec = pipeline("one", vec![step("only", &[])]);
    a.put_pipeline(&spec, false, 0).await.expect("put");
    let run = a
        .start_run("one", None, 15_000, 10)
        .await
        .expect("start")
        .run
        .id;
    succeed(&a, job_of(&a, run, "only").await, 20).await;
    // Replica A follows up the step's end (the run succeeds) and has not
    // committed when replica B takes an operator's cancel of the run.
    let mut tx = a.pool().begin().await.expect("begin");
    let mut woken = Vec::new();
    let ended = advance_in(&mut tx, run, 15_000, 30, &mut woken)
        .await
        .expect("advance on a");
    assert!(ended.ended_now);
    let b2 = b.clone();
    let cancelled = tokio::spawn(async move { cancel(&b2, run, 31).await });
    until_blocked_or_done(&a, &cancelled).await;
    tx.commit().await.expect("commit a");
    let cancelled = cancelled.await.expect("replica b");
    assert!(
        matches!(&cancelled, Err(Error::Conflict(m)) if m.contains("already succeeded")),
        "the cancel comes too late: {cancelled:?}"
    );
    let view = b.get_run(run).await.expect("run");
    assert_eq!(view.state, RunState::Succeeded);
    assert_eq!(view.error, None);
    assert_eq!(view.finished_at.map(|t| t.timestamp_millis()), Some(30));
}

#[tokio::test]
async fn a_cancel_and_a_step_end_racing_on_two_replicas_end_the_run_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    for round in 0..20 {
        let name = format!("one{round}");
        let spec = pipeline(&name, vec![step("first", &[]), step("then", &["first"])]);
        a.put_pipeline(&spec, false, 0).await.expect("put");
        let run = a
            .start_run(&name, None, 15_000, 10)
            .await
            .expect("start")
            .run
            .id;
        succeed(&a, job_of(&a, run, "first").await, 20).await;
        let (advanced, cancelled) = tokio::join!(follow_up(&a, run, 30), cancel(&b, run, 30));
        assert!(!advanced.ended_now, "round {round}: a step end only queues");
        assert_eq!(cancelled.expect("cancel"), RunState::Cancelled);
        let view = a.get_run(run).await.expect("run");
        assert_eq!(view.state, RunState::Cancelled, "round {round}");
        // Whichever came first, `then` was queued and cancelled, or
        // cancelled before it was queued: never left queued.
        let then = view.steps.iter().find(|s| s.name == "then").expect("then");
        assert_eq!(
            then.state,
            baton_proto::pipeline::StepState::Cancelled,
            "round {round}"
        );
        assert!(jobs_of_step(&a, run, "then").await <= 1, "round {round}");
    }
}

#[tokio::test]
async fn two_replicas_expiring_at_once_end_each_timed_out_run_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let mut spec = pipeline("slow", vec![step("a", &[]), step("b", &["a"])]);
    spec.timeout_ms = Some(1000);
    a.put_pipeline(&spec, false, 0).await.expect("put");
    let mut runs = Vec::new();
    for i in 0..10 {
        runs.push(
            b.start_run("slow", None, 15_000, i)
                .await
                .expect("start")
                .run
                .id,
        );
    }
    let (x, y) = tokio::join!(a.expire_runs(2000), b.expire_runs(2000));
    let mut ended = x.expect("expire on a");
    ended.extend(y.expect("expire on b"));
    ended.sort_unstable();
    assert_eq!(ended, runs, "each run ended by one replica, once");
    for id in runs {
        let view = a.get_run(id).await.expect("run");
        assert_eq!(view.state, RunState::Failed);
        assert_eq!(view.finished_at.map(|t| t.timestamp_millis()), Some(2000));
        assert!(
            view.error
                .as_deref()
                .is_some_and(|e| e.contains("timed out")),
            "{view:?}"
        );
    }
}

#[tokio::test]
async fn a_pipeline_deleted_while_another_replica_schedules_it_is_kept() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let spec = pipeline("kept", vec![step("a", &[])]);
    a.put_pipeline(&spec, false, 0).await.expect("put");
    // Replica A puts a schedule naming the pipeline (the check, then the
    // row) and has not committed when replica B deletes the pipeline.
    let mut tx = a.pool().begin().await.expect("begin");
    super::pipeline_exists(&mut tx, "kept")
        .await
        .expect("exists");
    sqlx::query(
        "INSERT INTO schedules (name, spec, created_at, updated_at)
         VALUES ('nightly', '{\"pipeline\":\"kept\"}', 0, 0)",
    )
    .execute(&mut *tx)
    .await
    .expect("schedule row");
    let b2 = b.clone();
    let deleted = tokio::spawn(async move { b2.delete_pipeline("kept").await });
    until_blocked_or_done(&a, &deleted).await;
    tx.commit().await.expect("commit a");
    let deleted = deleted.await.expect("replica b");
    assert!(
        matches!(&deleted, Err(Error::Conflict(m)) if m.contains("nightly")),
        "the delete sees the schedule: {deleted:?}"
    );
    b.get_pipeline("kept").await.expect("still there");
}

#[tokio::test]
async fn a_run_retried_on_two_replicas_at_once_is_retried_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let spec = pipeline("flaky", vec![step("only", &[])]);
    a.put_pipeline(&spec, false, 0).await.expect("put");
    let run = a
        .start_run("flaky", None, 15_000, 10)
        .await
        .expect("start")
        .run
        .id;
    let job = job_of(&a, run, "only").await;
    sqlx::query(
        "UPDATE jobs SET state = 'failed', finished_at = 20, updated_at = 20, error = 'boom' WHERE id = $1",
    )
    .bind(job)
    .execute(a.pool())
    .await
    .expect("fail job");
    assert!(follow_up(&a, run, 30).await.ended_now);
    // Replica A retries the failed run and has not committed when replica
    // B takes a retry of the same run.
    let mut tx = a.pool().begin().await.expect("begin");
    let retried = super::retry_in(&mut tx, run, 15_000, 40)
        .await
        .expect("retry on a");
    assert_eq!(retried.run.attempt, 2);
    let b2 = b.clone();
    let second = tokio::spawn(async move { b2.retry_run(run, 15_000, 41).await });
    until_blocked_or_done(&a, &second).await;
    tx.commit().await.expect("commit a");
    let second = second.await.expect("replica b");
    assert!(
        matches!(&second, Err(Error::Conflict(m)) if m.contains("is running")),
        "the second retry finds it running: {second:?}"
    );
    let view = b.get_run(run).await.expect("run");
    assert_eq!((view.state, view.attempt), (RunState::Running, 2));
    assert_eq!(
        jobs_of_step(&a, run, "only").await,
        2,
        "one job per attempt"
    );
}
