//! The restore executor against a real MariaDB/MySQL server: dumps made by
//! the real dump executor (`mariadb-dump`), restored with the real client.
//!
//! Needs `BATON_TEST_MYSQL_SOCKET` (root without a password over the socket;
//! `scripts/mariadb start DIR` prints it), `mariadb-dump` and `mariadb` on
//! PATH; without the socket these tests skip with the reason
//! (`db::test_server`). Each test uses databases of its own (random names,
//! dropped at the end, even on panic) and a temp dump directory.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use baton_proto::{Completion, DumpSpec, JobSpec, RestoreSource, RestoreSpec};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::*;
use crate::config::mysql::{DumpSettings, Endpoint, MysqlConnection, PasswordSource};
use crate::executor::{Cancel, CancelReason, ProgressHandle};

fn socket() -> String {
    std::env::var(crate::db::test_server::ENV).expect("socket")
}

/// Run SQL as root (statements on stdin); the output.
async fn sql(database: Option<&str>, script: &str) -> String {
    let mut cmd = tokio::process::Command::new("mariadb");
    cmd.arg("--no-defaults")
        .arg(format!("--socket={}", socket()))
        .args(["-uroot", "--batch", "--skip-column-names"]);
    if let Some(db) = database {
        cmd.arg(format!("--database={db}"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the mariadb client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(script.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait");
    assert!(
        out.status.success(),
        "SQL failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn exists(database: &str) -> bool {
    let n = sql(
        None,
        &format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{database}'"
        ),
    )
    .await;
    n.trim() == "1"
}

/// `CHECKSUM TABLE` and `COUNT(*)` of every base table, as root.
async fn figures(database: &str) -> Vec<(String, String, String)> {
    let tables = sql(
        None,
        &format!(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{database}' \
             AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME"
        ),
    )
    .await;
    let mut out = Vec::new();
    for t in tables.lines() {
        let sum = sql(None, &format!("CHECKSUM TABLE `{database}`.`{t}`")).await;
        let rows = sql(None, &format!("SELECT COUNT(*) FROM `{database}`.`{t}`")).await;
        let sum = sum.split('\t').nth(1).unwrap_or("").trim().to_owned();
        out.push((t.to_owned(), rows.trim().to_owned(), sum));
    }
    out
}

/// A source database, the targets a test restores into, a dump directory.
struct Fixture {
    source: String,
    targets: Vec<String>,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(tag: &str) -> Fixture {
        let source = format!("bt_rs_{tag}_{:08x}", rand::random::<u32>());
        sql(
            None,
            &format!("CREATE DATABASE `{source}` CHARACTER SET latin1"),
        )
        .await;
        Fixture {
            source,
            targets: Vec::new(),
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    /// A target name (dropped at the end).
    fn target(&mut self, tag: &str) -> String {
        let t = format!("bt_rt_{tag}_{:08x}", rand::random::<u32>());
        self.targets.push(t.clone());
        t
    }

    /// Tables with rows, a view, a trigger, routines and an event made while
    /// the database's collation differs from theirs (so the dump writes
    /// `ALTER DATABASE <source>` lines around them).
    async fn fill(&self, rows: u32) {
        sql(
            Some(&self.source),
            &format!(
                "ALTER DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
                 CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), b BLOB, d DECIMAL(10,2));
                 INSERT INTO t (name, b, d) VALUES ('a', 0x00FF, 1.50), ('tab\there', NULL, -2), ('ünï€', 0x0a0d5c27, 0);
                 CREATE TABLE log (id INT PRIMARY KEY AUTO_INCREMENT, what TEXT) ENGINE=InnoDB;
                 INSERT INTO log (what) SELECT CONCAT('row ', seq, REPEAT('x', 100)) FROM seq_1_to_{rows};
                 CREATE VIEW v AS SELECT id, name FROM t;
                 CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.name = UPPER(NEW.name);
                 DELIMITER //
                 CREATE PROCEDURE p() BEGIN SELECT COUNT(*) FROM t; END//
                 CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x + 1//
                 DELIMITER ;
                 CREATE EVENT ev ON SCHEDULE EVERY 1 DAY DO INSERT INTO log (what) VALUES ('event');
                 ALTER DATABASE `{db}` CHARACTER SET latin1 COLLATE latin1_swedish_ci;",
                db = self.source
            ),
        )
        .await;
    }

    fn settings(&self) -> Settings {
        let pw = self.dir.path().join("pw");
        std::fs::write(&pw, "\n").expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let conn = MysqlConnection {
            name: "main".into(),
            endpoint: Endpoint::Socket(socket().into()),
            user: "root".into(),
            password: PasswordSource::File(pw),
            database: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
            tls: None,
            create_ledger: false,
            dump: DumpSettings {
                dir: Some(self.dir.path().join("dumps")),
                ..DumpSettings::default()
            },
        };
        Settings::new(
            BTreeMap::from([("main".to_owned(), conn)]),
            self.dir.path().join("state"),
        )
    }

    fn job(spec: JobSpec) -> Job {
        Job {
            job_id: i64::from(rand::random::<u32>()),
            token: 1,
            attempt: 1,
            retry_codes: Vec::new(),
            spec,
            timeout: Some(Duration::from_secs(300)),
            cancel: Cancel::new(),
            progress: ProgressHandle::new(16 * 1024),
        }
    }

    /// Dump the source with the real dump executor; the dump's path and manifest.
    async fn dump(&self, verify: bool) -> (PathBuf, Value) {
        let exec = DumpExecutor::new(self.settings(), ProcessGroups::default());
        let out = exec
            .execute(Self::job(JobSpec::Dump(DumpSpec {
                connection: "main".into(),
                database: self.source.clone(),
                verify,
            })))
            .await;
        assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
        let data = out.result.data.expect("data");
        let path = PathBuf::from(data["path"].as_str().expect("path"));
        let manifest =
            std::fs::read(data["manifest_path"].as_str().expect("manifest")).expect("manifest");
        (path, serde_json::from_slice(&manifest).expect("json"))
    }

    fn restore_job(file: &std::path::Path, database: &str, replace: bool) -> Job {
        Self::job(JobSpec::Restore(RestoreSpec {
            connection: "main".into(),
            source: RestoreSource {
                file: Some(file.display().to_string()),
                ..Default::default()
            },
            database: database.into(),
            replace,
        }))
    }

    async fn restore(&self, file: &std::path::Path, database: &str, replace: bool) -> Outcome {
        let exec = RestoreExecutor::new(self.settings(), ProcessGroups::default());
        exec.execute(Self::restore_job(file, database, replace))
            .await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut script = format!("DROP DATABASE IF EXISTS `{}`;", self.source);
        for t in &self.targets {
            script.push_str(&format!("DROP DATABASE IF EXISTS `{t}`;"));
        }
        let _ = std::process::Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket()))
            .args(["-uroot", "-e", &script])
            .status();
    }
}

fn failed(out: &Outcome) -> (bool, String) {
    match out.completion {
        Completion::Failed { retryable } => (retryable, out.error.clone().unwrap_or_default()),
        ref other => panic!("expected a failure, got {other:?}: {:?}", out.error),
    }
}

#[tokio::test]
async fn a_dump_restored_under_a_new_name_has_the_same_tables_rows_and_checksums() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut fx = Fixture::new("ok").await;
    fx.fill(500).await;
    let (dump, manifest) = fx.dump(true).await;
    assert_eq!(manifest["verify"]["ok"], true, "{manifest}");
    assert_eq!(manifest["charset"]["character_set"], "latin1");
    // The source changes after the dump: a restore must not touch it (the
    // dump's `ALTER DATABASE <source>` lines are pointed at the target).
    sql(
        None,
        &format!("ALTER DATABASE `{}` CHARACTER SET utf8mb3", fx.source),
    )
    .await;
    let target = fx.target("new");
    let out = fx.restore(&dump, &target, false).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    assert_eq!(data["tables_compared"], 2, "{data}");
    assert_eq!(data["mismatches"], serde_json::json!([]));
    assert_eq!(data["checksums"], true);
    assert_eq!(data["replaced"], false);
    assert_eq!(data["events_disabled"], 1);
    assert_eq!(data["source"]["database"], fx.source.as_str());
    assert_eq!(data["source"]["sha256"], manifest["sha256"]);
    assert_eq!(
        data["objects"],
        serde_json::json!({"routines": 2, "triggers": 1, "views": 1, "events": 1})
    );
    // The figures the job reports are the manifest's and the server's own.
    assert_eq!(data["tables"], manifest["verify"]["tables"]);
    let mine = figures(&target).await;
    assert_eq!(mine, figures(&fx.source).await, "root's own figures agree");
    assert_eq!(mine[0].1, "500", "{mine:?}");
    let tables = data["tables"].as_array().expect("tables");
    for ((name, rows, sum), t) in mine.iter().zip(tables) {
        assert_eq!(t["name"], name.as_str());
        assert_eq!(t["rows"].to_string(), *rows);
        assert_eq!(t["checksum"], sum.as_str());
    }
    let charset = |db: &str| {
        format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"
        )
    };
    assert_eq!(sql(None, &charset(&target)).await.trim(), "latin1");
    assert_eq!(
        sql(None, &charset(&fx.source)).await.trim(),
        "utf8mb3",
        "source untouched"
    );
    let status = sql(
        None,
        &format!("SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{target}'"),
    )
    .await;
    assert_eq!(status.trim(), "DISABLED");
    assert_eq!(
        sql(Some(&target), "SELECT f(1); SELECT COUNT(*) FROM v").await,
        "2\n3\n"
    );
}

#[tokio::test]
async fn an_existing_database_is_refused_without_replace_and_replaced_with_it() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut fx = Fixture::new("ex").await;
    fx.fill(10).await;
    let (dump, _) = fx.dump(true).await;
    let target = fx.target("ex");
    sql(
        None,
        &format!("CREATE DATABASE `{target}`; CREATE TABLE `{target}`.keep (a INT)"),
    )
    .await;
    // Refused before the file is read: a damaged file gets the same answer.
    let bytes = std::fs::read(&dump).expect("read");
    std::fs::write(&dump, b"garbage").expect("damage");
    let out = fx.restore(&dump, &target, false).await;
    let (retryable, error) = failed(&out);
    assert!(!retryable);
    assert!(
        error.contains("already exists") && error.contains("replace = true"),
        "{error}"
    );
    let kept = sql(None, &format!("SHOW TABLES FROM `{target}`")).await;
    assert_eq!(kept, "keep\n", "nothing changed");
    std::fs::write(&dump, bytes).expect("repair");
    let out = fx.restore(&dump, &target, true).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    assert_eq!(out.result.data.expect("data")["replaced"], true);
    assert_eq!(
        sql(None, &format!("SHOW TABLES FROM `{target}`")).await,
        "log\nt\nv\n"
    );
}

#[tokio::test]
async fn a_damaged_file_or_a_missing_manifest_is_refused_before_any_database_change() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut fx = Fixture::new("bad").await;
    fx.fill(10).await;
    let (dump, _) = fx.dump(false).await;
    let target = fx.target("bad");
    let original = std::fs::read(&dump).expect("read");
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&dump, &flipped).expect("flip");
    let (retryable, error) = failed(&fx.restore(&dump, &target, false).await);
    assert!(!retryable);
    assert!(error.contains("does not match its manifest"), "{error}");
    assert!(!exists(&target).await, "no database created");

    std::fs::write(&dump, &original).expect("repair");
    let manifest = dump.with_file_name(
        dump.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".sql.zst"))
            .map(|s| format!("{s}.manifest.json"))
            .expect("stem"),
    );
    let kept = std::fs::read(&manifest).expect("manifest");
    std::fs::remove_file(&manifest).expect("rm");
    let (retryable, error) = failed(&fx.restore(&dump, &target, false).await);
    assert!(!retryable);
    assert!(error.contains("no readable manifest"), "{error}");
    assert!(!exists(&target).await);

    // Outside the dump directories: refused, whatever the file.
    let outside = fx.dir.path().join("copy.sql.zst");
    std::fs::write(&outside, &original).expect("copy");
    std::fs::write(
        outside.with_extension("").with_extension("manifest.json"),
        &kept,
    )
    .expect("copy");
    let (_, error) = failed(&fx.restore(&outside, &target, false).await);
    assert!(error.contains("not under a dump directory"), "{error}");

    // Without verify the dump's manifest has no figures: restored, said so.
    std::fs::write(&manifest, &kept).expect("put back");
    let out = fx.restore(&dump, &target, false).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    assert_eq!(data["tables_compared"], 0);
    let warnings = data["warnings"].to_string();
    assert!(warnings.contains("nothing was compared"), "{warnings}");
    assert_eq!(data["tables"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn figures_that_differ_from_the_manifest_fail_and_drop_the_new_database() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut fx = Fixture::new("mm").await;
    fx.fill(10).await;
    let (dump, mut manifest) = fx.dump(true).await;
    let path = dump
        .to_str()
        .and_then(|p| p.strip_suffix(".sql.zst"))
        .map(|s| format!("{s}.manifest.json"))
        .expect("stem");
    manifest["verify"]["tables"][0]["rows"] = serde_json::json!(11);
    std::fs::write(&path, serde_json::to_vec(&manifest).expect("json")).expect("write");
    let target = fx.target("mm");
    let (retryable, error) = failed(&fx.restore(&dump, &target, false).await);
    assert!(!retryable);
    assert!(
        error.contains("does not match the dump's manifest") && error.contains("11 rows"),
        "{error}"
    );
    assert!(
        !exists(&target).await,
        "the half-restored database was dropped"
    );
}

#[tokio::test]
async fn a_cancel_while_loading_drops_the_half_restored_database() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut fx = Fixture::new("cx").await;
    fx.fill(300_000).await;
    let (dump, _) = fx.dump(false).await;
    let target = fx.target("cx");
    let exec = RestoreExecutor::new(fx.settings(), ProcessGroups::default());
    let job = Fixture::restore_job(&dump, &target, false);
    let (cancel, progress) = (job.cancel.clone(), job.progress.clone());
    let watcher = tokio::spawn(async move {
        loop {
            let (p, tail) = progress.snapshot();
            if tail.contains("loading ") || p.is_some_and(|p| p.message.starts_with("restore:")) {
                cancel.cancel(CancelReason::Cancelled);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let out = exec.execute(job).await;
    assert!(watcher.await.expect("watcher"), "cancelled while loading");
    assert!(
        matches!(out.completion, Completion::Cancelled),
        "{:?} {:?}",
        out.completion,
        out.error
    );
    assert!(
        !exists(&target).await,
        "the half-restored database was dropped"
    );
}
