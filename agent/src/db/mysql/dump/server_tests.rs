//! The dump executor against a real MariaDB/MySQL server, with the real
//! `mariadb-dump` and `mariadb` client.
//!
//! Needs `BATON_TEST_MYSQL_SOCKET`: the path of a server's Unix socket where
//! `root` logs in without a password (`scripts/mariadb start DIR` prints it).
//! Without it these tests skip with the reason (`db::test_server`; they fail
//! under `scripts/test`, which sets `BATON_TEST_REQUIRE_MYSQL=1`). Each test
//! works in a database of its own (random name, dropped at the end, even on
//! panic) and a temp dump directory; users it creates are dropped too.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use baton_proto::{Completion, DumpSpec, JobSpec};
use tokio::io::AsyncWriteExt;

use super::*;
use crate::config::mysql::{DumpSettings, Endpoint, PasswordSource};
use crate::db::test_files::names_in;
use crate::executor::{Cancel, CancelReason, ProgressHandle};

const ENV: &str = "BATON_TEST_MYSQL_SOCKET";

fn socket() -> String {
    match std::env::var(ENV) {
        Ok(s) if !s.is_empty() => s,
        _ => panic!(
            "{ENV} is not set: the dump executor tests need a MariaDB/MySQL server and its \
             client tools. Start one with `scripts/mariadb start DIR` and export {ENV}=<its \
             socket> (root must log in over the socket without a password)"
        ),
    }
}

/// Run SQL as root (statements on stdin, so DELIMITER works); the output.
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
        "SQL failed as root over {ENV}={}: {}\n{script}",
        socket(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database and a dump directory of the test's own.
struct TestDb {
    name: String,
    users: Vec<String>,
    dir: tempfile::TempDir,
}

impl TestDb {
    async fn new(tag: &str) -> TestDb {
        let name = format!("bt_dump_{tag}_{:08x}", rand::random::<u32>());
        sql(None, &format!("CREATE DATABASE `{name}`")).await;
        TestDb {
            name,
            users: Vec::new(),
            dir: tempfile::tempdir().expect("tmp"),
        }
    }

    /// A table with rows, a view, a trigger, a procedure, a function and an event.
    async fn fill(&self) {
        sql(
            Some(&self.name),
            "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), b BLOB, d DECIMAL(10,2));
             INSERT INTO t (name, b, d) VALUES ('a', 0x00FF, 1.50), ('tab\there', NULL, -2), ('ünï€', 0x0a0d5c27, 0);
             CREATE TABLE log (id INT PRIMARY KEY AUTO_INCREMENT, what TEXT) ENGINE=InnoDB;
             INSERT INTO log (what) SELECT CONCAT('row ', seq) FROM seq_1_to_500;
             CREATE VIEW v AS SELECT id, name FROM t;
             CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.name = UPPER(NEW.name);
             DELIMITER //
             CREATE PROCEDURE p() BEGIN SELECT COUNT(*) FROM t; END//
             CREATE FUNCTION f(x INT) RETURNS INT DETERMINISTIC RETURN x + 1//
             DELIMITER ;
             CREATE EVENT ev ON SCHEDULE EVERY 1 DAY DO INSERT INTO log (what) VALUES ('event');",
        )
        .await;
    }

    /// A user on `localhost` with `password` and `grants` (each `... ON ...`).
    async fn user(&mut self, password: &str, grants: &[&str]) -> String {
        let user = format!("bt_u_{:08x}", rand::random::<u32>());
        let pw = password.replace('\\', "\\\\").replace('\'', "''");
        let mut script = format!("CREATE USER '{user}'@'localhost' IDENTIFIED BY '{pw}';\n");
        for g in grants {
            script.push_str(&format!(
                "GRANT {} TO '{user}'@'localhost';\n",
                g.replace("{db}", &self.name)
            ));
        }
        sql(None, &script).await;
        self.users.push(user.clone());
        user
    }

    fn dumps(&self) -> PathBuf {
        self.dir.path().join("dumps")
    }

    fn db_dir(&self) -> PathBuf {
        self.dumps().join("main").join(&self.name)
    }

    fn files(&self) -> Vec<String> {
        names_in(&self.db_dir())
    }

    /// An executor with one connection `main` (as `user`, or root).
    fn executor(
        &self,
        user: Option<(&str, &str)>,
        tune: impl FnOnce(&mut MysqlConnection),
    ) -> DumpExecutor {
        let (user, password) = user.unwrap_or(("root", ""));
        let pw = self.dir.path().join(format!("pw-{user}"));
        std::fs::write(&pw, format!("{password}\n")).expect("pw");
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let mut conn = MysqlConnection {
            name: "main".into(),
            endpoint: Endpoint::Socket(socket().into()),
            user: user.into(),
            password: PasswordSource::File(pw),
            database: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(5),
            tls: None,
            create_ledger: false,
            dump: DumpSettings {
                dir: Some(self.dumps()),
                ..DumpSettings::default()
            },
        };
        tune(&mut conn);
        let settings = Settings::new(
            BTreeMap::from([("main".to_owned(), conn)]),
            self.dir.path().join("state"),
        );
        DumpExecutor::new(settings, ProcessGroups::default())
    }

    fn job(&self, verify: bool) -> Job {
        Job {
            job_id: i64::from(rand::random::<u32>()),
            token: 1,
            attempt: 1,
            retry_codes: Vec::new(),
            spec: JobSpec::Dump(DumpSpec {
                connection: "main".into(),
                database: self.name.clone(),
                verify,
            }),
            timeout: Some(Duration::from_secs(300)),
            cancel: Cancel::new(),
            progress: ProgressHandle::new(16 * 1024),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let mut script = format!("DROP DATABASE IF EXISTS `{}`;", self.name);
        for u in &self.users {
            script.push_str(&format!("DROP USER IF EXISTS '{u}'@'localhost';"));
        }
        let _ = std::process::Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket()))
            .args(["-uroot", "-e", &script])
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_dump_with_every_kind_of_object_verifies() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("ok").await;
    db.fill().await;
    let exec = db.executor(None, |_| {});
    let job = db.job(true);
    let job_id = job.job_id;
    let out = exec.execute(job).await;
    assert_eq!(
        out.completion,
        Completion::Succeeded,
        "{:?}\n{}",
        out.error,
        out.result.stderr
    );
    let files = db.files();
    assert_eq!(files.len(), 2, "{files:?}");
    let (manifest_name, dump_name) = (&files[0], &files[1]);
    assert!(
        dump_name.ends_with(&format!("-job{job_id}.sql.zst")),
        "{files:?}"
    );
    assert!(
        manifest_name.ends_with(&format!("-job{job_id}.manifest.json")),
        "{files:?}"
    );
    let dump = db.db_dir().join(dump_name);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(db.db_dir().join(manifest_name)).expect("manifest"))
            .expect("json");

    run("zstd", &["-q", "-t", &dump.display().to_string()]);
    let sum = run("sha256sum", &[&dump.display().to_string()]);
    assert_eq!(sum.split_whitespace().next(), manifest["sha256"].as_str());
    let sql_text = run("zstd", &["-q", "-dc", &dump.display().to_string()]);
    assert_eq!(
        sql_text.len() as u64,
        manifest["uncompressed_bytes"].as_u64().expect("size")
    );
    assert_eq!(
        std::fs::metadata(&dump).expect("meta").len(),
        manifest["compressed_bytes"].as_u64().expect("size")
    );
    for needle in [
        "CREATE TABLE `t`",
        "VIEW `v`",
        "TRIGGER",
        "PROCEDURE `p`",
        "FUNCTION `f`",
        "EVENT `ev`",
        "-- Dump completed",
    ] {
        assert!(sql_text.contains(needle), "{needle} missing from the dump");
    }
    assert!(
        !sql_text.contains("CREATE DATABASE"),
        "dumped without --databases"
    );

    let verify = &manifest["verify"];
    assert_eq!(verify["ok"], true, "{manifest}");
    assert_eq!(verify["tables_compared"], 2);
    assert_eq!(verify["mismatches"], serde_json::json!([]));
    assert_eq!(
        verify["objects"],
        serde_json::json!({"routines": 2, "triggers": 1, "views": 1, "events": 1})
    );
    let scratch = verify["scratch_database"].as_str().expect("scratch");
    assert!(scratch.starts_with(&format!("baton_verify_{job_id}_")));
    let left = sql(
        None,
        &format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{scratch}'"
        ),
    )
    .await;
    assert_eq!(left.trim(), "0", "scratch database dropped");
    assert!(
        manifest["server_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(
        manifest["tool"]["version"]
            .as_str()
            .is_some_and(|v| v.contains("Ver"))
    );
    assert_eq!(manifest["database"], db.name.as_str());
    let data = out.result.data.expect("data");
    assert_eq!(data["sha256"], manifest["sha256"]);
    assert_eq!(data["path"], dump.display().to_string());
    assert_eq!(
        std::fs::read_dir(db.dir.path().join("state/dump-tmp"))
            .expect("tmp")
            .count(),
        0
    );
}

#[tokio::test]
async fn special_characters_in_the_password_reach_the_server() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new("pw").await;
    db.fill().await;
    let password = " sp#ce\"q'uote\\back;slash\t ";
    let user = db
        .user(
            password,
            &[
                "SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{db}`.*",
                "SELECT ON mysql.proc",
            ],
        )
        .await;
    let exec = db.executor(Some((&user, password)), |_| {});
    let out = exec.execute(db.job(false)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let data = out.result.data.expect("data");
    assert_eq!(data["verify"], serde_json::Value::Null);
    assert_eq!(
        data["warnings"],
        serde_json::json!([]),
        "mysql.proc is readable"
    );
}

#[tokio::test]
async fn missing_privileges_fail_with_the_tools_message_and_leave_nothing() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new("priv").await;
    db.fill().await;
    // Only SELECT: the view cannot be shown.
    let select_only = db.user("pw1", &["SELECT ON `{db}`.*"]).await;
    // Sees the routines (EXECUTE) but cannot read their bodies (no mysql.proc).
    let no_proc = db
        .user(
            "pw2",
            &["SELECT, SHOW VIEW, TRIGGER, EVENT, EXECUTE ON `{db}`.*"],
        )
        .await;
    for (user, pw, says) in [
        (&select_only, "pw1", "command denied"),
        (&no_proc, "pw2", "insufficient privileges"),
    ] {
        let exec = db.executor(Some((user, pw)), |_| {});
        let out = exec.execute(db.job(false)).await;
        assert_eq!(
            out.completion,
            Completion::Failed { retryable: false },
            "{user}: {:?}",
            out.error
        );
        let error = out.error.expect("error");
        assert!(error.contains(says), "{user}: {error}");
        assert!(
            error.contains("mariadb-dump") || error.contains("mysqldump"),
            "{error}"
        );
        assert!(out.result.stderr.contains(says), "{}", out.result.stderr);
        assert_eq!(
            db.files(),
            Vec::<String>::new(),
            "{user}: no .sql.zst, no .partial"
        );
    }
}

#[tokio::test]
async fn a_dump_that_cannot_fit_is_refused_before_the_tool_runs() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("space").await;
    db.fill().await;
    let marker = db.dir.path().join("tool-ran");
    let wrapper = db.dir.path().join("mariadb-dump");
    let real = run(
        "sh",
        &["-c", "command -v mariadb-dump || command -v mysqldump"],
    );
    crate::db::test_files::executable(
        &wrapper,
        &format!(
            "#!/bin/sh\n[ \"$1\" = --version ] || touch '{}'\nexec '{}' \"$@\"\n",
            marker.display(),
            real.trim()
        ),
    );
    let tool = wrapper.clone();
    let mut exec = db.executor(None, |c| c.dump.tool = Some(tool));
    // The wrapper works: a normal dump runs it.
    let out = exec.execute(db.job(false)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    assert!(marker.exists());
    std::fs::remove_file(&marker).expect("rm");
    let before = db.files();

    exec.settings.size_estimate_override = Some(1 << 60);
    let out = exec.execute(db.job(false)).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let error = out.error.expect("error");
    assert!(error.contains(&(1u64 << 60).to_string()), "{error}");
    assert!(error.contains("bytes free"), "{error}");
    assert!(!marker.exists(), "the tool did not run");
    assert_eq!(db.files(), before);
}

#[tokio::test]
async fn retention_keeps_the_newest_and_drops_the_old() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("ret").await;
    db.fill().await;
    std::fs::create_dir_all(db.db_dir()).expect("dir");
    let now = chrono::Utc::now();
    let old = |days: i64, job: i64| DumpName {
        started: now - chrono::Duration::days(days),
        job_id: job,
    };
    for n in [old(40, 1), old(3, 2), old(2, 3)] {
        std::fs::write(
            db.db_dir().join(format!("{}{SQL_ZST_SUFFIX}", n.stem())),
            "x",
        )
        .expect("dump");
        std::fs::write(
            db.db_dir().join(format!("{}{MANIFEST_SUFFIX}", n.stem())),
            "{}",
        )
        .expect("manifest");
    }
    let running = format!("{}{PARTIAL_SUFFIX}", old(0, 4).stem());
    std::fs::write(db.db_dir().join(&running), "").expect("partial");
    let exec = db.executor(None, |c| {
        c.dump.keep_last = Some(3);
        c.dump.max_age = Some(Duration::from_secs(30 * 86_400));
    });
    let job = db.job(false);
    let job_id = job.job_id;
    let out = exec.execute(job).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let files = db.files();
    let stems: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_suffix(SQL_ZST_SUFFIX))
        .collect();
    assert_eq!(stems.len(), 3, "{files:?}");
    assert!(
        stems.contains(&old(3, 2).stem().as_str()) && stems.contains(&old(2, 3).stem().as_str()),
        "{files:?}"
    );
    assert!(
        stems.iter().any(|s| s.ends_with(&format!("-job{job_id}"))),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(&old(40, 1).stem())),
        "the 40-day-old dump and manifest went: {files:?}"
    );
    assert!(files.contains(&running), "a running dump's partial stays");
    assert_eq!(
        files
            .iter()
            .filter(|f| f.ends_with(MANIFEST_SUFFIX))
            .count(),
        3,
        "{files:?}"
    );

    let exec = db.executor(None, |c| c.dump.keep_last = Some(2));
    let out = exec.execute(db.job(false)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let files = db.files();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(SQL_ZST_SUFFIX)).count(),
        2,
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(&old(3, 2).stem())),
        "{files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(&old(2, 3).stem())),
        "{files:?}"
    );
}

/// Processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie && String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(name);
        }
    }
    found
}

#[tokio::test]
async fn cancel_during_a_dump_kills_the_tool_and_leaves_no_partial() {
    if !crate::db::test_server::available() {
        return;
    }
    for reason in [CancelReason::Cancelled, CancelReason::LeaseLost] {
        let db = TestDb::new("cancel").await;
        db.fill().await;
        // Another session holds a write lock: the tool blocks in SELECT from `log`.
        let mut locker = tokio::process::Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket()))
            .args([
                "-uroot",
                &format!("--database={}", db.name),
                "-e",
                "LOCK TABLES log WRITE; SELECT SLEEP(60)",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("locker");
        let waiting = |state: &str| {
            format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{}' AND STATE = '{state}'",
                db.name
            )
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while sql(None, &waiting("User sleep")).await.trim() != "1" {
            assert!(Instant::now() < deadline, "the locker never got its lock");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let exec = db.executor(None, |_| {});
        let job = db.job(false);
        let cancel = job.cancel.clone();
        let runner = exec.clone();
        let task = tokio::spawn(async move { runner.execute(job).await });
        while sql(None, &waiting("Waiting for table metadata lock"))
            .await
            .trim()
            != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the dump never reached the locked table"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let state = db.dir.path().join("state").display().to_string();
        assert_eq!(processes_with(&state).len(), 1, "the tool runs");
        assert!(
            db.files().iter().any(|f| f.ends_with(PARTIAL_SUFFIX)),
            "{:?}",
            db.files()
        );
        cancel.cancel(reason);
        let out = task.await.expect("join");
        assert_eq!(out.completion, Completion::Cancelled, "{reason:?}");
        assert_eq!(
            db.files(),
            Vec::<String>::new(),
            "{reason:?}: no partial left"
        );
        assert!(
            processes_with(&state).is_empty(),
            "{reason:?}: the tool is gone"
        );
        assert!(exec.process_groups().is_empty());
        // End the locker's session on the server at once (a killed client's
        // SLEEP would only notice after a while).
        sql(
            None,
            &format!(
                "SELECT CONCAT('KILL ', ID, ';') FROM information_schema.PROCESSLIST \
                 WHERE DB = '{}' AND STATE = 'User sleep' INTO @k; \
                 EXECUTE IMMEDIATE COALESCE(@k, 'DO 0');",
                db.name
            ),
        )
        .await;
        let _ = locker.start_kill();
        let _ = locker.wait().await;
    }
}

#[tokio::test]
async fn a_restore_that_differs_fails_the_job_and_keeps_the_dump() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("differ").await;
    db.fill().await;
    // Tool and client wrappers side by side (the client is looked up next to
    // the tool): the client keeps a copy of what the restore check feeds it,
    // and changes one row of it.
    let bin = db.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let real = |name: &str| {
        run("sh", &["-c", &format!("command -v {name}")])
            .trim()
            .to_owned()
    };
    let fed = db.dir.path().join("restore-input.sql");
    for (name, body) in [
        (
            "mariadb-dump",
            format!("exec '{}' \"$@\"", real("mariadb-dump")),
        ),
        (
            "mariadb",
            format!(
                "case \"$*\" in\n  *--database=baton_verify_*) tee '{}' | sed \"s/'a',0x00FF/'z',0x00FF/\" | '{real}' \"$@\" ;;\n  *) exec '{real}' \"$@\" ;;\nesac",
                fed.display(),
                real = real("mariadb"),
            ),
        ),
    ] {
        let p = bin.join(name);
        crate::db::test_files::executable(&p, &format!("#!/bin/sh\n{body}\n"));
    }
    let tool = bin.join("mariadb-dump");
    let exec = db.executor(None, |c| c.dump.tool = Some(tool));
    let out = exec.execute(db.job(true)).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{:?}",
        out.error
    );
    let error = out.error.expect("error");
    assert!(
        error.contains("restore check failed: table `t`: checksum"),
        "{error}"
    );
    assert!(error.contains("dump kept"), "{error}");
    let files = db.files();
    assert_eq!(files.len(), 2, "dump and manifest kept: {files:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(db.db_dir().join(&files[0])).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["verify"]["ok"], false);
    assert_eq!(manifest["verify"]["tables_compared"], 2);
    assert_eq!(
        manifest["verify"]["mismatches"].as_array().map(Vec::len),
        Some(1),
        "{manifest}"
    );
    assert_eq!(out.result.data.expect("data")["verify"], manifest["verify"]);
    let scratch = manifest["verify"]["scratch_database"]
        .as_str()
        .expect("scratch");
    let left = sql(
        None,
        &format!(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{scratch}'"
        ),
    )
    .await;
    assert_eq!(left.trim(), "0", "scratch database dropped");
    // The event reached the scratch database disabled.
    let fed = std::fs::read_to_string(&fed).expect("restore input");
    assert!(
        fed.contains("EVENT `ev` ON SCHEDULE EVERY 1 DAY"),
        "the event is restored"
    );
    assert!(
        fed.contains("ON COMPLETION NOT PRESERVE DISABLE DO"),
        "created disabled"
    );
    assert!(!fed.contains("PRESERVE ENABLE"));
}

fn kib_field(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Figures for a ~100 MB database (run on demand:
/// `cargo test -p baton-agent --lib dump_figures -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement, not a test; run on demand"]
async fn dump_figures_for_a_100_mb_database() {
    if !crate::db::test_server::available() {
        return;
    }
    let db = TestDb::new("big").await;
    let rows: u64 = std::env::var("BATON_DUMP_FIGURES_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600_000);
    let t = Instant::now();
    sql(
        Some(&db.name),
        &format!(
            "CREATE TABLE big (id INT PRIMARY KEY, k INT NOT NULL, s CHAR(32) NOT NULL, \
               note VARCHAR(200) NOT NULL, at DATETIME NOT NULL, f DOUBLE NOT NULL, KEY (k)) ENGINE=InnoDB;
             INSERT INTO big SELECT seq, FLOOR(RAND(seq) * 1000000), MD5(seq),
               CONCAT('customer ', seq % 1000, ' note ', REPEAT(CHAR(65 + seq % 26), 20 + seq % 60)),
               '2024-01-01' + INTERVAL seq SECOND, RAND(seq * 7) FROM seq_1_to_{rows};
             ANALYZE TABLE big;"
        ),
    )
    .await;
    let size = sql(
        None,
        &format!(
            "SELECT DATA_LENGTH, INDEX_LENGTH FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}'",
            db.name
        ),
    )
    .await;
    eprintln!(
        "generated {rows} rows in {:.1} s; data_length, index_length = {}",
        t.elapsed().as_secs_f64(),
        size.trim()
    );

    for verify in [false, true] {
        let exec = db.executor(None, |_| {});
        let state = db.dir.path().join("state").display().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut peak = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for pid in processes_with(&state) {
                        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                            .unwrap_or_default();
                        if status.contains("Name:\tmariadb-dump")
                            || status.contains("Name:\tmysqldump")
                        {
                            peak = peak.max(kib_field(&status, "VmHWM:"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        };
        let t = Instant::now();
        let out = exec.execute(db.job(verify)).await;
        let took = t.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let tool_peak = sampler.join().expect("sampler");
        assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
        let data = out.result.data.expect("data");
        let sql_bytes = data["uncompressed_bytes"].as_u64().expect("sql");
        let file_bytes = data["compressed_bytes"].as_u64().expect("file");
        let dump_secs = data["duration_ms"].as_u64().expect("duration") as f64 / 1000.0;
        let me = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        eprintln!(
            "verify={verify}: job {:.2} s (dump part {dump_secs:.2} s), SQL {:.1} MiB, \
             file {:.1} MiB (ratio {:.1}x), {:.1} MiB/s of SQL over the whole job; verify {} ms; \
             test process VmHWM {} MiB, tool VmHWM {} MiB",
            took.as_secs_f64(),
            sql_bytes as f64 / 1048576.0,
            file_bytes as f64 / 1048576.0,
            sql_bytes as f64 / file_bytes.max(1) as f64,
            sql_bytes as f64 / 1048576.0 / took.as_secs_f64(),
            data["verify"]["duration_ms"],
            kib_field(&me, "VmHWM:") / 1024,
            tool_peak / 1024,
        );
    }
}

mod grants;
