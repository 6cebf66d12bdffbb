//! SQL Server `dump` jobs (native backups) driven through the agent's
//! `BackupExecutor` against the TDS test server and its backup model
//! ([`BackupModel`]: contract B1–B5 as SQL Server 2022 answers them).
//!
//! A few tests put a scripted `BACKUP DATABASE` rule in front of the model
//! (rules added first take precedence): one that leaves a half-written file
//! on disk and never ends (cancel, timeout) or fails after writing part of
//! it, so that the agent's removal of the `.partial` is what is tested.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_agent::db::mssql::connection::MssqlConnection;
use baton_agent::db::mssql::{BackupExecutor, Connections};
use baton_agent::executor::{Cancel, CancelReason, Executor, Job, Outcome, ProgressHandle};
use baton_proto::{Completion, DumpSpec, JobSpec, Progress};
use baton_tests::tds::*;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

const DB: &str = "shop";

/// Progress snapshots taken by the server when requests arrive.
#[derive(Default)]
struct Spy {
    /// At each `sys.dm_exec_requests` poll.
    at_polls: Mutex<Vec<Option<Progress>>>,
    /// The progress and log tail when VERIFYONLY arrived.
    at_verify: Mutex<Option<(Option<Progress>, String)>>,
}

/// A test's world: the server with the backup model, the executor, its
/// directories.
struct World {
    server: TdsServer,
    model: BackupModel,
    spy: Arc<Spy>,
    progress: ProgressHandle,
    exec: BackupExecutor,
    backup_root: PathBuf,
    _tmp: tempfile::TempDir,
}

struct Setup {
    model: BackupModel,
    /// TOML lines added to the connection.
    extra: &'static str,
    with_dir: bool,
    /// Rules in front of the model.
    rules: Vec<(Match, Responder)>,
}

impl Setup {
    fn new(model: BackupModel) -> Setup {
        Setup {
            model,
            extra: "",
            with_dir: true,
            rules: Vec::new(),
        }
    }
}

/// The model with `shop` online; backups take 3 s in 6 steps.
fn model() -> BackupModel {
    BackupModel::new()
        .database(DB)
        .progress(Duration::from_secs(3), 6)
        .verify_time(Duration::from_millis(100))
        .size(200 * 1024 + 17)
}

/// A fast model (for tests that do not look at progress).
fn quick() -> BackupModel {
    BackupModel::new()
        .database(DB)
        .progress(Duration::from_millis(50), 1)
        .verify_time(Duration::from_millis(10))
}

async fn world(setup: Setup) -> World {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let spy = Arc::new(Spy::default());
    let progress = ProgressHandle::new(64 * 1024);
    let watch = {
        let (spy, progress) = (spy.clone(), progress.clone());
        move |req: &Request| {
            let sql = req.sql().unwrap_or_default();
            if sql.starts_with("SELECT percent_complete") {
                spy.at_polls
                    .lock()
                    .expect("lock")
                    .push(progress.snapshot().0);
            } else if sql.starts_with("RESTORE VERIFYONLY") {
                *spy.at_verify.lock().expect("lock") = Some(progress.snapshot());
            }
            false
        }
    };
    let mut script = Script::new().on(Match::when(watch), Reply::done());
    for (m, r) in setup.rules {
        script = script.on(m, r);
    }
    let server = TdsServer::start(setup.model.install(script))
        .await
        .expect("start");
    let backup_root = tmp.path().join("backups");
    baton_tests::mariadb::write_private_file(&tmp.path().join("pw"), "pw").expect("pw");
    // A short command timeout: the backup's own session must not have one.
    let mut src = format!(
        "host = \"127.0.0.1\"\nport = {}\nuser = \"baton\"\npassword_file = \"pw\"\nencrypt = \"off\"\ncommand_timeout = \"1s\"\n{}",
        server.port(),
        setup.extra
    );
    if setup.with_dir {
        src.push_str(&format!(
            "backup_dir = {}\n",
            Json::from(backup_root.display().to_string())
        ));
    }
    let settings: BTreeMap<String, toml::Value> = toml::from_str::<toml::Table>(&src)
        .expect("toml")
        .into_iter()
        .collect();
    let conn = MssqlConnection::parse("sql", &settings, Some(tmp.path())).expect("connection");
    let exec = BackupExecutor::new(
        Arc::new(Connections::new([conn]).with_fleet("f1")),
        tmp.path().join("state"),
    );
    World {
        server,
        model: setup.model,
        spy,
        progress,
        exec,
        backup_root,
        _tmp: tmp,
    }
}

impl World {
    fn job(&self, id: i64, database: &str) -> Job {
        Job {
            job_id: id,
            token: 7,
            attempt: 1,
            retry_codes: vec![1205],
            spec: JobSpec::Dump(DumpSpec {
                connection: "sql".into(),
                database: database.into(),
                verify: false,
            }),
            timeout: None,
            cancel: Cancel::new(),
            progress: self.progress.clone(),
        }
    }

    fn dir(&self) -> PathBuf {
        self.backup_root.join("sql").join(DB)
    }

    /// File names in the database's backup directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.dir()) {
            Ok(rd) => rd
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Panics unless the database's backup directory is empty (or absent).
    fn assert_no_files(&self) {
        assert!(self.files().is_empty(), "{:?}", self.files());
    }

    /// The first `sp_executesql` statement starting with `prefix`:
    /// connection, text, arguments.
    fn statement(&self, prefix: &str) -> Option<(u64, String, Vec<Param>)> {
        self.server.log().into_iter().find_map(|e| match e.request {
            Request::Rpc(rpc)
                if rpc.is_execute_sql()
                    && rpc.statement().is_some_and(|s| s.starts_with(prefix)) =>
            {
                Some((
                    e.conn,
                    rpc.statement().unwrap_or_default().to_owned(),
                    rpc.args().to_vec(),
                ))
            }
            _ => None,
        })
    }
}

/// Panics unless `out` failed, retryable or not as given.
fn assert_failed(out: &Outcome, retryable: bool) {
    assert_eq!(out.completion, Completion::Failed { retryable }, "{out:?}");
}

/// Panics unless `out` failed for good with exactly `error`.
fn assert_failed_with(out: &Outcome, error: &str) {
    assert_failed(out, false);
    assert_eq!(out.error.as_deref(), Some(error));
}

fn data(out: &Outcome) -> &Json {
    out.result.data.as_ref().expect("result.data")
}

fn arg_str(rpc: &Rpc, i: usize) -> String {
    rpc.args()
        .get(i)
        .and_then(|p| p.value.as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A BACKUP that writes part of its file at `@P2`, then either never ends
/// (until an ATTENTION) or fails with `errors`.
fn half_written_backup(errors: Option<Vec<ServerMessage>>) -> (Match, Responder) {
    let responder = Responder::dynamic(move |ctx: Ctx| {
        let errors = errors.clone();
        async move {
            let path = ctx
                .request
                .as_rpc()
                .map(|r| arg_str(r, 1))
                .unwrap_or_default();
            std::fs::write(&path, vec![7u8; 4096]).expect("half a backup");
            let Some(errors) = errors else {
                std::future::pending::<()>().await;
                return Reply::done();
            };
            let mut tokens: Vec<Token> = errors.into_iter().map(Token::Error).collect();
            tokens.push(Token::DoneInProc(Done::new().error().more()));
            tokens.push(Token::DoneProc(Done::new().error()));
            Reply::tokens(tokens)
        }
    });
    (Match::sql("BACKUP DATABASE"), responder)
}

#[tokio::test]
async fn a_backup_is_polled_verified_renamed_hashed_and_described() {
    let w = world(Setup::new(model())).await;
    let out = w.exec.execute(w.job(42, DB)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");

    // What the server ran: the backup to the agent-built partial path, with
    // exactly the contract's options, then the verify of that file.
    let calls = w.model.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let call = &calls[0];
    assert_eq!(call.outcome, BackupOutcome::Succeeded);
    assert_eq!(
        call.statement,
        "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5"
    );
    assert_eq!(call.database, DB);
    assert!(!call.has_option("COMPRESSION"));
    let files = w.files();
    assert_eq!(files.len(), 2, "{files:?}");
    let bak = files
        .iter()
        .find(|f| f.ends_with("-job42.bak"))
        .expect("bak");
    let partial = w.dir().join(format!("{bak}.partial"));
    assert_eq!(call.path, partial.display().to_string());
    let verifies = w.model.verifies();
    assert_eq!(verifies.len(), 1, "{verifies:#?}");
    assert_eq!(
        verifies[0].statement,
        "RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM"
    );
    assert_eq!(verifies[0].path, call.path);
    assert_eq!(verifies[0].outcome, BackupOutcome::Succeeded);
    assert_eq!(
        verifies[0].conn, call.conn,
        "VERIFYONLY runs on the backup's session"
    );

    // The files: the verified .bak (what the server wrote) and its manifest.
    let manifest_name = bak.replace(".bak", ".manifest.json");
    assert!(files.contains(&manifest_name), "{files:?}");
    let bytes = std::fs::read(w.dir().join(bak)).expect("read bak");
    let sha = hex::encode(Sha256::digest(&bytes));
    assert_eq!(call.sha256.as_deref(), Some(sha.as_str()));
    let manifest: Json = serde_json::from_slice(
        &std::fs::read(w.dir().join(&manifest_name)).expect("read manifest"),
    )
    .expect("manifest json");
    assert_eq!(manifest["sha256"], json!(sha));
    assert_eq!(manifest["size_bytes"], json!(bytes.len()));
    assert_eq!(manifest["size_bytes"], json!(call.bytes));
    assert_eq!(manifest["file"], json!(bak));
    assert_eq!(
        (&manifest["database"], &manifest["connection"]),
        (&json!(DB), &json!("sql"))
    );
    assert_eq!(manifest["server"]["product_version"], json!("16.0.4135.4"));
    assert_eq!(
        manifest["server"]["edition"],
        json!("Developer Edition (64-bit)")
    );
    assert_eq!(manifest["recovery_model"], json!("FULL"));
    assert_eq!(manifest["verify"]["ok"], json!(true));
    assert_eq!(
        (
            &manifest["compression"],
            &manifest["checksum"],
            &manifest["copy_only"]
        ),
        (&json!(false), &json!(true), &json!(true))
    );
    assert_eq!(
        (
            &manifest["job_id"],
            &manifest["attempt"],
            &manifest["token"]
        ),
        (&json!(42), &json!(1), &json!(7))
    );
    let time = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(manifest[k].as_str().expect(k)).expect("rfc3339")
    };
    assert!(time("finished_at") >= time("started_at"));
    // result.data is the manifest plus the paths.
    let mut expected = manifest.clone();
    expected["path"] = json!(w.dir().join(bak).display().to_string());
    expected["manifest_path"] = json!(w.dir().join(&manifest_name).display().to_string());
    assert_eq!(data(&out), &expected);

    // Progress: polled from another connection for the backup's session,
    // published while it ran, 100 % before VERIFYONLY was sent.
    let polls = w.model.polls();
    assert!(polls.iter().any(|p| p.percent.is_some()), "{polls:#?}");
    for p in &polls {
        assert_ne!(p.conn, call.conn);
        assert_eq!(p.session_id, i64::from(call.spid));
    }
    let (_, text, _) = w.statement("SELECT percent_complete").expect("poll");
    assert_eq!(
        text,
        "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1"
    );
    let seen = w.spy.at_polls.lock().expect("lock").clone();
    assert!(
        seen.iter().flatten().any(|p| {
            p.percent.is_some_and(|v| v > 0.0 && v < 100.0)
                && p.message.starts_with("backing up shop: ")
                && p.message.ends_with(" %")
        }),
        "{seen:?}"
    );
    let (at_verify, tail) = w
        .spy
        .at_verify
        .lock()
        .expect("lock")
        .clone()
        .expect("verify seen");
    assert_eq!(at_verify.and_then(|p| p.percent), Some(100.0));
    let done_at = tail
        .find("backing up shop: 100 %\n")
        .expect("100 % in the tail");
    let verify_at = tail
        .find("verifying the backup\n")
        .expect("verify in the tail");
    assert!(done_at < verify_at, "{tail}");
    // The session opened with @@SPID, and the database's state was checked.
    let first_batch = w.server.log().into_iter().find_map(|e| match e.request {
        Request::SqlBatch { text } if e.conn == call.conn => Some(text),
        _ => None,
    });
    assert_eq!(first_batch.as_deref(), Some("SELECT @@SPID"));
    let (conn, text, args) = w.statement("SELECT state_desc").expect("state");
    assert_eq!(conn, call.conn);
    assert_eq!(
        text,
        "SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @P1"
    );
    assert_eq!(args[0].value.as_str(), Some(DB));
}

#[tokio::test]
async fn compression_is_asked_only_when_configured() {
    let w = world(Setup {
        extra: "backup_compression = true\n",
        ..Setup::new(quick())
    })
    .await;
    let out = w.exec.execute(w.job(5, DB)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let call = w.model.calls().pop().expect("backup");
    assert_eq!(
        call.statement,
        "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5, COMPRESSION"
    );
    assert!(call.has_option("COMPRESSION"));
    assert_eq!(data(&out)["compression"], json!(true));

    // An edition without compression refuses it: SQL Server's message.
    let express = quick().version("16.0.1000.6", "Express Edition (64-bit)");
    let w = world(Setup {
        extra: "backup_compression = true\n",
        ..Setup::new(express)
    })
    .await;
    let out = w.exec.execute(w.job(6, DB)).await;
    assert_failed_with(
        &out,
        "SQL Server error 1844 (class 16, state 1): BACKUP DATABASE WITH COMPRESSION is not \
             supported on Express Edition (64-bit).",
    );
    w.assert_no_files();
}

#[tokio::test]
async fn cannot_open_device_fails_with_sql_servers_message_and_leaves_nothing() {
    let w = world(Setup::new(quick().fail(BackupFailure::AccessDenied))).await;
    let out = w.exec.execute(w.job(6, DB)).await;
    assert_failed(&out, false);
    let path = w.model.calls().pop().expect("backup").path;
    assert_eq!(
        out.error.as_deref(),
        Some(
            format!(
                "SQL Server error 3201 (class 16, state 1): Cannot open backup device '{path}'. \
                 Operating system error 5(Access is denied.)."
            )
            .as_str()
        )
    );
    assert_eq!(data(&out)["error"]["number"], json!(3201));
    assert_eq!(data(&out)["error"]["class"], json!(16));
    w.assert_no_files();
    assert!(w.model.verifies().is_empty());

    // Listed in the job's retry codes, the same failure may be retried.
    let mut job = w.job(7, DB);
    job.retry_codes = vec![3201];
    let out = w.exec.execute(job).await;
    assert_failed(&out, true);
}

#[tokio::test]
async fn a_write_failure_mid_backup_fails_and_removes_the_partial() {
    // The model's disk-full failure (it leaves no file) …
    let w = world(Setup::new(quick().fail(BackupFailure::DiskFull))).await;
    let out = w.exec.execute(w.job(8, DB)).await;
    assert_failed(&out, false);
    assert!(
        out.error.as_deref().is_some_and(|e| e
            .starts_with("SQL Server error 3202 (class 16, state 1): Write on '")
            && e.ends_with("failed: 112(There is not enough space on the disk.)")),
        "{out:?}"
    );
    w.assert_no_files();
    // … and one that leaves half a file behind: the agent removes it.
    let full = ServerMessage::new(
        3202,
        16,
        "Write on 'x' failed: 112(There is not enough space on the disk.)",
    );
    let terminating = ServerMessage::new(3013, 16, "BACKUP DATABASE is terminating abnormally.");
    let w = world(Setup {
        rules: vec![half_written_backup(Some(vec![full, terminating]))],
        ..Setup::new(quick())
    })
    .await;
    let out = w.exec.execute(w.job(9, DB)).await;
    assert_failed(&out, false);
    assert!(w.statement("BACKUP DATABASE").is_some());
    w.assert_no_files();
}

#[tokio::test]
async fn cancel_mid_backup_sends_attention_and_removes_the_partial() {
    let w = world(Setup {
        rules: vec![half_written_backup(None)],
        ..Setup::new(quick())
    })
    .await;
    let job = w.job(10, DB);
    let cancel = job.cancel.clone();
    let run = tokio::spawn({
        let exec = w.exec.clone();
        async move { exec.execute(job).await }
    });
    w.server
        .wait_for(Duration::from_secs(10), |log| {
            log.iter().any(|e| {
                e.request
                    .sql()
                    .is_some_and(|s| s.starts_with("BACKUP DATABASE"))
            })
        })
        .await
        .expect("backup sent");
    for _ in 0..250 {
        if w.files().iter().any(|f| f.ends_with(".bak.partial")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.files().len(), 1, "{:?}", w.files());
    cancel.cancel(CancelReason::Cancelled);
    let out = run.await.expect("join");
    assert_eq!(out.completion, Completion::Cancelled, "{out:?}");
    assert_eq!(
        data(&out)["cancel"],
        json!({"attention_sent": true, "acknowledged": true})
    );
    let (backup_conn, _, _) = w.statement("BACKUP DATABASE").expect("backup");
    let log = w.server.log();
    assert!(
        log.iter()
            .any(|e| e.conn == backup_conn && e.request == Request::Attention),
        "{log:#?}"
    );
    assert!(w.statement("RESTORE VERIFYONLY").is_none());
    w.assert_no_files();
    // The backup's session is dropped after the attention.
    w.server
        .wait_for(Duration::from_secs(5), |log| {
            log.iter()
                .any(|e| e.conn == backup_conn && e.request == Request::Disconnect)
        })
        .await
        .expect("backup session closed");
}

#[tokio::test]
async fn the_timeout_stops_the_backup_like_a_cancel() {
    let w = world(Setup::new(
        BackupModel::new()
            .database(DB)
            .progress(Duration::from_secs(60), 10),
    ))
    .await;
    let mut job = w.job(11, DB);
    job.timeout = Some(Duration::from_millis(1500));
    let out = w.exec.execute(job).await;
    assert_eq!(out.completion, Completion::TimedOut, "{out:?}");
    assert_eq!(
        data(&out)["cancel"],
        json!({"attention_sent": true, "acknowledged": true})
    );
    let call = w.model.calls().pop().expect("backup");
    w.model
        .wait_until(Duration::from_secs(5), |m| {
            m.calls()
                .first()
                .is_some_and(|c| c.outcome == BackupOutcome::Cancelled)
        })
        .await
        .expect("the server stopped the backup");
    assert!(
        w.server
            .log()
            .iter()
            .any(|e| e.conn == call.conn && e.request == Request::Attention)
    );
    w.assert_no_files();
}

#[tokio::test]
async fn a_backup_that_does_not_verify_fails_and_is_removed() {
    let w = world(Setup::new(quick().fail_verify(VerifyFailure::Damaged))).await;
    let out = w.exec.execute(w.job(12, DB)).await;
    assert_failed_with(
        &out,
        "the backup did not verify: SQL Server error 3189 (class 16, state 1): Damage to the \
             backup set was detected.",
    );
    assert_eq!(data(&out)["error"]["number"], json!(3189));
    assert_eq!(w.model.calls()[0].outcome, BackupOutcome::Succeeded);
    assert_eq!(w.model.verifies().len(), 1);
    w.assert_no_files();
}

#[tokio::test]
async fn retention_keeps_the_newest_backups() {
    let w = world(Setup {
        extra: "keep_last = 2\n",
        ..Setup::new(quick())
    })
    .await;
    std::fs::create_dir_all(w.dir()).expect("dir");
    let old = [
        "20200101T000000Z-job1",
        "20200102T000000Z-job2",
        "20200103T000000Z-job3",
    ];
    for stem in old {
        std::fs::write(w.dir().join(format!("{stem}.bak")), b"old").expect("old bak");
        std::fs::write(w.dir().join(format!("{stem}.manifest.json")), b"{}").expect("manifest");
    }
    let out = w.exec.execute(w.job(13, DB)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let new = data(&out)["file"].as_str().expect("file").to_owned();
    let new_stem = new.trim_end_matches(".bak").to_owned();
    let mut expected = vec![
        "20200103T000000Z-job3.bak".to_owned(),
        "20200103T000000Z-job3.manifest.json".to_owned(),
        format!("{new_stem}.manifest.json"),
        new,
    ];
    expected.sort();
    assert_eq!(w.files(), expected);
}

#[tokio::test]
async fn refusals_name_what_is_wrong_and_send_no_backup() {
    let w = world(Setup::new(quick().database_state(
        "restoring",
        "RESTORING",
        "FULL",
    )))
    .await;
    // Unknown database: asked on the server, no BACKUP.
    let out = w.exec.execute(w.job(14, "nope")).await;
    assert_failed_with(&out, "database nope does not exist on connection sql");
    // Not online: it may be later, so retryable.
    let out = w.exec.execute(w.job(15, "restoring")).await;
    assert_failed(&out, true);
    assert_eq!(
        out.error.as_deref(),
        Some("database restoring on connection sql is RESTORING, not ONLINE")
    );
    assert!(w.model.calls().is_empty());
    // A name that could leave the directory: refused before connecting.
    let before = w.server.connections();
    for bad in ["..", "-x", "a/b", ".hidden"] {
        let out = w.exec.execute(w.job(16, bad)).await;
        assert_failed(&out, false);
        assert!(
            out.error
                .as_deref()
                .is_some_and(|e| e.starts_with("database name")),
            "{out:?}"
        );
    }
    assert_eq!(w.server.connections(), before);

    // No backup_dir on the connection: refused before connecting.
    let w = world(Setup {
        with_dir: false,
        ..Setup::new(quick())
    })
    .await;
    let out = w.exec.execute(w.job(17, DB)).await;
    assert_failed_with(
        &out,
        "connection sql has no backup directory: set [connections.sql] backup_dir (where \
             SQL Server on this host writes backups)",
    );
    assert_eq!(w.server.connections(), 0);
}
