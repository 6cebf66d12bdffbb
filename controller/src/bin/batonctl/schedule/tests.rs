use super::*;
use crate::client::UsageError;
use baton_proto::JobSpec;
use clap::Parser;

#[derive(Parser)]
struct T {
    #[command(subcommand)]
    c: ScheduleCmd,
}

fn parse(argv: &[&str]) -> Result<ScheduleCmd, clap::Error> {
    let mut full = vec!["schedule"];
    full.extend_from_slice(argv);
    T::try_parse_from(full).map(|t| t.c)
}

fn create(argv: &[&str]) -> Result<ScheduleSpec> {
    let mut full = vec!["create"];
    full.extend_from_slice(argv);
    match parse(&full).expect("parse") {
        ScheduleCmd::Create(a) => a.spec(),
        other => panic!("not create: {other:?}"),
    }
}

fn t(s: &str) -> DateTime<Utc> {
    parse_time(s).expect("time")
}

#[test]
fn create_from_flags_sets_every_field() {
    let spec = create(&[
        "--name",
        "nightly",
        "--group",
        "db",
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--overlap",
        "cancel_previous",
        "--catchup",
        "none",
        "--catchup-window",
        "2h",
        "--catchup-cap",
        "7",
        "--jitter",
        "1m 30s",
        "--between",
        "01:00-05:00",
        "--start-at",
        "2027-01-01T00:00:00Z",
        "--end-at",
        "2028-01-01T00:00:00+01:00",
        "--alert-after",
        "26h",
        "--paused",
        "--priority",
        "4",
        "--max-attempts",
        "2",
        "--timeout",
        "10m",
        "--label",
        "team=dba",
        "--program",
        "/usr/local/bin/backup",
        "--",
        "--full",
        "-v",
    ])
    .expect("spec");
    assert_eq!(spec.name, "nightly");
    assert_eq!(spec.group.as_deref(), Some("db"));
    assert_eq!(spec.cron.as_deref(), Some("30 2 * * *"));
    assert_eq!(spec.tz.as_deref(), Some("Europe/Berlin"));
    assert_eq!(spec.every_ms, None);
    assert_eq!(spec.overlap, Overlap::CancelPrevious);
    assert_eq!(spec.catchup, Catchup::None);
    assert_eq!(spec.catchup_window_ms, 7_200_000);
    assert_eq!(spec.catchup_cap, 7);
    assert_eq!(spec.jitter_ms, 90_000);
    assert_eq!(spec.between.as_deref(), Some("01:00-05:00"));
    assert_eq!(spec.start_at, Some(t("2027-01-01T00:00:00Z")));
    assert_eq!(spec.end_at, Some(t("2027-12-31T23:00:00Z")));
    assert_eq!(spec.alert_after_ms, Some(93_600_000));
    assert!(spec.paused);
    assert_eq!(spec.pipeline, None);
    let job = spec.job.expect("job");
    assert_eq!(job.priority, 4);
    assert_eq!(job.retry.max_attempts, 2);
    assert_eq!(job.timeout_ms, Some(600_000));
    assert_eq!(job.labels.get("team").map(String::as_str), Some("dba"));
    assert!(
        matches!(&job.spec, JobSpec::Command(c) if c.program == "/usr/local/bin/backup" && c.args == ["--full", "-v"])
    );

    let spec = create(&[
        "--name",
        "p",
        "--every",
        "15m",
        "--pipeline",
        "nightly-dump",
    ])
    .expect("p");
    assert_eq!(spec.every_ms, Some(900_000));
    assert_eq!(spec.pipeline.as_deref(), Some("nightly-dump"));
    assert_eq!(spec.job, None);
    assert_eq!(spec.group, None);
    assert_eq!(spec.overlap, Overlap::Skip);
    assert_eq!(spec.catchup, Catchup::Latest);
    assert_eq!(spec.catchup_window_ms, schedule::DEFAULT_CATCHUP_WINDOW_MS);
    assert!(!spec.paused);
}

#[test]
fn create_from_a_job_table_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("job.toml");
    std::fs::write(
        &path,
        "kind = \"dump\"\nconnection = \"shop\"\ndatabase = \"shop\"\npriority = 2\n",
    )
    .expect("write");
    let p = path.to_str().expect("utf-8");
    let spec = create(&[
        "--name",
        "d",
        "--group",
        "db",
        "--every",
        "1h",
        "--file",
        p,
        "--priority",
        "9",
    ])
    .expect("spec");
    let job = spec.job.expect("job");
    assert_eq!(job.priority, 9, "flags override the file");
    assert!(matches!(job.spec, JobSpec::Dump(_)));

    std::fs::write(&path, "kind = \"dump\"\nconection = \"shop\"\n").expect("write");
    let err = create(&["--name", "d", "--group", "db", "--every", "1h", "--file", p])
        .expect_err("bad file");
    assert!(err.is::<UsageError>());
    let msg = err.to_string();
    assert!(msg.contains("job.toml, line 2, key `conection`"), "{msg}");
}

#[test]
fn argument_mistakes_are_refused() {
    // clap: --cron and --every together; --file with a kind flag; a bad enum.
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--cron",
            "* * * * *",
            "--every",
            "1m"
        ])
        .is_err()
    );
    assert!(parse(&["next", "--cron", "* * * * *", "--every", "1m"]).is_err());
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--every",
            "1m",
            "--file",
            "j.toml",
            "--program",
            "p"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--every",
            "1m",
            "--file",
            "j.toml",
            "--pipeline",
            "p"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--every",
            "1m",
            "--overlap",
            "queue"
        ])
        .is_err()
    );
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--every",
            "1m",
            "--catchup",
            "some"
        ])
        .is_err()
    );
    assert!(parse(&["create", "--name", "a", "--every", "soon"]).is_err());
    assert!(
        parse(&[
            "create",
            "--name",
            "a",
            "--every",
            "1m",
            "--start-at",
            "tomorrow"
        ])
        .is_err()
    );
    assert!(parse(&["backfill", "a", "--from", "2027-01-01T00:00:00Z"]).is_err());
    // Ours: usage errors before any request.
    for argv in [
        &["--name", "a", "--group", "g", "--program", "p"][..],
        &["--name", "a", "--group", "g", "--every", "1m"][..],
        &["--name", "a", "--every", "1m", "--program", "p"][..],
        &[
            "--name",
            "a b",
            "--group",
            "g",
            "--every",
            "1m",
            "--program",
            "p",
        ][..],
        &[
            "--name",
            "a",
            "--every",
            "1m",
            "--pipeline",
            "p",
            "--priority",
            "3",
        ][..],
        &[
            "--name",
            "a",
            "--every",
            "1m",
            "--pipeline",
            "p",
            "--program",
            "x",
        ][..],
        &[
            "--name",
            "a",
            "--group",
            "g",
            "--every",
            "1m",
            "--kind",
            "noop",
            "--program",
            "x",
        ][..],
    ] {
        let err = create(argv).expect_err(&format!("{argv:?}"));
        assert!(err.is::<UsageError>(), "{argv:?}: {err}");
    }
}

fn next_args(argv: &[&str]) -> NextArgs {
    let mut full = vec!["next"];
    full.extend_from_slice(argv);
    match parse(&full).expect("parse") {
        ScheduleCmd::Next(a) => a,
        other => panic!("not next: {other:?}"),
    }
}

#[test]
fn next_is_a_schedule_or_a_preview_not_both() {
    let a = next_args(&["nightly", "--count", "3"]);
    assert_eq!(a.count, 3);
    assert_eq!(preview_spec(&a).expect("server"), None);

    let a = next_args(&[
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2027-03-27T00:00:00Z",
    ]);
    assert_eq!(a.count, 5);
    assert_eq!(a.from, Some(t("2027-03-27T00:00:00Z")));
    let spec = preview_spec(&a).expect("preview").expect("spec");
    assert_eq!(spec.cron.as_deref(), Some("30 2 * * *"));
    assert_eq!(spec.tz.as_deref(), Some("Europe/Berlin"));

    for argv in [
        &["nightly", "--cron", "* * * * *"][..],
        &["nightly", "--from", "2027-01-01T00:00:00Z"][..],
        &["--tz", "UTC"][..],
        &[][..],
    ] {
        let err = preview_spec(&next_args(argv)).expect_err(&format!("{argv:?}"));
        assert!(err.is::<UsageError>(), "{argv:?}: {err}");
    }
    assert!(parse(&["next", "x", "--count", "0"]).is_err());
}

#[test]
fn schedule_paths_are_encoded() {
    assert_eq!(path("nightly", "/next"), "/v1/schedules/nightly/next");
    assert_eq!(path("a/b", ""), "/v1/schedules/a%2Fb");
}
