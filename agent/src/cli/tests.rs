use super::*;

#[test]
fn flags_after_the_subcommand_and_repeated_groups() {
    let cli = Cli::try_parse_from([
        "baton-agent",
        "validate",
        "--config",
        "/etc/baton/agent.toml",
        "--group",
        "a",
        "--group",
        "b",
        "--slots",
        "4",
    ])
    .expect("parse");
    assert_eq!(cli.cmd(), Cmd::Validate);
    let flags = cli.flags();
    assert_eq!(flags.groups, ["a", "b"]);
    assert_eq!(flags.slots.as_deref(), Some("4"));
    let cli = Cli::try_parse_from(["baton-agent", "service", "install", "--config", "a.toml"])
        .expect("parse");
    assert_eq!(
        cli.cmd(),
        Cmd::Service {
            action: ServiceCmd::Install
        }
    );
    assert_eq!(cli.flags().config, Some(PathBuf::from("a.toml")));
    assert!(Cli::try_parse_from(["baton-agent", "service"]).is_err());
    assert_eq!(
        Cli::try_parse_from(["baton-agent"]).expect("parse").cmd(),
        Cmd::Run
    );
}

#[test]
fn no_token_flag() {
    assert!(Cli::try_parse_from(["baton-agent", "--token", "x"]).is_err());
    assert!(
        Cli::try_parse_from(["baton-agent", "run", "--token-file", "x"]).is_err(),
        "only `enroll` takes a token file"
    );
}

#[test]
fn enroll_takes_a_token_file() {
    let cli = Cli::try_parse_from(["baton-agent", "enroll", "--token-file", "-"]).expect("parse");
    assert_eq!(
        cli.cmd(),
        Cmd::Enroll {
            token_file: Some(PathBuf::from("-"))
        }
    );
    let cli = Cli::try_parse_from(["baton-agent", "--agent-id", "db1", "enroll"]).expect("parse");
    assert_eq!(cli.cmd(), Cmd::Enroll { token_file: None });
    assert_eq!(cli.flags().agent_id.as_deref(), Some("db1"));
}

#[test]
fn help_lists_every_variable_the_agent_reads() {
    use clap::CommandFactory;
    let help = Cli::command().render_help().to_string();
    for v in baton_proto::env::AGENT {
        assert!(help.contains(v.name), "{} missing from:\n{help}", v.name);
    }
    assert!(!help.contains("BATON_TOKEN_FILE"), "{help}");
}
