//! The agent's SQL Server connection settings (`kind = "mssql"`) driven
//! against the TDS test server: what the agent's parsed config logs in with,
//! over plain TCP and over TDS 8.0 strict TLS with a pinned CA.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use baton_agent::db::mssql::connection::MssqlConnection;
use baton_tests::pki::Pki;
use baton_tests::tds::*;

pub mod tds_common;

fn parse(src: &str, base: &Path) -> MssqlConnection {
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(src)
        .expect("toml")
        .into_iter()
        .collect();
    MssqlConnection::parse("sql", &settings, Some(base)).expect("valid mssql connection")
}

fn version_script() -> Script {
    Script::new().on(
        Match::sql("SELECT @@VERSION"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("", SqlType::NVarChar(Some(128)))]),
            Token::row(["Microsoft SQL Server 2022 (TDS test server)"]),
            Token::done_rows(1),
        ]),
    )
}

async fn version(conn: &MssqlConnection) -> String {
    let mut client = conn.connect().await.expect("connect");
    let row = tds_common::one_row(&mut client, "SELECT @@VERSION").await;
    row.get::<&str, _>(0).expect("text").to_owned()
}

#[tokio::test]
async fn plain_connection_logs_in_with_the_file_password_and_database() {
    baton_tests::init_crypto();
    let server = TdsServer::start(version_script()).await.expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "pä$$wörd\n").expect("pw");
    let conn = parse(
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\ndatabase = \"jobs\"\nencrypt = \"off\"\n",
            server.port()
        ),
        dir.path(),
    );
    assert_eq!(
        version(&conn).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
    let logins = server.logins();
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(
        (
            logins[0].user.as_str(),
            logins[0].password.as_str(),
            logins[0].database.as_str(),
            logins[0].app_name.as_str()
        ),
        ("baton", "pä$$wörd", "jobs", "baton-agent")
    );
}

#[tokio::test]
async fn strict_tls_works_with_the_pinned_ca_and_not_with_another() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tmp");
    let pki = Pki::generate(dir.path()).expect("pki");
    let server = TdsServer::start_strict(version_script(), &pki.server_cert, &pki.server_key)
        .await
        .expect("start");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "pw").expect("pw");
    let with_ca = |ca: &Path| {
        parse(
            &format!(
                "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"strict\"\nca_file = \"{}\"\nconnect_timeout = \"5s\"\n",
                server.port(),
                ca.display()
            ),
            dir.path(),
        )
    };
    assert_eq!(
        version(&with_ca(&pki.ca)).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
    let Err(err) = with_ca(&pki.other_ca).connect().await else {
        panic!("a certificate from another CA must be refused");
    };
    let text = err.to_string();
    assert!(
        text.contains("SQL Server") || text.contains("certificate"),
        "{text}"
    );
    assert!(
        !err.retryable(),
        "a refused certificate needs an operator: {err}"
    );
    assert_eq!(server.logins().iter().filter(|l| l.accepted).count(), 1);
}

#[tokio::test]
async fn a_silent_server_hits_the_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "pw").expect("pw");
    let conn = parse(
        &format!(
            "host = \"127.0.0.1\"\nport = {port}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\nconnect_timeout = \"300ms\"\n"
        ),
        dir.path(),
    );
    let started = std::time::Instant::now();
    let Err(err) = conn.connect().await else {
        panic!("a silent server must time out");
    };
    assert!(err.to_string().contains("no session within"), "{err}");
    assert!(err.retryable());
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn scripted_server_errors_keep_number_class_state_line_and_only_1205_retries() {
    use baton_agent::db::mssql::failure::classify;
    baton_tests::init_crypto();
    let script = Script::new()
        .on(
            Match::sql("EXEC dbo.close_order 7"),
            Reply::error(
                ServerMessage::new(50000, 16, "order 7 is locked")
                    .state(1)
                    .procedure("close_order")
                    .line(12),
            ),
        )
        .on(
            Match::sql("UPDATE t SET x = 1"),
            Reply::error(ServerMessage::new(1205, 13, "deadlocked").state(51).line(1)),
        );
    let server = TdsServer::start(script).await.expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "pw").expect("pw");
    let conn = parse(
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\n",
            server.port()
        ),
        dir.path(),
    );
    let mut client = conn.connect().await.expect("connect");
    let mut run = async |sql: &str| -> tiberius::error::Error {
        match client.simple_query(sql).await {
            Err(e) => e,
            Ok(stream) => stream.into_results().await.expect_err("a server error"),
        }
    };
    let raised = classify(&run("EXEC dbo.close_order 7").await, &[1213, 1205]);
    assert!(!raised.retryable);
    assert_eq!(
        raised.message,
        "SQL Server error 50000 (class 16, state 1): order 7 is locked"
    );
    assert_eq!(
        raised.error,
        Some(serde_json::json!({"number": 50000, "class": 16, "state": 1,
            "procedure": "close_order", "line": 12, "message": "order 7 is locked"}))
    );
    let deadlock = classify(&run("UPDATE t SET x = 1").await, &[1213, 1205]);
    assert!(deadlock.retryable, "{deadlock:?}");
    assert_eq!(
        deadlock.error.as_ref().and_then(|e| e.get("number")),
        Some(&serde_json::json!(1205))
    );
}

#[tokio::test]
async fn a_named_instance_is_found_through_the_sql_browser() {
    use baton_tests::sql_browser::SqlBrowser;
    baton_tests::init_crypto();
    let server = TdsServer::start(version_script().instance("BATON"))
        .await
        .expect("start");
    let browser = SqlBrowser::start(&[("BATON", server.port())])
        .await
        .expect("browser");
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "pw").expect("pw");
    let with_instance = |instance: &str| {
        parse(
            &format!(
                "host = \"127.0.0.1\"\ninstance = \"{instance}\"\nbrowser_port = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\nconnect_timeout = \"5s\"\n",
                browser.port()
            ),
            dir.path(),
        )
    };
    assert_eq!(
        version(&with_instance("baton")).await,
        "Microsoft SQL Server 2022 (TDS test server)"
    );
    assert_eq!(server.logins().len(), 1);
    // The real SQL Browser does not answer for an unknown instance.
    let Err(err) = with_instance("OTHER").connect().await else {
        panic!("an unknown instance must not connect");
    };
    assert!(
        err.to_string()
            .contains("cannot reach instance OTHER on 127.0.0.1"),
        "{err}"
    );
    assert!(err.retryable());
    assert_eq!(
        browser.asked(),
        vec!["baton".to_owned(), "OTHER".to_owned()]
    );
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_refused_login_is_not_retryable_and_names_the_user() {
    baton_tests::init_crypto();
    let server = TdsServer::start(version_script().login("baton", "right"))
        .await
        .expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "wrong").expect("pw");
    let conn = parse(
        &format!(
            "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\n",
            server.port()
        ),
        dir.path(),
    );
    let Err(err) = conn.connect().await else {
        panic!("a wrong password must be refused");
    };
    assert!(
        err.to_string().contains("Login failed for user 'baton'"),
        "{err}"
    );
    assert!(!err.retryable(), "{err}");
    assert_eq!(server.logins().len(), 1);
    assert!(!server.logins()[0].accepted);
}
