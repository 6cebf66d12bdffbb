use super::*;
use clap::Parser;

#[derive(Debug, Parser)]
enum T {
    #[command(subcommand)]
    Enroll(EnrollCmd),
    #[command(subcommand)]
    Tokens(TokensCmd),
    Agents(AgentsArgs),
    Audit(AuditArgs),
}

fn parse(argv: &[&str]) -> Result<T, clap::Error> {
    T::try_parse_from(std::iter::once("t").chain(argv.iter().copied()))
}

#[test]
fn enroll_create_defaults_and_request() {
    let T::Enroll(EnrollCmd::Create(a)) =
        parse(&["enroll", "create", "--group", "nightly"]).expect("parse")
    else {
        panic!("not enroll create")
    };
    assert_eq!(
        a.request(),
        EnrollmentTokenCreate {
            groups: vec!["nightly".into()],
            expires_in_ms: 24 * 3_600_000,
            note: String::new(),
        }
    );
    let T::Enroll(EnrollCmd::Create(a)) = parse(&[
        "enroll",
        "create",
        "--group",
        "db",
        "--group",
        "etl",
        "--expires",
        "2h30m",
        "--note",
        "db hosts",
    ])
    .expect("parse") else {
        panic!("not enroll create")
    };
    let req = a.request();
    assert_eq!(req.groups, ["db", "etl"]);
    assert_eq!(req.expires_in_ms, 9_000_000);
    assert_eq!(req.note, "db hosts");
}

#[test]
fn enroll_create_refuses_bad_flags() {
    // A group is required; durations need a unit and must not be zero.
    assert!(parse(&["enroll", "create"]).is_err());
    assert!(parse(&["enroll", "create", "--group", "g", "--expires", "24"]).is_err());
    assert!(parse(&["enroll", "create", "--group", "g", "--expires", "0s"]).is_err());
    assert!(parse(&["enroll", "create", "--group", " "]).is_err());
    assert!(parse(&["enroll", "create", "--group", "a b"]).is_err());
    assert!(parse(&["enroll"]).is_err());
}

#[test]
fn enroll_list_and_revoke() {
    assert!(matches!(
        parse(&["enroll", "list"]).expect("list"),
        T::Enroll(EnrollCmd::List)
    ));
    let T::Enroll(EnrollCmd::Revoke { id }) = parse(&["enroll", "revoke", "e7"]).expect("rv")
    else {
        panic!("not revoke")
    };
    assert_eq!(id, "e7");
    assert!(parse(&["enroll", "revoke"]).is_err());
    assert!(parse(&["enroll", "revoke", ".."]).is_err());
}

#[test]
fn tokens_create_parses_roles() {
    let T::Tokens(TokensCmd::Create { name, role }) =
        parse(&["tokens", "create", "--name", "ci", "--role", "viewer"]).expect("parse")
    else {
        panic!("not tokens create")
    };
    assert_eq!((name.as_str(), role), ("ci", Role::Viewer));
    assert_eq!(parse_role("Admin"), Ok(Role::Admin));
    assert_eq!(parse_role("operator"), Ok(Role::Operator));
    let err = parse_role("root").expect_err("root");
    assert!(err.contains("viewer, operator, admin"), "{err}");
    assert!(parse(&["tokens", "create", "--name", "ci", "--role", "root"]).is_err());
    assert!(parse(&["tokens", "create", "--name", "ci"]).is_err());
    assert!(parse(&["tokens", "create", "--role", "admin"]).is_err());
    let T::Tokens(TokensCmd::Revoke { id }) = parse(&["tokens", "revoke", " t1 "]).expect("revoke")
    else {
        panic!("not revoke")
    };
    assert_eq!(id, "t1");
    assert!(matches!(
        parse(&["tokens", "list"]).expect("list"),
        T::Tokens(TokensCmd::List)
    ));
}

#[test]
fn agents_lists_by_default_and_revokes() {
    let T::Agents(a) = parse(&["agents"]).expect("bare") else {
        panic!("not agents")
    };
    assert!(a.command.is_none());
    let T::Agents(a) = parse(&["agents", "list"]).expect("list") else {
        panic!("not agents")
    };
    assert!(matches!(a.command, Some(AgentsCmd::List)));
    let T::Agents(a) = parse(&["agents", "revoke", "db1"]).expect("revoke") else {
        panic!("not agents")
    };
    assert!(matches!(a.command, Some(AgentsCmd::Revoke { id }) if id == "db1"));
    assert!(parse(&["agents", "revoke"]).is_err());
    assert!(parse(&["agents", "revoke", ""]).is_err());
    assert!(parse(&["agents", "delete", "db1"]).is_err());
}

#[test]
fn audit_query_from_flags() {
    let T::Audit(a) = parse(&[
        "audit", "--limit", "20", "--before", "118", "--actor", "token:ci",
    ])
    .expect("parse") else {
        panic!("not audit")
    };
    assert_eq!(
        a.query().pairs(),
        [
            ("limit", "20".to_owned()),
            ("before", "118".to_owned()),
            ("actor", "token:ci".to_owned())
        ]
    );
    let T::Audit(a) = parse(&["audit"]).expect("bare") else {
        panic!("not audit")
    };
    assert!(a.query().pairs().is_empty());
    assert!(parse(&["audit", "--before", "x"]).is_err());
}
