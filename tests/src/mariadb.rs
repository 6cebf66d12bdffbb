//! A real MariaDB server for tests, one per test process.
//!
//! [`server`] starts it on first use through `scripts/mariadb start` in a temp
//! dir (about a second), and every test of the same test binary shares it:
//! give each test its own database ([`MariaDb::create_database`]) and user
//! ([`MariaDb::create_user`]). A watchdog (`scripts/mariadb watch`, in its own
//! process group) stops the server and removes the dir once the test process
//! is gone — however it ends, `kill -9` included.
//!
//! MariaDB must be installed (`scripts/mariadb install`, or
//! `apt-get install -y mariadb-server mariadb-client`). Without it — or with
//! `BATON_TEST_MARIADB=skip` — a test that starts with [`require_mariadb!`](crate::require_mariadb)
//! skips with a one-line reason, so plain `cargo test --workspace` passes on a
//! machine without MariaDB; with `BATON_TEST_REQUIRE_MYSQL=1` (set by
//! `scripts/test`, which CI runs) it fails instead: there a missing server is a
//! broken setup, not a reason to pass. [`server`] itself always fails when
//! MariaDB is missing.
//!
//! Admin SQL runs through the `mariadb` command-line client as `root` over the
//! Unix socket ([`MariaDb::sql`]); [`MariaDb::sql_as`] logs in as a created
//! user with its password, over TCP or the socket. These calls block (a few
//! milliseconds each).

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow, bail};
use rand::Rng;
use rand::distr::Alphanumeric;

/// What to do when MariaDB is missing.
pub const INSTALL_HINT: &str = "MariaDB is needed for these tests: install it with \
     `scripts/mariadb install` (Debian/Ubuntu: `apt-get install -y mariadb-server mariadb-client`)";

/// Environment variable: `skip` makes [`server`] fail (as if MariaDB were missing).
pub const ENV_SWITCH: &str = "BATON_TEST_MARIADB";

/// Environment variable: `1` turns a skip for a missing MariaDB into a
/// failure (`scripts/test` sets it; the agent's server tests read it too).
pub const REQUIRE: &str = "BATON_TEST_REQUIRE_MYSQL";

/// Why MariaDB tests skip here, or `None` when they run: MariaDB is missing
/// (or [`ENV_SWITCH`] is `skip`) and [`REQUIRE`] is not `1`.
pub fn skip_reason() -> Option<String> {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        return None;
    }
    missing().map(|why| format!("skipped: {why}; {REQUIRE}=1 makes this a failure. {INSTALL_HINT}"))
}

/// What is missing for a server to start, if anything.
fn missing() -> Option<String> {
    if std::env::var(ENV_SWITCH).is_ok_and(|v| v == "skip") {
        return Some(format!("{ENV_SWITCH}=skip is set"));
    }
    ["mariadbd", "mariadb-install-db", "mariadb-admin", "mariadb"]
        .into_iter()
        .find(|prog| find_program(prog).is_none())
        .map(|prog| format!("`{prog}` not found"))
}

/// The first line of a test that needs MariaDB: returns from the test with a
/// one-line reason when [`skip_reason`] says so.
#[macro_export]
macro_rules! require_mariadb {
    () => {
        if let Some(reason) = $crate::mariadb::skip_reason() {
            println!("{reason}");
            return;
        }
    };
}

/// `scripts/mariadb` of this checkout.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("mariadb")
}

/// The running test server.
#[derive(Debug)]
pub struct MariaDb {
    dir: PathBuf,
    port: u16,
    socket: PathBuf,
    client: PathBuf,
    version: String,
    pki: crate::pki::Pki,
}

/// How [`MariaDb::sql_as`] reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// TCP to `127.0.0.1:port` (the user's `'user'@'127.0.0.1'` account).
    Tcp,
    /// The Unix socket (the user's `'user'@'localhost'` account).
    Socket,
}

/// A failed `mariadb` client run: the server's error code when it printed one
/// (`ERROR 1142 (42000) at line 1: …`), and its stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// The MariaDB error number, e.g. 1142 (command denied), 1045 (access denied).
    pub code: Option<u32>,
    /// The SQLSTATE, e.g. `42000`.
    pub sqlstate: Option<String>,
    /// Everything the client wrote to stderr.
    pub stderr: String,
    /// Which account ran it.
    pub account: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mariadb as {}: {}", self.account, self.stderr.trim_end())
    }
}

impl std::error::Error for SqlError {}

impl SqlError {
    fn parse(account: &str, stderr: String) -> SqlError {
        // `ERROR 1142 (42000) at line 1: CREATE command denied …`
        let (mut code, mut sqlstate) = (None, None);
        if let Some(rest) = stderr.lines().find_map(|l| l.strip_prefix("ERROR ")) {
            let mut words = rest.split_whitespace();
            code = words.next().and_then(|w| w.parse().ok());
            sqlstate = words
                .next()
                .and_then(|w| w.strip_prefix('(')?.strip_suffix(')').map(str::to_owned));
        }
        SqlError {
            code,
            sqlstate,
            stderr,
            account: account.to_owned(),
        }
    }
}

static SERVER: OnceLock<std::result::Result<MariaDb, String>> = OnceLock::new();

/// The shared server of this test process, started on first call.
///
/// Fails (with [`INSTALL_HINT`]) when MariaDB is not installed or
/// `BATON_TEST_MARIADB=skip` is set; a failed start is not retried.
pub async fn server() -> Result<&'static MariaDb> {
    if let Some(s) = SERVER.get() {
        return cached(s);
    }
    tokio::task::spawn_blocking(server_blocking)
        .await
        .context("starting MariaDB")?
}

/// [`server`] for code that is not async (blocks while the server starts).
pub fn server_blocking() -> Result<&'static MariaDb> {
    cached(SERVER.get_or_init(|| MariaDb::start().map_err(|e| format!("{e:#}"))))
}

fn cached(s: &'static std::result::Result<MariaDb, String>) -> Result<&'static MariaDb> {
    s.as_ref()
        .map_err(|e| anyhow!("test MariaDB server unavailable: {e}"))
}

/// A program on PATH or in the sbin dirs (not on every user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl MariaDb {
    fn start() -> Result<MariaDb> {
        if let Some(why) = missing() {
            bail!("{why}. {INSTALL_HINT}");
        }
        let client = find_program("mariadb").context("mariadb client")?;
        // Short (the socket path must fit in 108 bytes) and reachable by the
        // `mysql` user the server runs as.
        let dir = tempfile::Builder::new()
            .prefix("baton-mariadb-")
            .tempdir()
            .context("temp dir for MariaDB")?
            .keep();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        // TLS on TCP with a CA of our own (scripts/mariadb picks up DIR/ssl).
        let pki = crate::pki::Pki::generate(&dir.join("ssl")).context("TLS files for MariaDB")?;
        fs::set_permissions(dir.join("ssl"), fs::Permissions::from_mode(0o755))?;
        // The watchdog first, so that even a start that hangs is cleaned up.
        Command::new(script())
            .arg("watch")
            .arg(&dir)
            .arg(std::process::id().to_string())
            .arg("--remove")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {} watch", script().display()))?;
        let started = std::time::Instant::now();
        let out = Command::new(script())
            .arg("start")
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {} start", script().display()))?;
        if !out.status.success() {
            bail!(
                "`scripts/mariadb start {}` failed ({}):\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (port, socket) = parse_endpoint(&stdout)
            .with_context(|| format!("unexpected output of scripts/mariadb start: {stdout:?}"))?;
        let mut db = MariaDb {
            dir,
            port,
            socket,
            client,
            version: String::new(),
            pki,
        };
        db.version = db.sql(None, "SELECT VERSION()")?.trim().to_owned();
        eprintln!(
            "test MariaDB {} on 127.0.0.1:{} ({}), started in {:.1?}",
            db.version,
            db.port,
            db.socket.display(),
            started.elapsed()
        );
        Ok(db)
    }

    /// The CA that signed the server's TLS certificate (for 127.0.0.1), and
    /// an unrelated CA, for TLS tests.
    pub fn tls_cas(&self) -> (&Path, &Path) {
        (&self.pki.ca, &self.pki.other_ca)
    }

    /// TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's dir (datadir `data/`, `error.log`, …); removed at exit.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `SELECT VERSION()`, e.g. `10.11.14-MariaDB-0+deb12u2`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The server's error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Run SQL (one or more `;`-separated statements) as `root` over the
    /// socket, in `db` when given. Returns the client's `--batch
    /// --skip-column-names` output: one line per row, tab-separated, with
    /// `\t`, `\n` and `\\` in values escaped. Stops at the first failing
    /// statement; the error is a [`SqlError`] (`err.downcast_ref::<SqlError>()`).
    pub fn sql(&self, db: Option<&str>, sql: &str) -> Result<String> {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .arg("--user=root");
        self.run_client(cmd, "root@localhost", db, sql)
    }

    /// Run SQL as `user` with `password` (like [`MariaDb::sql`]), over TCP or
    /// the socket. The password goes through a 0600 option file, never argv.
    pub fn sql_as(
        &self,
        via: Via,
        user: &str,
        password: &str,
        db: Option<&str>,
        sql: &str,
    ) -> Result<String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let cnf = self.dir.join(format!(
            "client-{}-{}.cnf",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        write_private_file(
            &cnf,
            &format!("[client]\npassword=\"{}\"\n", option_escape(password)),
        )?;
        let mut cmd = Command::new(&self.client);
        // --defaults-file must come first; it replaces every other option file.
        cmd.arg(format!("--defaults-file={}", cnf.display()))
            .arg(format!("--user={user}"));
        let account = match via {
            Via::Tcp => {
                cmd.args(["--protocol=TCP", "--host=127.0.0.1"])
                    .arg(format!("--port={}", self.port));
                format!("{user}@127.0.0.1")
            }
            Via::Socket => {
                cmd.arg("--protocol=SOCKET")
                    .arg(format!("--socket={}", self.socket.display()));
                format!("{user}@localhost")
            }
        };
        let r = self.run_client(cmd, &account, db, sql);
        let _ = fs::remove_file(&cnf);
        r
    }

    fn run_client(
        &self,
        mut cmd: Command,
        account: &str,
        db: Option<&str>,
        sql: &str,
    ) -> Result<String> {
        cmd.args(["--batch", "--skip-column-names", "--connect-timeout=10"]);
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        // SQL on stdin: no argv length limit, not visible in `ps`.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", self.client.display()))?;
        let mut stdin = child.stdin.take().context("client stdin")?;
        let sql = sql.to_owned();
        // Written from a thread: a large script and a large result must not
        // block each other.
        let writer = std::thread::spawn(move || stdin.write_all(sql.as_bytes()));
        let out = child.wait_with_output()?;
        let written = writer
            .join()
            .map_err(|_| anyhow!("writing SQL to the client panicked"))?;
        if !out.status.success() {
            return Err(SqlError::parse(
                account,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
            .into());
        }
        written.context("writing SQL to the client")?;
        String::from_utf8(out.stdout).context("client output is not UTF-8")
    }

    /// Create a database `<prefix>_<12 hex digits>` (utf8mb4), unique per call.
    /// `prefix`: lowercase letters, digits and `_`, at most 40.
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
        self.sql(
            None,
            &format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"),
        )?;
        Ok(name)
    }

    /// Create a user with a random name and password, as both
    /// `'user'@'127.0.0.1'` (TCP) and `'user'@'localhost'` (socket), holding
    /// `grants` on `` `db`.* `` — e.g. `["ALL"]`, or what a dump needs:
    /// `["SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "LOCK TABLES"]`.
    /// Returns `(user, password)`.
    pub fn create_user(&self, db: &str, grants: &[&str]) -> Result<(String, String)> {
        let user = format!("u_{:012x}", rand::rng().random::<u64>() >> 16);
        let password: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let mut sql = String::new();
        for host in HOSTS {
            sql.push_str(&format!(
                "CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}';\n"
            ));
        }
        self.sql(None, &sql)?;
        self.grant(&user, grants, &format!("`{}`.*", ident(db)?))?;
        Ok((user, password))
    }

    /// `GRANT privileges ON on TO` both accounts of `user` — e.g. `["RELOAD"]`
    /// on `*.*`, or `["SELECT"]` on `mysql.proc` (for `mariadb-dump
    /// --routines` of routines another user defined). `on` is SQL as is.
    pub fn grant(&self, user: &str, privileges: &[&str], on: &str) -> Result<()> {
        if privileges.is_empty() {
            bail!("no privileges to grant");
        }
        for p in privileges {
            if p.trim().is_empty() || !p.bytes().all(|b| b.is_ascii_uppercase() || b == b' ') {
                bail!("privilege {p:?}: use upper-case words like \"SHOW VIEW\"");
            }
        }
        let user = ident(user)?;
        let to = HOSTS.map(|h| format!("'{user}'@'{h}'")).join(", ");
        self.sql(
            None,
            &format!("GRANT {} ON {on} TO {to}", privileges.join(", ")),
        )?;
        Ok(())
    }

    /// An agent `[connections.<name>]` table reaching this server over TCP.
    pub fn connection_toml(
        &self,
        name: &str,
        db: &str,
        user: &str,
        password_file: &Path,
    ) -> String {
        format!(
            "[connections.{}]\nkind = \"mysql\"\nhost = \"127.0.0.1\"\nport = {}\nuser = {}\npassword_file = {}\ndatabase = {}\n",
            toml_key(name),
            self.port,
            toml_str(user),
            toml_str(&password_file.display().to_string()),
            toml_str(db),
        )
    }

    /// Like [`MariaDb::connection_toml`], over the Unix socket (`socket = …`
    /// instead of host and port; the user's `'user'@'localhost'` account).
    pub fn connection_toml_socket(
        &self,
        name: &str,
        db: &str,
        user: &str,
        password_file: &Path,
    ) -> String {
        format!(
            "[connections.{}]\nkind = \"mysql\"\nsocket = {}\nuser = {}\npassword_file = {}\ndatabase = {}\n",
            toml_key(name),
            toml_str(&self.socket.display().to_string()),
            toml_str(user),
            toml_str(&password_file.display().to_string()),
            toml_str(db),
        )
    }
}

/// The two accounts [`MariaDb::create_user`] makes per user.
const HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// Write a password file the agent accepts: mode 0600, the password without a
/// trailing newline. Replaces an existing file.
pub fn write_password_file(path: &Path, password: &str) -> Result<()> {
    write_private_file(path, password)
}

/// Write a file only its owner may read (0600; an existing file is chmodded
/// too): what the agent, the controller and batonctl accept for secrets.
pub fn write_private_file(path: &Path, text: &str) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    // An existing file keeps its mode on open: set it.
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

/// An identifier safe inside backticks and quotes: `[A-Za-z0-9_$-]`.
fn ident(s: &str) -> Result<&str> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-'))
    {
        bail!("identifier {s:?}: use 1-64 of [A-Za-z0-9_$-]");
    }
    Ok(s)
}

/// A value in a MySQL option file, between double quotes.
fn option_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A TOML basic string (a JSON string is one).
fn toml_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A TOML key: bare when it can be, quoted otherwise.
fn toml_key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        s.to_owned()
    } else {
        toml_str(s)
    }
}

/// `port=<n> socket=<path>` → (port, socket).
fn parse_endpoint(stdout: &str) -> Option<(u16, PathBuf)> {
    let line = stdout.lines().rev().find(|l| l.starts_with("port="))?;
    let rest = line.strip_prefix("port=")?;
    let (port, socket) = rest.split_once(" socket=")?;
    Some((port.parse().ok()?, PathBuf::from(socket)))
}

#[cfg(test)]
mod tests;
