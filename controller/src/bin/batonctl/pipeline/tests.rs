use super::*;
use baton_proto::pipeline::{PipelineSpec, StepRunView, StepSpec, StepState};
use baton_proto::schedule::JobTemplate;
use baton_proto::{JobSpec, NoopSpec};
use clap::Parser;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn noop() -> JobTemplate {
    JobTemplate {
        spec: JobSpec::Noop(NoopSpec { sleep_ms: 0 }),
        priority: 0,
        retry: Default::default(),
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    }
}

fn step(name: &str, state: StepState) -> StepRunView {
    StepRunView {
        name: name.into(),
        state,
        job_id: None,
        agent: None,
        attempts: 0,
        reason: None,
        queued_at: None,
        finished_at: None,
    }
}

#[test]
fn run_view_shows_each_step() {
    let now = t("2027-01-09T02:00:00Z");
    let mut dump = step("dump", StepState::Succeeded);
    dump.job_id = Some(7);
    dump.agent = Some("db1".into());
    dump.attempts = 1;
    dump.queued_at = Some(t("2027-01-09T01:30:00Z"));
    dump.finished_at = Some(t("2027-01-09T01:40:00Z"));
    let mut copy = step("copy", StepState::Failed);
    copy.job_id = Some(8);
    copy.attempts = 3;
    copy.reason = Some("agent db1 (which ran step dump) is gone".into());
    let mut prune = step("prune", StepState::Skipped);
    prune.reason = Some("a dependency failed (on = success)".into());
    let run = RunView {
        id: 41,
        pipeline: "nightly-dump".into(),
        state: RunState::Failed,
        attempt: 2,
        schedule: Some("nightly".into()),
        nominal_at: Some(t("2027-01-09T01:30:00Z")),
        error: Some("step copy failed".into()),
        created_at: t("2027-01-09T01:30:00Z"),
        finished_at: Some(t("2027-01-09T01:50:00Z")),
        deadline_at: Some(t("2027-01-09T03:30:00Z")),
        steps: vec![dump, copy, prune],
    };
    let text = render_run(&run, now);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "Run 41 of pipeline nightly-dump: failed (attempt 2)"
    );
    assert!(
        text.contains("Schedule: nightly at 2027-01-09T01:30:00Z\n"),
        "{text}"
    );
    assert!(text.contains("Error:    step copy failed\n"), "{text}");
    assert!(
        !text.contains("Deadline"),
        "a finished run has no deadline: {text}"
    );
    assert!(
        text.contains(
            "\nSteps:\n  STEP   STATE      JOB  AGENT  ATTEMPTS  QUEUED   FINISHED  REASON\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("  dump   succeeded  7    db1    1         30m ago  20m ago   -\n"),
        "{text}"
    );
    assert!(
        text.contains("  copy   failed     8    -      3         -        -         agent db1 (which ran step dump) is gone\n"),
        "{text}"
    );
    assert!(text.contains("  prune  skipped"), "{text}");
}

#[test]
fn pipeline_view_list_and_history() {
    let now = t("2027-01-09T02:00:00Z");
    let spec = PipelineSpec {
        name: "nightly-dump".into(),
        group: "db".into(),
        timeout_ms: Some(7_200_000),
        steps: vec![
            StepSpec {
                name: "dump".into(),
                depends_on: vec![],
                on: StepCondition::Success,
                same_agent_as: None,
                group: None,
                job: noop(),
            },
            StepSpec {
                name: "alert".into(),
                depends_on: vec!["dump".into()],
                on: StepCondition::Failure,
                same_agent_as: Some("dump".into()),
                group: Some("ops".into()),
                job: noop(),
            },
        ],
    };
    let last = RunSummary {
        id: 41,
        pipeline: "nightly-dump".into(),
        state: RunState::Succeeded,
        attempt: 1,
        schedule: None,
        error: None,
        created_at: t("2027-01-09T01:30:00Z"),
        finished_at: Some(t("2027-01-09T01:45:00Z")),
    };
    let v = PipelineView {
        spec,
        created_at: t("2027-01-01T00:00:00Z"),
        updated_at: t("2027-01-02T00:00:00Z"),
        last_run: Some(last.clone()),
    };
    let text = render_pipeline(&v, now);
    assert!(text.contains("Timeout:  2h\n"), "{text}");
    assert!(text.contains("Last run: #41 succeeded 30m ago\n"), "{text}");
    assert!(
        text.contains("  dump   -           success  -              db     noop\n"),
        "{text}"
    );
    assert!(
        text.contains("  alert  dump        failure  dump           ops    noop\n"),
        "{text}"
    );

    let list = render_list(&PipelineList { pipelines: vec![v] }, now);
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "NAME          GROUP  STEPS  TIMEOUT  LAST RUN",
            "nightly-dump  db     2      2h       #41 succeeded 30m ago",
        ]
    );
    let runs = render_runs(&[last], now);
    assert_eq!(
        runs.lines().nth(1),
        Some("41  succeeded  1        -         30m ago  15m       -")
    );
    assert_eq!(render_runs(&[], now), "No runs.\n");
}

#[derive(Parser)]
struct T {
    #[command(subcommand)]
    c: PipelineCmd,
}

#[test]
fn commands_parse() {
    let p = |argv: &[&str]| {
        let mut full = vec!["pipeline"];
        full.extend_from_slice(argv);
        T::try_parse_from(full).map(|t| t.c)
    };
    assert!(matches!(
        p(&["run", "nightly", "--wait", "--wait-timeout", "1h"]),
        Ok(PipelineCmd::Run {
            wait: true,
            wait_timeout: Some(3_600_000),
            ..
        })
    ));
    assert!(p(&["run", "nightly", "--wait-timeout", "1h"]).is_err());
    assert!(matches!(
        p(&["status", "41"]),
        Ok(PipelineCmd::Status { id: 41 })
    ));
    assert!(p(&["status", "x"]).is_err());
    assert!(matches!(
        p(&["create", "-f", "p.toml"]),
        Ok(PipelineCmd::Create { .. })
    ));
    assert!(p(&["create"]).is_err());
    assert!(matches!(
        p(&["history", "nightly", "--limit", "5", "--before", "40"]),
        Ok(PipelineCmd::History {
            limit: Some(5),
            before: Some(40),
            ..
        })
    ));
    assert_eq!(path("a b", "/runs"), "/v1/pipelines/a%20b/runs");
}
