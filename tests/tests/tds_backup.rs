//! The TDS test server's native backup model ([`BackupModel`], contract
//! B1–B5) driven by the real tiberius 0.13 client: progress polled from a
//! second connection up to 100 %, the backup file written, INFO messages
//! recorded, SQL Server's errors (911, 3201, 155, 942, 1844, 3202), an
//! ATTENTION mid-backup, a disconnect mid-backup, and RESTORE VERIFYONLY on
//! valid, damaged, missing and foreign files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_tests::tds::*;
use sha2::{Digest, Sha256};
use tds_common::{Conn, one_row};
use tiberius::{Config, EncryptionLevel};

pub mod tds_common;

const WAIT: Duration = Duration::from_secs(10);

const BACKUP: &str = "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, COPY_ONLY, INIT, STATS = 5";
const VERIFY: &str = "RESTORE VERIFYONLY FROM DISK = @P1 WITH CHECKSUM";
const POLL: &str = "SELECT percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1";
const INFO_SQL: &str = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)) AS \
     product_version, CAST(SERVERPROPERTY('Edition') AS nvarchar(128)) AS edition, @@VERSION AS \
     banner";
const DATABASES: &str =
    "SELECT state_desc, recovery_model_desc FROM sys.databases WHERE name = @P1";

fn config(server: &TdsServer) -> Config {
    let mut c = tds_common::config(server, "baton", "pw", EncryptionLevel::NotSupported);
    c.application_name("baton-test");
    c
}

async fn connect(server: &TdsServer) -> Conn {
    tds_common::connect(config(server)).await.expect("login")
}

async fn start(model: &BackupModel) -> TdsServer {
    baton_tests::init_crypto();
    TdsServer::start(model.install(Script::new().login("baton", "pw")))
        .await
        .expect("start")
}

async fn spid_of(client: &mut Conn) -> i16 {
    let row = one_row(client, "SELECT @@SPID").await;
    row.get::<i16, _>(0).expect("smallint")
}

async fn poll(client: &mut Conn, spid: i16) -> Option<f32> {
    let row = client
        .query(POLL, &[&i32::from(spid)])
        .await
        .expect("poll")
        .into_row()
        .await
        .expect("poll result");
    row.map(|r| r.get::<f32, _>(0).expect("real"))
}

async fn backup(client: &mut Conn, db: &str, path: &Path) -> tiberius::Result<()> {
    let path = path.display().to_string();
    client
        .execute(BACKUP, &[&db, &path.as_str()])
        .await
        .map(|_| ())
}

/// Run `request` (a backup or verify on session `spid`) until the model
/// shows it at `percent` or more; it must not end first. The request's
/// future is dropped then (the session may be sent an ATTENTION).
async fn run_until_progress(
    request: impl Future<Output = tiberius::Result<()>>,
    model: &BackupModel,
    spid: i16,
    percent: f64,
) {
    let progressed = model.wait_until(WAIT, |m| m.percent(spid).is_some_and(|p| p >= percent));
    tokio::select! {
        r = request => panic!("the request ended early: {r:?}"),
        r = progressed => r.expect("progress"),
    }
}

/// Wait until the model's first backup ended cancelled.
async fn first_call_cancelled(model: &BackupModel) {
    model
        .wait_until(WAIT, |m| {
            m.calls()
                .first()
                .is_some_and(|c| c.outcome == BackupOutcome::Cancelled)
        })
        .await
        .expect("cancelled");
}

async fn verify(client: &mut Conn, path: &Path) -> tiberius::Result<()> {
    let path = path.display().to_string();
    client.execute(VERIFY, &[&path.as_str()]).await.map(|_| ())
}

fn code(r: tiberius::Result<()>) -> (u32, String) {
    match r {
        Err(tiberius::error::Error::Server(e)) => (e.code(), e.message().to_string()),
        other => panic!("expected a server error, got {other:?}"),
    }
}

fn bak(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn progress_is_polled_from_a_second_connection_up_to_100_and_the_file_is_written() {
    let model = BackupModel::new()
        .database("jobs")
        .progress(Duration::from_secs(2), 10)
        .size(200_000);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bak(dir.path(), "jobs.bak.partial");

    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let spid = spid_of(&mut a).await;
    assert_eq!(spid, baton_tests::tds::spid(1));
    assert_eq!(poll(&mut b, spid).await, None, "no row while idle");

    let task_path = path.clone();
    let running = tokio::spawn(async move { backup(&mut a, "jobs", &task_path).await });
    let mut seen = Vec::new();
    model
        .wait_until(WAIT, |m| m.percent(spid).is_some())
        .await
        .expect("backup running");
    while !running.is_finished() {
        if let Some(p) = poll(&mut b, spid).await {
            seen.push(p);
        }
        if seen.last() != Some(&100.0) && model.percent(spid) == Some(100.0) {
            // The model is at 100 % until the backup finishes: catch it.
            if let Some(p) = poll(&mut b, spid).await {
                seen.push(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.await.expect("task").expect("backup succeeded");
    assert_eq!(
        poll(&mut b, spid).await,
        None,
        "the row is gone after the backup"
    );

    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&100.0), "{seen:?}");
    assert!(seen.iter().any(|p| *p > 0.0 && *p < 100.0), "{seen:?}");

    let calls = model.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.conn, 1);
    assert_eq!(call.spid, spid);
    assert_eq!(call.database, "jobs");
    assert_eq!(call.path, path.display().to_string());
    assert_eq!(call.options, ["CHECKSUM", "COPY_ONLY", "INIT", "STATS = 5"]);
    assert!(call.has_option("copy_only") && !call.has_option("COMPRESSION"));
    assert_eq!(call.outcome, BackupOutcome::Succeeded);
    assert!(call.finished.is_some_and(|f| f >= call.started));
    // INFO 3211 at each 10 % step (STATS = 5 with 10 steps), then 4035 for
    // the data and log files and 3014.
    let mut expected = vec![3211; 10];
    expected.extend([4035, 4035, 3014]);
    assert_eq!(call.info_numbers(), expected);
    assert_eq!(call.messages[0].message, "10 percent processed.");
    assert_eq!(call.messages[9].message, "100 percent processed.");
    assert_eq!(
        call.messages[10].message,
        "Processed 25 pages for database 'jobs', file 'jobs' on file 1."
    );
    assert!(
        call.messages[12]
            .message
            .starts_with("BACKUP DATABASE successfully processed 27 pages in "),
        "{:?}",
        call.messages[12]
    );

    let bytes = std::fs::read(&path).expect("backup file written");
    assert_eq!(bytes.len(), 200_000);
    assert_eq!(call.bytes, 200_000);
    assert_eq!(
        call.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );

    let polls = model.polls();
    assert!(
        polls
            .iter()
            .all(|p| p.conn == 2 && p.session_id == i64::from(spid))
    );
    assert!(polls.iter().any(|p| p.percent == Some(100.0)), "{polls:?}");
    assert!(polls.first().is_some_and(|p| p.percent.is_none()));
}

#[tokio::test]
async fn server_properties_and_the_database_lookup() {
    let model = BackupModel::new()
        .database("jobs")
        .database_state("old", "OFFLINE", "SIMPLE");
    let server = start(&model).await;
    let mut c = connect(&server).await;

    let row = c
        .simple_query(INFO_SQL)
        .await
        .expect("batch")
        .into_row()
        .await
        .expect("row")
        .expect("one row");
    assert_eq!(row.get::<&str, _>("product_version"), Some("16.0.4135.4"));
    assert_eq!(
        row.get::<&str, _>("edition"),
        Some("Developer Edition (64-bit)")
    );
    assert_eq!(
        row.get::<&str, _>("banner"),
        Some("Microsoft SQL Server 2022 (TDS test server)")
    );

    for (name, expected) in [
        ("JOBS", Some(("ONLINE", "FULL"))),
        ("old", Some(("OFFLINE", "SIMPLE"))),
        ("nope", None),
    ] {
        let row = c
            .query(DATABASES, &[&name])
            .await
            .expect("query")
            .into_row()
            .await
            .expect("rows");
        let got = row.map(|r| {
            (
                r.get::<&str, _>(0).expect("state").to_string(),
                r.get::<&str, _>(1).expect("recovery").to_string(),
            )
        });
        let expected = expected.map(|(s, r)| (s.to_string(), r.to_string()));
        assert_eq!(got, expected, "{name}");
    }
    // An unknown column is refused as SQL Server does.
    let err = c
        .query(
            "SELECT size_mb FROM sys.databases WHERE name = @P1",
            &[&"jobs"],
        )
        .await
        .expect_err("no such column");
    assert!(
        err.to_string().contains("Invalid column name 'size_mb'"),
        "{err}"
    );
}

#[tokio::test]
async fn backup_failures_carry_sql_server_errors_and_leave_no_file() {
    let model = BackupModel::new()
        .database("jobs")
        .database_state("old", "OFFLINE", "FULL")
        .progress(Duration::from_millis(100), 2);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = connect(&server).await;

    let (n, msg) = code(backup(&mut c, "nope", &bak(dir.path(), "a.bak")).await);
    assert_eq!(n, 911);
    assert_eq!(
        msg,
        "Database 'nope' does not exist. Make sure that the name is entered correctly."
    );

    let (n, msg) = code(backup(&mut c, "old", &bak(dir.path(), "b.bak")).await);
    assert_eq!(
        (n, msg.as_str()),
        (
            942,
            "Database 'old' cannot be opened because it is offline."
        )
    );

    // SQL Server creates no directories.
    let missing = dir.path().join("jobs").join("c.bak.partial");
    let (n, msg) = code(backup(&mut c, "jobs", &missing).await);
    assert_eq!(n, 3201);
    assert_eq!(
        msg,
        format!(
            "Cannot open backup device '{}'. Operating system error 3(The system cannot find \
             the path specified.).",
            missing.display()
        )
    );

    let err = c
        .execute(
            "BACKUP DATABASE @P1 TO DISK = @P2 WITH CHECKSUM, FAST",
            &[&"jobs", &"x.bak"],
        )
        .await
        .map(|_| ());
    assert_eq!(
        code(err),
        (155, "'FAST' is not a recognized BACKUP option.".into())
    );

    model.set_failure(Some(BackupFailure::AccessDenied));
    let denied = bak(dir.path(), "d.bak.partial");
    let (n, msg) = code(backup(&mut c, "jobs", &denied).await);
    assert_eq!(n, 3201);
    assert!(
        msg.ends_with("Operating system error 5(Access is denied.)."),
        "{msg}"
    );

    model.set_failure(Some(BackupFailure::DiskFull));
    let full = bak(dir.path(), "e.bak.partial");
    let (n, msg) = code(backup(&mut c, "jobs", &full).await);
    assert_eq!(n, 3202);
    assert!(
        msg.contains("There is not enough space on the disk"),
        "{msg}"
    );

    // The session is still usable.
    assert_eq!(spid_of(&mut c).await, baton_tests::tds::spid(1));

    let calls = model.calls();
    let numbers: Vec<Option<i32>> = calls
        .iter()
        .map(|c| match &c.outcome {
            BackupOutcome::Failed { number, .. } => Some(*number),
            _ => None,
        })
        .collect();
    // The refused option never ran (a compile error): no call for it.
    assert_eq!(
        numbers,
        [Some(911), Some(942), Some(3201), Some(3201), Some(3202)]
    );
    for call in &calls {
        let last = call.messages.last().expect("messages");
        assert_eq!(
            (last.number, last.message.as_str()),
            (3013, "BACKUP DATABASE is terminating abnormally.")
        );
        assert!(call.finished.is_some());
    }
    // The disk-full backup got half way before failing.
    assert_eq!(calls[4].info_numbers(), [3211]);
    assert_eq!(calls[4].messages[0].message, "50 percent processed.");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "no files"
    );
}

#[tokio::test]
async fn compression_is_refused_on_express_edition() {
    let model = BackupModel::new()
        .database("jobs")
        .version("16.0.1000.6", "Express Edition (64-bit)");
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = connect(&server).await;
    let path = bak(dir.path(), "x.bak").display().to_string();
    let r = c
        .execute(format!("{BACKUP}, COMPRESSION"), &[&"jobs", &path.as_str()])
        .await
        .map(|_| ());
    assert_eq!(
        code(r),
        (
            1844,
            "BACKUP DATABASE WITH COMPRESSION is not supported on Express Edition (64-bit).".into()
        )
    );
}

#[tokio::test]
async fn an_attention_mid_backup_cancels_it_without_a_file_or_a_dmv_row() {
    let model = BackupModel::new()
        .database("jobs")
        .progress(Duration::from_secs(60), 600);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bak(dir.path(), "jobs.bak.partial");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let spid = spid_of(&mut a).await;

    run_until_progress(backup(&mut a, "jobs", &path), &model, spid, 1.0).await;
    let percent = poll(&mut b, spid).await.expect("running");
    assert!((1.0..100.0).contains(&percent), "{percent}");
    a.cancel_query().await.expect("attention acknowledged");

    first_call_cancelled(&model).await;
    assert_eq!(poll(&mut b, spid).await, None, "the DMV row is gone");
    assert!(!path.exists(), "no backup file");
    let call = &model.calls()[0];
    assert!(call.finished.is_some());
    assert!(call.info_numbers().iter().all(|n| *n == 3211));
    assert!(call.sha256.is_none());
    assert!(server.requests().contains(&Request::Attention));
    // The session goes on.
    assert_eq!(spid_of(&mut a).await, spid);
}

#[tokio::test]
async fn a_backup_whose_client_disconnects_still_runs_to_its_end() {
    let model = BackupModel::new()
        .database("jobs")
        .progress(Duration::from_millis(600), 6);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bak(dir.path(), "jobs.bak.partial");
    let mut a = connect(&server).await;
    let spid = spid_of(&mut a).await;
    run_until_progress(backup(&mut a, "jobs", &path), &model, spid, 0.0).await;
    drop(a);
    model
        .wait_until(WAIT, |m| {
            m.calls()
                .first()
                .is_some_and(|c| c.outcome != BackupOutcome::Running)
        })
        .await
        .expect("finished");
    assert_eq!(model.calls()[0].outcome, BackupOutcome::Succeeded);
    assert!(
        path.exists(),
        "SQL Server finishes a request whose client left"
    );
}

#[tokio::test]
async fn verify_accepts_a_completed_backup_and_refuses_damaged_missing_and_foreign_files() {
    let model = BackupModel::new()
        .database("jobs")
        .progress(Duration::from_millis(100), 2)
        .verify_time(Duration::from_millis(100))
        .size(50_000);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let partial = bak(dir.path(), "jobs.bak.partial");
    let mut c = connect(&server).await;
    backup(&mut c, "jobs", &partial).await.expect("backup");

    verify(&mut c, &partial).await.expect("valid");
    // Content, not the path, makes a backup set: a renamed file verifies.
    let renamed = bak(dir.path(), "jobs.bak");
    std::fs::rename(&partial, &renamed).expect("rename");
    verify(&mut c, &renamed).await.expect("valid after rename");

    let mut bytes = std::fs::read(&renamed).expect("read");
    bytes[20_000] ^= 0xFF;
    std::fs::write(&renamed, &bytes).expect("corrupt");
    let (n, msg) = code(verify(&mut c, &renamed).await);
    assert_eq!(
        (n, msg.as_str()),
        (3189, "Damage to the backup set was detected.")
    );

    let (n, msg) = code(verify(&mut c, &partial).await);
    assert_eq!(n, 3201);
    assert!(
        msg.ends_with("Operating system error 2(The system cannot find the file specified.)."),
        "{msg}"
    );

    let foreign = bak(dir.path(), "notes.txt");
    std::fs::write(&foreign, "hello").expect("write");
    let (n, _) = code(verify(&mut c, &foreign).await);
    assert_eq!(n, 3241);

    // A configured failure, whatever the file holds.
    backup(&mut c, "jobs", &partial)
        .await
        .expect("second backup");
    model.set_verify_failure(Some(VerifyFailure::Damaged));
    assert_eq!(code(verify(&mut c, &partial).await).0, 3189);
    model.set_verify_failure(None);
    verify(&mut c, &partial).await.expect("valid again");

    let verifies = model.verifies();
    let outcomes: Vec<Option<i32>> = verifies
        .iter()
        .map(|v| match &v.outcome {
            BackupOutcome::Succeeded => None,
            BackupOutcome::Failed { number, .. } => Some(*number),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            None,
            None,
            Some(3189),
            Some(3201),
            Some(3241),
            Some(3189),
            None
        ]
    );
    assert_eq!(verifies[0].options, ["CHECKSUM"]);
    assert_eq!(verifies[0].path, partial.display().to_string());
    let valid: Vec<(i32, &str)> = verifies[0]
        .messages
        .iter()
        .map(|m| (m.number, m.message.as_str()))
        .collect();
    assert_eq!(valid, [(3262, "The backup set on file 1 is valid.")]);
    let last = verifies[2].messages.last().expect("messages");
    assert_eq!(
        (last.number, last.message.as_str()),
        (3013, "VERIFY DATABASE is terminating abnormally.")
    );
}

#[tokio::test]
async fn with_partial_files_an_interrupted_backup_leaves_a_damaged_file() {
    let model = BackupModel::new()
        .database("jobs")
        .partial_files(true)
        .progress(Duration::from_secs(60), 100)
        .size(100_000);
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bak(dir.path(), "jobs.bak.partial");
    let mut a = connect(&server).await;
    let spid = spid_of(&mut a).await;
    run_until_progress(backup(&mut a, "jobs", &path), &model, spid, 2.0).await;
    a.cancel_query().await.expect("attention acknowledged");
    first_call_cancelled(&model).await;
    let len = std::fs::metadata(&path).expect("partial file").len();
    assert!(len > 0 && len < 100_000, "{len}");
    assert_eq!(code(verify(&mut a, &path).await).0, 3189);

    // A completed backup in this mode is whole and valid.
    let done = BackupModel::new()
        .database("jobs")
        .partial_files(true)
        .progress(Duration::from_millis(100), 4)
        .size(100_000);
    let server = start(&done).await;
    let mut c = connect(&server).await;
    backup(&mut c, "jobs", &path).await.expect("backup");
    assert_eq!(std::fs::metadata(&path).expect("file").len(), 100_000);
    verify(&mut c, &path).await.expect("valid");
}

#[tokio::test]
async fn the_dmv_reports_a_running_verify_as_well() {
    let model = BackupModel::new()
        .database("jobs")
        .progress(Duration::from_millis(50), 2)
        .verify_time(Duration::from_secs(60));
    let server = start(&model).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = bak(dir.path(), "jobs.bak");
    let mut a = connect(&server).await;
    let mut b = connect(&server).await;
    let spid = spid_of(&mut a).await;
    backup(&mut a, "jobs", &path).await.expect("backup");
    run_until_progress(verify(&mut a, &path), &model, spid, 0.0).await;
    let row = b
        .query(
            "SELECT command, percent_complete FROM sys.dm_exec_requests WHERE session_id = @P1",
            &[&i32::from(spid)],
        )
        .await
        .expect("poll")
        .into_row()
        .await
        .expect("row")
        .expect("a row while verifying");
    assert_eq!(row.get::<&str, _>(0), Some("RESTORE VERIFYON"));
    assert!(row.get::<f32, _>(1).is_some_and(|p| p < 100.0));
    a.cancel_query().await.expect("attention acknowledged");
    model
        .wait_until(WAIT, |m| {
            m.verifies()
                .first()
                .is_some_and(|v| v.outcome == BackupOutcome::Cancelled)
        })
        .await
        .expect("verify cancelled");
    assert_eq!(poll(&mut b, spid).await, None);
}
