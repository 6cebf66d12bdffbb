//! `baton-controller validate` with `[store] url = "postgres://…"` against a
//! real PostgreSQL (`BATON_TEST_PG_URL`, a superuser URL as `scripts/test`
//! sets; skips without it, saying so, unless `BATON_TEST_REQUIRE_PG=1`):
//! the database is reachable, its migrations are current (none pending,
//! none unknown), `synchronous_commit` is not off, and an asynchronous (or
//! missing) standby is a warning. Errors exit 78.

use std::path::Path;
use std::process::Output;

use baton_tests::proc::bin;
use sqlx::{Connection, PgConnection};

/// The admin URL, or `None` (printed why) when the test must skip.
fn admin_url() -> Option<String> {
    match std::env::var("BATON_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BATON_TEST_REQUIRE_PG").as_deref() != Ok("1"),
                "BATON_TEST_REQUIRE_PG=1 but BATON_TEST_PG_URL is not set"
            );
            eprintln!("skipped: no PostgreSQL (set BATON_TEST_PG_URL, as scripts/test does)");
            None
        }
    }
}

/// `url` (`postgres://u@h:p/db[?q]`) naming database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{db}{q}", &base[..host_end])
}

async fn exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
}

/// Run `baton-controller <cmd>` with a config whose store is `url`.
fn controller(dir: &Path, url: &str, cmd: &str) -> Output {
    let cfg = dir.join("controller.toml");
    std::fs::write(
        &cfg,
        format!(
            "allow_plain_http = true\nlisten = \"127.0.0.1:18420\"\nstate_dir = \"{}\"\n\n[store]\nurl = \"{url}\"\n",
            dir.join("state").display()
        ),
    )
    .expect("write");
    std::process::Command::new(bin("baton-controller").expect("bin"))
        .args(["--config", cfg.to_str().expect("path"), cmd])
        .output()
        .expect("run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn validate_checks_reachability_migrations_and_synchronous_commit() {
    let Some(admin) = admin_url() else {
        return;
    };
    let name = format!("baton_v_{}_{}", std::process::id(), rand::random::<u32>());
    exec(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
    let url = with_database(&admin, &name);
    let dir = tempfile::tempdir().expect("tmp");

    // A fresh database: its migrations are pending.
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("not applied yet"), "{out:?}");

    // Migrated (init): valid, with the warning that there is no
    // synchronous standby (this server has none).
    let out = controller(dir.path(), &url, "init");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("migrations current"), "{stdout}");
    assert!(
        stderr(&out).contains("warning: PostgreSQL: no synchronous standby"),
        "{out:?}"
    );

    // A migration this controller does not know: a newer one ran.
    exec(
        &url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', TRUE, '\\x00', 1)",
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("newer controller"), "{out:?}");
    exec(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = 99990101000000",
    )
    .await;

    // synchronous_commit = off for the controller's database.
    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" SET synchronous_commit = off"),
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(
        stderr(&out).contains("synchronous_commit is off"),
        "{out:?}"
    );
    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" RESET synchronous_commit"),
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Nobody listens there: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = controller(
        dir.path(),
        &format!("postgres://postgres@127.0.0.1:{closed}/{name}"),
        "validate",
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("no primary reachable"), "{out:?}");

    exec(&admin, &format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await;
}

/// A PostgreSQL server of this test's own (run as `postgres` with
/// `runuser`), stopped when dropped.
struct Server {
    data: std::path::PathBuf,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres(&[
            "pg_ctl",
            "-D",
            self.data.to_str().unwrap_or_default(),
            "-m",
            "immediate",
            "stop",
        ]);
    }
}

fn as_postgres(args: &[&str]) -> Output {
    std::process::Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .expect("runuser")
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Start a server on `data` (already made) at a free port.
fn start(root: &Path, data: &Path) -> Server {
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1",
        root.display()
    );
    let log = data.with_extension("log");
    let out = as_postgres(&[
        "pg_ctl",
        "-D",
        data.to_str().expect("path"),
        "-o",
        &opts,
        "-l",
        log.to_str().expect("path"),
        "-w",
        "start",
    ]);
    assert!(out.status.success(), "pg_ctl start: {out:?}");
    Server {
        data: data.to_owned(),
        port,
    }
}

/// Why a primary with a standby of its own cannot be made here, if so.
fn no_standby_reason() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
        return Some("not root (initdb and pg_ctl run as the postgres user)".into());
    }
    for tool in ["initdb", "pg_ctl", "pg_basebackup", "runuser"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

async fn scalar(url: &str, sql: &str) -> String {
    let mut c = PgConnection::connect(url).await.expect("connect");
    let v: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
    v
}

#[tokio::test]
async fn validate_warns_about_an_asynchronous_standby_and_not_a_synchronous_one() {
    if let Some(why) = no_standby_reason() {
        assert!(
            std::env::var("BATON_TEST_REQUIRE_PG").as_deref() != Ok("1"),
            "BATON_TEST_REQUIRE_PG=1 but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let r = root.path();
    let chown = std::process::Command::new("chown")
        .args(["postgres", r.to_str().expect("path")])
        .status()
        .expect("chown");
    assert!(chown.success());
    let (pdata, sdata) = (r.join("primary"), r.join("standby"));
    let out = as_postgres(&[
        "initdb",
        "-D",
        pdata.to_str().expect("path"),
        "-A",
        "trust",
        "-U",
        "postgres",
        "--no-sync",
    ]);
    assert!(out.status.success(), "initdb: {out:?}");
    let primary = start(r, &pdata);
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", primary.port);
    exec(&admin, "CREATE DATABASE baton").await;
    let url = with_database(&admin, "baton");
    let dir = tempfile::tempdir().expect("tmp");
    let out = controller(dir.path(), &url, "init");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A streaming standby, asynchronous (synchronous_standby_names empty).
    let out = as_postgres(&[
        "pg_basebackup",
        "-h",
        "127.0.0.1",
        "-p",
        &primary.port.to_string(),
        "-U",
        "postgres",
        "-D",
        sdata.to_str().expect("path"),
        "-R",
        "--no-sync",
        "--checkpoint=fast",
    ]);
    assert!(out.status.success(), "pg_basebackup: {out:?}");
    let _standby = start(r, &sdata);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while scalar(&admin, "SELECT count(*)::text FROM pg_stat_replication").await != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never streamed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "a warning only: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("warning: PostgreSQL: replication is asynchronous: 1 standby")
            && err.contains("already acknowledged"),
        "{err}"
    );

    // Made synchronous: no warning.
    exec(&admin, "ALTER SYSTEM SET synchronous_standby_names = '*'").await;
    exec(&admin, "SELECT pg_reload_conf()").await;
    while scalar(&admin, "SHOW synchronous_standby_names").await != "*" {
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!stderr(&out).contains("warning: PostgreSQL"), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("synchronous standby *"),
        "{out:?}"
    );
}
