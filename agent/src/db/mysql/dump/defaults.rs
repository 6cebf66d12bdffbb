//! The dump tool and SQL client to run, and the credentials they get: a
//! `[client]` defaults file, mode 0600, in a private 0700 directory that is
//! removed when the job ends.
//!
//! Values are written double-quoted with the escapes the MySQL/MariaDB option
//! file reader understands (`\\`, `\"`, `\n`, `\r`, `\t`, `\b`), so a `#`, a
//! quote, a backslash or leading/trailing spaces in a password survive. A NUL
//! cannot be written and is refused.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{debug, warn};

use super::Error;
use crate::config::mysql::{Endpoint, MysqlConnection, Password, Verify};
use crate::executor::groups::is_executable;

/// Directory under the state dir holding the private temp dirs.
pub(crate) const TMP_DIR: &str = "dump-tmp";
/// How long `--version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Whose client programs these are: they spell TLS options differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// MariaDB's (`mariadb-dump`, `mariadb`; also `mysqldump` on MariaDB installs).
    MariaDb,
    /// Oracle MySQL's.
    Mysql,
}

impl Flavor {
    /// From a `--version` line.
    pub fn from_version(version: &str) -> Flavor {
        let v = version.to_ascii_lowercase();
        if v.contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::Mysql
        }
    }
}

/// Find the dump tool: the configured one, else `mariadb-dump`, then
/// `mysqldump` in `search_path`.
pub(crate) fn find_tool(
    configured: Option<&Path>,
    search_path: Option<&OsStr>,
) -> Result<PathBuf, Error> {
    if let Some(tool) = configured {
        return if is_executable(tool) {
            Ok(tool.to_path_buf())
        } else {
            Err(Error::Setup(format!(
                "dump_tool {} is not an executable file",
                tool.display()
            )))
        };
    }
    ["mariadb-dump", "mysqldump"]
        .iter()
        .find_map(|name| search(name, search_path))
        .ok_or_else(|| {
            Error::Setup(
                "neither mariadb-dump nor mysqldump was found in the agent's PATH; \
                 install the client tools or set dump_tool"
                    .into(),
            )
        })
}

/// Find the SQL client: `mariadb`, then `mysql`, first next to the tool, then
/// in `search_path`.
pub(crate) fn find_client(tool: &Path, search_path: Option<&OsStr>) -> Result<PathBuf, Error> {
    let names = ["mariadb", "mysql"];
    if let Some(dir) = tool.parent()
        && let Some(found) = names
            .iter()
            .map(|n| dir.join(exe_name(n)))
            .find(|p| is_executable(p))
    {
        return Ok(found);
    }
    names
        .iter()
        .find_map(|name| search(name, search_path))
        .ok_or_else(|| {
            Error::Setup(
                "neither the mariadb nor the mysql client was found next to the dump tool \
                 or in the agent's PATH (needed for the size estimate and the restore check)"
                    .into(),
            )
        })
}

fn exe_name(name: &str) -> String {
    if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_owned()
    }
}

fn search(name: &str, search_path: Option<&OsStr>) -> Option<PathBuf> {
    let name = exe_name(name);
    std::env::split_paths(search_path?)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(&name))
        .find(|p| is_executable(p))
}

/// The first line of `<tool> --version` (the environment is `env` only).
pub(crate) async fn tool_version(
    tool: &Path,
    env: &[(OsString, OsString)],
) -> Result<String, Error> {
    let run = tokio::process::Command::new(tool)
        .arg("--version")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let failed = |why: String| Error::Setup(format!("{} --version failed: {why}", tool.display()));
    let out = tokio::time::timeout(VERSION_TIMEOUT, run)
        .await
        .map_err(|_| failed("no answer in 10 s".into()))?
        .map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.lines().map(str::trim).find(|l| !l.is_empty()) {
        Some(line) if out.status.success() => Ok(line.to_owned()),
        _ => Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// Quote an option-file value.
pub(crate) fn quote_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\0' => return Err("contains a NUL character".into()),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// The `[client]` section for `conn`, logging in with `password`.
pub(crate) fn render(
    conn: &MysqlConnection,
    password: &Password,
    flavor: Flavor,
) -> Result<String, Error> {
    let quote = |what: &str, v: &str| {
        quote_value(v)
            .map_err(|e| Error::Setup(format!("connection {}: the {what} {e}", conn.name)))
    };
    let path = |what: &str, p: &Path| match p.to_str() {
        Some(s) => quote(what, s),
        None => Err(Error::Setup(format!(
            "connection {}: the {what} path is not valid UTF-8",
            conn.name
        ))),
    };
    let mut lines = vec![
        "# Written by baton-agent for one dump job; removed when the job ends.".to_owned(),
        "[client]".to_owned(),
        format!("user={}", quote("user", &conn.user)?),
        format!("password={}", quote("password", password.expose())?),
    ];
    match &conn.endpoint {
        Endpoint::Tcp { host, port } => {
            lines.push(format!("host={}", quote("host", host)?));
            lines.push(format!("port={port}"));
            // "localhost" would otherwise mean the default socket.
            lines.push("protocol=TCP".to_owned());
        }
        Endpoint::Socket(socket) => {
            lines.push(format!("socket={}", path("socket", socket)?));
            lines.push("protocol=SOCKET".to_owned());
        }
    }
    if let Some(tls) = &conn.tls {
        if let Some(ca) = &tls.ca_file {
            lines.push(format!("ssl-ca={}", path("tls.ca_file", ca)?));
        }
        match (flavor, tls.verify) {
            (Flavor::MariaDb, Verify::Full) => {
                lines.push("ssl".to_owned());
                lines.push("ssl-verify-server-cert".to_owned());
            }
            // MariaDB's clients cannot check the chain without the host name:
            // with `verify = "ca"` they encrypt, and check per their own defaults.
            (Flavor::MariaDb, Verify::Ca) => lines.push("ssl".to_owned()),
            (Flavor::Mysql, Verify::Full) => lines.push("ssl-mode=VERIFY_IDENTITY".to_owned()),
            (Flavor::Mysql, Verify::Ca) => lines.push("ssl-mode=VERIFY_CA".to_owned()),
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Ok(text)
}

/// A private directory (0700) holding the defaults file; removed on drop.
#[derive(Debug)]
pub(crate) struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Create `<state_dir>/dump-tmp/<name>`.
    pub fn create(state_dir: &Path, name: &str) -> Result<PrivateDir, Error> {
        let parent = state_dir.join(TMP_DIR);
        let what = || {
            format!(
                "cannot create a private directory under {}",
                parent.display()
            )
        };
        private_dir(&parent, true).map_err(|e| Error::io(what(), e))?;
        let path = parent.join(name);
        private_dir(&path, false).map_err(|e| Error::io(what(), e))?;
        Ok(PrivateDir { path })
    }

    /// The directory.
    #[cfg(all(test, unix))]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Note the `.partial` the dump writes, so that a restart after a crash
    /// removes it ([`remove_leftover_dirs`]).
    pub fn note_partial(&self, partial: &Path) -> std::io::Result<()> {
        std::fs::write(
            self.path.join(PARTIAL_NOTE),
            partial.as_os_str().as_encoded_bytes(),
        )
    }

    /// Write the defaults file (0600, must not exist) and return its path.
    pub fn write_defaults(&self, contents: &str) -> Result<PathBuf, Error> {
        use std::io::Write;
        let path = self.path.join("client.cnf");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(&path)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        Ok(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => debug!(dir = %self.path.display(), "Removed the dump's private directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(dir = %self.path.display(), error = %e, "Cannot remove the dump's private directory")
            }
        }
    }
}

fn private_dir(path: &Path, recursive: bool) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// The file in a private directory naming the dump's `.partial`.
const PARTIAL_NOTE: &str = "partial.path";

/// Remove private directories a previous run of the agent left (it was killed
/// mid-dump): they hold credentials. The `.partial` each one names (the dump
/// that run was writing, never finished) goes too: nothing will finish it,
/// and it would count against the next dumps' free space.
pub(crate) fn remove_leftover_dirs(state_dir: &Path) {
    let parent = state_dir.join(TMP_DIR);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        remove_noted_partial(&path);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                warn!(dir = %path.display(), "Removed a dump directory left by a previous agent run")
            }
            Err(e) => {
                warn!(dir = %path.display(), error = %e, "Cannot remove a dump directory left by a previous agent run")
            }
        }
    }
}

/// Remove the `.partial` named in the private directory `dir`, if any.
fn remove_noted_partial(dir: &Path) {
    let Ok(bytes) = std::fs::read(dir.join(PARTIAL_NOTE)) else {
        return;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return;
    };
    let partial = PathBuf::from(text);
    // Only ever a dump's partial: the note is ours, but be strict anyway.
    if !partial.to_string_lossy().ends_with(".partial") {
        return;
    }
    match std::fs::remove_file(&partial) {
        Ok(()) => {
            warn!(file = %partial.display(), "Removed the unfinished dump of a previous agent run")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            warn!(file = %partial.display(), error = %e, "Cannot remove the unfinished dump of a previous agent run")
        }
    }
}

#[cfg(all(test, unix))]
mod tests;
