use super::*;

fn settings(src: &str) -> BTreeMap<String, toml::Value> {
    toml::from_str::<toml::Table>(src)
        .expect("toml")
        .into_iter()
        .collect()
}

#[test]
fn tcp_with_password_file() {
    let dir = tempfile::tempdir().expect("tmp");
    crate::secret::tests::write_secret(&dir.path().join("pw"), "s3cret\n");
    let c = MysqlConnection::parse(
            "main",
            &settings("host = \"db\"\nuser = \"baton\"\npassword_file = \"pw\"\ndatabase = \"app\"\nkeep_last = 3\nmax_age = \"30days\"\n"),
            Some(dir.path()),
        )
        .expect("parse");
    assert_eq!(
        c.endpoint,
        Endpoint::Tcp {
            host: "db".into(),
            port: 3306
        }
    );
    assert_eq!(c.password.read().expect("read").expose(), "s3cret");
    assert_eq!(
        format!("{:?}", c.password.read().expect("read")),
        "Password(<redacted>)"
    );
    assert_eq!(c.dump.keep_last, Some(3));
    assert_eq!(c.dump.max_age, Some(Duration::from_secs(30 * 86400)));
}

#[test]
fn errors_name_the_key() {
    let e = MysqlConnection::parse(
        "m",
        &settings("user = \"u\"\npassword_env = \"PATH\"\n"),
        None,
    )
    .expect_err("no host");
    assert_eq!(e.key, "connections.m.host");
    let e = MysqlConnection::parse(
        "m",
        &settings("host = \"h\"\nuser = \"u\"\npassword = \"inline\"\n"),
        None,
    )
    .expect_err("inline password");
    assert!(e.message.contains("password"), "{e}");
    let e = MysqlConnection::parse(
        "m",
        &settings("host = \"h\"\nuser = \"u\"\npassword_env = \"BATON_SURELY_UNSET_VAR\"\n"),
        None,
    )
    .expect_err("unset env");
    assert_eq!(e.key, "connections.m.password_env");
    let e = MysqlConnection::parse(
            "m",
            &settings("host = \"h\"\nuser = \"u\"\npassword_env = \"PATH\"\ndump_extra_flags = [\"--single-transaction\", \"--result-file=/etc/passwd\"]\n"),
            None,
        )
        .expect_err("flag");
    assert_eq!(e.key, "connections.m.dump_extra_flags[0]");
    let e = MysqlConnection::parse(
        "m",
        &settings("socket = \"/s\"\nport = 1\nuser = \"u\"\npassword_env = \"PATH\"\n"),
        None,
    )
    .expect_err("port with socket");
    assert_eq!(e.key, "connections.m.port");
}

#[test]
fn dump_flags() {
    assert!(dump_flag_allowed("--skip-lock-tables"));
    assert!(dump_flag_allowed("--ignore-table=shop.audit_log"));
    assert!(!dump_flag_allowed("--ignore-table=shop"));
    assert!(!dump_flag_allowed("--result-file=/tmp/x"));
    assert!(!dump_flag_allowed("--ignore-table=a.b;rm"));
}
