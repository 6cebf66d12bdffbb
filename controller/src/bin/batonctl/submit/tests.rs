use super::*;
use crate::client::UsageError;
use baton_proto::{ParamValue, ProcedureSpec};
use clap::Parser;

#[derive(Parser)]
struct T {
    #[command(flatten)]
    s: SubmitArgs,
}

fn args(argv: &[&str]) -> SubmitArgs {
    let mut full = vec!["submit"];
    full.extend_from_slice(argv);
    T::try_parse_from(full).expect("parse").s
}

fn build(argv: &[&str]) -> Result<JobSubmit> {
    args(argv).build(&mut std::io::empty())
}

#[test]
fn key_value_pairs() {
    assert_eq!(
        parse_key_value("team=dba"),
        Ok(("team".into(), "dba".into()))
    );
    assert_eq!(parse_key_value("URL=a=b"), Ok(("URL".into(), "a=b".into())));
    assert_eq!(parse_key_value("EMPTY="), Ok(("EMPTY".into(), "".into())));
    let err = parse_key_value("novalue").expect_err("no =");
    assert!(err.contains("KEY=VALUE"), "{err}");
    assert!(parse_key_value("=v").is_err());
    // clap turns the parser error into a usage error.
    assert!(T::try_parse_from(["submit", "--label", "oops"]).is_err());
    assert!(T::try_parse_from(["submit", "--program", "x", "--env", "A"]).is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration_ms("30s"), Ok(30_000));
    assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
    assert_eq!(parse_duration_ms("250ms"), Ok(250));
    assert!(parse_duration_ms("30").is_err());
    assert!(parse_duration_ms("soon").is_err());
}

#[test]
fn command_from_flags() {
    let job = build(&[
        "--program",
        "/bin/echo",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
        "--workdir",
        "/tmp",
        "--priority",
        "-5",
        "--max-attempts",
        "1",
        "--timeout",
        "30s",
        "--lease-ttl",
        "15s",
        "--label",
        "team=dba",
        "--",
        "hello",
        "--not-a-flag",
        "world",
    ])
    .expect("build");
    assert_eq!(job.group, "default");
    assert_eq!(job.priority, -5);
    assert_eq!(job.retry.max_attempts, 1);
    assert_eq!(
        job.retry.initial_backoff_ms,
        RetryPolicy::default().initial_backoff_ms
    );
    assert_eq!(job.timeout_ms, Some(30_000));
    assert_eq!(job.lease_ttl_ms, Some(15_000));
    assert_eq!(job.labels.get("team").map(String::as_str), Some("dba"));
    let JobSpec::Command(c) = job.spec else {
        panic!("not a command: {:?}", job.spec)
    };
    assert_eq!(c.program, "/bin/echo");
    assert_eq!(c.args, ["hello", "--not-a-flag", "world"]);
    assert_eq!(c.env.get("B").map(String::as_str), Some("x=y"));
    assert_eq!(c.working_dir.as_deref(), Some("/tmp"));
}

#[test]
fn noop_sql_dump_from_flags() {
    let job = build(&["--kind", "noop", "--sleep", "2s", "--group", "drill"]).expect("noop");
    assert_eq!(job.group, "drill");
    assert_eq!(job.spec, JobSpec::Noop(NoopSpec { sleep_ms: 2000 }));
    assert_eq!(job.timeout_ms, None);

    let job = build(&[
        "--kind",
        "sql",
        "--connection",
        "main",
        "--sql",
        "select 1",
        "--exactly-once",
    ])
    .expect("sql");
    assert_eq!(
        job.spec,
        JobSpec::Sql(SqlSpec {
            connection: "main".into(),
            sql: "select 1".into(),
            exactly_once: true,
            session: Default::default(),
        })
    );

    let job = build(&[
        "--kind",
        "dump",
        "--connection",
        "main",
        "--database",
        "shop",
    ])
    .expect("dump");
    assert_eq!(job.spec.connection(), Some("main"));
}

#[test]
fn flags_that_do_not_fit_are_usage_errors() {
    for argv in [
        &["--kind", "noop", "--program", "/bin/true"][..],
        &["--kind", "noop", "--", "arg"][..],
        &["--program", "/bin/true", "--sleep", "1s"][..],
        &["--kind", "sql", "--connection", "main"][..],
        &[
            "--kind",
            "dump",
            "--connection",
            "c",
            "--sql",
            "x",
            "--database",
            "d",
        ][..],
        &["--kind", "procedure"][..],
        &["--kind", "export", "--connection", "main"][..],
        &[][..],
        &["--kind", "noop", "--label", "a=1", "--label", "a=2"][..],
        &["--kind", "noop", "--max-attempts", "0"][..],
    ] {
        let err = build(argv).expect_err(&format!("{argv:?}"));
        assert!(err.is::<UsageError>(), "{argv:?}: {err}");
    }
    assert!(T::try_parse_from(["submit", "--kind", "rm"]).is_err());
    assert!(T::try_parse_from(["submit", "-f", "x.json", "--program", "p"]).is_err());
    assert!(T::try_parse_from(["submit", "--program", "p", "positional"]).is_err());
}

#[test]
fn toml_job_file_with_flag_overrides() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.toml");
    std::fs::write(
        &path,
        r#"
group = "db"
priority = 5
timeout_ms = 60000

[retry]
max_attempts = 4

[spec]
kind = "procedure"
connection = "main"
procedure = "app.nightly"
params = [{ name = "n", value = { type = "int", value = 3 } }]

[labels]
team = "dba"
"#,
    )
    .expect("write");
    let path_s = path.to_str().expect("utf-8 path");
    let job = build(&["-f", path_s, "--priority", "9", "--label", "env=prod"]).expect("toml");
    assert_eq!(job.group, "db");
    assert_eq!(job.priority, 9);
    assert_eq!(job.timeout_ms, Some(60_000));
    assert_eq!(job.retry.max_attempts, 4);
    assert_eq!(job.labels.len(), 2);
    let JobSpec::Procedure(ProcedureSpec {
        procedure, params, ..
    }) = &job.spec
    else {
        panic!("not a procedure: {:?}", job.spec)
    };
    assert_eq!(procedure, "app.nightly");
    assert_eq!(params[0].value, Some(ParamValue::Int(3)));

    std::fs::write(
        &path,
        "group = \"db\"\n[spec]\nkind = \"command\"\nprogramme = \"x\"\n",
    )
    .expect("write");
    let err = build(&["-f", path_s]).expect_err("bad toml");
    assert!(err.is::<UsageError>());
    let msg = err.to_string();
    assert!(msg.contains("job.toml"), "{msg}");
    assert!(msg.contains("line"), "{msg}");
}

#[test]
fn json_job_file_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.JSON");
    let text = r#"{"group":"g","spec":{"kind":"command","program":"/bin/echo","args":["hi"]}}"#;
    std::fs::write(&path, text).expect("write");
    let job = read_job_file(&path, &mut std::io::empty()).expect("json");
    assert_eq!(job.group, "g");
    assert_eq!(job.retry, RetryPolicy::default());
    assert!(matches!(&job.spec, JobSpec::Command(c) if c.args == ["hi"]));

    let from_stdin = read_job_file(Path::new("-"), &mut text.as_bytes()).expect("stdin json");
    assert_eq!(from_stdin, job);

    let err = read_job_file(
        Path::new("-"),
        &mut r#"{"group":"g","spec":{"kind":"noop","sleep_ms":"x"}}"#.as_bytes(),
    )
    .expect_err("bad json");
    assert!(err.to_string().contains("spec"), "{err}");

    let yaml = dir.path().join("job.yaml");
    std::fs::write(&yaml, "group: g").expect("write");
    let err = read_job_file(&yaml, &mut std::io::empty()).expect_err("yaml");
    assert!(err.to_string().contains("unknown extension"), "{err}");
}

#[test]
fn job_file_errors_name_the_field_inside_the_spec() {
    let json = r#"{"group":"g","spec":{"kind":"procedure","connection":"c","procedure":"p",
        "params":[{"name":"a","value":{"type":"int","value":1}},{"name":"o","mode":"out"},
        {"name":"d","value":{"type":"date"}}]}}"#;
    let err = parse_job_json("job.json", json).expect_err("date without value");
    let msg = err.to_string();
    assert!(msg.contains("job.json: spec.params[2].value: "), "{msg}");
    let ok = json.replace(
        r#"{"type":"date"}"#,
        r#"{"type":"date","value":"2026-11-26"}"#,
    );
    let job = parse_job_json("job.json", &ok).expect("an out param without a value");
    let JobSpec::Procedure(p) = &job.spec else {
        panic!("not a procedure")
    };
    assert_eq!(p.params[1].value, None);

    let toml = "group = \"g\"\n[spec]\nkind = \"procedure\"\nconnection = \"c\"\n\
        procedure = \"p\"\nparams = [{ name = \"o\", mode = \"out\" }, \
        { name = \"n\", value = { type = \"int\", value = \"x\" } }]\n";
    let err = parse_job_toml("job.toml", toml).expect_err("a string as int");
    let msg = err.to_string();
    assert!(msg.contains("key `spec.params[1].value.value`"), "{msg}");
}

#[test]
fn session_settings_from_flags_and_over_a_file() {
    let job = build(&[
        "--kind",
        "sql",
        "--connection",
        "main",
        "--sql",
        "select now()",
        "--session",
        "timestamp=2026-11-26T00:00:00Z",
        "--session",
        "time_zone=+00:00",
    ])
    .expect("sql");
    let session = job.spec.session().expect("sql has a session");
    assert_eq!(
        session.get("time_zone"),
        Some(&SessionValue::Text("+00:00".into()))
    );
    assert_eq!(session.len(), 2);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.json");
    std::fs::write(
        &path,
        r#"{"group":"g","spec":{"kind":"procedure","connection":"c","procedure":"p",
            "session":{"time_zone":"+01:00","lock_wait_timeout":5}}}"#,
    )
    .expect("write");
    let path_s = path.to_str().expect("utf-8 path");
    let job = build(&["-f", path_s, "--session", "time_zone=+00:00"]).expect("file");
    let session = job.spec.session().expect("procedure has a session");
    assert_eq!(
        session.get("time_zone"),
        Some(&SessionValue::Text("+00:00".into()))
    );
    assert_eq!(
        session.get("lock_wait_timeout"),
        Some(&SessionValue::Int(5))
    );

    for argv in [
        &["--kind", "noop", "--session", "time_zone=+00:00"][..],
        &[
            "--kind",
            "sql",
            "--connection",
            "c",
            "--sql",
            "x",
            "--session",
            "a=1",
            "--session",
            "a=2",
        ][..],
    ] {
        let err = build(argv).expect_err(&format!("{argv:?}"));
        assert!(err.is::<UsageError>(), "{argv:?}: {err}");
    }
}

#[test]
fn allow_unplaced_from_the_flag_or_the_file() {
    let plain = [
        "--kind",
        "sql",
        "--connection",
        "nosuch",
        "--sql",
        "SELECT 1",
    ];
    assert!(!build(&plain).expect("sql").allow_unplaced);
    let mut opted = plain.to_vec();
    opted.push("--allow-unplaced");
    assert!(build(&opted).expect("sql").allow_unplaced);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.json");
    std::fs::write(
        &path,
        r#"{"group":"g","spec":{"kind":"noop"},"allow_unplaced":true}"#,
    )
    .expect("write");
    let path_s = path.to_str().expect("utf-8");
    assert!(build(&["-f", path_s]).expect("file").allow_unplaced);
}
