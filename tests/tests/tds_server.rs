//! The TDS test server driven by the real tiberius 0.13 client: logins (plain
//! and TDS 8.0 strict TLS), `query` as `sp_executesql`, stored procedures with
//! OUT parameters and return status, result sets, errors, INFO, cancel and
//! timeouts; plus raw-socket checks that malformed input is refused.

use std::time::{Duration, Instant};

use baton_tests::pki::Pki;
use baton_tests::tds::raw::{self, RawClient};
use baton_tests::tds::*;
use chrono::{NaiveDate, NaiveDateTime};
use tds_common::{Conn, connect, exec, one_row as first_row, server_error};
use tiberius::numeric::Numeric;
use tiberius::{Command, Config, EncryptionLevel};

pub mod tds_common;

const WAIT: Duration = Duration::from_secs(5);

fn config(server: &TdsServer, user: &str, password: &str) -> Config {
    let mut c = tds_common::config(server, user, password, EncryptionLevel::NotSupported);
    c.database("jobs");
    c.application_name("baton-test");
    c
}

fn datetime(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("datetime literal")
}

#[tokio::test]
async fn plain_login_is_recorded_and_a_batch_gets_the_default_done() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new().login("baton", "pä$$wörd"))
        .await
        .expect("start");
    let mut client = connect(config(&server, "baton", "pä$$wörd"))
        .await
        .expect("login");
    let results = client
        .simple_query("UPDATE jobs SET state = 'x'")
        .await
        .expect("batch")
        .into_results()
        .await
        .expect("results");
    assert!(results.is_empty());
    client.close().await.expect("close");

    let log = server
        .wait_for(WAIT, |l| l.iter().any(|e| e.request == Request::Disconnect))
        .await
        .expect("disconnect recorded");
    let login = log[0].request.as_login().expect("login first");
    assert_eq!(login.user, "baton");
    assert_eq!(login.password, "pä$$wörd");
    assert_eq!(login.database, "jobs");
    assert_eq!(login.app_name, "baton-test");
    assert_eq!(login.server_name, "127.0.0.1");
    assert_eq!(login.tds_version, 0x7400_0004);
    assert!(login.accepted);
    let batch = Request::SqlBatch {
        text: "UPDATE jobs SET state = 'x'".into(),
    };
    assert_eq!(log[1].request, batch);
    assert!(log.iter().all(|e| e.conn == 1));
}

#[tokio::test]
async fn wrong_password_and_unknown_database_are_refused() {
    baton_tests::init_crypto();
    let script = Script::new().login("baton", "right").databases(&["jobs"]);
    let server = TdsServer::start(script).await.expect("start");

    let err = server_error(
        connect(config(&server, "baton", "wrong"))
            .await
            .expect_err("refused"),
    );
    assert_eq!(err.code(), 18456);
    assert_eq!(err.class(), 14);
    assert_eq!(err.message(), "Login failed for user 'baton'.");

    let mut cfg = config(&server, "baton", "right");
    cfg.database("nope");
    let err = server_error(connect(cfg).await.expect_err("refused"));
    assert_eq!(err.code(), 4060);

    // The plain server does not support encryption: a client that requires
    // it gives up after PRELOGIN; one that asks for login-only encryption
    // starts a TLS handshake the server refuses.
    for level in [EncryptionLevel::Required, EncryptionLevel::Off] {
        let mut cfg = config(&server, "baton", "right");
        cfg.encryption(level);
        cfg.trust_cert();
        connect(cfg).await.expect_err("no TLS on a plain server");
    }
    assert!(
        server
            .protocol_errors()
            .iter()
            .any(|(_, m)| m.contains("0x12"))
    );

    let logins = server.logins();
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0].password, "wrong");
    assert!(!logins[0].accepted);
    assert_eq!(logins[1].database, "nope");
    assert!(!logins[1].accepted);
    // Nothing else got through.
    assert!(server.rpcs().is_empty());
}

#[tokio::test]
async fn strict_tls_login_with_the_test_ca_and_refusal_of_other_cas() {
    baton_tests::init_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(dir.path()).expect("pki");
    let script = Script::new().on(
        Match::sql("SELECT @@VERSION"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("", SqlType::NVarChar(Some(128)))]),
            Token::row(["Microsoft SQL Server 2022 (TDS test server)"]),
            Token::done_rows(1),
        ]),
    );
    let server = TdsServer::start_strict(script, &pki.server_cert, &pki.server_key)
        .await
        .expect("start");

    let strict = |ca: &std::path::Path| {
        let mut c = config(&server, "baton", "pw");
        c.encryption(EncryptionLevel::Strict);
        c.trust_cert_ca(ca.display());
        c
    };
    let mut client = connect(strict(&pki.ca)).await.expect("strict login");
    let row = first_row(&mut client, "SELECT @@VERSION").await;
    assert_eq!(
        row.get::<&str, _>(0),
        Some("Microsoft SQL Server 2022 (TDS test server)")
    );
    drop(client);

    let err = connect(strict(&pki.other_ca)).await.expect_err("wrong CA");
    assert!(
        matches!(
            err,
            tiberius::error::Error::Tls(_) | tiberius::error::Error::Io { .. }
        ),
        "{err:?}"
    );
    // A plain TDS client cannot talk to a strict server either.
    connect(config(&server, "baton", "pw"))
        .await
        .expect_err("plain refused");

    let failed = |e: &Entry| matches!(e.request, Request::ProtocolError { .. });
    let log = server.wait_for(WAIT, |l| l.iter().filter(|e| failed(e)).count() >= 2);
    log.await.expect("TLS failures recorded");
    assert_eq!(
        server.logins().len(),
        1,
        "only the trusted client logged in"
    );
    let errors = server.protocol_errors();
    assert!(
        errors.iter().any(|(c, m)| *c == 2 && m.contains("TLS")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|(c, _)| *c == 3), "{errors:?}");
}

#[tokio::test]
async fn query_params_arrive_as_sp_executesql_with_types_and_values() {
    baton_tests::init_crypto();
    let server = TdsServer::start(Script::new()).await.expect("start");
    let mut cfg = config(&server, "u", "p");
    cfg.packet_size(8192); // the 12 kB request below then spans two 8 kB packets
    let mut client = connect(cfg).await.expect("login");
    let long = "x".repeat(6000);
    let created = datetime("2024-05-17 13:45:30.1234567");
    let day = NaiveDate::from_ymd_opt(2024, 2, 29).expect("date");
    let blob: &[u8] = &[0, 1, 2, 254, 255];
    client
        .execute(
            "INSERT INTO t VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7, @P8, @P9, @P10, @P11, @P12)",
            &[
                &42i32,
                &"héllo",
                &true,
                &1.5f64,
                &Numeric::new_with_scale(-12345, 2),
                &Option::<i32>::None,
                &created,
                &day,
                &blob,
                &9_000_000_000i64,
                &long.as_str(),
                &Option::<&str>::None,
            ],
        )
        .await
        .expect("execute");

    assert_eq!(server.logins()[0].packet_size, 8192);
    let rpc = server.rpcs().pop().expect("an RPC");
    assert_eq!(rpc.proc, ProcRef::Id(SP_EXECUTESQL));
    assert!(
        rpc.statement()
            .expect("stmt")
            .starts_with("INSERT INTO t VALUES (@P1")
    );
    assert_eq!(
        rpc.declarations(),
        Some(
            "@P1 int,@P2 nvarchar(4000),@P3 bit,@P4 float(53),@P5 numeric(5,2),@P6 int,\
             @P7 datetime2,@P8 date,@P9 varbinary(8000),@P10 bigint,@P11 nvarchar(max),\
             @P12 nvarchar(4000)"
        )
    );
    let got: Vec<(String, SqlType, Value, bool)> = rpc
        .args()
        .iter()
        .map(|p| (p.name.clone(), p.ty, p.value.clone(), p.output))
        .collect();
    let want = vec![
        ("@P1", SqlType::Int, Value::Int(42)),
        ("@P2", SqlType::NVarChar(Some(4000)), Value::from("héllo")),
        ("@P3", SqlType::Bit, Value::Bit(true)),
        ("@P4", SqlType::Float, Value::Float(1.5)),
        ("@P5", SqlType::numeric(5, 2), Value::decimal(-12345, 2)),
        ("@P6", SqlType::Int, Value::Null),
        ("@P7", SqlType::DateTime2(7), Value::DateTime2(created)),
        ("@P8", SqlType::Date, Value::Date(day)),
        (
            "@P9",
            SqlType::VarBinary(Some(8000)),
            Value::Binary(blob.to_vec()),
        ),
        ("@P10", SqlType::BigInt, Value::Int(9_000_000_000)),
        ("@P11", SqlType::NVarChar(None), Value::String(long.clone())),
        ("@P12", SqlType::Null, Value::Null),
    ];
    let want: Vec<(String, SqlType, Value, bool)> = want
        .into_iter()
        .map(|(n, t, v)| (n.to_string(), t, v, false))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn result_sets_with_several_types_and_nulls_are_read_by_tiberius() {
    baton_tests::init_crypto();
    let big = "é".repeat(9000); // 18 000 bytes: several reply packets
    let created = datetime("2023-12-31 23:59:59.9999999");
    let script = Script::new()
        .on(
            Match::sql("SELECT * FROM jobs"),
            Reply::tokens(vec![
                Token::columns(vec![
                    Column::new("id", SqlType::Int).not_null(),
                    Column::new("name", SqlType::NVarChar(Some(100))),
                    Column::new("ok", SqlType::Bit),
                    Column::new("ratio", SqlType::Float),
                    Column::new("amount", SqlType::decimal(10, 2)),
                    Column::new("created", SqlType::DateTime2(7)),
                    Column::new("blob", SqlType::VarBinary(None)),
                    Column::new("note", SqlType::NVarChar(None)),
                ]),
                Token::Row(vec![
                    Value::Int(1),
                    "first".into(),
                    Value::Bit(true),
                    Value::Float(0.25),
                    Value::decimal(123456, 2),
                    Value::DateTime2(created),
                    Value::Binary(vec![0xDE, 0xAD]),
                    Value::String(big.clone()),
                ]),
                Token::Row([vec![Value::Int(2)], vec![Value::Null; 7]].concat()),
                Token::DoneInProc(Done::new().more().count(2)),
                Token::columns(vec![Column::new("n", SqlType::BigInt)]),
                Token::row([7i64]),
                Token::DoneInProc(Done::new().more().count(1)),
                Token::ReturnStatus(0),
                Token::DoneProc(Done::new()),
            ]),
        )
        .on(
            Match::sql("DELETE"),
            Reply::tokens(vec![
                Token::DoneInProc(Done::new().more().count(3)),
                Token::DoneProc(Done::new()),
            ]),
        );
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    let sets = client
        .query("SELECT * FROM jobs WHERE id > @P1", &[&0i32])
        .await
        .expect("query")
        .into_results()
        .await
        .expect("rows");
    assert_eq!(sets.len(), 2);
    let (a, b) = (&sets[0][0], &sets[0][1]);
    assert_eq!(a.get::<i32, _>("id"), Some(1));
    assert_eq!(a.get::<&str, _>("name"), Some("first"));
    assert_eq!(a.get::<bool, _>("ok"), Some(true));
    assert_eq!(a.get::<f64, _>("ratio"), Some(0.25));
    let amount: Numeric = a.get("amount").expect("amount");
    assert_eq!((amount.value(), amount.scale()), (123456, 2));
    assert_eq!(a.get::<NaiveDateTime, _>("created"), Some(created));
    assert_eq!(a.get::<&[u8], _>("blob"), Some(&[0xDE, 0xAD][..]));
    assert_eq!(a.get::<&str, _>("note"), Some(big.as_str()));
    assert_eq!(b.get::<i32, _>("id"), Some(2));
    let strings = (b.get::<&str, _>("name"), b.get::<&str, _>("note"));
    assert_eq!(strings, (None, None));
    let others = (
        b.get::<bool, _>("ok"),
        b.get::<f64, _>("ratio"),
        b.get::<Numeric, _>("amount"),
    );
    assert!(others.0.is_none() && others.1.is_none() && others.2.is_none());
    assert_eq!(b.get::<NaiveDateTime, _>("created"), None);
    assert_eq!(b.get::<&[u8], _>("blob"), None);
    assert_eq!(sets[1][0].get::<i64, _>("n"), Some(7));

    let done = client
        .execute("DELETE FROM jobs", &[])
        .await
        .expect("execute");
    assert_eq!(done.rows_affected(), &[3]);

    let rpcs = server.rpcs();
    assert_eq!(
        rpcs[0].statement(),
        Some("SELECT * FROM jobs WHERE id > @P1")
    );
    assert_eq!(rpcs[0].args()[0].value, Value::Int(0));
    assert_eq!(rpcs[1].statement(), Some("DELETE FROM jobs"));
    assert!(rpcs[1].args().is_empty());
}

fn run_job_proc() -> Procedure {
    Procedure::new("dbo.usp_run_job")
        .param("@job_id", SqlType::Int)
        .param("@name", SqlType::NVarChar(Some(100)))
        .optional("@when", SqlType::DateTime2(7))
        .output("@rows", SqlType::BigInt)
        .output("@message", SqlType::NVarChar(Some(4000)))
}

#[tokio::test]
async fn stored_procedure_out_params_return_status_and_result_set() {
    baton_tests::init_crypto();
    let script = Script::new().procedure(run_job_proc()).on(
        Match::proc("dbo.usp_run_job"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("step", SqlType::NVarChar(Some(50)))]),
            Token::row(["extract"]),
            Token::row(["load"]),
            Token::DoneInProc(Done::new().more().count(2)),
            Token::ReturnStatus(-6),
            Token::return_value("@rows", SqlType::BigInt, 5i64),
            Token::return_value("@message", SqlType::NVarChar(Some(4000)), "done"),
            Token::DoneProc(Done::new()),
        ]),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    let mut cmd = Command::new("[dbo].[usp_run_job]");
    cmd.bind_param("@job_id", 7i32);
    cmd.bind_param("@name", "nightly");
    cmd.bind_out_param("@rows", Option::<i64>::None);
    cmd.bind_out_param("@message", "");
    let res = exec(&mut client, cmd).await.expect("result");
    assert_eq!(
        res.return_code() as i32,
        -6,
        "tiberius reads the status as u32"
    );
    assert_eq!(res.try_return_value::<i64>("@rows").expect("rows"), Some(5));
    assert_eq!(
        res.try_return_value::<&str>("@message").expect("msg"),
        Some("done")
    );
    assert_eq!(res.rows_affected(), &[2]);
    let steps: Vec<&str> = res
        .to_query_result(0)
        .expect("result set")
        .iter()
        .filter_map(|r| r.get::<&str, _>(0))
        .collect();
    assert_eq!(steps, ["extract", "load"]);

    let rpc = server.rpcs().pop().expect("rpc");
    assert_eq!(rpc.name(), Some("[dbo].[usp_run_job]"));
    let params: Vec<(&str, SqlType, &Value, bool)> = rpc
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.ty, &p.value, p.output))
        .collect();
    assert_eq!(
        params,
        vec![
            ("@job_id", SqlType::Int, &Value::Int(7), false),
            (
                "@name",
                SqlType::NVarChar(Some(4000)),
                &Value::from("nightly"),
                false
            ),
            ("@rows", SqlType::BigInt, &Value::Null, true),
            (
                "@message",
                SqlType::NVarChar(Some(4000)),
                &Value::from(""),
                true
            ),
        ]
    );
}

#[tokio::test]
async fn procedure_calls_are_checked_like_sql_server() {
    baton_tests::init_crypto();
    let script = Script::new().procedure(run_job_proc());
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    async fn run(client: &mut Conn, cmd: Command<'_>) -> tiberius::error::TokenError {
        server_error(exec(client, cmd).await.expect_err("refused"))
    }

    let cmd = Command::new("dbo.usp_nope");
    assert_eq!(run(&mut client, cmd).await.code(), 2812);

    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_param("@job_id", 1i32);
    let e = run(&mut client, cmd).await;
    assert_eq!((e.code(), e.class()), (201, 16));
    assert!(e.message().contains("'@name'"), "{}", e.message());

    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_out_param("@job_id", 1i32);
    cmd.bind_param("@name", "n");
    assert_eq!(run(&mut client, cmd).await.code(), 8162);

    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_param("@job_id", "abc");
    cmd.bind_param("@name", "n");
    assert_eq!(run(&mut client, cmd).await.code(), 8114);

    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_param("@job_id", 1i32);
    cmd.bind_param("@name", "n");
    cmd.bind_param("@when", 5i32);
    assert_eq!(run(&mut client, cmd).await.code(), 206);

    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_param("@job_id", 1i32);
    cmd.bind_param("@name", "n");
    cmd.bind_param("@extra", 5i32);
    assert_eq!(run(&mut client, cmd).await.code(), 8145);

    // sp_executesql by name: a declared parameter that is not supplied.
    let mut cmd = Command::new("sp_executesql");
    cmd.bind_param("@stmt", "SELECT @x");
    cmd.bind_param("@params", "@x int");
    assert_eq!(run(&mut client, cmd).await.code(), 8178);

    // The connection is still usable, and a correct call succeeds.
    let mut cmd = Command::new("dbo.usp_run_job");
    cmd.bind_param("@job_id", 1i32);
    cmd.bind_param("@name", "n");
    let res = exec(&mut client, cmd).await.expect("ok");
    assert_eq!(res.return_code(), 0);
    assert_eq!(server.rpcs().len(), 8);
}

#[tokio::test]
async fn server_error_surfaces_with_number_class_message_and_line() {
    baton_tests::init_crypto();
    let raised = ServerMessage::new(50000, 16, "job 7 failed: disk full")
        .state(3)
        .procedure("usp_run_job")
        .line(12);
    let script = Script::new()
        .on(Match::sql("THROW"), Reply::error(raised.clone()))
        .on_times(
            1,
            Match::proc("dbo.usp_flaky"),
            Reply::proc_error(raised, -6),
        )
        .on(Match::proc("dbo.usp_flaky"), Reply::proc_return(0));
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    let err = match client.simple_query("THROW 50000, 'x', 3").await {
        Ok(stream) => stream.into_results().await.expect_err("error"),
        Err(e) => e,
    };
    let e = server_error(err);
    assert_eq!(e.code(), 50000);
    assert_eq!(e.class(), 16);
    assert_eq!(e.state(), 3);
    assert_eq!(e.message(), "job 7 failed: disk full");
    assert_eq!(e.procedure(), "usp_run_job");
    assert_eq!(e.line(), 12);
    assert_eq!(e.server(), "BATONTDS");

    // First call fails (on_times 1), the retry succeeds.
    let first = exec(&mut client, Command::new("dbo.usp_flaky")).await;
    assert_eq!(server_error(first.expect_err("fails")).code(), 50000);
    let second = exec(&mut client, Command::new("dbo.usp_flaky")).await;
    assert_eq!(second.expect("retry succeeds").return_code(), 0);
    assert_eq!(server.rpcs().len(), 2);
}

#[tokio::test]
async fn info_messages_and_paced_progress_do_not_break_the_stream() {
    baton_tests::init_crypto();
    let progress = |p: u32| Token::info(3211, format!("{p} percent processed."));
    let script = Script::new()
        .on(
            Match::batch("BACKUP DATABASE"),
            Reply::tokens(vec![progress(10)])
                .then_sleep(Duration::from_millis(150))
                .then(vec![
                    progress(100),
                    Token::info(3014, "BACKUP DATABASE successfully processed."),
                ])
                .then(vec![Token::done()]),
        )
        .on(
            Match::sql("SELECT"),
            Reply::tokens(vec![
                Token::info(5701, "Changed database context to 'jobs'."),
                Token::columns(vec![Column::new("v", SqlType::Int)]),
                Token::info(0, "between rows"),
                Token::row([1]),
                Token::row([2]),
                Token::done_rows(2),
            ]),
        );
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    let started = Instant::now();
    client
        .simple_query("BACKUP DATABASE [jobs] TO DISK = N'/b/jobs.bak' WITH CHECKSUM, COPY_ONLY")
        .await
        .expect("backup")
        .into_results()
        .await
        .expect("backup done");
    assert!(started.elapsed() >= Duration::from_millis(150));

    let rows = client
        .simple_query("SELECT v FROM t")
        .await
        .expect("query")
        .into_first_result()
        .await
        .expect("rows");
    let values: Vec<i32> = rows.iter().filter_map(|r| r.get(0)).collect();
    assert_eq!(values, [1, 2]);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.sql().is_some_and(|s| s.contains("COPY_ONLY")))
    );
}

#[tokio::test]
async fn cancel_query_sends_an_attention_and_the_connection_stays_usable() {
    baton_tests::init_crypto();
    let script = Script::new().on(Match::sql("WAITFOR"), Reply::hang()).on(
        Match::sql("SELECT 1"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("", SqlType::Int)]),
            Token::row([1]),
            Token::done_rows(1),
        ]),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");

    let timed_out = tokio::time::timeout(
        Duration::from_millis(300),
        client.simple_query("WAITFOR DELAY '01:00:00'"),
    )
    .await
    .is_err();
    assert!(timed_out, "the hanging batch must not complete");
    client.cancel_query().await.expect("attention acknowledged");

    let row = first_row(&mut client, "SELECT 1").await;
    assert_eq!(row.get::<i32, _>(0), Some(1));

    let kinds: Vec<String> = server
        .requests()
        .iter()
        .skip(1)
        .map(|r| match r {
            Request::SqlBatch { text } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["WAITFOR DELAY '01:00:00'", "Attention", "SELECT 1"]);
}

#[tokio::test]
async fn scripted_delay_with_a_command_timeout_is_recorded_as_a_disconnect() {
    baton_tests::init_crypto();
    let script = Script::new().on(
        Match::sql("slow"),
        Reply::done().delay(Duration::from_secs(30)),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut cfg = config(&server, "u", "p");
    cfg.command_timeout(Some(Duration::from_millis(300)));
    let mut client = connect(cfg).await.expect("login");

    let started = Instant::now();
    let err = match client.simple_query("EXEC slow").await {
        Ok(s) => s.into_results().await.expect_err("timeout"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            tiberius::error::Error::Io {
                kind: std::io::ErrorKind::TimedOut,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(client); // the agent drops a timed-out connection

    let log = server
        .wait_for(WAIT, |l| l.iter().any(|e| e.request == Request::Disconnect))
        .await
        .expect("disconnect during the delay");
    assert_eq!(log.last().map(|e| &e.request), Some(&Request::Disconnect));
    assert!(!log.iter().any(|e| e.request == Request::Attention));
}

#[tokio::test]
async fn dynamic_responders_see_the_request_and_connection() {
    baton_tests::init_crypto();
    let script = Script::new().on(
        Match::sql("SELECT @P1 + 1"),
        Responder::dynamic(|ctx: Ctx| async move {
            let n = ctx
                .request
                .as_rpc()
                .and_then(|r| r.args()[0].value.as_i64())
                .unwrap_or(0);
            Reply::tokens(vec![
                Token::columns(vec![
                    Column::new("n", SqlType::BigInt),
                    Column::new("conn", SqlType::BigInt),
                ]),
                Token::row([n + 1, ctx.conn as i64]),
                Token::done_rows(1),
            ])
        }),
    );
    let server = TdsServer::start(script).await.expect("start");
    let mut client = connect(config(&server, "u", "p")).await.expect("login");
    let row = client
        .query("SELECT @P1 + 1", &[&41i64])
        .await
        .expect("query")
        .into_row()
        .await
        .expect("row")
        .expect("one row");
    assert_eq!(row.get::<i64, _>("n"), Some(42));
    assert_eq!(row.get::<i64, _>("conn"), Some(1));
}

#[tokio::test]
async fn raw_replies_are_split_at_the_packet_size_and_malformed_input_is_refused() {
    baton_tests::init_crypto();
    let big = "z".repeat(5000); // 10 000 bytes of UTF-16
    let script = Script::new().on(
        Match::batch("big"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("v", SqlType::NVarChar(None))]),
            Token::row([big.as_str()]),
            Token::done_rows(1),
        ]),
    );
    let server = TdsServer::start(script).await.expect("start");
    let addr = server.addr();
    let login = || RawClient::login(addr, "raw", "pw€", "jobs");
    let refused = |conn: u64, needle: &'static str| {
        let errors = server.protocol_errors();
        let found = errors.iter().any(|(c, m)| *c == conn && m.contains(needle));
        assert!(
            found,
            "no protocol error {needle:?} on conn {conn}: {errors:?}"
        );
    };

    // Framing: a 10 kB reply comes as 4096-byte packets, EOM only on the last.
    let mut c = login().await.expect("login");
    c.send(0x01, 1, &raw::sql_batch("SELECT big"))
        .await
        .expect("batch");
    let reply = c.read_message().await.expect("reply");
    assert!(reply.packets.len() >= 3, "{:?}", reply.packets);
    let (last, full) = reply.packets.split_last().expect("packets");
    assert!(
        full.iter().all(|&(status, len)| status == 0 && len == 4096),
        "{full:?}"
    );
    assert!(last.0 == 1 && last.1 <= 4096);
    assert!(reply.payload.windows(4).any(|w| w == [b'z', 0, b'z', 0]));
    let l = &server.logins()[0];
    assert_eq!((l.user.as_str(), l.password.as_str()), ("raw", "pw€"));

    // INTN with a length SQL Server does not have.
    let intn: &[u8] = &[0x26, 3, 3, 1, 2, 3];
    c.send(0x03, 1, &raw::rpc("p", &[("@a", 0, intn)]))
        .await
        .expect("rpc");
    c.expect_closed(WAIT).await.expect("closed");
    refused(1, "INTN with length 3");

    // NUMERIC(2,0) value 100 exceeds its precision.
    let mut c = login().await.expect("login");
    let numeric: &[u8] = &[0x6C, 5, 2, 0, 5, 1, 100, 0, 0, 0];
    c.send(0x03, 1, &raw::rpc("p", &[("@a", 0, numeric)]))
        .await
        .expect("rpc");
    c.expect_closed(WAIT).await.expect("closed");
    refused(2, "exceeds the precision");

    // A non-final packet shorter than the negotiated packet size.
    let mut c = login().await.expect("login");
    c.send(0x01, 0, &raw::all_headers()).await.expect("packet");
    c.expect_closed(WAIT).await.expect("closed");
    refused(3, "non-final packet");

    // A SQL batch before PRELOGIN.
    let mut c = RawClient::connect(addr).await.expect("connect");
    c.send(0x01, 1, &raw::sql_batch("SELECT 1"))
        .await
        .expect("packet");
    c.expect_closed(WAIT).await.expect("closed");
    refused(4, "unexpected packet type 0x01");

    // A batch without ALL_HEADERS' transaction descriptor.
    let mut c = login().await.expect("login");
    let mut bad = 4u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&raw::sql_batch("SELECT 1")[22..]);
    c.send(0x01, 1, &bad).await.expect("packet");
    c.expect_closed(WAIT).await.expect("closed");
    refused(5, "transaction descriptor");
}
