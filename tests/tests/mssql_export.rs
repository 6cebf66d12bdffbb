//! The agent's `export` executor on SQL Server connections
//! (`baton_agent::db::mssql::export::ExportExecutor`) driven against the TDS
//! test server: the statement sent with its bound parameter, the result set
//! streamed into CSV / JSON Lines with the types kept, many rows through
//! zstd, and a cancel mid-stream (ATTENTION, no file left).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use baton_agent::db::mssql::Connections;
use baton_agent::db::mssql::connection::MssqlConnection;
use baton_agent::db::mssql::export::ExportExecutor;
use baton_agent::executor::{Cancel, CancelReason, Executor, Job, ProgressHandle};
use baton_proto::{Completion, ExportCompression, ExportFormat, ExportSpec, JobSpec, ParamValue};
use baton_tests::tds::*;
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Value as Json, json};

const QUERY: &str = "SELECT id, amount, name, data, d, ts FROM dbo.orders WHERE id >= @P1";

struct Env {
    server: TdsServer,
    exec: ExportExecutor,
    state: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

async fn env(script: Script) -> Env {
    baton_tests::init_crypto();
    let server = TdsServer::start(script).await.expect("start");
    let dir = tempfile::tempdir().expect("tmp");
    baton_tests::mariadb::write_private_file(&dir.path().join("pw"), "s3cret\n").expect("pw");
    let src = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\ndatabase = \"shop\"\nencrypt = \"off\"\n",
        server.port()
    );
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let conn = MssqlConnection::parse("sql", &settings, Some(dir.path())).expect("connection");
    let state = tempfile::tempdir().expect("state");
    let exec = ExportExecutor::new(Arc::new(Connections::new([conn])), state.path());
    Env {
        server,
        exec,
        state,
        _dir: dir,
    }
}

fn job(job_id: i64, format: ExportFormat, compression: ExportCompression) -> Job {
    Job {
        job_id,
        token: 3,
        attempt: 1,
        retry_codes: vec![],
        spec: JobSpec::Export(ExportSpec {
            connection: "sql".into(),
            query: QUERY.into(),
            params: vec![ParamValue::Int(1)],
            format,
            compression,
            prefix: Some("orders".into()),
        }),
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(1024),
    }
}

fn columns() -> Token {
    Token::columns(vec![
        Column::new("id", SqlType::Int).not_null(),
        Column::new("amount", SqlType::decimal(12, 2)),
        Column::new("name", SqlType::NVarChar(Some(50))),
        Column::new("data", SqlType::VarBinary(Some(8))),
        Column::new("d", SqlType::Date),
        Column::new("ts", SqlType::DateTime2(3)),
    ])
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").expect("datetime")
}

fn rows() -> Vec<Token> {
    vec![
        Token::Row(vec![
            Value::Int(1),
            Value::decimal(-1234, 2),
            Value::String("a \"b\", c\nd".into()),
            Value::Binary(vec![0, 255, 16]),
            Value::Date(NaiveDate::from_ymd_opt(2026, 12, 6).expect("date")),
            Value::DateTime2(ts("2026-12-06 01:02:03.450")),
        ]),
        Token::Row(vec![
            Value::Int(2),
            Value::Null,
            Value::String(String::new()),
            Value::Binary(vec![]),
            Value::Null,
            Value::Null,
        ]),
    ]
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_result_set_is_exported_with_its_types_in_csv_and_jsonl() {
    let mut tokens = vec![columns()];
    tokens.extend(rows());
    tokens.push(Token::done_rows(2));
    let env = env(Script::new().on(Match::sql(QUERY), Reply::tokens(tokens))).await;
    let out = env
        .exec
        .execute(job(7, ExportFormat::Csv, ExportCompression::None))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let data = out.result.data.clone().expect("data");
    assert_eq!(data["rows"], 2);
    assert_eq!(
        data["columns"][1],
        json!({"name": "amount", "type": "decimal"})
    );
    let text = std::fs::read_to_string(data["path"].as_str().expect("path")).expect("read");
    assert_eq!(
        text,
        "id,amount,name,data,d,ts\r\n\
         1,-12.34,\"a \"\"b\"\", c\nd\",AP8Q,2026-12-06,2026-12-06 01:02:03.450\r\n\
         2,,\"\",\"\",,\r\n"
    );
    // The statement went out through sp_executesql with its parameter bound.
    assert!(
        env.server
            .rpcs()
            .iter()
            .any(|r| format!("{r:?}").contains("@P1")),
        "{:?}",
        env.server.rpcs()
    );
    let out = env
        .exec
        .execute(job(8, ExportFormat::Jsonl, ExportCompression::None))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let data = out.result.data.clone().expect("data");
    let text = std::fs::read_to_string(data["path"].as_str().expect("path")).expect("read");
    let lines: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(
        lines,
        vec![
            json!({"id": 1, "amount": "-12.34", "name": "a \"b\", c\nd", "data": "AP8Q",
                   "d": "2026-12-06", "ts": "2026-12-06 01:02:03.450"}),
            json!({"id": 2, "amount": null, "name": "", "data": "", "d": null, "ts": null}),
        ]
    );
    assert!(std::path::Path::new(data["manifest_path"].as_str().expect("m")).exists());
}

#[tokio::test]
async fn many_rows_stream_through_zstd_and_the_sha256_matches() {
    let n = 20_000;
    let mut tokens = vec![columns()];
    for i in 0..n {
        tokens.push(Token::Row(vec![
            Value::Int(i),
            Value::decimal(i128::from(i) * 7, 2),
            Value::String(format!("name {i}")),
            Value::Null,
            Value::Null,
            Value::Null,
        ]));
    }
    tokens.push(Token::done_rows(n as u64));
    let env = env(Script::new().on(Match::sql(QUERY), Reply::tokens(tokens))).await;
    let out = env
        .exec
        .execute(job(9, ExportFormat::Csv, ExportCompression::Zstd))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let data = out.result.data.clone().expect("data");
    assert_eq!(data["rows"], n);
    let path = data["path"].as_str().expect("path");
    assert!(path.ends_with(".csv.zst"), "{path}");
    let bytes = std::fs::read(path).expect("read");
    use sha2::Digest;
    assert_eq!(data["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    let text = zstd_decode(&bytes);
    assert_eq!(text.matches("\r\n").count(), n as usize + 1);
    assert!(text.contains("\r\n19999,1399.93,name 19999,,,\r\n"));
}

fn zstd_decode(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("zstd")
        .args(["-dc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    match child.as_mut() {
        Ok(c) => {
            use std::io::Write;
            let mut stdin = c.stdin.take().expect("stdin");
            let input = bytes.to_vec();
            let writer = std::thread::spawn(move || stdin.write_all(&input));
            let out = child
                .expect("zstd")
                .wait_with_output()
                .expect("zstd output");
            writer.join().expect("join").expect("write");
            assert!(out.status.success());
            String::from_utf8(out.stdout).expect("utf8")
        }
        Err(e) => panic!("zstd is needed to check the file: {e}"),
    }
}

#[tokio::test]
async fn a_cancel_mid_stream_sends_attention_and_leaves_no_file() {
    let mut tokens = vec![columns()];
    tokens.extend(rows());
    let mut reply = Reply::tokens(tokens);
    reply.steps.push(Step::HangUntilAttention);
    let env = env(Script::new().on(Match::sql(QUERY), reply)).await;
    let j = job(10, ExportFormat::Csv, ExportCompression::Gzip);
    let cancel = j.cancel.clone();
    let dir = env.state.path().join("exports").join("sql").join("orders");
    let watch = dir.clone();
    let canceller = tokio::spawn(async move {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        while !files(&watch).iter().any(|n| n.ends_with(".partial")) {
            assert!(
                tokio::time::Instant::now() < end,
                "no partial file appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel(CancelReason::Cancelled);
    });
    let out = env.exec.execute(j).await;
    canceller.await.expect("canceller");
    assert_eq!(out.completion, Completion::Cancelled, "{out:?}");
    let e = out.error.unwrap_or_default();
    assert!(e.contains("attention sent"), "{e}");
    assert!(env.server.requests().contains(&Request::Attention));
    assert!(files(&dir).is_empty(), "left: {:?}", files(&dir));
}
