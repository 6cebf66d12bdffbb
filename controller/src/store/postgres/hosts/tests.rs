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

/// `PgStore::open` with a pinned CA against a server that does not speak
/// TLS (the test server) or with a CA file that is not a certificate:
/// refused, naming `[store] ca_file`, never falling back to plaintext.
#[tokio::test]
async fn a_pinned_ca_that_cannot_verify_the_server_is_refused_naming_the_ca_file() {
    let Some((url, _guard)) = crate::store::postgres::testutil::scratch_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let garbage = dir.path().join("not-a-ca.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let ca = params.self_signed(&key).expect("ca").pem();
    let real = dir.path().join("some-ca.pem");
    std::fs::write(&real, ca).expect("write");
    for ca in [&real, &garbage] {
        let opts = PgOptions {
            url: url.clone(),
            password: Some("pw-never-shown".into()),
            ca_file: Some(ca.clone()),
            pool_size: 2,
            poll_only: false,
        };
        let e = crate::store::postgres::PgStore::open(&opts)
            .await
            .expect_err("no TLS: refused");
        let text = e.to_string();
        assert!(
            text.contains("[store] ca_file") && text.contains(&ca.display().to_string()),
            "{text}"
        );
        assert!(!text.contains("pw-never-shown"), "{text}");
    }
}
