use super::*;

#[test]
fn parses_client_errors() {
    let e = SqlError::parse(
            "u@127.0.0.1",
            "ERROR 1142 (42000) at line 1: CREATE command denied to user 'u'@'127.0.0.1' for table `d`.`t`\n".into(),
        );
    assert_eq!(e.code, Some(1142));
    assert_eq!(e.sqlstate.as_deref(), Some("42000"));
    let e = SqlError::parse("u", "mariadb: unknown option '--x'\n".into());
    assert_eq!(e.code, None);
}

#[test]
fn parses_the_script_output() {
    assert_eq!(
        parse_endpoint("port=3307 socket=/tmp/a b/mysqld.sock\n"),
        Some((3307, PathBuf::from("/tmp/a b/mysqld.sock")))
    );
    assert_eq!(parse_endpoint("nothing"), None);
}

#[test]
fn quotes_toml_and_option_values() {
    assert_eq!(toml_str("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(toml_key("main-db_1"), "main-db_1");
    assert_eq!(toml_key("a b"), "\"a b\"");
    assert_eq!(option_escape(r#"p"w\"#), r#"p\"w\\"#);
    assert!(ident("db_1").is_ok());
    assert!(ident("x`; DROP").is_err());
}
