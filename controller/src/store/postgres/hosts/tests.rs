use super::*;

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
