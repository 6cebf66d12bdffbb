use super::*;
use baton_proto::JobSpec;
use serde_json::{Value, json};

const LIMITS: JobLimits = JobLimits {
    default_lease_ttl_ms: 30_000,
    max_spec_bytes: 256 << 10,
};

/// A pipeline from JSON (steps as `{"name", "job": {"spec": …}, …}`).
fn pipeline(steps: Value) -> PipelineSpec {
    serde_json::from_value(json!({"name": "nightly", "group": "db", "steps": steps}))
        .expect("pipeline JSON")
}

fn cmd(args: &[&str]) -> Value {
    json!({"spec": {"kind": "command", "program": "gzip", "args": args}})
}

fn dump() -> Value {
    json!({"spec": {"kind": "dump", "connection": "main", "database": "shop"}})
}

fn check(mode: &str) -> Value {
    json!({"spec": {"kind": "procedure", "connection": "main", "procedure": "app.check",
    "params": [
        {"name": "p_db", "mode": "in", "value": {"type": "string", "value": "shop"}},
        {"name": "p_count", "mode": mode, "value": {"type": "int", "value": 0}}
    ]}})
}

/// The refusal of `spec`, as (field, message).
fn refused(spec: &PipelineSpec) -> (String, String) {
    let e = validate(spec, &LIMITS).expect_err("refused");
    (e.field, e.message)
}

/// The nightly example: dump, verify the file on the dump's host, prune.
fn nightly() -> PipelineSpec {
    pipeline(json!([
        {"name": "dump", "job": dump()},
        {"name": "verify", "depends_on": ["dump"], "same_agent_as": "dump",
         "job": cmd(&["-t", "${steps.dump.result.file}"])},
        {"name": "prune", "depends_on": ["verify"], "same_agent_as": "dump",
         "job": cmd(&["--older-than=7d", "${steps.dump.data.connection}"])},
        {"name": "alert", "depends_on": ["dump", "verify"], "on": "failure",
         "job": cmd(&["dump ${steps.dump.job_id} on ${steps.dump.agent} failed"])},
    ]))
}

#[test]
fn a_sound_pipeline_passes() {
    assert_eq!(validate(&nightly(), &LIMITS), Ok(()));
}

#[test]
fn names_groups_timeout_and_step_count() {
    let mut p = nightly();
    p.name = "bad name".into();
    assert_eq!(refused(&p).0, "name");
    let mut p = nightly();
    p.group = String::new();
    assert_eq!(refused(&p).0, "group");
    let mut p = nightly();
    p.timeout_ms = Some(0);
    assert_eq!(refused(&p).0, "timeout_ms");
    let mut p = nightly();
    p.steps.clear();
    assert_eq!(refused(&p).0, "steps");
    let mut p = nightly();
    let extra = p.steps[0].clone();
    p.steps = (0..=MAX_STEPS)
        .map(|i| baton_proto::pipeline::StepSpec {
            name: format!("s{i}"),
            ..extra.clone()
        })
        .collect();
    assert_eq!(refused(&p).0, "steps");
    let mut p = nightly();
    p.steps[1].group = Some("no spaces".into());
    assert_eq!(refused(&p).0, "steps[1].group");
}

#[test]
fn step_names_are_valid_and_unique() {
    let mut p = nightly();
    p.steps[2].name = "dump".into();
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[2].name");
    assert!(message.contains("steps[0]"), "{message}");
    let mut p = nightly();
    p.steps[1].name = "a/b".into();
    assert_eq!(refused(&p).0, "steps[1].name");
}

#[test]
fn unknown_self_and_repeated_dependencies_name_the_entry() {
    let mut p = nightly();
    p.steps[3].depends_on[1] = "verfy".into();
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[3].depends_on[1]");
    assert!(message.contains("unknown step \"verfy\""), "{message}");

    let mut p = nightly();
    p.steps[1].depends_on.push("verify".into());
    assert_eq!(refused(&p).0, "steps[1].depends_on[1]");

    let mut p = nightly();
    p.steps[3].depends_on.push("dump".into());
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[3].depends_on[2]");
    assert!(message.contains("twice"), "{message}");
}

#[test]
fn a_cycle_is_named() {
    let p = pipeline(json!([
        {"name": "a", "job": dump()},
        {"name": "b", "depends_on": ["a", "d"], "job": cmd(&[])},
        {"name": "c", "depends_on": ["b"], "job": cmd(&[])},
        {"name": "d", "depends_on": ["c"], "job": cmd(&[])},
    ]));
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[1].depends_on");
    assert_eq!(message, "a cycle: b -> d -> c -> b");
}

#[test]
fn a_failure_handler_needs_dependencies() {
    let p = pipeline(json!([{"name": "alert", "on": "failure", "job": cmd(&[])}]));
    assert_eq!(refused(&p).0, "steps[0].on");
}

#[test]
fn same_agent_as_must_be_an_ancestor() {
    // A sibling: its agent is not known when this step is queued.
    let p = pipeline(json!([
        {"name": "dump", "job": dump()},
        {"name": "copy", "depends_on": ["dump"], "job": cmd(&[])},
        {"name": "check", "depends_on": ["dump"], "same_agent_as": "copy", "job": cmd(&[])},
    ]));
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[2].same_agent_as");
    assert!(message.contains("not an ancestor"), "{message}");

    let mut p = nightly();
    p.steps[1].same_agent_as = Some("dumb".into());
    assert_eq!(refused(&p).0, "steps[1].same_agent_as");

    // Through another step is fine: prune -> verify -> dump.
    assert_eq!(validate(&nightly(), &LIMITS), Ok(()));
}

#[test]
fn a_reference_to_an_unknown_or_later_step_is_refused() {
    let mut p = nightly();
    p.steps[1].job = serde_json::from_value(cmd(&["x", "${steps.dumb.result.file}"])).expect("t");
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[1].job.spec.args[1]");
    assert!(
        message.contains("${steps.dumb.result.file}") && message.contains("unknown step"),
        "{message}"
    );

    let mut p = nightly();
    p.steps[1].job = serde_json::from_value(cmd(&["${steps.prune.result.stdout}"])).expect("t");
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[1].job.spec.args[0]");
    assert!(message.contains("not an ancestor"), "{message}");

    let mut p = nightly();
    p.steps[1].job = serde_json::from_value(cmd(&["${steps.verify.job_id}"])).expect("t");
    assert!(refused(&p).1.contains("its own outputs"));

    // A dotted name is fine, unless a segment looks like the start of a path.
    let p = pipeline(json!([
        {"name": "db.nightly", "job": dump()},
        {"name": "x.data", "job": dump()},
        {"name": "down", "depends_on": ["db.nightly", "x.data"],
         "job": cmd(&["${steps.db.nightly.result.file}"])},
    ]));
    assert_eq!(validate(&p, &LIMITS), Ok(()));
    let mut p = p;
    p.steps[2].job = serde_json::from_value(cmd(&["${steps.x.data.result.file}"])).expect("t");
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[2].job.spec.args[0]");
    assert!(
        message.contains("\"x.data\" cannot be referenced"),
        "{message}"
    );
}

/// Step 1 (after a step of `job`) referring to `reference` in its first arg.
fn referring(job: Value, reference: &str) -> PipelineSpec {
    pipeline(json!([
        {"name": "up", "job": job},
        {"name": "down", "depends_on": ["up"], "job": cmd(&[reference])},
    ]))
}

#[test]
fn fields_are_checked_by_the_referenced_steps_kind() {
    let ok = [
        (dump(), "${steps.up.result.manifest}"),
        (dump(), "${steps.up.data.sha256}"),
        (dump(), "${steps.up.data.binlog.gtid}"),
        (cmd(&[]), "${steps.up.result.exit_code}"),
        (cmd(&[]), "${steps.up.result.stderr}"),
        (check("out"), "${steps.up.data.out.p_count}"),
        (check("in_out"), "${steps.up.data.out.p_count}"),
        (check("in"), "${steps.up.data.return_status}"),
        (check("in"), "${steps.up.data.result_sets.0.rows.0.0}"),
        (
            json!({"spec": {"kind": "sql", "connection": "c", "sql": "DELETE FROM t"}}),
            "${steps.up.data.affected_rows}",
        ),
        (json!({"spec": {"kind": "noop"}}), "${steps.up.agent}"),
    ];
    for (job, r) in ok {
        assert_eq!(
            validate(&referring(job.clone(), r), &LIMITS),
            Ok(()),
            "{job} {r}"
        );
    }
    let bad = [
        (dump(), "${steps.up.data.nope}", "no field \"nope\""),
        (
            dump(),
            "${steps.up.result.stdout}",
            "no exit code or output",
        ),
        (cmd(&[]), "${steps.up.result.file}", "a dump's"),
        (cmd(&[]), "${steps.up.data.x}", "has no data"),
        (
            json!({"spec": {"kind": "noop"}}),
            "${steps.up.data.x}",
            "has no data",
        ),
        (check("out"), "${steps.up.data.out.P_COUNT}", "no parameter"),
        (check("out"), "${steps.up.data.out}", "one parameter name"),
        (check("out"), "${steps.up.data.rows}", "no field"),
        (
            json!({"spec": {"kind": "sql", "connection": "c", "sql": "SELECT 1"}}),
            "${steps.up.data.out.x}",
            "no field",
        ),
    ];
    for (job, r, why) in bad {
        let (field, message) = refused(&referring(job.clone(), r));
        assert_eq!(field, "steps[1].job.spec.args[0]", "{r}");
        assert!(message.contains(why), "{r}: {message}");
    }
}

#[test]
fn an_in_only_parameter_returns_nothing() {
    let (field, message) = refused(&referring(check("in"), "${steps.up.data.out.p_count}"));
    assert_eq!(field, "steps[1].job.spec.args[0]");
    assert!(message.contains("IN only"), "{message}");
}

#[test]
fn references_in_sql_text_and_program_are_refused() {
    let p = pipeline(json!([
        {"name": "up", "job": check("out")},
        {"name": "down", "depends_on": ["up"], "job": {"spec": {"kind": "sql",
            "connection": "main", "sql": "DELETE FROM t WHERE n < ${steps.up.data.out.p_count}"}}},
    ]));
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[1].job.spec.sql");
    assert_eq!(message, refs::SQL);

    let p = pipeline(json!([
        {"name": "up", "job": cmd(&[])},
        {"name": "down", "depends_on": ["up"], "job": {"spec": {"kind": "command",
            "program": "${steps.up.result.stdout}"}}},
    ]));
    let (field, message) = refused(&p);
    assert_eq!(field, "steps[1].job.spec.program");
    assert!(message.contains("allow-list"), "{message}");

    let p = pipeline(json!([
        {"name": "up", "job": cmd(&[])},
        {"name": "down", "depends_on": ["up"], "job": {"spec": {"kind": "dump",
            "connection": "${steps.up.result.stdout}", "database": "shop"}}},
    ]));
    assert_eq!(refused(&p).0, "steps[1].job.spec.connection");
}

#[test]
fn references_stand_in_templated_fields_of_every_kind() {
    let p = pipeline(json!([
        {"name": "up", "job": dump()},
        {"name": "env", "depends_on": ["up"], "job": {"spec": {"kind": "command",
            "program": "cp", "env": {"SRC": "${steps.up.result.file}"},
            "working_dir": "${steps.up.data.path}/.."}}},
        {"name": "param", "depends_on": ["up"], "job": {"spec": {"kind": "procedure",
            "connection": "main", "procedure": "app.record", "params": [
                {"name": "p_file", "value": {"type": "string", "value": "${steps.up.result.file}"}},
                {"name": "p_at", "value": {"type": "date_time", "value": "${steps.up.data.ended_at}"}}
            ]}}},
        {"name": "again", "depends_on": ["up"], "job": {"spec": {"kind": "dump",
            "connection": "main", "database": "${steps.up.data.database}"}}},
    ]));
    assert_eq!(validate(&p, &LIMITS), Ok(()));
}

#[test]
fn malformed_references_name_the_field() {
    for (text, why) in [
        ("${steps.up.result.file", "unclosed"),
        ("${HOME}", "${steps.<step>.<path>}"),
        ("${steps.up}", "no path"),
        ("${steps.up.result.bogus}", "unknown path"),
        ("${steps.up.data}", "unknown path"),
        ("${steps. up.agent}", "not a name"),
        ("${steps.up..agent}", "not a name"),
    ] {
        let (field, message) = refused(&referring(dump(), text));
        assert_eq!(field, "steps[1].job.spec.args[0]", "{text}");
        assert!(message.contains(why), "{text}: {message}");
    }
    // Escaped, or not a `${` at all: plain text.
    for text in ["$${HOME}", "cost: $5", "$$", "a$"] {
        assert_eq!(
            validate(&referring(dump(), text), &LIMITS),
            Ok(()),
            "{text}"
        );
    }
}

#[test]
fn each_job_is_checked_as_a_submission_under_its_step() {
    let mut p = nightly();
    p.steps[2].job.retry.max_attempts = 0;
    assert_eq!(refused(&p).0, "steps[2].job.retry.max_attempts");
    let p = referring(
        json!({"spec": {"kind": "dump", "connection": "main", "database": "a b"}}),
        "x",
    );
    assert_eq!(refused(&p).0, "steps[0].job.spec.database");
    let p = referring(dump(), "x");
    let mut big = p.clone();
    big.steps[1].job = serde_json::from_value(cmd(&[&"x".repeat(300 << 10)])).expect("t");
    assert_eq!(refused(&big).0, "steps[1].job.spec.args");
}

// ---- resolution ----

fn dump_output() -> StepOutput {
    StepOutput {
        job_id: 41,
        agent: Some("db-1".into()),
        result: Some(JobResult {
            data: Some(json!({
                "path": "/var/lib/baton/dumps/main/shop-20270328T010000Z-41.sql.zst",
                "manifest_path": "/var/lib/baton/dumps/main/shop-20270328T010000Z-41.manifest.json",
                "database": "shop", "compressed_bytes": 1234, "verify": null,
                "binlog": {"gtid": "0-1-42"},
            })),
            ..JobResult::default()
        }),
    }
}

fn check_output() -> StepOutput {
    StepOutput {
        job_id: 42,
        agent: Some("db-2".into()),
        result: Some(JobResult {
            data: Some(json!({"out": {"p_count": 17, "p_ok": true, "p_name": "x"},
                "affected_rows": 3, "result_sets": []})),
            ..JobResult::default()
        }),
    }
}

fn outputs(name: &str) -> Option<StepOutput> {
    match name {
        "dump" => Some(dump_output()),
        "check" => Some(check_output()),
        _ => None,
    }
}

fn template(v: Value) -> JobTemplate {
    serde_json::from_value(v).expect("template")
}

fn args_of(t: &JobTemplate) -> Vec<String> {
    match &t.spec {
        JobSpec::Command(c) => c.args.clone(),
        other => panic!("not a command: {other:?}"),
    }
}

#[test]
fn a_dump_file_reaches_a_command_argument() {
    let t = template(cmd(&[
        "-t",
        "${steps.dump.result.file}",
        "--manifest=${steps.dump.result.manifest}",
        "${steps.dump.data.compressed_bytes} bytes by ${steps.dump.agent} (job ${steps.dump.job_id})",
        "${steps.dump.data.binlog}",
    ]));
    let got = resolve(&t, &outputs).expect("resolved");
    assert_eq!(
        args_of(&got),
        [
            "-t",
            "/var/lib/baton/dumps/main/shop-20270328T010000Z-41.sql.zst",
            "--manifest=/var/lib/baton/dumps/main/shop-20270328T010000Z-41.manifest.json",
            "1234 bytes by db-1 (job 41)",
            r#"{"gtid":"0-1-42"}"#,
        ]
    );
    assert_eq!(got.retry, t.retry, "only the spec's strings change");
}

#[test]
fn an_out_parameter_reaches_a_procedure_parameter() {
    let t = template(json!({"spec": {"kind": "procedure", "connection": "main",
    "procedure": "app.record", "params": [
        {"name": "n", "value": {"type": "string", "value": "${steps.check.data.out.p_count}"}},
        {"name": "ok", "value": {"type": "string", "value": "${steps.check.data.out.p_ok}"}},
        {"name": "r", "mode": "out", "value": {"type": "string", "value": "${steps.check.job_id}"}},
        {"name": "k", "value": {"type": "int", "value": 7}}
    ]}}));
    let got = resolve(&t, &outputs).expect("resolved");
    let JobSpec::Procedure(p) = got.spec else {
        panic!("kind changed")
    };
    let values: Vec<_> = p.params.into_iter().filter_map(|q| q.value).collect();
    use baton_proto::ParamValue as V;
    assert_eq!(
        values,
        [
            V::String("17".into()),
            V::String("true".into()),
            V::String("${steps.check.job_id}".into()), // an OUT value is a type hint, left alone
            V::Int(7),
        ]
    );
}

#[test]
fn escapes_become_literal_and_plain_fields_stay() {
    let t = template(json!({"spec": {"kind": "command", "program": "sh",
        "args": ["-c", "echo $${HOME} costs $5 $${steps.dump.agent}"],
        "env": {"DB": "${steps.dump.data.database}"}, "working_dir": "/tmp"}}));
    let got = resolve(&t, &outputs).expect("resolved");
    let JobSpec::Command(c) = got.spec else {
        panic!("kind changed")
    };
    assert_eq!(c.args[1], "echo ${HOME} costs $5 ${steps.dump.agent}");
    assert_eq!(c.env["DB"], "shop");
    assert_eq!(c.working_dir.as_deref(), Some("/tmp"));
}

#[test]
fn a_missing_or_null_value_is_an_error_naming_the_reference() {
    for (arg, why) in [
        ("${steps.dump.data.verify}", "data.verify is null"),
        ("${steps.dump.data.sha256}", "data.sha256 is missing"),
        (
            "${steps.dump.data.binlog.file}",
            "data.binlog.file is missing",
        ),
        ("${steps.gone.agent}", "step gone has no job"),
        ("${steps.check.result.exit_code}", "no exit code"),
    ] {
        let e = resolve(&template(cmd(&["a", arg])), &outputs).expect_err(arg);
        match &e {
            Error::Unresolved {
                field,
                reference,
                reason,
            } => {
                assert_eq!(field, "spec.args[1]");
                assert_eq!(reference, arg);
                assert!(reason.contains(why), "{arg}: {reason}");
            }
            other => panic!("{arg}: {other:?}"),
        }
        assert!(e.to_string().contains(arg), "{e}");
    }
}

#[test]
fn output_is_trimmed_and_must_be_whole_text() {
    let with = |r: JobResult| {
        move |_: &str| {
            Some(StepOutput {
                job_id: 1,
                agent: None,
                result: Some(r.clone()),
            })
        }
    };
    let t = template(cmd(&[
        "${steps.x.result.stdout}",
        "${steps.x.result.exit_code}",
    ]));
    let ok = JobResult {
        stdout: "/backups/a.sql.zst\n".into(),
        exit_code: Some(0),
        ..JobResult::default()
    };
    let got = resolve(&t, &with(ok.clone())).expect("resolved");
    assert_eq!(args_of(&got), ["/backups/a.sql.zst", "0"]);
    let cut = JobResult {
        truncated: true,
        ..ok.clone()
    };
    assert!(resolve(&t, &with(cut)).is_err());
    let binary = JobResult {
        stdout_encoding: Some(baton_proto::OutputEncoding::Base64),
        ..ok
    };
    let e = resolve(&t, &with(binary)).expect_err("base64");
    assert!(e.to_string().contains("not UTF-8"), "{e}");
    let t = template(cmd(&["${steps.x.agent}"]));
    let e = resolve(&t, &|_: &str| {
        Some(StepOutput {
            job_id: 1,
            agent: None,
            result: None,
        })
    })
    .expect_err("no agent");
    assert!(e.to_string().contains("has no agent"), "{e}");
}

#[test]
fn submission_resolves_picks_the_group_and_checks_again() {
    let p = pipeline(json!([
        {"name": "dump", "job": dump()},
        {"name": "again", "depends_on": ["dump"], "group": "copy",
         "job": {"spec": {"kind": "dump", "connection": "main",
            "database": "${steps.dump.data.path}"}}},
        {"name": "verify", "depends_on": ["dump"], "job": cmd(&["${steps.dump.result.file}"])},
    ]));
    assert_eq!(validate(&p, &LIMITS), Ok(()));
    let (job, ttl) = submission(&p, 2, None, &outputs, &LIMITS).expect("verify");
    assert_eq!(job.group, "db");
    assert_eq!(ttl, 30_000);
    assert_eq!(args_of(&JobTemplate::from(job))[0], dump_output_path());
    let (job, _) = submission(&p, 2, Some("night"), &outputs, &LIMITS).expect("verify");
    assert_eq!(
        job.group, "night",
        "the schedule's group beats the pipeline's"
    );
    // The resolved database is a path, not a name: refused after resolution.
    let e = submission(&p, 1, Some("night"), &outputs, &LIMITS).expect_err("path");
    assert!(
        matches!(&e, Error::Refused { field, .. } if field == "spec.database"),
        "{e:?}"
    );
    assert_eq!(
        submission(&p, 9, None, &outputs, &LIMITS),
        Err(Error::NoStep(9))
    );
    assert_eq!(step_group(&p, 1, Some("night")), Some("copy"));
}

fn dump_output_path() -> String {
    "/var/lib/baton/dumps/main/shop-20270328T010000Z-41.sql.zst".into()
}

fn restore(file: &str, database: &str) -> Value {
    json!({"spec": {"kind": "restore", "connection": "main",
        "source": {"file": file}, "database": database}})
}

#[test]
fn a_restore_step_takes_the_dump_file_and_is_checked() {
    let p = pipeline(json!([
        {"name": "dump", "job": dump()},
        {"name": "restore", "depends_on": ["dump"], "same_agent_as": "dump",
         "job": restore("${steps.dump.result.file}", "copy_${steps.dump.job_id}")},
        {"name": "report", "depends_on": ["restore"],
         "job": cmd(&["${steps.restore.data.tables_compared}"])},
    ]));
    assert_eq!(validate(&p, &LIMITS), Ok(()));
    let got = resolve(
        &template(restore(
            "${steps.dump.result.file}",
            "copy_${steps.dump.job_id}",
        )),
        &outputs,
    )
    .expect("resolved");
    let JobSpec::Restore(r) = &got.spec else {
        panic!("not a restore: {got:?}")
    };
    assert_eq!(r.source.file.as_deref(), Some(dump_output_path().as_str()));
    assert_eq!(r.database, "copy_41");
    // A restore's data is checked by its fields; its target by the submission checks.
    let mut bad = p.clone();
    bad.steps[2].job = serde_json::from_value(cmd(&["${steps.restore.data.nope}"])).expect("t");
    assert!(refused(&bad).1.contains("a restore's data has no field"));
    let mut bad = p.clone();
    bad.steps[1].job =
        serde_json::from_value(restore("${steps.dump.result.file}", "mysql")).expect("t");
    assert_eq!(refused(&bad).0, "steps[1].job.spec.database");
    let mut bad = p;
    bad.steps[1].job =
        serde_json::from_value(restore("/x/${steps.dump.result.file}", "a")).expect("t");
    bad.steps[1].job.spec = match bad.steps[1].job.spec.clone() {
        JobSpec::Restore(mut r) => {
            r.connection = "${steps.dump.agent}".into();
            JobSpec::Restore(r)
        }
        other => other,
    };
    assert_eq!(refused(&bad).0, "steps[1].job.spec.connection");
}
