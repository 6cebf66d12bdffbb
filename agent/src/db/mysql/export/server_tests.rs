//! The export executor against a real MariaDB/MySQL server
//! (`BATON_TEST_MYSQL_SOCKET`, see `mysql/server_tests.rs`; skipped without it).

use std::sync::Arc;
use std::time::Duration;

use baton_proto::{Completion, ExportCompression, ExportFormat, ExportSpec, JobSpec, ParamValue};
use serde_json::{Value as Json, json};

use super::*;
use crate::db::mysql::server_tests::{TestDb, job, job_id};
use crate::executor::CancelReason;

fn spec(query: &str, params: Vec<ParamValue>, format: ExportFormat) -> JobSpec {
    JobSpec::Export(ExportSpec {
        connection: "main".into(),
        query: query.into(),
        params,
        format,
        compression: ExportCompression::None,
        prefix: Some("t".into()),
    })
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

async fn types_table(db: &mut TestDb) {
    db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, d DECIMAL(30,10), s VARCHAR(50), b VARBINARY(8), \
         dt DATE, ts DATETIME(3), tm TIME, f DOUBLE)",
    )
    .await;
    db.exec(
        "INSERT INTO t VALUES \
         (1, 12345678901234567890.0123456789, 'a \"quoted\", line\nnext', x'00ff10', \
          '2026-12-06', '2026-12-06 01:02:03.450', '-838:59:59', 1.5), \
         (2, NULL, '', x'', NULL, NULL, NULL, NULL), \
         (3, -0.5, NULL, NULL, '1000-01-01', '9999-12-31 23:59:59.999', '00:00:01', -2e-3)",
    )
    .await;
}

#[tokio::test]
async fn types_are_kept_faithfully_in_jsonl_and_csv() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    types_table(&mut db).await;
    let state = tempfile::tempdir().expect("tmp");
    let exec = ExportExecutor::new(Arc::new(Pools::new([db.connection(false)])), state.path());
    // With a parameter: a prepared statement (binary protocol).
    let q = "SELECT id, d, s, b, dt, ts, tm, f FROM t WHERE id >= ? ORDER BY id";
    let out = exec
        .execute(job(
            job_id(),
            spec(q, vec![ParamValue::Int(1)], ExportFormat::Jsonl),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.clone().expect("data");
    assert_eq!(data["rows"], 3);
    assert_eq!(data["columns"][1], json!({"name": "d", "type": "decimal"}));
    assert_eq!(data["columns"][3], json!({"name": "b", "type": "bytes"}));
    let path = data["path"].as_str().expect("path");
    let text = std::fs::read_to_string(path).expect("read");
    let rows: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        rows[0],
        json!({"id": 1, "d": "12345678901234567890.0123456789", "s": "a \"quoted\", line\nnext",
               "b": "AP8Q", "dt": "2026-12-06", "ts": "2026-12-06 01:02:03.450",
               "tm": "-838:59:59", "f": 1.5})
    );
    assert_eq!(
        rows[1],
        json!({"id": 2, "d": null, "s": "", "b": "", "dt": null, "ts": null, "tm": null, "f": null})
    );
    assert_eq!(rows[2]["ts"], "9999-12-31 23:59:59.999");
    // Without parameters: the text protocol, the same values.
    let out = exec
        .execute(job(
            job_id(),
            spec(&q.replace('?', "1"), vec![], ExportFormat::Csv),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.clone().expect("data");
    let text = std::fs::read_to_string(data["path"].as_str().expect("path")).expect("read");
    assert_eq!(
        text,
        "id,d,s,b,dt,ts,tm,f\r\n\
         1,12345678901234567890.0123456789,\"a \"\"quoted\"\", line\nnext\",AP8Q,2026-12-06,\
         2026-12-06 01:02:03.450,-838:59:59,1.5\r\n\
         2,,\"\",\"\",,,,\r\n\
         3,-0.5000000000,,,1000-01-01,9999-12-31 23:59:59.999,00:00:01,-0.002\r\n"
    );
    // The manifest is next to the file and says the same.
    let manifest: Json = serde_json::from_slice(
        &std::fs::read(data["manifest_path"].as_str().expect("manifest")).expect("read"),
    )
    .expect("json");
    assert_eq!(manifest["sha256"], data["sha256"]);
    assert_eq!(manifest["file_format"], "csv");
    assert!(manifest["server_version"].as_str().is_some());
}

#[tokio::test]
async fn a_statement_without_rows_or_a_bad_parameter_fails_for_good() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let state = tempfile::tempdir().expect("tmp");
    let exec = ExportExecutor::new(Arc::new(Pools::new([db.connection(false)])), state.path());
    let out = exec
        .execute(job(job_id(), spec("DO 1", vec![], ExportFormat::Csv)))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert!(
        out.error.as_deref().unwrap_or("").contains("no result set"),
        "{:?}",
        out.error
    );
    let out = exec
        .execute(job(
            job_id(),
            spec(
                "SELECT ?",
                vec![ParamValue::Decimal("1,5".into())],
                ExportFormat::Csv,
            ),
        ))
        .await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert!(
        out.error
            .as_deref()
            .unwrap_or("")
            .contains("spec.params[0]"),
        "{:?}",
        out.error
    );
    let out = exec
        .execute(job(
            job_id(),
            spec("SELECT * FROM missing", vec![], ExportFormat::Csv),
        ))
        .await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{:?}",
        out.error
    );
    // Nothing that looks like an export was left.
    let dir = state.path().join("exports").join("main").join("t");
    assert!(files(&dir).is_empty(), "{:?}", files(&dir));
}

#[tokio::test]
async fn a_cancel_mid_export_leaves_no_complete_looking_file() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new().await;
    let state = tempfile::tempdir().expect("tmp");
    let exec = ExportExecutor::new(Arc::new(Pools::new([db.connection(false)])), state.path());
    // About 100 s of rows, one every millisecond: still streaming at the cancel.
    let j = job(
        job_id(),
        spec(
            "SELECT seq, SLEEP(0.001) AS z FROM seq_1_to_100000",
            vec![],
            ExportFormat::Csv,
        ),
    );
    let cancel = j.cancel.clone();
    let dir = state.path().join("exports").join("main").join("t");
    let watch = dir.clone();
    let canceller = tokio::spawn(async move {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !files(&watch).iter().any(|n| n.ends_with(".partial")) {
            assert!(
                tokio::time::Instant::now() < end,
                "no partial file appeared"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel(CancelReason::Cancelled);
    });
    let started = tokio::time::Instant::now();
    let out = exec.execute(j).await;
    canceller.await.expect("canceller");
    assert_eq!(out.completion, Completion::Cancelled, "{:?}", out.error);
    assert!(
        out.error.as_deref().unwrap_or("").contains("KILL QUERY"),
        "{:?}",
        out.error
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the query was not stopped"
    );
    assert!(files(&dir).is_empty(), "left behind: {:?}", files(&dir));
}
