//! Real PostgreSQL servers for tests (`scripts/postgres`, no systemd).
//!
//! Two ways to get one:
//! - [`shared`]: the server `scripts/test` started (`BATON_TEST_PG_URL`), or
//!   else one started for this test process on first use. Give each test its
//!   own database ([`Pg::create_database`]).
//! - [`PgServer::start`]: a server of the test's own, for tests that kill or
//!   promote servers: [`PgServer::standby`] adds a streaming (optionally
//!   synchronous) standby, [`PgServer::kill9`] crashes it,
//!   [`PgServer::promote`] makes a standby the primary.
//!
//! Every server started here has a watchdog (`scripts/postgres watch`, in its
//! own process group) that stops it and removes its dir once the test process
//! is gone — however it ends, `kill -9` included; a dropped [`PgServer`] stops
//! its server at once.
//!
//! PostgreSQL must be installed (`scripts/postgres install`, or `apt-get install
//! -y postgresql`). Without it a test that starts with [`require_postgres!`](crate::require_postgres)
//! skips with a one-line reason, unless `BATON_TEST_PG_URL` names a server or
//! `BATON_TEST_REQUIRE_PG=1` (set by `scripts/test`, which CI runs): then it
//! fails, as a missing server there is a broken setup.
//!
//! SQL runs through `psql` ([`Pg::sql`]); these calls block (milliseconds).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use rand::Rng;

/// What to do when PostgreSQL is missing.
pub const INSTALL_HINT: &str = "PostgreSQL is needed for these tests: install it with \
     `scripts/postgres install` (Debian/Ubuntu: `apt-get install -y postgresql`)";

/// Environment variable: a server URL (`postgres://postgres@127.0.0.1:5432/postgres`)
/// for [`shared`]; its user must be allowed to create databases.
pub const URL_ENV: &str = "BATON_TEST_PG_URL";

/// Environment variable: `1` turns a skip for a missing PostgreSQL into a failure.
pub const REQUIRE: &str = "BATON_TEST_REQUIRE_PG";

/// Why PostgreSQL tests skip here, or `None` when they run.
pub fn skip_reason() -> Option<String> {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        return None;
    }
    let why = missing()?;
    Some(format!(
        "skipped: {why} (and {URL_ENV} is unset); {REQUIRE}=1 makes this a failure. {INSTALL_HINT}"
    ))
}

/// Why no test server can be had, if so.
fn missing() -> Option<String> {
    match bin_dir() {
        Some(_) => None,
        None => Some("the PostgreSQL server (postgres, pg_ctl, psql) was not found".to_owned()),
    }
}

/// Why tests that start servers of their own ([`PgServer::start`]) skip here:
/// like [`skip_reason`], but a `BATON_TEST_PG_URL` alone is not enough.
pub fn own_server_skip_reason() -> Option<String> {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        return None;
    }
    let why = missing()?;
    Some(format!(
        "skipped: {why}; {REQUIRE}=1 makes this a failure. {INSTALL_HINT}"
    ))
}

/// The first line of a test that needs PostgreSQL ([`shared`]): returns from
/// the test with a one-line reason when [`skip_reason`] says so.
#[macro_export]
macro_rules! require_postgres {
    () => {
        if std::env::var($crate::postgres::URL_ENV).is_err()
            && let Some(reason) = $crate::postgres::skip_reason()
        {
            println!("{reason}");
            return;
        }
    };
    (own) => {
        if let Some(reason) = $crate::postgres::own_server_skip_reason() {
            println!("{reason}");
            return;
        }
    };
}

/// `scripts/postgres` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("postgres")
}

/// Debian's newest `/usr/lib/postgresql/<v>/bin`, or the dir of `pg_ctl` on PATH.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let v = e.file_name().to_str()?.parse().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| d.join("postgres").exists())
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).find(|d| {
        ["postgres", "pg_ctl", "psql"].iter().all(|b| {
            d.join(b)
                .metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A reachable server: run SQL, make databases.
#[derive(Debug, Clone)]
pub struct Pg {
    /// `postgres://user@host:port/postgres` (the maintenance database).
    pub url: String,
    psql: PathBuf,
}

static SHARED: OnceLock<std::result::Result<(Pg, Option<PgServer>), String>> = OnceLock::new();

/// The server of this test process: `BATON_TEST_PG_URL`, or one started on
/// first call (shared by the tests of this binary; stopped when it exits).
pub async fn shared() -> Result<&'static Pg> {
    if let Some(s) = SHARED.get() {
        return cached(s);
    }
    tokio::task::spawn_blocking(shared_blocking)
        .await
        .context("starting PostgreSQL")?
}

/// [`shared`] for code that is not async.
pub fn shared_blocking() -> Result<&'static Pg> {
    cached(SHARED.get_or_init(|| {
        let r = match std::env::var(URL_ENV) {
            Ok(url) => Pg::new(&url).map(|pg| (pg, None)),
            Err(_) => PgServer::start().map(|s| (s.pg.clone(), Some(s))),
        };
        r.map_err(|e| format!("{e:#}"))
    }))
}

fn cached(s: &'static std::result::Result<(Pg, Option<PgServer>), String>) -> Result<&'static Pg> {
    s.as_ref()
        .map(|(pg, _)| pg)
        .map_err(|e| anyhow!("test PostgreSQL server unavailable: {e}"))
}

impl Pg {
    /// A client for the server at `url`.
    pub fn new(url: &str) -> Result<Pg> {
        let psql = bin_dir()
            .map(|d| d.join("psql"))
            .filter(|p| p.exists())
            .context("psql not found")?;
        Ok(Pg {
            url: url.to_owned(),
            psql,
        })
    }

    /// The URL of database `db` on this server (same user, host and port).
    pub fn url_of(&self, db: &str) -> String {
        with_database(&self.url, db)
    }

    /// Run SQL (one or more `;`-separated statements) in `db` (the URL's
    /// database when `None`), stopping at the first error. Returns `psql -At`
    /// output: one line per row, columns separated by `|`.
    pub fn sql(&self, db: Option<&str>, sql: &str) -> Result<String> {
        let url = db.map_or_else(|| self.url.clone(), |d| self.url_of(d));
        psql(&self.psql, &url, sql)
    }

    /// Create a database `<prefix>_<12 hex digits>`, unique per call; returns
    /// its name. `prefix`: 1-40 of `[a-z0-9_]`.
    pub fn create_database(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty()
            || prefix.len() > 40
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("database prefix {prefix:?}: use 1-40 of [a-z0-9_]");
        }
        let name = format!("{prefix}_{:012x}", rand::rng().random::<u64>() >> 16);
        self.sql(None, &format!("CREATE DATABASE {name}"))?;
        Ok(name)
    }

    /// Drop a database made by [`Pg::create_database`] (its sessions ended first).
    pub fn drop_database(&self, name: &str) -> Result<()> {
        self.sql(
            None,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        Ok(())
    }
}

/// `sql` through `psql` on stdin (no argv length limit, not visible in `ps`).
fn psql(bin: &Path, url: &str, sql: &str) -> Result<String> {
    let mut child = Command::new(bin)
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url])
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let mut stdin = child.stdin.take().context("psql stdin")?;
    let text = sql.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output()?;
    let written = writer
        .join()
        .map_err(|_| anyhow!("writing SQL to psql panicked"))?;
    if !out.status.success() {
        bail!(
            "psql {url}: {}\nSQL: {sql}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    written.context("writing SQL to psql")?;
    String::from_utf8(out.stdout).context("psql output is not UTF-8")
}

/// `url` with its path (the database) replaced by `db`; the query is kept.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|s| base[s..].find('/').map(|j| s + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A server of the test's own in a temp dir (`scripts/postgres`); stopped and
/// removed on drop.
#[derive(Debug)]
pub struct PgServer {
    /// Its dir (data/, server.log, the socket).
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// A client (`postgres` user, database `postgres`).
    pub pg: Pg,
    /// A primary's temp dir (its `dir`; its standbys' dirs are inside),
    /// removed on drop. `None` for a standby and for [`PgServer::start_in`].
    root: Option<tempfile::TempDir>,
    /// A primary (stopped on drop with its standbys); false for a standby.
    primary: bool,
}

impl PgServer {
    /// Start a fresh primary on a free port (about a second; blocks).
    pub fn start() -> Result<PgServer> {
        if let Some(why) = missing() {
            bail!("{why}. {INSTALL_HINT}");
        }
        // Short (the socket path must fit in 108 bytes) and reachable by the
        // `postgres` user the server runs as.
        let root = tempfile::Builder::new().prefix("baton-pg-").tempdir()?;
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755))?;
        let dir = root.path().to_path_buf();
        // The watchdog first, so that even a start that hangs is cleaned up.
        // It stops the standbys (in subdirectories) too.
        watchdog(&dir)?;
        let out = run_script(&["start".as_ref(), dir.as_os_str()])?;
        let mut s = PgServer::from_output(dir, &out)?;
        s.root = Some(root);
        s.primary = true;
        Ok(s)
    }

    /// Start a fresh primary whose whole dir (data, WAL, log, socket) is
    /// `dir` (created; its parents must be reachable by `postgres`), e.g.
    /// on a small loop-mounted filesystem. Stopped on drop (or by its
    /// watchdog, which removes `dir`).
    pub fn start_in(dir: &Path) -> Result<PgServer> {
        if let Some(why) = missing() {
            bail!("{why}. {INSTALL_HINT}");
        }
        fs::create_dir_all(dir)?;
        watchdog(dir)?;
        let out = run_script(&["start".as_ref(), dir.as_os_str()])?;
        let mut s = PgServer::from_output(dir.to_path_buf(), &out)?;
        s.primary = true;
        Ok(s)
    }

    /// Move its WAL to `to` (a new dir, reachable by `postgres`; on a
    /// small filesystem, say): stop, move `data/pg_wal` there, leave a
    /// symlink, start again on the same port.
    pub fn move_wal(&self, to: &Path) -> Result<()> {
        self.stop()?;
        let wal = self.dir.join("data").join("pg_wal");
        for cmd in [
            Command::new("cp").arg("-a").arg(&wal).arg(to).output(),
            Command::new("rm").arg("-rf").arg(&wal).output(),
            Command::new("ln").arg("-s").arg(to).arg(&wal).output(),
        ] {
            let out = cmd?;
            if !out.status.success() {
                bail!("moving the WAL: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        self.start_again()
    }

    /// Whether its postmaster runs and answers (`scripts/postgres status`).
    pub fn is_running(&self) -> bool {
        run_script(&["status".as_ref(), self.dir.as_os_str()]).is_ok()
    }

    /// Start it again on its port after it stopped (a PANIC that ended in
    /// a failed crash recovery, say); nothing to do while it runs.
    pub fn start_again(&self) -> Result<()> {
        let port = self.port.to_string();
        run_script(&["start".as_ref(), self.dir.as_os_str(), port.as_ref()]).map(drop)
    }

    fn from_output(dir: PathBuf, out: &str) -> Result<PgServer> {
        let line = out
            .lines()
            .rev()
            .find(|l| l.starts_with("port="))
            .with_context(|| format!("unexpected output of scripts/postgres: {out:?}"))?;
        let (port, url) = line
            .strip_prefix("port=")
            .and_then(|r| r.split_once(" url="))
            .with_context(|| format!("unexpected output of scripts/postgres: {out:?}"))?;
        Ok(PgServer {
            dir,
            port: port.parse()?,
            pg: Pg::new(url)?,
            root: None,
            primary: false,
        })
    }

    /// A streaming standby of this (running) primary in `<dir>/<name>`;
    /// `sync`: the primary waits for it on every commit (synchronous_commit =
    /// on). Stopped with the primary (on drop, or by its watchdog).
    pub fn standby(&self, name: &str, sync: bool) -> Result<PgServer> {
        anyhow::ensure!(self.primary, "a standby of a standby");
        let dir = self.dir.join(name);
        let mut args = vec!["standby".as_ref(), dir.as_os_str(), self.dir.as_os_str()];
        if sync {
            args.push("--sync".as_ref());
        }
        let out = run_script(&args)?;
        PgServer::from_output(dir, &out)
    }

    /// `kill -9` the postmaster (a crash; its backends exit on their own).
    pub fn kill9(&self) -> Result<()> {
        run_script(&["kill".as_ref(), self.dir.as_os_str()]).map(drop)
    }

    /// Promote this standby and wait until it accepts writes.
    pub fn promote(&self) -> Result<()> {
        run_script(&["promote".as_ref(), self.dir.as_os_str()]).map(drop)
    }

    /// Stop it (fast shutdown).
    pub fn stop(&self) -> Result<()> {
        run_script(&["stop".as_ref(), self.dir.as_os_str()]).map(drop)
    }

    /// Serve TLS (`ssl = on`) with `cert` and `key`, and accept TCP
    /// connections over TLS only: `hostssl` lines (user `postgres` and
    /// replication trusted, every other user by password, scram) and
    /// `hostnossl … reject`, so a plaintext connection is refused. The files
    /// are copied into the data dir (0600, owned by the server's user);
    /// the Unix socket stays `trust`. Returns once a new TCP session is
    /// encrypted. Call again to swap the certificate (a reload).
    pub fn enable_tls(&self, cert: &Path, key: &Path) -> Result<()> {
        let data = self.dir.join("data");
        install_private(cert, &data.join("server.crt"))?;
        install_private(key, &data.join("server.key"))?;
        fs::write(
            data.join("pg_hba.conf"),
            "# PgServer::enable_tls: TCP over TLS only\n\
             local all all trust\n\
             local replication all trust\n\
             hostssl all postgres 127.0.0.1/32 trust\n\
             hostssl replication all 127.0.0.1/32 trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostnossl all all 0.0.0.0/0 reject\n\
             hostnossl replication all 0.0.0.0/0 reject\n",
        )?;
        let loaded_before = self.pg.sql(None, "SELECT pg_conf_load_time()")?;
        self.pg.sql(
            None,
            "ALTER SYSTEM SET ssl = on;\n\
             ALTER SYSTEM SET ssl_cert_file = 'server.crt';\n\
             ALTER SYSTEM SET ssl_key_file = 'server.key';\n\
             SELECT pg_reload_conf();",
        )?;
        // The postmaster reloads asynchronously; a session started after it
        // did has the new load time and is encrypted (psql prefers TLS).
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let now = self
                .pg
                .sql(
                    None,
                    "SELECT pg_conf_load_time(), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                )
                .unwrap_or_default();
            if let Some((loaded, ssl)) = now.trim().split_once('|')
                && loaded != loaded_before.trim()
                && ssl == "t"
            {
                return Ok(());
            }
            if std::time::Instant::now() > end {
                bail!(
                    "TLS never came on (last: {now:?}); server log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Its log so far (for failure messages).
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.primary {
            // Every standby in its dir, then the primary.
            for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                if e.path().join("data").join("PG_VERSION").exists() {
                    let _ = run_script(&["stop".as_ref(), e.path().as_os_str()]);
                }
            }
            let _ = run_script(&["stop".as_ref(), self.dir.as_os_str()]);
        }
    }
}

/// Copy `from` to `to` with mode 0600, owned by `postgres` when root (the
/// server refuses a key others can read, and runs as `postgres`).
fn install_private(from: &Path, to: &Path) -> Result<()> {
    fs::copy(from, to).with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o600))?;
    // `/proc/self` belongs to this process's effective user.
    if std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self")?) == 0 {
        let out = Command::new("chown").arg("postgres:").arg(to).output()?;
        if !out.status.success() {
            bail!(
                "chown postgres {}: {}",
                to.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// `scripts/postgres watch DIR <this pid> --remove` in its own process group:
/// stops the server in `dir` and removes `dir` once this process is gone.
fn watchdog(dir: &Path) -> Result<()> {
    Command::new(script())
        .arg("watch")
        .arg(dir)
        .arg(std::process::id().to_string())
        .arg("--remove")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawn {} watch", script().display()))?;
    Ok(())
}

fn run_script(args: &[&std::ffi::OsStr]) -> Result<String> {
    let out = Command::new(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", script().display()))?;
    if !out.status.success() {
        bail!(
            "`scripts/postgres {}` failed ({}):\n{}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests;
