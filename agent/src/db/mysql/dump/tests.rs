//! The executor end to end with a fake tool and a fake client (shell
//! scripts), so every failure path runs without a server. The real-server
//! tests are in `agent/tests/dump_mysql.rs`.

use std::path::Path;

use baton_proto::{Completion, DumpSpec, JobSpec};
use sha2::{Digest, Sha256};

use super::*;
use crate::config::mysql::{DumpSettings, Endpoint, PasswordSource};
use crate::db::test_files::names_in;
use crate::executor::CancelReason;
use crate::executor::{Cancel, ProgressHandle};

const TOOL: &str = r#"
if [ "$1" = --version ]; then echo "mariadb-dump  Ver 10.19 Distrib 10.11.99-MariaDB, fake"; exit 0; fi
f=${1#--defaults-extra-file=}
stat -c %a "$f" > "$MARKER_DIR/mode"
cp "$f" "$MARKER_DIR/defaults"
printf '%s\n' "$@" > "$MARKER_DIR/args"
case "$FAKE_MODE" in
  ok) printf -- '-- MariaDB dump\nCREATE TABLE t (a int);\n\n-- Dump completed on 2025-01-01  0:00:00\n' ;;
  notrailer) printf 'CREATE TABLE t (a int);\n' ;;
  denied) printf -- '-- MariaDB dump\n'
     echo "mariadb-dump: Couldn't execute 'show create table \`v\`': SHOW VIEW command denied to user 'ro'@'localhost' for table \`shop\`.\`v\` (1142)" >&2
     exit 2 ;;
  errorzero) printf -- '-- x\n-- Dump completed on x\n'; echo "mariadb-dump: Got error: 2013: Lost connection to server" >&2 ;;
  hang) printf -- '-- MariaDB dump\n'; sleep 60 & echo $! > "$MARKER_DIR/child"; wait ;;
esac
"#;

const CLIENT: &str = r#"
while IFS= read -r line; do
  case "$line" in
    "SELECT 'baton-dump-section:"*) n=${line#"SELECT 'baton-dump-section:"}; echo "baton-dump-section:${n%%"'"*}" ;;
    "SELECT VERSION()"*) echo "10.11.99-MariaDB-fake" ;;
    *SCHEMATA*) [ "$FAKE_DB" = missing ] || printf 'utf8mb4\tutf8mb4_general_ci\n' ;;
    *"information_schema.TABLES"*) echo 1000 ;;
    *mysql.proc*) echo "ERROR 1142 (42000) at line 8: SELECT command denied to user 'x'@'localhost' for table \`mysql\`.\`proc\`" >&2 ;;
    "SHOW MASTER STATUS"*) printf 'binlog.000001\t42\t\t\n' ;;
    *gtid_binlog_pos*) echo "0-1-5" ;;
    *gtid_executed*) echo "ERROR 1193 (HY000) at line 6: Unknown system variable 'gtid_executed'" >&2 ;;
  esac
done
"#;

struct Fake {
    tmp: tempfile::TempDir,
    exec: DumpExecutor,
}

impl Fake {
    fn new(mode: &str, extra: &[(&str, &str)], flags: &[&str]) -> Fake {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(root.join("marks")).expect("marks");
        for (name, body) in [("mariadb-dump", TOOL), ("mariadb", CLIENT)] {
            let p = bin.join(name);
            crate::db::test_files::executable(&p, &format!("#!/bin/sh\n{body}"));
        }
        std::fs::write(root.join("pw"), "s3cr#t\"pw\n").expect("pw");
        let conn = MysqlConnection {
            name: "main".into(),
            endpoint: Endpoint::Socket("/nonexistent.sock".into()),
            user: "baton".into(),
            password: PasswordSource::File(root.join("pw")),
            database: None,
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            tls: None,
            create_ledger: false,
            dump: DumpSettings {
                dir: Some(root.join("dumps")),
                tool: Some(bin.join("mariadb-dump")),
                extra_flags: flags.iter().map(|f| (*f).to_owned()).collect(),
                ..DumpSettings::default()
            },
        };
        let mut settings = Settings::new(
            BTreeMap::from([("main".to_owned(), conn)]),
            root.join("state"),
        );
        settings.search_path = None;
        settings.term_grace = Duration::from_millis(200);
        settings.base_env = vec![
            ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
            ("FAKE_MODE".into(), mode.into()),
            ("MARKER_DIR".into(), root.join("marks").into_os_string()),
        ];
        for (k, v) in extra {
            settings.base_env.push(((*k).into(), (*v).into()));
        }
        Fake {
            exec: DumpExecutor::new(settings, ProcessGroups::default()),
            tmp,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    fn mark(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.root().join("marks").join(name)).ok()
    }

    fn dump_files(&self) -> Vec<String> {
        names_in(&self.root().join("dumps/main/shop"))
    }

    fn tmp_dirs(&self) -> usize {
        std::fs::read_dir(self.root().join("state/dump-tmp")).map_or(0, |d| d.count())
    }
}

fn job(database: &str, verify: bool) -> Job {
    Job {
        job_id: 7,
        token: 3,
        attempt: 1,
        retry_codes: Vec::new(),
        spec: JobSpec::Dump(DumpSpec {
            connection: "main".into(),
            database: database.into(),
            verify,
        }),
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(4096),
    }
}

#[tokio::test]
async fn a_good_dump_lands_with_its_manifest() {
    let f = Fake::new("ok", &[], &["--skip-lock-tables"]);
    let out = f.exec.execute(job("shop", false)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{:?}", out.error);
    let files = f.dump_files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].ends_with("-job7.manifest.json") && files[1].ends_with("-job7.sql.zst"),
        "{files:?}"
    );
    let dir = f.root().join("dumps/main/shop");
    let bytes = std::fs::read(dir.join(&files[1])).expect("dump");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&files[0])).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(manifest["compressed_bytes"], bytes.len() as u64);
    assert_eq!(manifest["server_version"], "10.11.99-MariaDB-fake");
    assert_eq!(manifest["job_id"], 7);
    assert_eq!(manifest["token"], 3);
    assert_eq!(manifest["verify"], serde_json::Value::Null);
    assert_eq!(manifest["binlog"]["file"], "binlog.000001");
    assert_eq!(manifest["binlog"]["position"], 42);
    assert_eq!(manifest["binlog"]["gtid"], "0-1-5");
    assert_eq!(manifest["binlog"]["source"], "server_after_dump");
    assert!(
        manifest["warnings"][0]
            .as_str()
            .expect("warning")
            .contains("mysql.proc"),
        "{manifest}"
    );
    let data = out.result.data.expect("data");
    assert_eq!(data["sha256"], manifest["sha256"]);
    assert_eq!(data["path"], dir.join(&files[1]).display().to_string());
    assert!(
        out.result.stdout.starts_with("dumped shop on main"),
        "{}",
        out.result.stdout
    );

    // The tool got the defaults file first, 0600, with the password quoted.
    assert_eq!(f.mark("mode").as_deref(), Some("600\n"));
    let args = f.mark("args").expect("args");
    let args: Vec<&str> = args.lines().collect();
    assert!(args[0].starts_with("--defaults-extra-file="), "{args:?}");
    assert_eq!(&args[1..7], &flow::BASE_FLAGS[..]);
    assert_eq!(&args[7..], &["--skip-lock-tables", "shop"]);
    let defaults = f.mark("defaults").expect("defaults");
    assert!(
        defaults.contains("password=\"s3cr#t\\\"pw\"\n"),
        "{defaults}"
    );
    assert!(
        !args.iter().any(|a| a.contains("s3cr")),
        "password not in argv"
    );
    assert!(
        !Path::new(args[0].trim_start_matches("--defaults-extra-file=")).exists(),
        "defaults file removed"
    );
    assert_eq!(f.tmp_dirs(), 0);
}

#[tokio::test]
async fn a_tool_failure_leaves_nothing_and_says_why() {
    for (mode, retryable, says) in [
        ("denied", false, "SHOW VIEW command denied"),
        ("notrailer", true, "trailer"),
        ("errorzero", true, "Lost connection"),
    ] {
        let f = Fake::new(mode, &[], &[]);
        let out = f.exec.execute(job("shop", false)).await;
        assert_eq!(
            out.completion,
            Completion::Failed { retryable },
            "{mode}: {:?}",
            out.error
        );
        let error = out.error.expect("error");
        assert!(error.contains(says), "{mode}: {error}");
        assert_eq!(f.dump_files(), Vec::<String>::new(), "{mode}");
        assert_eq!(f.tmp_dirs(), 0, "{mode}");
    }
}

#[tokio::test]
async fn a_dump_that_cannot_fit_is_refused_before_the_tool_runs() {
    let mut f = Fake::new("ok", &[], &[]);
    f.exec.settings.size_estimate_override = Some(u64::MAX / 4);
    let out = f.exec.execute(job("shop", false)).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let error = out.error.expect("error");
    assert!(
        error.contains(&(u64::MAX / 4).to_string()) && error.contains("bytes free"),
        "{error}"
    );
    assert_eq!(f.mark("args"), None, "the tool never ran");
    assert!(!f.root().join("dumps").exists());
}

#[tokio::test]
async fn bad_requests_fail_for_good() {
    let f = Fake::new("ok", &[("FAKE_DB", "missing")], &[]);
    for (db, says) in [
        ("..", "not valid"),
        ("-x", "not valid"),
        ("shop", "does not exist"),
    ] {
        let out = f.exec.execute(job(db, false)).await;
        assert_eq!(
            out.completion,
            Completion::Failed { retryable: false },
            "{db}"
        );
        assert!(
            out.error.as_deref().unwrap_or_default().contains(says),
            "{db}: {:?}",
            out.error
        );
    }
    let mut other = job("shop", false);
    other.spec = JobSpec::Dump(DumpSpec {
        connection: "other".into(),
        database: "shop".into(),
        verify: false,
    });
    let out = f.exec.execute(other).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    let f = Fake::new("ok", &[], &["--skip-comments"]);
    let out = f.exec.execute(job("shop", false)).await;
    assert!(
        out.error
            .as_deref()
            .unwrap_or_default()
            .contains("--skip-comments"),
        "{:?}",
        out.error
    );
    let f = Fake::new("ok", &[], &["--no-create-info"]);
    let out = f.exec.execute(job("shop", true)).await;
    assert!(
        out.error
            .as_deref()
            .unwrap_or_default()
            .contains("--no-create-info"),
        "{:?}",
        out.error
    );
    assert_eq!(f.mark("args"), None);
}

fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Err(_) => true,
        // A zombie waiting for a PID 1 that does not reap is dead too.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn cancel_and_timeout_kill_the_tool_and_leave_no_partial() {
    for timeout in [false, true] {
        let f = Fake::new("hang", &[], &[]);
        let mut j = job("shop", false);
        let cancel = j.cancel.clone();
        if timeout {
            // Long enough for the fake tool to start and mark it on a
            // loaded machine (the checks below run while it hangs).
            j.timeout = Some(Duration::from_secs(3));
        }
        let exec = f.exec.clone();
        let run = tokio::spawn(async move { exec.execute(j).await });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while f.mark("child").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the fake tool never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(f.exec.process_groups().len(), 1);
        assert_eq!(
            f.dump_files().len(),
            1,
            "the partial exists while the tool runs"
        );
        if !timeout {
            cancel.cancel(CancelReason::Cancelled);
        }
        let out = run.await.expect("join");
        let want = if timeout {
            Completion::TimedOut
        } else {
            Completion::Cancelled
        };
        assert_eq!(out.completion, want);
        assert_eq!(f.dump_files(), Vec::<String>::new(), "no partial left");
        assert!(f.exec.process_groups().is_empty());
        let child = f.mark("child").expect("child");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gone(&child) {
            assert!(
                std::time::Instant::now() < deadline,
                "the tool's child survived"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(f.tmp_dirs(), 0);
    }
}

#[test]
fn a_full_disk_is_not_retried_and_the_refusal_names_the_reserve() {
    let full = Error::io(
        "cannot write x.partial",
        std::io::Error::from_raw_os_error(28), // ENOSPC
    );
    assert!(!full.retryable(), "{full}");
    assert!(full.to_string().contains("filled up"), "{full}");
    let other = Error::io("cannot write x.partial", std::io::Error::other("flaky"));
    assert!(other.retryable());
    let refused = Error::NoSpace {
        database: "shop".into(),
        dir: "/d".into(),
        mount: "/".into(),
        estimate: 1000,
        reserve: 200 * 1024 * 1024,
        needed: 1000 + 200 * 1024 * 1024,
        free: 5,
    };
    let text = refused.to_string();
    assert!(text.contains("dump_reserve_mb (200 MiB)"), "{text}");
    assert!(!text.contains("64 MiB"), "{text}");
}

#[test]
fn endpoints_read_as_an_operator_writes_them() {
    let tcp = Endpoint::Tcp {
        host: "db1".into(),
        port: 3306,
    };
    assert_eq!(tcp.to_string(), "db1:3306");
    let v6 = Endpoint::Tcp {
        host: "::1".into(),
        port: 3306,
    };
    assert_eq!(v6.to_string(), "[::1]:3306");
    let sock = Endpoint::Socket("/run/mysqld/mysqld.sock".into());
    assert_eq!(sock.to_string(), "socket /run/mysqld/mysqld.sock");
}
