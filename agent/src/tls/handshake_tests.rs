//! TLS against the fake controller served over HTTPS: a CA made in the test,
//! the agent's `[tls]` config loaded from TOML, real handshakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use baton_proto::auth::EnrollRequest;
use baton_proto::{Capabilities, PollRequest};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::config::{self, Config, Flags, Secret};
use crate::fake_controller::Fake;
use crate::transport::{self, Transport};

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate and its key, as PEM.
    fn issue(&self, name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        (cert.pem(), key.serialize_pem())
    }
}

/// The fake controller's TLS: a server certificate for 127.0.0.1 from `ca`,
/// and, with `client_ca`, a required client certificate from that CA.
fn server_config(ca: &TestCa, client_ca: Option<&TestCa>) -> Arc<rustls::ServerConfig> {
    server_config_for(ca, client_ca, &["127.0.0.1", "localhost"])
}

/// Like [`server_config`], the server certificate naming `sans`.
fn server_config_for(
    ca: &TestCa,
    client_ca: Option<&TestCa>,
    sans: &[&str],
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let (cert, key) = ca.issue("controller", sans, ExtendedKeyUsagePurpose::ServerAuth);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("chain");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(client_ca) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(client_ca.issuer.der().clone())
                .expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        crate::secret::tests::write_secret(&path, text);
        path
    }

    /// Load the agent config for `url` with `tls` as the `[tls]` table.
    fn config(&self, url: &str, tls: &str) -> Result<Config, config::Error> {
        let toml = format!(
            "agent_id = \"a1\"\ncontroller_url = \"{url}\"\nstate_dir = \"state\"\n[tls]\n{tls}"
        );
        let path = self.dir.path().join("agent.toml");
        config::load_from(&Flags::default(), &BTreeMap::new(), Some((&path, &toml)))
    }
}

/// Poll once as agent `a1` over the transport the config describes.
async fn poll_once(config: &Config) -> Result<(), transport::Error> {
    let transport = Transport::with_urls(&config.controller_urls, &config.tls)?
        .authenticated("a1", &Secret::new("baton_agt_tls"))?;
    let req = PollRequest {
        groups: vec!["g".into()],
        free_slots: 1,
        capabilities: Capabilities::default(),
        version: "test".into(),
        os: "linux".into(),
        metrics: None,
        wait_ms: Some(0),
        leases: Vec::new(),
        failover_ms: None,
        completions: Vec::new(),
    };
    transport
        .poll(&req, Duration::from_secs(2))
        .await
        .map(|_| ())
}

fn unavailable(e: &transport::Error) -> &str {
    match e {
        transport::Error::Unavailable(m) => m,
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[tokio::test]
async fn pinned_ca_connects_and_another_ca_is_refused() {
    let ca = TestCa::new("baton test CA");
    let fake = Fake::start_tls(server_config(&ca, None)).await;
    let files = Files::new();
    files.write("ca.pem", &ca.pem());
    let cfg = files
        .config(&fake.url, "ca_file = \"ca.pem\"\n")
        .expect("config");
    assert_eq!(
        cfg.tls.ca.as_ref().map(|c| c.path().to_path_buf()),
        Some(files.dir.path().join("ca.pem")),
        "relative to the config file"
    );
    poll_once(&cfg).await.expect("poll over pinned TLS");
    assert_eq!(fake.script().polls.len(), 1);

    // Enrollment goes through the same client.
    let transport = Transport::with_urls(&cfg.controller_urls, &cfg.tls).expect("transport");
    let resp = transport
        .enroll(&EnrollRequest {
            token: "baton_enr_t".into(),
            agent_id: "a1".into(),
            hostname: String::new(),
            version: String::new(),
        })
        .await
        .expect("enroll over TLS");
    assert_eq!(resp.agent_id, "a1");

    // A CA file of another CA: the controller's certificate is refused.
    let other = TestCa::new("some other CA");
    files.write("other.pem", &other.pem());
    let cfg = files
        .config(&fake.url, "ca_file = \"other.pem\"\n")
        .expect("config");
    let e = poll_once(&cfg).await.expect_err("wrong CA");
    let msg = unavailable(&e);
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    // Without ca_file the system roots are used, which do not know the test CA.
    let cfg = files.config(&fake.url, "").expect("config");
    assert!(cfg.tls.ca.is_none());
    let e = poll_once(&cfg).await.expect_err("not a system root");
    unavailable(&e);
    assert_eq!(
        fake.script().polls.len(),
        1,
        "no refused poll reached the fake"
    );
}

#[tokio::test]
async fn scheme_and_ca_mismatches_carry_a_hint() {
    let ca = TestCa::new("baton test CA");
    let tls = Fake::start_tls(server_config(&ca, None)).await;
    let plain = Fake::start().await;
    let files = Files::new();
    files.write("ca.pem", &ca.pem());
    files.write("other.pem", &TestCa::new("some other CA").pem());
    let hint = |e: &transport::Error| {
        let msg = unavailable(e);
        msg.split_once("(hint: ")
            .map(|(_, h)| h.to_owned())
            .unwrap_or_else(|| panic!("no hint in: {msg}"))
    };

    // http:// to the TLS port.
    let url = tls.url.replace("https://", "http://");
    let cfg = files.config(&url, "").expect("config");
    let e = poll_once(&cfg).await.expect_err("plain to TLS");
    let h = hint(&e);
    assert!(
        h.contains(&format!("the controller speaks HTTPS: use {}", tls.url)),
        "{h}"
    );

    // https:// to the plain port.
    let url = plain.url.replace("http://", "https://");
    let cfg = files
        .config(&url, "ca_file = \"ca.pem\"\n")
        .expect("config");
    let e = poll_once(&cfg).await.expect_err("TLS to plain");
    let h = hint(&e);
    assert!(h.contains(&format!("use {}", plain.url)), "{h}");

    // A CA the agent does not trust.
    let cfg = files
        .config(&tls.url, "ca_file = \"other.pem\"\n")
        .expect("config");
    let e = poll_once(&cfg).await.expect_err("unknown CA");
    let h = hint(&e);
    assert!(
        h.contains("pin the controller's CA with `[tls] ca_file` in the agent's config"),
        "{h}"
    );

    // A certificate for other names.
    let named = Fake::start_tls(server_config_for(&ca, None, &["localhost"])).await;
    let cfg = files
        .config(&named.url, "ca_file = \"ca.pem\"\n")
        .expect("config");
    let e = poll_once(&cfg).await.expect_err("wrong name");
    let h = hint(&e);
    assert!(
        h.contains("does not name 127.0.0.1, it names localhost"),
        "{h}"
    );
    assert_eq!(tls.script().polls.len(), 0, "no poll got through");
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let ca = TestCa::new("baton test CA");
    let clients = TestCa::new("baton client CA");
    let fake = Fake::start_tls(server_config(&ca, Some(&clients))).await;
    let files = Files::new();
    files.write("ca.pem", &ca.pem());
    let (cert, key) = clients.issue(
        "a1",
        &["a1.agents.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    files.write("agent.crt", &cert);
    files.write("agent.key", &key);

    let with_cert =
        "ca_file = \"ca.pem\"\nclient_cert_file = \"agent.crt\"\nclient_key_file = \"agent.key\"\n";
    let cfg = files.config(&fake.url, with_cert).expect("config");
    assert!(cfg.tls.client.is_some());
    assert!(
        cfg.summary().contains("tls.client_cert=yes"),
        "{}",
        cfg.summary()
    );
    poll_once(&cfg)
        .await
        .expect("poll with a client certificate");
    assert_eq!(fake.script().polls.len(), 1);

    let cfg = files
        .config(&fake.url, "ca_file = \"ca.pem\"\n")
        .expect("config");
    let e = poll_once(&cfg).await.expect_err("no client certificate");
    unavailable(&e);

    // A client certificate from a CA the controller does not trust.
    let (cert, key) = ca.issue(
        "a1",
        &["a1.agents.test"],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    files.write("stranger.crt", &cert);
    files.write("stranger.key", &key);
    let stranger = "ca_file = \"ca.pem\"\nclient_cert_file = \"stranger.crt\"\nclient_key_file = \"stranger.key\"\n";
    let cfg = files.config(&fake.url, stranger).expect("config");
    let e = poll_once(&cfg)
        .await
        .expect_err("untrusted client certificate");
    unavailable(&e);

    let s = fake.script();
    assert_eq!(
        s.polls.len(),
        1,
        "only the poll with the right certificate got through"
    );
    assert!(s.tls_failures.len() >= 2, "{:?}", s.tls_failures);
}

#[test]
fn tls_config_errors_name_key_and_line() {
    let files = Files::new();
    let ca = TestCa::new("baton test CA");
    files.write("ca.pem", &ca.pem());
    let (cert, key) = ca.issue("a1", &["a1.test"], ExtendedKeyUsagePurpose::ClientAuth);
    let (_, other_key) = ca.issue("a2", &["a2.test"], ExtendedKeyUsagePurpose::ClientAuth);
    files.write("agent.crt", &cert);
    files.write("agent.key", &key);
    files.write("other.key", &other_key);
    files.write("junk.pem", "not pem at all\n");
    let url = "https://ctl.test:8420";
    let invalid = |tls: &str| match files.config(url, tls).expect_err(tls) {
        config::Error::Invalid(c) => c,
    };
    let path = files.dir.path().join("agent.toml").display().to_string();

    // [tls] is line 4: its keys start on line 5.
    let e = invalid("ca_file = \"ca.pem\"\nclient_cert_file = \"agent.crt\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.client_key_file", Some(6)));
    assert!(e.message.contains("tls.client_cert_file is set"), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("{path}, line 6, key `tls.client_key_file`")),
        "{e}"
    );

    let e = invalid("client_key_file = \"agent.key\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.client_cert_file", Some(5)));

    let e = invalid("ca_file = \"missing.pem\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.ca_file", Some(5)));
    assert!(e.message.contains("cannot read"), "{e}");

    let e = invalid("ca_file = \"junk.pem\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.ca_file", Some(5)));
    assert!(e.message.contains("no PEM certificate"), "{e}");

    let e = invalid("client_cert_file = \"agent.crt\"\nclient_key_file = \"other.key\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.client_key_file", Some(6)));
    assert!(e.message.contains("does not belong"), "{e}");
    assert!(!e.to_string().contains("PRIVATE"), "{e}");

    let e = invalid("client_cert_file = \"agent.key\"\nclient_key_file = \"agent.key\"\n");
    assert_eq!((e.key.as_str(), e.line), ("tls.client_cert_file", Some(5)));

    let e = invalid("ca_path = \"ca.pem\"\n");
    assert_eq!(e.line, Some(5), "unknown keys in [tls] are errors: {e}");

    // The same from the environment names the variable.
    let env = BTreeMap::from([(
        "BATON_AGENT_TLS_CA_FILE".to_owned(),
        "/no/such/ca.pem".to_owned(),
    )]);
    let toml = format!("agent_id = \"a1\"\ncontroller_url = \"{url}\"\nstate_dir = \"state\"\n");
    let e = match config::load_from(
        &Flags::default(),
        &env,
        Some((Path::new(&path), toml.as_str())),
    ) {
        Err(config::Error::Invalid(c)) => c,
        Ok(_) => panic!("accepted a missing CA file"),
    };
    assert_eq!(
        e.origin,
        baton_proto::config::Source::Env("BATON_AGENT_TLS_CA_FILE".into())
    );
    assert_eq!(e.key, "tls.ca_file");
}
