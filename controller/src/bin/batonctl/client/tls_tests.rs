//! `--ca-file` pins: only its CA is trusted, not the system roots. Scheme
//! and CA mismatches carry a hint.
//!
//! The system roots are made to trust the test CA through `SSL_CERT_FILE`,
//! which must be set before the TLS stack reads it: the checks run in a child
//! process (this test binary again, filtered to [`pin_child`]).

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;

const CA: &str = include_str!("../testdata/ca.pem");
const OTHER_CA: &str = include_str!("../testdata/other-ca.pem");
const SERVER_CERT: &str = include_str!("../testdata/server.pem");
const SERVER_KEY: &str = include_str!("../testdata/server.key");

/// Set in the child process only.
const CHILD_ENV: &str = "BATONCTL_TEST_PIN_CHILD";

/// An https server on `ip` (127.0.0.1 or another loopback address) answering
/// every request with a WhoAmI body.
fn serve(ip: &str) -> Url {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("server cert");
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                continue;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            let complete = loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => {
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            break true;
                        }
                    }
                }
            };
            if complete {
                let body = r#"{"name":"ci","token_id":"t1","role":"viewer"}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    parse_base_url(&format!("https://{ip}:{port}")).expect("url")
}

async fn whoami(base: &Url, ca_file: Option<&Path>) -> Result<Answer> {
    Api::new(base.clone(), "baton_op_test".into(), ca_file)?
        .get_json("/v1/whoami", &[])
        .await
}

#[tokio::test]
#[ignore = "run by ca_file_pins_only_that_ca, in a child process with SSL_CERT_FILE set"]
async fn pin_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let other = dir.path().join("other-ca.pem");
    std::fs::write(&ca, CA).expect("write");
    std::fs::write(&other, OTHER_CA).expect("write");
    let base = serve("127.0.0.1");

    // The system roots trust the server's CA (SSL_CERT_FILE, set by the parent)...
    let answer = whoami(&base, None)
        .await
        .expect("trusted by the system roots");
    assert_eq!(answer.body["name"], "ci");
    // ... and so does a client pinned to that CA.
    let answer = whoami(&base, Some(&ca))
        .await
        .expect("trusted by --ca-file");
    assert_eq!(answer.body["role"], "viewer");
    // Pinned to another CA, the client refuses the server the system roots trust.
    let err = whoami(&base, Some(&other))
        .await
        .expect_err("another CA is pinned");
    assert!(err.is::<TransportError>(), "{err:#}");
}

#[test]
fn ca_file_pins_only_that_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let system = dir.path().join("system-roots.pem");
    std::fs::write(&system, CA).expect("write");
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([
            "client::tls_tests::pin_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .env("SSL_CERT_FILE", &system)
        .env_remove("SSL_CERT_DIR")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child ran nothing:\n{stdout}");
}

#[test]
fn ca_file_must_hold_a_pem_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.pem");
    let err = read_ca_file(&missing).expect_err("missing");
    assert!(err.is::<UsageError>(), "{err}");
    assert!(err.to_string().contains("cannot read --ca-file"), "{err}");
    let key_only = dir.path().join("key.pem");
    std::fs::write(&key_only, SERVER_KEY).expect("write");
    let err = read_ca_file(&key_only).expect_err("no certificate");
    assert!(err.is::<UsageError>(), "{err}");
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("{CA}{OTHER_CA}")).expect("write");
    assert_eq!(read_ca_file(&bundle).expect("bundle").len(), 2);
}

/// A plain HTTP server on 127.0.0.1 answering anything with 400 (as a plain
/// listener answers a TLS ClientHello).
fn serve_plain() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let _ = tcp.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    port
}

/// The hint of the transport error a whoami to `base` fails with.
async fn hint_of(base: &str, ca_file: Option<&Path>) -> String {
    let base = parse_base_url(base).expect("url");
    let err = whoami(&base, ca_file).await.expect_err("must fail");
    let transport = err
        .downcast_ref::<TransportError>()
        .unwrap_or_else(|| panic!("not a transport error: {err:#}"));
    assert!(!is_transient(&err), "a mismatch is not worth a retry");
    transport
        .hint()
        .unwrap_or_else(|| panic!("no hint for: {err:#}"))
        .to_owned()
}

fn write_ca(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write");
    path
}

#[tokio::test]
async fn plain_http_to_a_tls_port_hints_https() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let port = serve("127.0.0.1").port().expect("port");
    let hint = hint_of(&format!("http://127.0.0.1:{port}"), None).await;
    assert!(
        hint.contains(&format!(
            "the controller speaks HTTPS: use https://127.0.0.1:{port}"
        )),
        "{hint}"
    );
}

#[tokio::test]
async fn https_to_a_plain_port_hints_http() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let port = serve_plain();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_ca(dir.path(), "ca.pem", CA);
    let hint = hint_of(&format!("https://127.0.0.1:{port}"), Some(&ca)).await;
    assert!(
        hint.contains(&format!("plain HTTP here: use http://127.0.0.1:{port}")),
        "{hint}"
    );
}

#[tokio::test]
async fn an_unknown_ca_hints_how_to_pin_it() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let base = serve("127.0.0.1");
    let dir = tempfile::tempdir().expect("tempdir");
    let other = write_ca(dir.path(), "other-ca.pem", OTHER_CA);
    let hint = hint_of(base.as_str(), Some(&other)).await;
    assert!(
        hint.contains("pin the controller's CA with BATON_CA_FILE or --ca-file"),
        "{hint}"
    );
}

#[tokio::test]
async fn a_certificate_for_other_names_hints_which_names_it_has() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The test certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    let port = serve("127.0.0.2").port().expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = write_ca(dir.path(), "ca.pem", CA);
    let hint = hint_of(&format!("https://127.0.0.2:{port}"), Some(&ca)).await;
    assert!(
        hint.contains("does not name 127.0.0.2, it names 127.0.0.1, localhost"),
        "{hint}"
    );
    assert!(hint.contains("--san 127.0.0.2"), "{hint}");
}

#[tokio::test]
async fn an_unreachable_controller_has_no_tls_hint() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let base = parse_base_url(&format!("https://127.0.0.1:{port}")).expect("url");
    let err = whoami(&base, None).await.expect_err("refused");
    let transport = err.downcast_ref::<TransportError>().expect("transport");
    assert_eq!(transport.hint(), None, "{err:#}");
    assert!(is_transient(&err), "a controller may come back");
}
