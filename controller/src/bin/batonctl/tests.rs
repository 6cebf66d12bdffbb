use super::*;

#[test]
fn cli_globals_and_defaults() {
    let cli = Cli::try_parse_from(["batonctl", "list", "-o", "json", "--state", "queued"])
        .expect("parse");
    assert_eq!(cli.url, [format!("https://127.0.0.1:{DEFAULT_PORT}")]);
    assert_eq!(cli.output, Output::Json);
    let Command::List(a) = cli.command else {
        panic!("not list")
    };
    assert_eq!(a.state, Some(JobState::Queued));

    let cli = Cli::try_parse_from([
        "batonctl",
        "submit",
        "--url",
        "http://ctl:1",
        "--program",
        "/bin/echo",
        "--",
        "hello",
        "world",
    ])
    .expect("parse");
    assert_eq!(cli.url, ["http://ctl:1"]);
    let Command::Submit(s) = cli.command else {
        panic!("not submit")
    };
    assert_eq!(s.job.args, ["hello", "world"]);
    assert!(!s.wait);

    assert!(Cli::try_parse_from(["batonctl", "list", "--state", "done"]).is_err());
    assert!(Cli::try_parse_from(["batonctl", "get", "abc"]).is_err());
    assert!(Cli::try_parse_from(["batonctl", "agents", "--token", "secret"]).is_err());
    assert!(Cli::try_parse_from(["batonctl", "submit", "--wait-timeout", "5s"]).is_err());
}

#[test]
fn several_controller_urls_by_repeating_url_or_by_commas() {
    let cli = Cli::try_parse_from([
        "batonctl",
        "whoami",
        "--url",
        "http://a:1",
        "--url",
        "http://b:2",
    ])
    .expect("repeated");
    assert_eq!(cli.url, ["http://a:1", "http://b:2"]);
    let cli = Cli::try_parse_from(["batonctl", "whoami", "--url", "http://a:1,http://b:2"])
        .expect("commas");
    assert_eq!(cli.url, ["http://a:1", "http://b:2"]);
}

#[test]
fn identity_commands_parse_with_globals() {
    let cli = Cli::try_parse_from(["batonctl", "agents"]).expect("bare agents");
    assert!(matches!(
        cli.command,
        Command::Agents(AgentsArgs { command: None })
    ));
    let cli = Cli::try_parse_from(["batonctl", "agents", "revoke", "db1", "-o", "json"])
        .expect("agents revoke");
    assert_eq!(cli.output, Output::Json);
    assert!(matches!(
        cli.command,
        Command::Agents(AgentsArgs {
            command: Some(identity::AgentsCmd::Revoke { ref id })
        }) if id == "db1"
    ));
    let cli =
        Cli::try_parse_from(["batonctl", "whoami", "--url", "https://ctl:8420"]).expect("whoami");
    assert!(matches!(cli.command, Command::Whoami));
    assert_eq!(cli.url, ["https://ctl:8420"]);
    let cli = Cli::try_parse_from([
        "batonctl",
        "--ca-file",
        "/etc/baton/ca.pem",
        "enroll",
        "create",
        "--group",
        "nightly",
    ])
    .expect("enroll create");
    assert_eq!(cli.ca_file, Some(PathBuf::from("/etc/baton/ca.pem")));
    let Command::Enroll(EnrollCmd::Create(a)) = cli.command else {
        panic!("not enroll create")
    };
    assert_eq!(a.request().expires_in_ms, 86_400_000);
    let cli = Cli::try_parse_from(["batonctl", "audit", "--actor", "token:ci"]).expect("audit");
    let Command::Audit(a) = cli.command else {
        panic!("not audit")
    };
    assert_eq!(a.actor.as_deref(), Some("token:ci"));
    assert!(matches!(
        Cli::try_parse_from(["batonctl", "tokens", "list"])
            .expect("tokens list")
            .command,
        Command::Tokens(TokensCmd::List)
    ));
    // Secrets are never flags; subcommands are required where there is no default.
    assert!(Cli::try_parse_from(["batonctl", "tokens"]).is_err());
    assert!(Cli::try_parse_from(["batonctl", "enroll", "list", "--token", "x"]).is_err());
}

#[test]
fn token_file_is_trimmed_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cret-token\n").expect("write");
    chmod(&path, 0o600);
    assert_eq!(read_token(Some(&path)).expect("token"), "s3cret-token");
    std::fs::write(&path, "\n").expect("write");
    let err = read_token(Some(&path)).expect_err("empty");
    assert!(err.is::<UsageError>());
    std::fs::write(&path, "two words").expect("write");
    assert!(read_token(Some(&path)).is_err());
    let err = read_token(Some(&dir.path().join("missing"))).expect_err("missing");
    assert!(err.to_string().contains("cannot read token file"), "{err}");
}

#[test]
fn schedule_pipeline_and_apply_parse_with_globals() {
    let cli = Cli::try_parse_from([
        "batonctl",
        "schedule",
        "create",
        "--name",
        "n",
        "--group",
        "g",
        "--cron",
        "0 2 * * *",
        "--program",
        "/bin/echo",
        "-o",
        "json",
        "--",
        "hi",
    ])
    .expect("schedule create");
    assert_eq!(cli.output, Output::Json);
    let Command::Schedule(schedule::ScheduleCmd::Create(a)) = cli.command else {
        panic!("not schedule create")
    };
    assert_eq!(a.job.args, ["hi"]);
    assert!(matches!(
        Cli::try_parse_from(["batonctl", "schedule", "list"])
            .expect("list")
            .command,
        Command::Schedule(schedule::ScheduleCmd::List)
    ));
    assert!(Cli::try_parse_from(["batonctl", "schedule", "list", "extra"]).is_err());
    assert!(Cli::try_parse_from(["batonctl", "schedule", "show"]).is_err());
    let cli = Cli::try_parse_from([
        "batonctl",
        "apply",
        "-f",
        "/etc/baton/s.d",
        "--prune",
        "--dry-run",
    ])
    .expect("apply");
    let Command::Apply(a) = cli.command else {
        panic!("not apply")
    };
    assert!(a.prune && a.dry_run);
    assert_eq!(a.file, PathBuf::from("/etc/baton/s.d"));
    assert!(Cli::try_parse_from(["batonctl", "apply"]).is_err());
    assert!(matches!(
        Cli::try_parse_from(["batonctl", "pipeline", "cancel", "7", "-o", "json"])
            .expect("cancel")
            .command,
        Command::Pipeline(pipeline::PipelineCmd::Cancel { id: 7 })
    ));
}

#[tokio::test]
async fn offline_preview_needs_no_token_or_controller() {
    // No token is read for the preview (the token file does not exist) and the URL
    // points nowhere, so any request would fail.
    let cli = Cli::try_parse_from([
        "batonctl",
        "--url",
        "http://127.0.0.1:9",
        "--token-file",
        "/nonexistent/token",
        "schedule",
        "next",
        "--cron",
        "0 3 * * *",
        "--from",
        "2027-01-01T00:00:00Z",
        "--count",
        "1",
        "-o",
        "json",
    ])
    .expect("parse");
    let code = run(cli).await.expect("preview runs offline");
    assert_eq!(code, ExitCode::SUCCESS);
    // With a NAME it asks the controller, so the token is needed.
    let cli = Cli::try_parse_from([
        "batonctl",
        "--token-file",
        "/nonexistent/token",
        "schedule",
        "next",
        "nightly",
    ])
    .expect("parse");
    let err = run(cli).await.expect_err("token needed");
    assert!(err.is::<UsageError>(), "{err}");
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_token_file_open_to_group_or_others_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "s3cret-token\n").expect("write");
    for ok in [0o600, 0o400] {
        chmod(&path, ok);
        assert_eq!(read_token(Some(&path)).expect("private"), "s3cret-token");
    }
    chmod(&path, 0o644);
    let err = read_token(Some(&path)).expect_err("0644");
    assert!(err.is::<UsageError>());
    let msg = err.to_string();
    for part in ["mode 0644", &format!("chmod 600 {}", path.display())] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(!msg.contains("s3cret"), "{msg}");
}

#[test]
fn help_lists_every_variable_batonctl_reads() {
    use clap::CommandFactory;
    let help = Cli::command().render_help().to_string();
    for v in baton_proto::env::BATONCTL {
        assert!(help.contains(v.name), "{} missing from:\n{help}", v.name);
    }
    for other in ["BATON_AGENT_", "BATON_CONTROLLER_"] {
        assert!(!help.contains(other), "{help}");
    }
}

#[test]
fn wait_prints_a_blocked_reason_when_it_appears_or_changes() {
    let mut last = None;
    let why = |s: &str| Some(s.to_owned());
    assert_eq!(blocked_line(&mut last, None), None);
    assert_eq!(
        blocked_line(&mut last, why("no online agent serves group `g`")).as_deref(),
        Some("blocked: no online agent serves group `g`")
    );
    assert_eq!(
        blocked_line(&mut last, why("no online agent serves group `g`")),
        None
    );
    assert_eq!(
        blocked_line(
            &mut last,
            why("every agent of group `g` that could run it is drained (a1)")
        )
        .as_deref(),
        Some("blocked: every agent of group `g` that could run it is drained (a1)")
    );
    assert_eq!(blocked_line(&mut last, None), None);
    assert!(blocked_line(&mut last, why("no online agent serves group `g`")).is_some());
}
