//! The agent's SQL Server `procedure` and `sql` executors
//! (`baton_agent::db::mssql::MssqlExecutor`) driven directly against the TDS
//! test server: what reaches the server (names, parameter types and values,
//! the applock, the ledger statements, ATTENTION) and what the outcome says.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use baton_agent::db::mssql::connection::MssqlConnection;
use baton_agent::db::mssql::{Connections, MssqlExecutor};
use baton_agent::db::mysql::Limits;
use baton_agent::executor::{Cancel, CancelReason, Executor, Job, Outcome, ProgressHandle};
use baton_proto::{
    Completion, JobSpec, ParamMode, ParamValue, ProcedureParam, ProcedureSpec, SqlSpec,
};
use baton_tests::tds::*;
use serde_json::{Value as Json, json};

const FLEET: &str = "f00dfeed";
const WAIT: Duration = Duration::from_secs(10);

/// A server and the agent's connection to it.
struct Env {
    server: TdsServer,
    connections: Arc<Connections>,
    _dir: tempfile::TempDir,
}

async fn env(script: Script) -> Env {
    baton_tests::init_crypto();
    let server = TdsServer::start(script).await.expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pw"), "s3cret\n").expect("pw");
    let src = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\ndatabase = \"shop\"\nencrypt = \"off\"\n",
        server.port()
    );
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let conn = MssqlConnection::parse("sql", &settings, Some(dir.path())).expect("connection");
    Env {
        server,
        connections: Arc::new(Connections::new([conn]).with_fleet(FLEET)),
        _dir: dir,
    }
}

fn param(name: &str, mode: ParamMode, value: ParamValue, sql_type: Option<&str>) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode,
        value: Some(value),
        sql_type: sql_type.map(str::to_owned),
    }
}

fn procedure(name: &str, params: Vec<ProcedureParam>, exactly_once: bool) -> JobSpec {
    JobSpec::Procedure(ProcedureSpec {
        connection: "sql".into(),
        procedure: name.into(),
        params,
        exactly_once,
        session: Default::default(),
    })
}

fn sql(text: &str, exactly_once: bool) -> JobSpec {
    JobSpec::Sql(SqlSpec {
        connection: "sql".into(),
        sql: text.into(),
        exactly_once,
        session: Default::default(),
    })
}

fn job(job_id: i64, spec: JobSpec) -> Job {
    Job {
        job_id,
        token: 9,
        attempt: 2,
        retry_codes: vec![1213, 1205],
        spec,
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(1024),
    }
}

fn executor(env: &Env, spec: &JobSpec) -> MssqlExecutor {
    match spec {
        JobSpec::Sql(_) => MssqlExecutor::sql(env.connections.clone()),
        _ => MssqlExecutor::procedure(env.connections.clone()),
    }
}

async fn run(env: &Env, job: Job) -> Outcome {
    executor(env, &job.spec).execute(job).await
}

fn data(out: &Outcome) -> &Json {
    out.result.data.as_ref().expect("data")
}

fn lock(job_id: i64) -> String {
    format!("baton:{FLEET}:job:{job_id}")
}

/// The named RPCs (not sp_executesql) the server saw, by name.
fn rpcs_named(server: &TdsServer, name: &str) -> Vec<Rpc> {
    server
        .rpcs()
        .into_iter()
        .filter(|r| {
            r.name()
                .is_some_and(|n| normalize_name(n) == normalize_name(name))
        })
        .collect()
}

fn batches(server: &TdsServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter_map(|r| match r {
            Request::SqlBatch { text } => Some(text),
            _ => None,
        })
        .collect()
}

fn transfer_proc() -> Procedure {
    Procedure::new("dbo.usp_transfer")
        .param("@from", SqlType::Int)
        .param("@amount", SqlType::decimal(10, 2))
        .param("@note", SqlType::NVarChar(Some(100)))
        .param("@day", SqlType::Date)
        .output("@total", SqlType::decimal(12, 2))
        .output("@count", SqlType::Int)
}

fn transfer_params() -> Vec<ProcedureParam> {
    vec![
        param("from", ParamMode::In, ParamValue::Int(7), Some("int")),
        param(
            "amount",
            ParamMode::In,
            ParamValue::Decimal("12.50".into()),
            None,
        ),
        param(
            "note",
            ParamMode::In,
            ParamValue::String("rent".into()),
            None,
        ),
        param(
            "day",
            ParamMode::In,
            ParamValue::Date("2026-02-28".into()),
            None,
        ),
        param(
            "total",
            ParamMode::Out,
            ParamValue::Null,
            Some("decimal(12,2)"),
        ),
        param("count", ParamMode::InOut, ParamValue::Int(3), Some("int")),
    ]
}

#[tokio::test]
async fn procedure_binds_typed_params_and_captures_sets_out_values_and_status() {
    let script = Script::new().procedure(transfer_proc()).on(
        Match::proc("dbo.usp_transfer"),
        Reply::tokens(vec![
            Token::columns(vec![
                Column::new("id", SqlType::Int),
                Column::new("name", SqlType::NVarChar(Some(20))),
            ]),
            Token::Row(vec![Value::Int(1), Value::String("a".into())]),
            Token::Row(vec![Value::Int(2), Value::Null]),
            Token::Row(vec![Value::Int(3), Value::String("c".into())]),
            Token::DoneInProc(Done::new().more().count(3)),
            Token::DoneInProc(Done::new().more().count(5)),
            Token::return_value(
                "@total",
                SqlType::decimal(12, 2),
                Value::decimal(123_450, 2),
            ),
            Token::return_value("@count", SqlType::Int, 8),
            Token::ReturnStatus(-7),
            Token::DoneProc(Done::new()),
        ]),
    );
    let env = env(script).await;
    let exec = MssqlExecutor::procedure(env.connections.clone()).with_limits(Limits {
        max_rows: 2,
        ..Limits::default()
    });
    let out = exec
        .execute(job(
            41,
            procedure("dbo.usp_transfer", transfer_params(), false),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert!(out.result.truncated);
    let d = data(&out);
    assert_eq!(
        d["result_sets"],
        json!([{"columns": ["id", "name"], "types": ["int", "string"],
                "rows": [[1, "a"], [2, null]], "truncated": true}])
    );
    assert_eq!(d["out"], json!({"total": "1234.50", "count": 8}));
    assert_eq!(d["return_status"], json!(-7));
    assert_eq!(d["affected_rows"], json!(5));

    // What the server received: the quoted name, @names, TDS types, values.
    let rpc = rpcs_named(&env.server, "dbo.usp_transfer");
    assert_eq!(rpc.len(), 1, "{rpc:?}");
    assert_eq!(rpc[0].name(), Some("[dbo].[usp_transfer]"));
    let got: Vec<(&str, SqlType, Value, bool)> = rpc[0]
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.ty, p.value.clone(), p.output))
        .collect();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 2, 28).expect("date");
    assert_eq!(
        got,
        vec![
            ("@from", SqlType::Int, Value::Int(7), false),
            (
                "@amount",
                SqlType::numeric(4, 2),
                Value::decimal(1250, 2),
                false
            ),
            (
                "@note",
                SqlType::NVarChar(Some(4000)),
                Value::String("rent".into()),
                false
            ),
            ("@day", SqlType::Date, Value::Date(day), false),
            ("@total", SqlType::Null, Value::Null, true),
            ("@count", SqlType::Int, Value::Int(3), true),
        ]
    );
    // The applock: taken with the contract's arguments, released explicitly.
    let get = rpcs_named(&env.server, "sp_getapplock");
    assert_eq!(get.len(), 1);
    let args: Vec<(&str, Value)> = get[0]
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.value.clone()))
        .collect();
    assert_eq!(
        args,
        vec![
            ("@Resource", Value::String(lock(41))),
            ("@LockMode", Value::String("Exclusive".into())),
            ("@LockOwner", Value::String("Session".into())),
            ("@LockTimeout", Value::Int(1000)),
        ]
    );
    let locks = env.server.applocks();
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0].resource, lock(41));
    assert_eq!(locks[0].released_by, Some(LockRelease::Explicit));
    assert_eq!(rpcs_named(&env.server, "sp_releaseapplock").len(), 1);
    // One connection per job, @@SPID asked first, no transaction without the ledger.
    assert_eq!(env.server.connections(), 1);
    assert_eq!(batches(&env.server), vec!["SELECT @@SPID".to_owned()]);
}

#[tokio::test]
async fn sql_batch_keeps_every_result_set() {
    let text = "SELECT 1 AS a; SELECT N'x' AS b, 2.5 AS c";
    let script = Script::new().on(
        Match::batch("SELECT 1 AS a"),
        Reply::tokens(vec![
            Token::columns(vec![Column::new("a", SqlType::Int)]),
            Token::row([1]),
            Token::Done(Done::new().more().count(1)),
            Token::columns(vec![
                Column::new("b", SqlType::NVarChar(Some(1))),
                Column::new("c", SqlType::decimal(2, 1)),
            ]),
            Token::Row(vec![Value::String("x".into()), Value::decimal(25, 1)]),
            Token::done_rows(1),
        ]),
    );
    let env = env(script).await;
    let out = run(&env, job(42, sql(text, false))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    assert_eq!(
        d["result_sets"],
        json!([
            {"columns": ["a"], "types": ["int"], "rows": [[1]], "truncated": false},
            {"columns": ["b", "c"], "types": ["string", "decimal"], "rows": [["x", "2.5"]], "truncated": false}
        ])
    );
    assert_eq!(d["affected_rows"], Json::Null);
    assert_eq!(d["truncated"], json!(false));
    assert!(batches(&env.server).contains(&text.to_owned()));
    assert_eq!(env.server.applocks().len(), 1);
}

fn raised(number: i32, class: u8, state: u8) -> ServerMessage {
    ServerMessage::new(number, class, "order 7 is locked")
        .state(state)
        .procedure("usp_close")
        .line(12)
}

#[tokio::test]
async fn error_50000_keeps_every_field_and_is_not_retried() {
    let script = Script::new().on(
        Match::proc("dbo.usp_close"),
        Reply::proc_error(raised(50000, 16, 1), -6),
    );
    let env = env(script).await;
    let out = run(&env, job(43, procedure("dbo.usp_close", vec![], false))).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert_eq!(
        out.error.as_deref(),
        Some("SQL Server error 50000 (class 16, state 1): order 7 is locked")
    );
    assert_eq!(
        data(&out)["error"],
        json!({"number": 50000, "class": 16, "state": 1, "procedure": "usp_close",
               "line": 12, "message": "order 7 is locked"})
    );
    // The session stays usable: the applock is released explicitly.
    let locks = env.server.applocks();
    assert_eq!(
        locks[0].released_by,
        Some(LockRelease::Explicit),
        "{locks:?}"
    );
}

#[tokio::test]
async fn deadlock_1205_is_retryable() {
    let script = Script::new().on(
        Match::proc("dbo.usp_close"),
        Reply::proc_error(raised(1205, 13, 51), -6),
    );
    let env = env(script).await;
    let out = run(&env, job(44, procedure("dbo.usp_close", vec![], false))).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: true },
        "{out:?}"
    );
    assert_eq!(data(&out)["error"]["number"], json!(1205));
    let mut j = job(44, procedure("dbo.usp_close", vec![], false));
    j.retry_codes = vec![];
    let out = run(&env, j).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
}

#[tokio::test]
async fn an_invalid_spec_fails_for_good_without_connecting() {
    let env = env(Script::new()).await;
    let bad = procedure(
        "dbo.usp_x",
        vec![
            param("a", ParamMode::In, ParamValue::Int(1), None),
            param("b", ParamMode::In, ParamValue::Int(300), Some("tinyint")),
        ],
        false,
    );
    let out = run(&env, job(45, bad)).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let e = out.error.unwrap_or_default();
    assert!(e.starts_with("spec.params[1].value (b)"), "{e}");
    let out = run(
        &env,
        job(45, procedure("x]; DROP TABLE t; --", vec![], false)),
    )
    .await;
    assert!(out.error.unwrap_or_default().starts_with("spec.procedure"));
    assert_eq!(env.server.connections(), 0);
}

/// Run `job` in the background, wait until the server saw `name` called.
async fn start_and_wait_for_proc(
    env: &Env,
    job: Job,
    name: &str,
) -> tokio::task::JoinHandle<Outcome> {
    let exec = executor(env, &job.spec);
    let handle = tokio::spawn(async move { exec.execute(job).await });
    let name = name.to_owned();
    env.server
        .wait_for(WAIT, move |log| {
            log.iter().any(|e| {
                e.request
                    .as_rpc()
                    .and_then(|r| r.name())
                    .is_some_and(|n| normalize_name(n) == normalize_name(&name))
            })
        })
        .await
        .expect("the procedure was called");
    handle
}

#[tokio::test]
async fn cancel_mid_procedure_sends_attention_and_says_so() {
    let script = Script::new().on(Match::proc("dbo.usp_slow"), Reply::hang());
    let env = env(script).await;
    let j = job(46, procedure("dbo.usp_slow", vec![], false));
    let cancel = j.cancel.clone();
    let handle = start_and_wait_for_proc(&env, j, "dbo.usp_slow").await;
    cancel.cancel(CancelReason::Cancelled);
    let out = handle.await.expect("join");
    assert_eq!(out.completion, Completion::Cancelled, "{out:?}");
    let spid = spid(1);
    assert_eq!(
        out.error.as_deref(),
        Some(
            format!(
                "stopped: cancelled; attention sent to SQL Server session {spid}, acknowledged"
            )
            .as_str()
        )
    );
    assert_eq!(
        data(&out)["cancel"],
        json!({"attention_sent": true, "acknowledged": true, "session_id": spid, "error": null})
    );
    assert!(env.server.requests().contains(&Request::Attention));
    // The connection is dropped: the session ends and frees the applock.
    env.server
        .wait_until(WAIT, |s| {
            s.applocks()
                .iter()
                .all(|l| l.released_by == Some(LockRelease::SessionEnd))
        })
        .await
        .expect("applock freed by the session's end");
    assert!(rpcs_named(&env.server, "sp_releaseapplock").is_empty());
}

#[tokio::test]
async fn timeout_sends_attention_and_times_out() {
    let script = Script::new().on(Match::batch("WAITFOR DELAY"), Reply::hang());
    let env = env(script).await;
    let mut j = job(47, sql("WAITFOR DELAY '01:00:00'", false));
    j.timeout = Some(Duration::from_millis(500));
    let out = run(&env, j).await;
    assert_eq!(out.completion, Completion::TimedOut, "{out:?}");
    let e = out.error.unwrap_or_default();
    assert!(
        e.starts_with("timed out after 500ms; attention sent to SQL Server session"),
        "{e}"
    );
    assert!(e.ends_with(", acknowledged"), "{e}");
    assert!(env.server.requests().contains(&Request::Attention));
}

#[tokio::test]
async fn a_held_applock_makes_the_job_wait_then_run() {
    let script = Script::new().hold_applock(&lock(48));
    let env = env(script).await;
    let j = job(48, sql("UPDATE t SET x = 1", false));
    let progress = j.progress.clone();
    let exec = executor(&env, &j.spec);
    let handle = tokio::spawn(async move { exec.execute(j).await });
    let want = format!(
        "waiting for the database lock {} held by another session",
        lock(48)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (p, _) = progress.snapshot();
        if p.as_ref().is_some_and(|p| p.message == want) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never waited: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!handle.is_finished());
    assert!(!batches(&env.server).iter().any(|b| b.starts_with("UPDATE")));
    assert!(env.server.release_applock(&lock(48)));
    let out = handle.await.expect("join");
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let ours: Vec<LockGrant> = env
        .server
        .applocks()
        .into_iter()
        .filter(|l| l.conn == 1)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(batches(&env.server).iter().any(|b| b.starts_with("UPDATE")));
    assert!(rpcs_named(&env.server, "sp_getapplock").len() >= 2);
}

fn booking_proc() -> Procedure {
    Procedure::new("dbo.usp_book").param("@id", SqlType::BigInt)
}

fn booking(job_id: i64) -> Job {
    job(
        job_id,
        procedure(
            "dbo.usp_book",
            vec![param("id", ParamMode::In, ParamValue::Int(5), None)],
            true,
        ),
    )
}

#[tokio::test]
async fn exactly_once_commits_the_work_with_its_ledger_row() {
    let env = env(Script::new().procedure(booking_proc())).await;
    let out = run(&env, booking(50)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    assert_eq!(d["ledger"], json!("committed"));
    assert_eq!(d["return_status"], json!(0));
    assert!(d.get("ledger_warning").is_none(), "{d}");
    let rows = env.server.ledger_rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (
            rows[0].fleet.as_str(),
            rows[0].job_id,
            rows[0].attempt,
            rows[0].token
        ),
        (FLEET, 50, 2, 9)
    );
    let stored: Json = serde_json::from_str(&rows[0].result).expect("json");
    assert_eq!(&stored, d);
    let effects = env.server.effects("dbo.usp_book");
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].state, EffectState::Committed);
    assert_eq!(env.server.trancount(1), 0);
    let b = batches(&env.server);
    assert!(
        b.iter()
            .any(|s| s == "SET XACT_ABORT ON; BEGIN TRANSACTION"),
        "{b:?}"
    );
    assert!(b.iter().any(|s| s == "COMMIT TRANSACTION"), "{b:?}");
}

#[tokio::test]
async fn exactly_once_replays_a_committed_result_without_running() {
    let script = Script::new().procedure(booking_proc()).ledger_row(
        FLEET,
        51,
        1,
        4,
        r#"{"result_sets":[],"out":{"x":1},"ledger":"committed"}"#,
    );
    let env = env(script).await;
    let out = run(&env, booking(51)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    assert_eq!(d["ledger"], json!("replayed"));
    assert_eq!(d["out"], json!({"x": 1}));
    assert_eq!(d["replayed_from"]["attempt"], json!(1));
    assert_eq!(d["replayed_from"]["token"], json!(4));
    assert!(d["replayed_from"]["committed_at"].is_string(), "{d}");
    assert!(rpcs_named(&env.server, "dbo.usp_book").is_empty());
    assert!(env.server.all_effects().is_empty());
    assert_eq!(env.server.ledger_rows().len(), 1);
}

#[tokio::test]
async fn exactly_once_failure_rolls_back_and_writes_no_row() {
    // The work succeeds, then the ledger row cannot be written.
    let script = Script::new().procedure(booking_proc()).on(
        Match::sql("INSERT INTO dbo.baton_ledger"),
        Reply::error(
            ServerMessage::new(
                2627,
                14,
                "Violation of PRIMARY KEY constraint 'pk_baton_ledger'.",
            )
            .line(1),
        ),
    );
    let env = env(script).await;
    let out = run(&env, booking(52)).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{out:?}"
    );
    assert_eq!(data(&out)["error"]["number"], json!(2627));
    assert!(env.server.ledger_rows().is_empty());
    let effects = env.server.effects("dbo.usp_book");
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert_eq!(effects[0].state, EffectState::RolledBack);
    assert!(
        batches(&env.server)
            .iter()
            .any(|s| s == "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION")
    );
    assert!(
        !batches(&env.server)
            .iter()
            .any(|s| s == "COMMIT TRANSACTION")
    );
    assert_eq!(env.server.trancount(1), 0);
}

#[tokio::test]
async fn a_procedure_that_commits_by_itself_gets_a_ledger_warning() {
    let script = Script::new().procedure(booking_proc()).on(
        Match::proc("dbo.usp_book"),
        Reply::default()
            .then_commit()
            .then(vec![Token::ReturnStatus(0), Token::DoneProc(Done::new())]),
    );
    let env = env(script).await;
    let out = run(&env, booking(54)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    assert_eq!(d["ledger"], json!("committed"));
    assert!(
        d["ledger_warning"]
            .as_str()
            .is_some_and(|w| w.contains("not committed atomically")),
        "{d}"
    );
    assert_eq!(env.server.ledger_rows().len(), 1);
    assert_eq!(
        env.server.effects("dbo.usp_book")[0].state,
        EffectState::Committed
    );
    // No COMMIT without a transaction (SQL Server would answer 3902).
    assert!(
        !batches(&env.server)
            .iter()
            .any(|s| s == "COMMIT TRANSACTION")
    );
}

#[tokio::test]
async fn a_stop_inside_the_ledger_transaction_commits_nothing() {
    let script = Script::new()
        .procedure(booking_proc())
        .on(Match::proc("dbo.usp_book"), Reply::hang());
    let env = env(script).await;
    let j = booking(53);
    let cancel = j.cancel.clone();
    let handle = start_and_wait_for_proc(&env, j, "dbo.usp_book").await;
    cancel.cancel(CancelReason::LeaseLost);
    let out = handle.await.expect("join");
    assert_eq!(out.completion, Completion::Cancelled);
    assert!(
        out.error
            .as_deref()
            .is_some_and(|e| e.starts_with("stopped: lease lost; attention sent")),
        "{out:?}"
    );
    env.server
        .wait_until(WAIT, |s| {
            s.trancount(1) == 0 && s.applocks().iter().all(|l| l.released_at.is_some())
        })
        .await
        .expect("session ended");
    assert!(env.server.ledger_rows().is_empty());
    assert!(
        env.server
            .all_effects()
            .iter()
            .all(|e| e.state != EffectState::Committed)
    );
    assert!(
        !batches(&env.server)
            .iter()
            .any(|s| s == "COMMIT TRANSACTION")
    );
}

#[tokio::test]
async fn a_cancel_while_waiting_for_the_applock_runs_nothing() {
    let env = env(Script::new().hold_applock(&lock(55))).await;
    let j = job(55, sql("UPDATE t SET x = 1", false));
    let cancel = j.cancel.clone();
    let handle = start_and_wait_for_proc(&env, j, "sp_getapplock").await;
    cancel.cancel(CancelReason::Cancelled);
    let out = handle.await.expect("join");
    assert_eq!(out.completion, Completion::Cancelled, "{out:?}");
    assert_eq!(data(&out)["cancel"]["attention_sent"], json!(true));
    assert!(!batches(&env.server).iter().any(|b| b.starts_with("UPDATE")));
    assert!(env.server.applocks().iter().all(|l| l.conn != 1));
}

#[tokio::test]
async fn no_server_is_a_retryable_failure() {
    let env = env(Script::new()).await;
    let port = env.server.port();
    drop(env.server);
    // Wait until the port refuses connections.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(tokio::time::Instant::now() < deadline, "port still open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let exec = MssqlExecutor::sql(env.connections.clone());
    let out = exec.execute(job(56, sql("SELECT 1", false))).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: true },
        "{out:?}"
    );
    assert!(
        out.error.as_deref().is_some_and(
            |e| e.starts_with("connection ") && e.contains(": cannot reach 127.0.0.1:")
        ),
        "{out:?}"
    );
}

#[tokio::test]
async fn values_without_sql_type_reach_the_server_with_their_natural_types() {
    let env = env(Script::new()).await;
    let params = vec![
        param("flag", ParamMode::In, ParamValue::Bool(true), None),
        param("n", ParamMode::In, ParamValue::Int(-5_000_000_000), None),
        param("ratio", ParamMode::In, ParamValue::Float(0.25), None),
        param(
            "blob",
            ParamMode::In,
            ParamValue::Bytes("AP8B".into()),
            None,
        ),
        param(
            "at",
            ParamMode::In,
            ParamValue::DateTime("2026-02-28T10:11:12.5".into()),
            None,
        ),
        param(
            "small",
            ParamMode::InOut,
            ParamValue::Int(9),
            Some("smallint"),
        ),
    ];
    let out = run(&env, job(57, procedure("usp_types", params, false))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    assert_eq!(data(&out)["return_status"], json!(0));
    let rpc = rpcs_named(&env.server, "usp_types");
    assert_eq!(rpc[0].name(), Some("[usp_types]"));
    let at = chrono::NaiveDate::from_ymd_opt(2026, 2, 28)
        .and_then(|d| d.and_hms_milli_opt(10, 11, 12, 500))
        .expect("datetime");
    let got: Vec<(&str, SqlType, Value, bool)> = rpc[0]
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.ty, p.value.clone(), p.output))
        .collect();
    assert_eq!(
        got,
        vec![
            ("@flag", SqlType::Bit, Value::Bit(true), false),
            ("@n", SqlType::BigInt, Value::Int(-5_000_000_000), false),
            ("@ratio", SqlType::Float, Value::Float(0.25), false),
            (
                "@blob",
                SqlType::VarBinary(Some(8000)),
                Value::Binary(vec![0, 255, 1]),
                false
            ),
            ("@at", SqlType::DateTime2(7), Value::DateTime2(at), false),
            ("@small", SqlType::SmallInt, Value::Int(9), true),
        ]
    );
}
