//! Session settings and OUT parameters without a value on the SQL Server
//! executor, against the TDS test server (issue 16 points 9 and 14): the
//! settings arrive as one plain SQL batch (not `sp_executesql`, where a SET
//! would revert when the call ends) on the job's own session before the
//! work, built only from checked values; a key of another engine runs
//! nothing; and the next job's session (a new connection) has none of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton_agent::db::mssql::connection::MssqlConnection;
use baton_agent::db::mssql::{Connections, MssqlExecutor};
use baton_agent::executor::{Cancel, Executor, Job, Outcome, ProgressHandle};
use baton_proto::{
    Completion, JobSpec, ParamMode, ParamValue, ProcedureParam, ProcedureSpec, SessionValue,
    SqlSpec,
};
use baton_tests::tds::record::Entry;
use baton_tests::tds::*;
use serde_json::json;

async fn start(script: Script) -> (TdsServer, Arc<Connections>, tempfile::TempDir) {
    baton_tests::init_crypto();
    let server = TdsServer::start(script).await.expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("pw"), "s3cret\n").expect("pw");
    let src = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\n\
         database = \"shop\"\nencrypt = \"off\"\n",
        server.port()
    );
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let conn = MssqlConnection::parse("sql", &settings, Some(dir.path())).expect("connection");
    (server, Arc::new(Connections::new([conn])), dir)
}

fn job(job_id: i64, spec: JobSpec) -> Job {
    Job {
        job_id,
        token: 1,
        attempt: 1,
        retry_codes: vec![1205],
        spec,
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(1024),
    }
}

fn session(pairs: &[(&str, SessionValue)]) -> BTreeMap<String, SessionValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn day_report(settings: BTreeMap<String, SessionValue>) -> JobSpec {
    JobSpec::Procedure(ProcedureSpec {
        connection: "sql".into(),
        procedure: "dbo.usp_day".into(),
        params: vec![
            ProcedureParam {
                name: "shop".into(),
                mode: ParamMode::In,
                value: Some(ParamValue::Int(1)),
                sql_type: Some("int".into()),
            },
            ProcedureParam {
                name: "orders".into(),
                mode: ParamMode::Out,
                value: None,
                sql_type: Some("int".into()),
            },
        ],
        exactly_once: false,
        session: settings,
    })
}

fn script() -> Script {
    Script::new()
        .procedure(
            Procedure::new("dbo.usp_day")
                .param("@shop", SqlType::Int)
                .output("@orders", SqlType::Int),
        )
        .on(
            Match::proc("dbo.usp_day"),
            Reply::tokens(vec![
                Token::return_value("@orders", SqlType::Int, 2),
                Token::ReturnStatus(0),
                Token::DoneProc(Done::new()),
            ]),
        )
}

/// The entries of connection `conn`.
fn of(log: &[Entry], conn: u64) -> Vec<&Request> {
    log.iter()
        .filter(|e| e.conn == conn)
        .map(|e| &e.request)
        .collect()
}

/// A batch of session settings (the ledger's `SET XACT_ABORT` is not one).
fn is_set_batch(r: &Request) -> bool {
    matches!(r, Request::SqlBatch { text } if text.starts_with("SET ")
        && !text.starts_with("SET XACT_ABORT"))
}

async fn run(connections: &Arc<Connections>, j: Job) -> Outcome {
    let exec = match &j.spec {
        JobSpec::Sql(_) => MssqlExecutor::sql(connections.clone()),
        _ => MssqlExecutor::procedure(connections.clone()),
    };
    exec.execute(j).await
}

#[tokio::test]
async fn settings_are_one_plain_batch_before_the_work_and_do_not_outlive_the_job() {
    let (server, connections, _dir) = start(script()).await;
    let settings = session(&[
        ("DATEFORMAT", SessionValue::Text("DMY".into())),
        ("LANGUAGE", SessionValue::Text("us_english".into())),
        ("LOCK_TIMEOUT", SessionValue::Text("5000".into())),
        ("DEADLOCK_PRIORITY", SessionValue::Text("low".into())),
    ]);
    let out = run(&connections, job(7, day_report(settings))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let data = out.result.data.clone().expect("data");
    assert_eq!(data["out"], json!({"orders": 2}), "{data}");

    let log = server.log();
    let rpc_entry = log
        .iter()
        .find(|e| matches!(&e.request, Request::Rpc(r) if r.name() == Some("[dbo].[usp_day]")))
        .expect("the procedure's RPC");
    let mine = of(&log, rpc_entry.conn);
    let set_at = mine
        .iter()
        .position(|r| is_set_batch(r))
        .unwrap_or_else(|| panic!("no SET batch on the job's session: {mine:?}"));
    let Request::SqlBatch { text } = mine[set_at] else {
        unreachable!()
    };
    assert_eq!(
        text,
        "SET LANGUAGE N'us_english'; SET DATEFORMAT dmy; SET DEADLOCK_PRIORITY LOW; \
         SET LOCK_TIMEOUT 5000;"
    );
    let rpc_at = mine
        .iter()
        .position(|r| matches!(r, Request::Rpc(r) if r.name() == Some("[dbo].[usp_day]")))
        .expect("rpc");
    assert!(
        set_at < rpc_at,
        "the settings come before the call: {mine:?}"
    );
    // The OUT parameter without a value went out as a NULL of its sql_type.
    let Request::Rpc(rpc) = mine[rpc_at] else {
        unreachable!()
    };
    let orders = rpc
        .params
        .iter()
        .find(|p| p.name == "@orders")
        .expect("@orders");
    assert!(orders.output && orders.value == Value::Null, "{orders:?}");
    assert_eq!(orders.ty, SqlType::Int);

    // The next job has a session of its own, without the settings.
    let batch = JobSpec::Sql(SqlSpec {
        connection: "sql".into(),
        sql: "SELECT 1".into(),
        exactly_once: false,
        session: BTreeMap::new(),
    });
    let out = run(&connections, job(8, batch)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let log = server.log();
    let select = log
        .iter()
        .rev()
        .find(|e| e.request.sql() == Some("SELECT 1"))
        .expect("the second job's batch");
    assert_ne!(select.conn, rpc_entry.conn, "one connection per job");
    assert!(!of(&log, select.conn).into_iter().any(is_set_batch));
}

#[tokio::test]
async fn a_key_of_another_engine_or_a_bad_value_runs_nothing() {
    let (server, connections, _dir) = start(script()).await;
    for (settings, word) in [
        (
            session(&[("time_zone", SessionValue::Text("+00:00".into()))]),
            "not allowed on mssql",
        ),
        (
            session(&[("LOCK_TIMEOUT", SessionValue::Text("1; SHUTDOWN".into()))]),
            "LOCK_TIMEOUT",
        ),
    ] {
        let out = run(&connections, job(9, day_report(settings))).await;
        assert_eq!(
            out.completion,
            Completion::Failed { retryable: false },
            "{out:?}"
        );
        let error = out.error.clone().unwrap_or_default();
        assert!(error.contains(word), "{error}");
    }
    assert!(server.logins().is_empty(), "nothing reached the server");
}
