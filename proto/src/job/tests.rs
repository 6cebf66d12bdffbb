//! Round trips and rules of the job types.
use super::*;
use crate::roundtrip::check;
use crate::{RestoreSource, RestoreSpec};

fn submit() -> JobSubmit {
    JobSubmit {
        allow_unplaced: false,
        group: "db".into(),
        spec: JobSpec::Command(CommandSpec {
            program: "/bin/echo".into(),
            args: vec!["hi".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            working_dir: Some("/tmp".into()),
        }),
        priority: 5,
        retry: RetryPolicy::default(),
        timeout_ms: Some(1000),
        lease_ttl_ms: Some(2000),
        labels: BTreeMap::from([("team".into(), "dba".into())]),
    }
}

#[test]
fn submit_roundtrip_every_kind() {
    let mut s = submit();
    check(&s);
    s.spec = JobSpec::Procedure(ProcedureSpec {
        connection: "main".into(),
        procedure: "app.nightly".into(),
        params: vec![
            ProcedureParam {
                name: "n".into(),
                mode: ParamMode::In,
                value: Some(ParamValue::Int(3)),
                sql_type: None,
            },
            ProcedureParam {
                name: "o".into(),
                mode: ParamMode::Out,
                value: None,
                sql_type: Some("decimal(10,2)".into()),
            },
        ],
        exactly_once: true,
        session: BTreeMap::from([(
            "time_zone".into(),
            crate::SessionValue::Text("+00:00".into()),
        )]),
    });
    check(&s);
    s.spec = JobSpec::Sql(SqlSpec {
        connection: "main".into(),
        sql: "select 1".into(),
        exactly_once: false,
        session: BTreeMap::new(),
    });
    check(&s);
    s.spec = JobSpec::Dump(DumpSpec {
        connection: "main".into(),
        database: "shop".into(),
        verify: true,
    });
    check(&s);
    s.spec = JobSpec::Noop(NoopSpec { sleep_ms: 5 });
    check(&s);
    s.spec = JobSpec::Restore(RestoreSpec {
        connection: "main".into(),
        source: RestoreSource {
            file: Some("/var/lib/baton/dumps/main/shop/x.sql.zst".into()),
            ..Default::default()
        },
        database: "shop_copy".into(),
        replace: true,
    });
    check(&s);
}

#[test]
fn restore_spec_defaults_and_wire_names() {
    let s: JobSpec = serde_json::from_str(
        r#"{"kind":"restore","connection":"main","source":{"file":"/d/x.sql.zst"},"database":"copy"}"#,
    )
    .expect("parse");
    let JobSpec::Restore(r) = &s else {
        panic!("not a restore: {s:?}")
    };
    assert!(!r.replace, "replace defaults to false");
    assert_eq!(s.kind(), JobKind::Restore);
    assert_eq!(s.connection(), Some("main"));
    assert_eq!(JobKind::parse("restore"), Some(JobKind::Restore));
    // Unknown source fields are refused (a typo is not a silent no-op).
    let bad = serde_json::from_str::<JobSpec>(
        r#"{"kind":"restore","connection":"main","source":{"path":"/x"},"database":"copy"}"#,
    );
    assert!(bad.is_err());
}

#[test]
fn submit_minimal_uses_defaults() {
    let s: JobSubmit =
        serde_json::from_str(r#"{"group":"g","spec":{"kind":"command","program":"true"}}"#)
            .expect("parse");
    assert_eq!(s.retry, RetryPolicy::default());
    assert_eq!(s.spec.kind(), JobKind::Command);
    assert_eq!(s.spec.connection(), None);
    assert!(!s.allow_unplaced);
    // Left out when false (request hashes of older clients stay the same).
    let text = serde_json::to_string(&s).expect("json");
    assert!(!text.contains("allow_unplaced"), "{text}");
    let opted: JobSubmit =
        serde_json::from_str(r#"{"group":"g","spec":{"kind":"noop"},"allow_unplaced":true}"#)
            .expect("parse");
    assert!(opted.allow_unplaced);
    let back: JobSubmit =
        serde_json::from_str(&serde_json::to_string(&opted).expect("json")).expect("parse");
    assert_eq!(back, opted);
}

#[test]
fn unknown_kind_and_fields_are_refused() {
    assert!(serde_json::from_str::<JobSubmit>(r#"{"group":"g","spec":{"kind":"rm"}}"#).is_err());
    assert!(
        serde_json::from_str::<JobSubmit>(r#"{"group":"g","spec":{"kind":"noop"},"colour":1}"#)
            .is_err()
    );
}

#[test]
fn sql_type_is_optional_and_omitted_when_absent() {
    let p: ProcedureParam =
        serde_json::from_str(r#"{"name":"n","value":{"type":"int","value":1}}"#).expect("parse");
    assert_eq!(p.sql_type, None);
    assert!(
        !serde_json::to_string(&p)
            .expect("json")
            .contains("sql_type")
    );
    let p: ProcedureParam = serde_json::from_str(
        r#"{"name":"n","mode":"out","value":{"type":"null"},"sql_type":"int"}"#,
    )
    .expect("parse");
    assert_eq!(p.sql_type.as_deref(), Some("int"));
    check(&p);
}

#[test]
fn backoff_grows_and_caps() {
    let p = RetryPolicy {
        initial_backoff_ms: 100,
        max_backoff_ms: 1000,
        multiplier: 2.0,
        jitter: 0.0,
        ..RetryPolicy::default()
    };
    assert_eq!(p.base_delay_ms(1), 100);
    assert_eq!(p.base_delay_ms(2), 200);
    assert_eq!(p.base_delay_ms(3), 400);
    assert_eq!(p.base_delay_ms(10), 1000);
    let j = RetryPolicy {
        jitter: 0.5,
        ..p.clone()
    };
    assert_eq!(j.delay_ms(2, 0.0), 100);
    assert_eq!(j.delay_ms(2, 1.0), 200);
}

#[test]
fn job_view_roundtrip() {
    let now = DateTime::from_timestamp_millis(1_790_000_000_123).expect("ts");
    let v = JobView {
        id: 7,
        group: "db".into(),
        kind: JobKind::Command,
        spec: submit().spec,
        connection: None,
        state: JobState::Running,
        priority: 0,
        retry: RetryPolicy::default(),
        timeout_ms: None,
        lease_ttl_ms: 15_000,
        labels: BTreeMap::new(),
        idempotency_key: Some("k1".into()),
        attempts_spent: 1,
        not_before: None,
        cancel_requested: true,
        lease_agent: Some("a1".into()),
        created_at: now,
        updated_at: now,
        finished_at: None,
        result: Some(JobResult {
            exit_code: Some(0),
            stdout: "hi\n".into(),
            stdout_encoding: None,
            stderr: "/w==".into(),
            stderr_encoding: Some(OutputEncoding::Base64),
            truncated: false,
            data: Some(serde_json::json!({"rows": 1})),
        }),
        error: None,
        blocked_reason: None,
        schedule: None,
        nominal_at: None,
        run_id: None,
        step: None,
        attempts: vec![AttemptView {
            running_at: None,
            number: 1,
            agent_id: "a1".into(),
            token: 1,
            started_at: now,
            ended_at: Some(now),
            outcome: Some(AttemptOutcome::LeaseExpired),
            error: Some("lease expired".into()),
            progress: None,
            log_tail: "x".into(),
            result: None,
        }],
    };
    check(&v);
    check(&JobList {
        jobs: vec![JobSummary {
            id: 7,
            group: "db".into(),
            kind: JobKind::Command,
            what: Some("/bin/echo".into()),
            connection: None,
            state: JobState::Failed,
            priority: 0,
            attempts_spent: 3,
            max_attempts: 3,
            labels: BTreeMap::from([("team".into(), "dba".into())]),
            not_before: None,
            cancel_requested: false,
            lease_agent: None,
            created_at: now,
            updated_at: now,
            finished_at: Some(now),
            exit_code: Some(2),
            error: Some("exit status 2".into()),
            schedule: Some("nightly".into()),
            nominal_at: Some(now),
            run_id: Some(3),
            step: Some("dump".into()),
        }],
        next_before: Some(7),
    });
    check(&JobBatch {
        jobs: vec![v.clone()],
    });
    // Provenance: absent fields stay off the wire (older clients see the
    // same JSON), present ones round-trip.
    let plain = serde_json::to_value(&v).expect("json");
    for field in ["schedule", "nominal_at", "run_id", "step"] {
        assert!(plain.get(field).is_none(), "{field} serialized when absent");
    }
    let made = JobView {
        schedule: Some("nightly".into()),
        nominal_at: Some(now),
        run_id: Some(12),
        step: Some("verify".into()),
        ..v
    };
    check(&made);
    let wire = serde_json::to_value(&made).expect("json");
    assert_eq!(wire["schedule"], "nightly");
    assert_eq!(wire["run_id"], 12);
    assert_eq!(wire["step"], "verify");
    assert_eq!(wire["nominal_at"], "2026-09-21T14:13:20.123Z");
}

#[test]
fn batch_submit_roundtrip() {
    let mut noop = submit();
    noop.spec = JobSpec::Noop(NoopSpec { sleep_ms: 1 });
    check(&JobBatchSubmit {
        jobs: vec![submit(), noop],
    });
    let b: JobBatchSubmit =
        serde_json::from_str(r#"{"jobs":[{"group":"g","spec":{"kind":"noop"}}]}"#).expect("parse");
    assert_eq!(b.jobs.len(), 1);
    assert_eq!(b.jobs[0].spec.kind(), JobKind::Noop);
    assert!(serde_json::from_str::<JobBatchSubmit>(r#"{"jobs":[],"x":1}"#).is_err());
}

#[test]
fn names_parse_back() {
    for k in JobKind::ALL {
        assert_eq!(JobKind::parse(k.as_str()), Some(k));
    }
    for s in JobState::ALL {
        assert_eq!(JobState::parse(s.as_str()), Some(s));
    }
    assert_eq!(
        AttemptOutcome::parse("lease_expired"),
        Some(AttemptOutcome::LeaseExpired)
    );
    assert_eq!(
        AttemptOutcome::parse("agent_restarted"),
        Some(AttemptOutcome::AgentRestarted)
    );
    assert_eq!(
        serde_json::to_value(AttemptOutcome::AgentRestarted).expect("json"),
        serde_json::json!("agent_restarted")
    );
}

#[test]
fn output_encodings_are_optional_on_the_wire() {
    // An older agent's result (no encoding fields) still parses.
    let old: JobResult = serde_json::from_str(r#"{"stdout":"x"}"#).expect("old result");
    assert_eq!(old.stdout_encoding, None);
    let r = JobResult {
        stdout: "/w==".into(),
        stdout_encoding: Some(OutputEncoding::Base64),
        ..JobResult::default()
    };
    let text = serde_json::to_string(&r).expect("json");
    assert_eq!(text, r#"{"stdout":"/w==","stdout_encoding":"base64"}"#);
    assert_eq!(serde_json::from_str::<JobResult>(&text).expect("parse"), r);
}

#[test]
fn an_out_param_needs_no_value() {
    let p: ProcedureParam =
        serde_json::from_str(r#"{"name": "total", "mode": "out"}"#).expect("ok");
    assert_eq!(p.value, None);
    assert_eq!(
        serde_json::to_string(&p).expect("ok"),
        r#"{"name":"total","mode":"out"}"#
    );
    let spec: SqlSpec =
        serde_json::from_str(r#"{"connection": "c", "sql": "select 1"}"#).expect("ok");
    assert!(spec.session.is_empty());
    assert!(
        !serde_json::to_string(&spec)
            .expect("ok")
            .contains("session")
    );
}
