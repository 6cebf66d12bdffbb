use super::*;
use crate::job::{CommandSpec, JobSpec};
use crate::roundtrip::check;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("ts")
}

fn spec() -> PipelineSpec {
    PipelineSpec {
        name: "nightly".into(),
        group: "db".into(),
        timeout_ms: Some(3_600_000),
        steps: vec![StepSpec {
            name: "verify".into(),
            depends_on: vec!["dump".into()],
            on: StepCondition::Always,
            same_agent_as: Some("dump".into()),
            group: Some("db2".into()),
            job: JobTemplate {
                spec: JobSpec::Command(CommandSpec {
                    program: "zstd".into(),
                    args: vec!["-t".into(), "${steps.dump.result.file}".into()],
                    ..Default::default()
                }),
                priority: 0,
                retry: Default::default(),
                timeout_ms: None,
                lease_ttl_ms: None,
                labels: Default::default(),
            },
        }],
    }
}

fn summary() -> RunSummary {
    RunSummary {
        id: 7,
        pipeline: "nightly".into(),
        state: RunState::Failed,
        attempt: 2,
        schedule: Some("nightly".into()),
        error: Some("step dump failed".into()),
        created_at: at(1),
        finished_at: Some(at(2)),
    }
}

#[test]
fn pipeline_messages_roundtrip() {
    check(&spec());
    check(&PipelineView {
        spec: spec(),
        created_at: at(1),
        updated_at: at(2),
        last_run: Some(summary()),
    });
    check(&PipelineList { pipelines: vec![] });
    check(&RunList {
        runs: vec![summary()],
        next_before: Some(3),
    });
    check(&RunView {
        id: 7,
        pipeline: "nightly".into(),
        state: RunState::Running,
        attempt: 1,
        schedule: None,
        nominal_at: Some(at(5)),
        error: None,
        created_at: at(1),
        finished_at: None,
        deadline_at: Some(at(9)),
        steps: vec![StepRunView {
            name: "dump".into(),
            state: StepState::Running,
            job_id: Some(3),
            agent: Some("a1".into()),
            attempts: 1,
            reason: None,
            queued_at: Some(at(1)),
            finished_at: None,
        }],
    });
}

#[test]
fn wire_names_parse_back() {
    for s in [
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ] {
        assert_eq!(RunState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
    for s in [
        StepState::Pending,
        StepState::Queued,
        StepState::Running,
        StepState::Succeeded,
        StepState::Failed,
        StepState::Cancelled,
        StepState::Skipped,
    ] {
        assert_eq!(StepState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
    assert!(StepState::Skipped.is_terminal());
    assert!(!StepState::Running.is_terminal());
    assert_eq!(StepState::of_job(JobState::Queued), StepState::Queued);
}

#[test]
fn a_step_defaults_to_on_success() {
    let s: StepSpec =
        serde_json::from_str(r#"{"name":"a","job":{"spec":{"kind":"noop"}}}"#).expect("parse");
    assert_eq!(s.on, StepCondition::Success);
    assert!(s.depends_on.is_empty());
    assert!(
        serde_json::from_str::<StepSpec>(r#"{"name":"a","job":{"spec":{"kind":"noop"}},"when":1}"#)
            .is_err()
    );
}
