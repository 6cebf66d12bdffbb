//! The `export` kind end to end: real controller and agent processes, the
//! real MariaDB. A 1,000,000-row table is exported to CSV through zstd; its
//! rows (count and a sha256 over them, normalised) must match a reference
//! export made with the `mariadb` client (`--batch`), the file's sha256 its
//! manifest, and the agent's peak RSS stays under a generous bound (a leak
//! check: printed, not timed). A pipeline then reads the export's file by
//! reference (`${steps.export.result.file}`) on the same agent.

use std::path::Path;
use std::time::Duration;

use baton_proto::JobState;
use baton_proto::pipeline::RunState;
use baton_tests::cluster::Cluster;
use baton_tests::mariadb;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const WAIT: Duration = Duration::from_secs(600);
const ROWS: u64 = 1_000_000;
/// A leak check, not a measurement target: the agent streams, so its peak
/// stays far below this whatever the row count.
const RSS_BOUND_KIB: u64 = 200 * 1024;

struct Fixture {
    c: Cluster,
    db: String,
    _secrets: tempfile::TempDir,
}

async fn fixture(rows: u64) -> Fixture {
    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("export").expect("database");
    mdb.sql(
        Some(&db),
        &format!(
            "CREATE TABLE big (id INT PRIMARY KEY, amount DECIMAL(14,4), name VARCHAR(40), \
               created DATETIME(3), note VARCHAR(20) NULL, data VARBINARY(8) NULL);
             INSERT INTO big SELECT seq, seq * 1.0001 - 500000, CONCAT('n \"', seq, '\", x'), \
               TIMESTAMP'2026-01-01 00:00:00' + INTERVAL seq * 1001000 MICROSECOND, \
               CASE WHEN seq MOD 7 = 0 THEN NULL WHEN seq MOD 11 = 0 THEN '' \
                    ELSE CONCAT('t', seq MOD 100) END, \
               CASE WHEN seq MOD 5 = 0 THEN NULL ELSE UNHEX(LPAD(HEX(seq), 8, '0')) END \
             FROM seq_1_to_{rows};"
        ),
    )
    .expect("setup sql");
    let (user, password) = mdb.create_user(&db, &["SELECT"]).expect("user");
    let secrets = tempfile::Builder::new()
        .prefix("baton-e2e-export-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("main", &db, &user, &pw);
    let c = Cluster::start_with(1, "", move |o| {
        o.extra = conn.clone();
        o.allow.push("/usr/bin/sha256sum".into());
    })
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    Fixture {
        c,
        db,
        _secrets: secrets,
    }
}

/// RFC 4180 records: each field with whether it was quoted.
fn csv_records(text: &[u8]) -> Vec<Vec<(bool, String)>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = Vec::new();
    let (mut quoted, mut in_quotes, mut i) = (false, false, 0);
    while i < text.len() {
        let b = text[i];
        if in_quotes {
            if b == b'"' && text.get(i + 1) == Some(&b'"') {
                field.push(b'"');
                i += 1;
            } else if b == b'"' {
                in_quotes = false;
            } else {
                field.push(b);
            }
        } else if b == b'"' {
            (quoted, in_quotes) = (true, true);
        } else if b == b',' || (b == b'\r' && text.get(i + 1) == Some(&b'\n')) {
            let text = String::from_utf8(std::mem::take(&mut field)).expect("utf-8");
            record.push((quoted, text));
            quoted = false;
            if b == b'\r' {
                records.push(std::mem::take(&mut record));
                i += 1;
            }
        } else {
            field.push(b);
        }
        i += 1;
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "a record without CRLF at the end"
    );
    records
}

/// A CSV record as the `mariadb --batch` line of the reference query
/// (NULL as `NULL`, the binary column as upper-case hex).
fn as_batch_line(record: &[(bool, String)]) -> String {
    record
        .iter()
        .enumerate()
        .map(|(i, (quoted, text))| match (quoted, text.as_str()) {
            (false, "") => "NULL".to_owned(),
            (_, t) if i == 5 => {
                hex::encode_upper(baton_proto::base64::decode(t).expect("base64 binary column"))
            }
            (_, t) => t.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\t")
}

fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn zstd_dc(path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("zstd")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("zstd -dc (the zstd package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_match_the_mysql_client_with_bounded_agent_memory() {
    baton_tests::require_mariadb!();
    let mut f = fixture(ROWS).await;
    let query = "SELECT id, amount, name, created, note, data FROM big WHERE id >= ? ORDER BY id";
    let job =
        f.c.api
            .submit(json!({
                "group": "default",
                "spec": {"kind": "export", "connection": "main", "query": query,
                         "params": [{"type": "int", "value": 1}],
                         "format": "csv", "compression": "zstd", "prefix": "big"},
                "retry": {"max_attempts": 1},
                "timeout_ms": 590_000,
            }))
            .await
            .expect("submit");
    let done = f.c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", f.c.logs());
    let pid = f.c.agents[0].proc().pid().expect("agent running").as_raw();
    let hwm = vm_hwm_kib(pid).expect("VmHWM of the agent");
    println!(
        "agent peak RSS (VmHWM) after exporting {ROWS} rows: {} MiB",
        hwm / 1024
    );
    assert!(hwm < RSS_BOUND_KIB, "agent peak RSS {hwm} KiB");
    let data = done
        .result
        .as_ref()
        .and_then(|r| r.data.clone())
        .expect("data");
    assert_eq!(data["rows"], ROWS);
    println!(
        "export of {ROWS} rows: {} bytes of CSV, {} bytes zstd, {} ms (debug build)",
        data["uncompressed_bytes"], data["bytes"], data["duration_ms"]
    );
    let path = Path::new(data["path"].as_str().expect("path")).to_path_buf();
    assert!(path.ends_with(path.file_name().expect("name").to_string_lossy().as_ref()));
    assert!(
        path.to_string_lossy().contains("/exports/main/big/"),
        "{}",
        path.display()
    );
    let bytes = std::fs::read(&path).expect("read export");
    assert_eq!(data["bytes"], bytes.len() as u64);
    assert_eq!(data["sha256"], hex::encode(Sha256::digest(&bytes)));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(data["manifest_path"].as_str().expect("manifest")).expect("read"),
    )
    .expect("manifest json");
    assert_eq!(manifest["sha256"], data["sha256"]);
    assert_eq!(manifest["rows"], ROWS);
    assert_eq!(manifest["query"], query);
    // The rows, normalised to the reference's form, hashed in order.
    let text = zstd_dc(&path);
    let records = csv_records(&text);
    drop(text);
    assert_eq!(
        records[0]
            .iter()
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>(),
        ["id", "amount", "name", "created", "note", "data"]
    );
    let mut mine = Sha256::new();
    for r in &records[1..] {
        mine.update(as_batch_line(r).as_bytes());
        mine.update(b"\n");
    }
    let mine = hex::encode(mine.finalize());
    let exported = records.len() as u64 - 1;
    drop(records);
    let mdb = mariadb::server().await.expect("server");
    let reference = mdb
        .sql(
            Some(&f.db),
            "SELECT id, amount, name, created, note, HEX(data) FROM big ORDER BY id",
        )
        .expect("reference export with the mariadb client");
    assert_eq!(exported, reference.lines().count() as u64);
    assert_eq!(exported, ROWS);
    let theirs = hex::encode(Sha256::digest(reference.as_bytes()));
    assert_eq!(
        mine, theirs,
        "the exported rows differ from the mariadb client's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_reads_the_exported_file_by_reference_on_its_agent() {
    baton_tests::require_mariadb!();
    let f = fixture(1000).await;
    let c = &f.c;
    c.api
        .create_pipeline(json!({
            "name": "export-check",
            "group": "default",
            "timeout_ms": 120_000,
            "steps": [
                {"name": "export",
                 "job": {"spec": {"kind": "export", "connection": "main",
                                  "query": "SELECT * FROM big", "format": "jsonl",
                                  "compression": "gzip"},
                         "retry": {"max_attempts": 1}}},
                {"name": "check", "depends_on": ["export"], "same_agent_as": "export",
                 "job": {"spec": {"kind": "command", "program": "/usr/bin/sha256sum",
                                  "args": ["${steps.export.result.file}"]},
                         "retry": {"max_attempts": 1}}},
            ],
        }))
        .await
        .expect("create");
    let run = c.api.start_run("export-check").await.expect("run");
    let r = c.api.wait_run_ended(run.id, WAIT).await.expect("ended");
    assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", c.logs());
    let export = r.steps.iter().find(|s| s.name == "export").expect("step");
    let check = r.steps.iter().find(|s| s.name == "check").expect("step");
    let ej = c.api.job(export.job_id.expect("job")).await.expect("job");
    let cj = c.api.job(check.job_id.expect("job")).await.expect("job");
    let data = ej
        .result
        .as_ref()
        .and_then(|r| r.data.clone())
        .expect("data");
    assert_eq!(data["rows"], 1000);
    let file = data["path"].as_str().expect("path");
    assert!(file.ends_with(".jsonl.gz"), "{file}");
    let stdout = cj
        .result
        .as_ref()
        .map(|r| r.stdout.clone())
        .unwrap_or_default();
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        [data["sha256"].as_str().expect("sha256"), file],
        "{cj:#?}"
    );
}
