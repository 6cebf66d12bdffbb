//! The real-MariaDB test harness itself: the shared server starts, databases
//! and users are made per test, users log in with their passwords over TCP
//! and the socket, grants are enforced, the watchdog stops a server whose
//! test process is gone, and a missing MariaDB fails the tests.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::mariadb::{self, MariaDb, SqlError, Via};

async fn db() -> &'static MariaDb {
    mariadb::server().await.expect("test MariaDB server")
}

fn sql_error(e: &anyhow::Error) -> &SqlError {
    e.downcast_ref::<SqlError>()
        .unwrap_or_else(|| panic!("not a client error: {e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_once_and_answers_as_root() {
    baton_tests::require_mariadb!();
    let s = db().await;
    assert!(std::ptr::eq(s, db().await), "one server per test process");
    assert!(s.version().contains("MariaDB"), "{}", s.version());
    assert!(s.port() > 0);
    assert!(s.socket().exists(), "{}", s.socket().display());
    let out = s
        .sql(
            None,
            "SELECT CURRENT_USER(), @@port, @@character_set_server, @@skip_name_resolve",
        )
        .expect("root SQL");
    assert_eq!(
        out,
        format!("root@localhost\t{}\tutf8mb4\t1\n", s.port()),
        "{}",
        s.error_log()
    );
    // The server answers on its TCP port too.
    TcpStream::connect(("127.0.0.1", s.port())).expect("TCP connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_are_new_and_unique_per_call() {
    baton_tests::require_mariadb!();
    let s = db().await;
    let a = s.create_database("smoke").expect("create a");
    let b = s.create_database("smoke").expect("create b");
    assert_ne!(a, b);
    assert!(
        a.starts_with("smoke_") && a.len() == "smoke_".len() + 12,
        "{a}"
    );
    let listed = s.sql(None, "SHOW DATABASES").expect("show");
    let listed: Vec<&str> = listed.lines().collect();
    assert!(
        listed.contains(&a.as_str()) && listed.contains(&b.as_str()),
        "{listed:?}"
    );
    assert_eq!(
        s.sql(
            None,
            &format!(
                "SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{a}'"
            )
        )
        .expect("charset"),
        "utf8mb4\n"
    );
    let err = s
        .create_database("Bad-Prefix")
        .expect_err("bad prefix refused");
    assert!(err.to_string().contains("prefix"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_user_logs_in_over_tcp_with_its_password() {
    baton_tests::require_mariadb!();
    let s = db().await;
    let d = s.create_database("login").expect("database");
    let (user, password) = s.create_user(&d, &["ALL"]).expect("user");
    assert!(password.len() >= 20, "a real password");

    // The plain command-line client, password on argv (fine in a test).
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("-h127.0.0.1")
        .arg(format!("-P{}", s.port()))
        .arg(format!("-u{user}"))
        .arg(format!("--password={password}"))
        .arg(format!("-D{d}"))
        .args(["--batch", "--skip-column-names"])
        .args(["-e", "SELECT 1; SELECT CURRENT_USER(), DATABASE()"])
        .output()
        .expect("run mariadb");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("1\n{user}@127.0.0.1\t{d}\n")
    );

    // Through the helper: TCP and the socket reach the two accounts.
    let tcp = s
        .sql_as(
            Via::Tcp,
            &user,
            &password,
            Some(&d),
            "SELECT CURRENT_USER()",
        )
        .expect("tcp");
    assert_eq!(tcp, format!("{user}@127.0.0.1\n"));
    let sock = s
        .sql_as(
            Via::Socket,
            &user,
            &password,
            Some(&d),
            "SELECT CURRENT_USER()",
        )
        .expect("socket");
    assert_eq!(sock, format!("{user}@localhost\n"));

    // ALL on its database: it can create, write and read tables there.
    let rows = s
        .sql_as(
            Via::Tcp,
            &user,
            &password,
            Some(&d),
            "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20));
             INSERT INTO t VALUES (1, 'één'), (2, 'two');
             SELECT id, name FROM t ORDER BY id",
        )
        .expect("create, insert, select");
    assert_eq!(rows, "1\téén\n2\ttwo\n");

    // A wrong password is refused: 1045 access denied.
    let err = s
        .sql_as(Via::Tcp, &user, "not-the-password", Some(&d), "SELECT 1")
        .expect_err("wrong password");
    let e = sql_error(&err);
    assert_eq!(e.code, Some(1045), "{e}");
    assert!(e.stderr.contains("Access denied"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_select_only_user_cannot_create_tables() {
    baton_tests::require_mariadb!();
    let s = db().await;
    let d = s.create_database("readonly").expect("database");
    s.sql(
        Some(&d),
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (7)",
    )
    .expect("root fills the table");
    let (user, password) = s
        .create_user(
            &d,
            &["SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES"],
        )
        .expect("dump user");

    let read = s
        .sql_as(Via::Tcp, &user, &password, Some(&d), "SELECT id FROM t")
        .expect("select");
    assert_eq!(read, "7\n");

    let err = s
        .sql_as(
            Via::Tcp,
            &user,
            &password,
            Some(&d),
            "CREATE TABLE u (id INT)",
        )
        .expect_err("CREATE TABLE must be denied");
    let e = sql_error(&err);
    assert_eq!(e.code, Some(1142), "{e}");
    assert_eq!(e.sqlstate.as_deref(), Some("42000"), "{e}");
    assert!(e.stderr.contains("CREATE command denied"), "{e}");

    let err = s
        .sql_as(
            Via::Tcp,
            &user,
            &password,
            Some(&d),
            "INSERT INTO t VALUES (8)",
        )
        .expect_err("INSERT must be denied");
    assert_eq!(sql_error(&err).code, Some(1142), "{err:#}");
    assert_eq!(
        s.sql(Some(&d), "SELECT COUNT(*) FROM t").expect("count"),
        "1\n",
        "nothing was written"
    );

    // It sees its own database only.
    let dbs = s
        .sql_as(Via::Tcp, &user, &password, None, "SHOW DATABASES")
        .expect("show databases");
    let mut dbs: Vec<&str> = dbs.lines().collect();
    dbs.sort_unstable();
    assert_eq!(dbs, ["information_schema", d.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_toml_and_password_file_describe_the_user() {
    baton_tests::require_mariadb!();
    let s = db().await;
    let d = s.create_database("conf").expect("database");
    let (user, password) = s.create_user(&d, &["SELECT"]).expect("user");
    let tmp = tempfile::tempdir().expect("tmp");
    let pw = tmp.path().join("db.password");
    std::fs::write(&pw, "old contents, longer than the password\n").expect("pre-existing");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let meta = std::fs::metadata(&pw).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&pw).expect("read"), password);

    let toml = s.connection_toml("main", &d, &user, &pw);
    assert_eq!(
        toml,
        format!(
            "[connections.main]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{user}\"\npassword_file = \"{}\"\ndatabase = \"{d}\"\n",
            s.port(),
            pw.display()
        )
    );
    let sock = s.connection_toml_socket("local db", &d, &user, Path::new("pw"));
    assert!(
        sock.starts_with("[connections.\"local db\"]\nkind = \"mysql\"\n"),
        "{sock}"
    );
    assert!(
        sock.contains(&format!("\nsocket = \"{}\"\n", s.socket().display())),
        "{sock}"
    );
    assert!(!sock.contains("host") && !sock.contains("port"), "{sock}");
}

/// Wait for `cond` (polling), up to `timeout`.
fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

#[test]
fn the_watchdog_stops_the_server_when_the_watched_process_exits() {
    baton_tests::require_mariadb!();
    // Fails the same way as the others when MariaDB is missing.
    mariadb::server_blocking().expect("test MariaDB server");
    let script = mariadb::script();
    // Removed by the watchdogs, not by a TempDir.
    let dir = tempfile::Builder::new()
        .prefix("baton-wd-")
        .tempdir()
        .expect("tmp")
        .keep();
    // Should this test be killed, a second watchdog on this process cleans up.
    let mut safety = Command::new(&script)
        .arg("watch")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .arg("--remove")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("safety watch");
    let start = || {
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run start");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let first = start();
    assert!(first.starts_with("port="), "{first}");
    let port: u16 = first["port=".len()..]
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // Starting again finds it running: same port, same socket.
    assert_eq!(start(), first);
    TcpStream::connect(("127.0.0.1", port)).expect("server listens");

    let mut victim = Command::new("sleep").arg("120").spawn().expect("sleep");
    let mut watcher = Command::new(&script)
        .arg("watch")
        .arg(&dir)
        .arg(victim.id().to_string())
        .arg("--remove")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("watch");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        watcher.try_wait().expect("try_wait").is_none(),
        "the watchdog waits while its process lives"
    );
    assert!(dir.join("data").is_dir());

    victim.kill().expect("kill");
    victim.wait().expect("reap");
    assert!(
        eventually(Duration::from_secs(60), || watcher
            .try_wait()
            .expect("try_wait")
            .is_some()),
        "the watchdog did not finish"
    );
    assert!(!dir.exists(), "the watchdog removes the dir");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server is stopped"
    );
    // Stopping a stopped (even removed) server is fine.
    let stop = Command::new(&script)
        .arg("stop")
        .arg(&dir)
        .status()
        .expect("stop");
    assert!(stop.success());
    safety.kill().expect("end the safety watchdog");
    safety.wait().expect("reap it");
}

/// This test binary again, running one server test with MariaDB switched off.
fn run_without_mariadb(require: bool) -> (bool, String) {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([
        "the_server_starts_once_and_answers_as_root",
        "--exact",
        "--test-threads=1",
    ])
    .env(mariadb::ENV_SWITCH, "skip");
    if require {
        // A failure's panic message is in the failures section of stdout.
        cmd.env(mariadb::REQUIRE, "1");
    } else {
        // A passing test's output is shown only with --nocapture.
        cmd.arg("--nocapture").env_remove(mariadb::REQUIRE);
    }
    let out = cmd.output().expect("run self");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn without_mariadb_the_tests_fail_with_an_install_hint() {
    let (passed, stdout) = run_without_mariadb(true);
    assert!(!passed, "must fail, not pass:\n{stdout}");
    assert!(stdout.contains("1 failed"), "{stdout}");
    assert!(
        stdout.contains("BATON_TEST_MARIADB=skip") && stdout.contains("scripts/mariadb install"),
        "{stdout}"
    );
}

#[test]
fn without_mariadb_and_not_required_the_tests_skip_with_the_reason() {
    let (passed, stdout) = run_without_mariadb(false);
    assert!(passed, "must pass (skipped):\n{stdout}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        stdout.contains("skipped: BATON_TEST_MARIADB=skip is set")
            && stdout.contains("BATON_TEST_REQUIRE_MYSQL=1 makes this a failure")
            && stdout.contains("scripts/mariadb install"),
        "{stdout}"
    );
}
