//! TDS 7.4 with TLS negotiated in PRELOGIN ([`TdsServer::start_tls`]), driven
//! by the real tiberius 0.13 client: `EncryptionLevel::Required` (the agent's
//! default `encrypt = "required"`) with the test CA logs in and queries over
//! TLS; a wrong CA fails the handshake; `trust_cert` works; `Off` is upgraded
//! to full encryption; a client without encryption is refused.

use std::time::Duration;

use baton_tests::pki::Pki;
use baton_tests::tds::raw::{self, RawClient};
use baton_tests::tds::*;
use tds_common::{Conn, connect, one_row};
use tiberius::{Config, EncryptionLevel};

pub mod tds_common;

const WAIT: Duration = Duration::from_secs(5);

fn config(server: &TdsServer, level: EncryptionLevel) -> Config {
    let mut c = tds_common::config(server, "baton", "s3cret", level);
    c.database("jobs");
    c.application_name("baton-test");
    c
}

fn version_script() -> Script {
    Script::new().login("baton", "s3cret").on(
        Match::sql("SELECT @@VERSION"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("", SqlType::NVarChar(Some(128)))]),
            Token::row(["Microsoft SQL Server 2022 (TDS test server)"]),
            Token::done_rows(1),
        ]),
    )
}

async fn version(client: &mut Conn) -> String {
    let row = one_row(client, "SELECT @@VERSION").await;
    row.get::<&str, _>(0).expect("text").to_string()
}

/// The ENCRYPTION option of a PRELOGIN reply.
fn encryption_option(payload: &[u8]) -> Option<u8> {
    let mut i = 0;
    while *payload.get(i)? != 0xFF {
        let entry = payload.get(i..i + 5)?;
        if entry[0] == 0x01 {
            let offset = usize::from(u16::from_be_bytes([entry[1], entry[2]]));
            return payload.get(offset).copied();
        }
        i += 5;
    }
    None
}

async fn server(pki: &Pki) -> TdsServer {
    TdsServer::start_tls(version_script(), &pki.server_cert, &pki.server_key)
        .await
        .expect("start")
}

#[tokio::test]
async fn required_encryption_with_the_test_ca_logs_in_and_queries_over_tls() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = server(&pki).await;
    let mut cfg = config(&server, EncryptionLevel::Required);
    cfg.trust_cert_ca(pki.ca.display());
    let mut client = connect(cfg).await.expect("login over TLS");
    assert_eq!(
        version(&mut client).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
    // A parameterised query and a second round trip on the same session.
    client
        .execute("UPDATE t SET x = @P1", &[&7i32])
        .await
        .expect("execute");
    client.close().await.expect("close");

    let log = server
        .wait_for(WAIT, |l| l.iter().any(|e| e.request == Request::Disconnect))
        .await
        .expect("disconnect");
    let login = server.logins().pop().expect("a login");
    assert!(login.accepted);
    assert_eq!(login.user, "baton");
    assert_eq!(login.password, "s3cret");
    assert_eq!(login.tds_version, 0x7400_0004, "TDS 7.4, not 8.0");
    let rpc = server.rpcs().pop().expect("the execute");
    assert_eq!(rpc.statement(), Some("UPDATE t SET x = @P1"));
    assert_eq!(rpc.args()[0].value, Value::Int(7));
    assert!(server.protocol_errors().is_empty(), "{log:#?}");
}

#[tokio::test]
async fn a_clear_login7_after_the_prelogin_is_refused_and_trust_cert_works() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = server(&pki).await;
    // Raw bytes: a PRELOGIN asking ENCRYPT_REQ gets a clear reply saying
    // ENCRYPT_ON; a LOGIN7 sent in the clear after it (instead of a TLS
    // ClientHello inside PRELOGIN packets) is refused and the server hangs up.
    let mut raw = RawClient::connect(server.addr()).await.expect("tcp");
    raw.send(0x12, 1, &raw::prelogin(0x03))
        .await
        .expect("prelogin");
    let reply = raw.read_message().await.expect("prelogin reply");
    assert_eq!(encryption_option(&reply.payload), Some(0x01));
    raw.send(0x10, 1, &raw::login7("baton", "s3cret", "jobs"))
        .await
        .expect("clear login7");
    raw.expect_closed(WAIT).await.expect("closed");
    server
        .wait_for(WAIT, |l| {
            l.iter().any(|e| {
                e.conn == 1
                    && matches!(&e.request, Request::ProtocolError { message }
                        if message.contains("packet type 0x10 during the TLS handshake"))
            })
        })
        .await
        .expect("refusal recorded");
    assert!(server.logins().is_empty(), "the clear LOGIN7 was not read");

    // The real client, with every certificate trusted, still gets TLS.
    let mut cfg = config(&server, EncryptionLevel::Required);
    cfg.trust_cert();
    let mut client = connect(cfg).await.expect("trust_cert login");
    assert_eq!(
        version(&mut client).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
}

#[tokio::test]
async fn a_wrong_ca_fails_the_handshake_and_nothing_logs_in() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = server(&pki).await;
    let mut cfg = config(&server, EncryptionLevel::Required);
    cfg.trust_cert_ca(pki.other_ca.display());
    let err = connect(cfg).await.expect_err("untrusted certificate");
    assert!(
        matches!(
            err,
            tiberius::error::Error::Tls(_) | tiberius::error::Error::Io { .. }
        ),
        "{err:?}"
    );
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| matches!(&e.request, Request::ProtocolError { message } if message.contains("TLS handshake")))
        })
        .await
        .expect("handshake failure recorded");
    assert!(server.logins().is_empty());
}

#[tokio::test]
async fn login_only_encryption_is_upgraded_to_a_fully_encrypted_session() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = server(&pki).await;
    // ENCRYPT_OFF: the server forces encryption and answers ENCRYPT_REQ, so
    // tiberius keeps TLS after the login (a query works only if both sides
    // agree on that).
    let mut cfg = config(&server, EncryptionLevel::Off);
    cfg.trust_cert_ca(pki.ca.display());
    let mut client = connect(cfg).await.expect("login");
    assert_eq!(
        version(&mut client).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
    assert!(server.protocol_errors().is_empty());
}

#[tokio::test]
async fn a_client_without_encryption_is_refused_after_the_prelogin() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = server(&pki).await;
    let err = connect(config(&server, EncryptionLevel::NotSupported))
        .await
        .expect_err("plaintext refused");
    assert!(!matches!(err, tiberius::error::Error::Server(_)), "{err:?}");
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| matches!(&e.request, Request::ProtocolError { message } if message.contains("17835")))
        })
        .await
        .expect("refusal recorded");
    assert!(server.logins().is_empty());

    // A TDS 8.0 strict client (TLS first) is not this server's protocol either.
    let mut cfg = config(&server, EncryptionLevel::Strict);
    cfg.trust_cert_ca(pki.ca.display());
    connect(cfg).await.expect_err("strict refused");
    server
        .wait_for(WAIT, |l| {
            l.iter()
                .any(|e| e.conn == 2 && matches!(e.request, Request::ProtocolError { .. }))
        })
        .await
        .expect("strict refusal recorded");
    assert!(server.logins().is_empty());
}
