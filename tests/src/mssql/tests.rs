use super::*;

#[test]
fn ado_strings_parse_into_the_agent_settings() {
    let a = Ado::parse(
            "Server=tcp:db1.example,14330; User ID=sa; Password={s3cret!}; TrustServerCertificate=True; Initial Catalog=jobs",
        )
        .expect("parse");
    assert_eq!(
        (
            a.host.as_str(),
            a.port,
            a.user.as_str(),
            a.password.as_str()
        ),
        ("db1.example", 14330, "sa", "s3cret!")
    );
    assert_eq!(a.database.as_deref(), Some("jobs"));
    assert_eq!(a.encrypt, "required");
    assert!(a.trust_server_certificate);
    assert!(
        !format!("{a:?}").contains("s3cret"),
        "Debug hides the password"
    );

    let b = Ado::parse("server=localhost\\SQL2022;uid=baton;pwd=x;encrypt=false").expect("parse");
    assert_eq!(b.host, "127.0.0.1");
    assert_eq!(b.instance.as_deref(), Some("SQL2022"));
    assert_eq!(b.encrypt, "off");
    assert_eq!(b.port, 1433);

    assert!(
        Ado::parse("user=sa;password=x").is_err(),
        "server is required"
    );
    assert!(Ado::parse("server=h,notaport;user=sa;password=x").is_err());
    assert!(Ado::parse("server=h;user=sa;password=x;encrypt=maybe").is_err());
}

#[test]
fn connection_tables_are_valid_toml_with_the_expected_keys() {
    let a = Ado::parse("server=tcp:db1,1433;user=sa;password=x;TrustServerCertificate=true")
        .expect("parse");
    let t: toml::Table = toml::from_str(&a.connection_toml(
        "main db",
        Path::new("/tmp/p\"w"),
        Some("baton_e2e_x"),
        "backup_dir = \"/var/backups\"\n",
    ))
    .expect("toml");
    let c = &t["connections"]["main db"];
    assert_eq!(c["kind"].as_str(), Some("mssql"));
    assert_eq!(c["port"].as_integer(), Some(1433));
    assert_eq!(c["password_file"].as_str(), Some("/tmp/p\"w"));
    assert_eq!(c["database"].as_str(), Some("baton_e2e_x"));
    assert_eq!(c["trust_server_certificate"].as_bool(), Some(true));
    assert_eq!(c["backup_dir"].as_str(), Some("/var/backups"));
    assert!(c.get("password").is_none());

    let t: toml::Table = toml::from_str(&connection_toml(
        "main",
        "127.0.0.1",
        14333,
        USER,
        Path::new("/tmp/pw"),
        PLAIN,
    ))
    .expect("toml");
    assert_eq!(t["connections"]["main"]["encrypt"].as_str(), Some("off"));
    assert_eq!(t["connections"]["main"]["user"].as_str(), Some(USER));
}

#[test]
fn with_puts_keys_where_the_api_expects_them() {
    let j = with(
        procedure_job("main", "dbo.usp_x", json!([])),
        json!({"exactly_once": true, "lease_ttl_ms": 2000, "retry": {"max_attempts": 1}}),
    );
    assert_eq!(j["spec"]["exactly_once"], true);
    assert_eq!(j["lease_ttl_ms"], 2000);
    assert_eq!(j["retry"]["max_attempts"], 1);
    assert_eq!(j["retry"]["initial_backoff_ms"], 50);
    assert!(j.get("exactly_once").is_none());
}
