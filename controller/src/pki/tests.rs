use std::time::Duration;

use rustls::CertificateError;
use rustls::client::danger::ServerCertVerifier as _;

use super::*;

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

fn plan(dir: &Path, sans: &str, agents: &[&str], force: bool) -> Plan {
    Plan {
        dir: dir.to_path_buf(),
        sans: if sans.is_empty() {
            Vec::new()
        } else {
            parse_sans(sans).expect("sans")
        },
        agents: agents.iter().map(|a| a.to_string()).collect(),
        force,
    }
}

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).expect("pem")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Verify `cert` as a server certificate for `name`, pinned to `dir`'s CA, at `at`.
fn verify_server(dir: &Path, cert: &Path, name: &str, at: UnixTime) -> Result<(), rustls::Error> {
    let ca = std::fs::read_to_string(ca_cert_path(dir)).expect("ca");
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots(dir, &ca).expect("roots"),
        provider(),
    )
    .build()
    .expect("verifier");
    let name = ServerName::try_from(name.to_owned()).expect("name");
    verifier
        .verify_server_cert(&der(cert), &[], &name, &[], at)
        .map(|_| ())
}

fn verify_client(dir: &Path, cert: &Path) -> Result<(), rustls::Error> {
    let ca = std::fs::read_to_string(ca_cert_path(dir)).expect("ca");
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(dir, &ca).expect("roots"),
        provider(),
    )
    .build()
    .expect("verifier");
    verifier
        .verify_client_cert(&der(cert), &[], UnixTime::now())
        .map(|_| ())
}

fn in_days(days: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        UnixTime::now().as_secs() + days * 86_400,
    ))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn sans_parse_ips_and_names_and_refuse_the_rest() {
    assert_eq!(
        parse_sans(" ctl.example.org,10.0.0.5,[::1],localhost,10.0.0.5").expect("sans"),
        vec![
            San::Dns("ctl.example.org".into()),
            San::Ip("10.0.0.5".parse().expect("ip")),
            San::Ip("::1".parse().expect("ip")),
            San::Dns("localhost".into()),
        ]
    );
    for bad in ["", "ctl,,db", "two words", "*.example.org", "http://ctl"] {
        let err = parse_sans(bad).expect_err(bad);
        assert!(matches!(err, Error::San(_)), "{bad}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn makes_a_ca_server_and_agent_certificates_with_safe_modes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("tls");
    let made = make(
        &plan(&dir, "127.0.0.1,localhost,ctl.example.org", &["db1"], false),
        today(),
    )
    .expect("make");
    assert!(!made.ca_reused);
    let names: Vec<String> = made
        .files
        .iter()
        .map(|f| {
            f.path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "ca.pem",
            "ca.key",
            "controller.pem",
            "controller.key",
            "agent-db1.pem",
            "agent-db1.key"
        ]
    );
    assert_eq!(mode(&dir), 0o700);
    for f in &made.files {
        let want = if f.path.extension().is_some_and(|e| e == "key") {
            0o600
        } else {
            0o644
        };
        assert_eq!(mode(&f.path), want, "{}", f.path.display());
    }
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir).expect("ls").count(), 6);

    let server = server_cert_path(&dir);
    for name in ["127.0.0.1", "localhost", "ctl.example.org"] {
        verify_server(&dir, &server, name, UnixTime::now()).expect(name);
    }
    // Exactly the names asked for: no silent extras.
    match verify_server(&dir, &server, "other.example.org", UnixTime::now()) {
        Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        })) => assert_eq!(
            presented,
            [
                "IpAddress(127.0.0.1)",
                "DnsName(\"localhost\")",
                "DnsName(\"ctl.example.org\")"
            ]
        ),
        other => panic!("expected a name mismatch, got {other:?}"),
    }
    // Valid for about two years, not more.
    verify_server(&dir, &server, "localhost", in_days(700)).expect("in 700 days");
    let expired = verify_server(&dir, &server, "localhost", in_days(740));
    assert!(
        matches!(
            expired,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ),
        "{expired:?}"
    );
    // serverAuth for the controller, clientAuth for the agent, not the other way round.
    let agent = agent_cert_path(&dir, "db1");
    verify_client(&dir, &agent).expect("agent certificate");
    verify_client(&dir, &server).expect_err("a server certificate is no client certificate");
    verify_server(&dir, &agent, "db1", UnixTime::now())
        .expect_err("an agent certificate is no server certificate");

    let text = instructions(&plan(&dir, "localhost", &["db1"], false), &made);
    let dir = made.dir.display();
    for line in [
        format!("cert_file = \"{dir}/controller.pem\""),
        format!("key_file = \"{dir}/controller.key\""),
        format!("client_ca_file = \"{dir}/ca.pem\""),
        format!("BATON_CA_FILE={dir}/ca.pem"),
        format!("ca_file = \"{dir}/ca.pem\""),
        format!("client_key_file = \"{dir}/agent-db1.key\""),
    ] {
        assert!(text.contains(&line), "{line} missing in:\n{text}");
    }
}

#[test]
fn refuses_to_overwrite_without_force_and_never_replaces_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make(&plan(dir, "localhost", &[], false), today()).expect("first");
    let read = |name: &str| std::fs::read(dir.join(name)).expect(name);
    let (ca, ca_key, server) = (read("ca.pem"), read("ca.key"), read("controller.pem"));

    let err = make(&plan(dir, "localhost", &[], false), today()).expect_err("exists");
    match &err {
        Error::Exists(paths) => assert_eq!(
            paths,
            &[server_cert_path(dir), server_key_path(dir)]
                .map(|p| std::fs::canonicalize(p).expect("path"))
        ),
        other => panic!("expected Exists, got {other}"),
    }
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(read("controller.pem"), server, "refused, yet written");

    let made = make(&plan(dir, "localhost,127.0.0.1", &[], true), today()).expect("force");
    assert!(made.ca_reused);
    assert_eq!(made.files.len(), 2, "{:?}", made.files);
    assert_eq!(
        (read("ca.pem"), read("ca.key")),
        (ca, ca_key),
        "CA replaced"
    );
    assert_ne!(read("controller.pem"), server, "not replaced with --force");
    // The new certificate chains to the kept CA.
    verify_server(dir, &server_cert_path(dir), "127.0.0.1", UnixTime::now()).expect("new cert");
}

#[test]
fn an_agent_certificate_can_be_added_later_with_the_same_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make(&plan(dir, "localhost", &[], false), today()).expect("first");
    let made = make(&plan(dir, "", &["db2"], false), today()).expect("agent");
    assert!(made.ca_reused);
    assert_eq!(made.files.len(), 2);
    verify_client(dir, &agent_cert_path(dir, "db2")).expect("chains to the CA");
    let err = make(&plan(dir, "", &["no/slash"], false), today()).expect_err("bad name");
    assert!(matches!(err, Error::AgentName(_)), "{err}");
    let err = make(&plan(dir, "", &[], false), today()).expect_err("nothing");
    assert!(matches!(err, Error::Nothing), "{err}");
}

#[test]
fn a_foreign_or_half_ca_is_reported_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    make(&plan(dir, "localhost", &[], false), today()).expect("first");
    // ca.key replaced by another key: certificates it signs do not verify against ca.pem.
    let other = KeyPair::generate().expect("key");
    std::fs::write(ca_key_path(dir), other.serialize_pem()).expect("write");
    let err = make(&plan(dir, "", &["db1"], false), today()).expect_err("foreign");
    assert!(matches!(err, Error::Ca { .. }), "{err}");
    assert!(!agent_cert_path(dir, "db1").exists());

    std::fs::remove_file(ca_key_path(dir)).expect("rm");
    let err = make(&plan(dir, "", &["db1"], false), today()).expect_err("half");
    assert!(matches!(err, Error::HalfCa { .. }), "{err}");
    assert!(err.to_string().contains("ca.key"), "{err}");
}
