use super::*;

#[test]
fn one_url_per_host_keeping_user_database_and_parameters() {
    let urls = split_hosts(
        "postgres://baton@h1:5432,h2:5433/db?target_session_attrs=read-write&sslmode=require",
    )
    .expect("split");
    assert_eq!(
        urls,
        [
            "postgres://baton@h1:5432/db?sslmode=require",
            "postgres://baton@h2:5433/db?sslmode=require"
        ]
    );
    assert_eq!(
        split_hosts("postgres://h:1/db").expect("one"),
        ["postgres://h:1/db"]
    );
    assert_eq!(
        split_hosts("postgres://u@h:1/db?target_session_attrs=read-write").expect("bare"),
        ["postgres://u@h:1/db"]
    );
}

#[test]
fn a_url_without_scheme_or_host_is_refused() {
    assert!(split_hosts("h1:5432/db").is_err());
    assert!(split_hosts("postgres://u@/db").is_err());
}

#[test]
fn password_and_pinned_ca_apply_to_every_host() {
    let opts = PgOptions {
        url: "postgres://baton@h1:5432,h2:5433/db".into(),
        password: Some("s3cret".into()),
        ca_file: Some("/etc/baton/pg-ca.pem".into()),
        pool_size: 4,
        poll_only: false,
    };
    let hosts = Hosts::parse(&opts).expect("parse");
    assert_eq!(hosts.len(), 2);
    for (h, port) in hosts.all.iter().zip([5432, 5433]) {
        assert_eq!(h.get_port(), port);
        assert_eq!(h.get_database(), Some("db"));
        assert!(matches!(h.get_ssl_mode(), PgSslMode::VerifyFull));
    }
}
