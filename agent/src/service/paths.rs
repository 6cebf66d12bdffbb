//! Where the agent keeps its files on Windows: `%ProgramData%\Baton\` with
//! `agent.toml`, `state\`, `dumps\` and `logs\`, and the ACL of that directory.
//!
//! The directory is created by the agent (the MSI cannot set permissions with
//! wixl) and restricted with `icacls`, run without a shell: inheritance removed,
//! full control for SYSTEM (`S-1-5-18`) and Administrators (`S-1-5-32-544`) only,
//! inherited by everything below. SIDs rather than names, so localised Windows
//! works too. The functions are plain path logic so they are tested on Linux.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Error;

/// Folder under `%ProgramData%`.
pub const BASE_DIR: &str = "Baton";
/// Config file name.
pub const CONFIG_FILE: &str = "agent.toml";
/// Log file name under `logs\`.
pub const LOG_FILE: &str = "agent.log";
/// Used when `ProgramData` is not in the environment.
pub const FALLBACK_PROGRAM_DATA: &str = r"C:\ProgramData";
/// SYSTEM and Administrators, with full control inherited by files and folders.
pub const ACL_GRANTS: [&str; 2] = ["*S-1-5-18:(OI)(CI)F", "*S-1-5-32-544:(OI)(CI)F"];

/// The files under `%ProgramData%\Baton\`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `%ProgramData%\Baton`.
    pub root: PathBuf,
    /// `agent.toml`: the default config file on Windows.
    pub config: PathBuf,
    /// `state\`: the default `state_dir` on Windows.
    pub state: PathBuf,
    /// `dumps\`: for `dump_dir` / `backup_dir` (named in the config).
    pub dumps: PathBuf,
    /// `logs\`: the service's log file.
    pub logs: PathBuf,
}

impl Layout {
    /// The layout under `program_data`.
    pub fn under(program_data: &Path) -> Self {
        let root = program_data.join(BASE_DIR);
        Layout {
            config: root.join(CONFIG_FILE),
            state: root.join("state"),
            dumps: root.join("dumps"),
            logs: root.join("logs"),
            root,
        }
    }

    /// The layout under `%ProgramData%` (`C:\ProgramData` when unset).
    pub fn from_env(env: &BTreeMap<String, String>) -> Self {
        let program_data = env
            .iter()
            .find(|(k, v)| k.eq_ignore_ascii_case("ProgramData") && !v.is_empty())
            .map_or_else(
                || PathBuf::from(FALLBACK_PROGRAM_DATA),
                |(_, v)| PathBuf::from(v),
            );
        Layout::under(&program_data)
    }

    /// `logs\agent.log`.
    pub fn log_file(&self) -> PathBuf {
        self.logs.join(LOG_FILE)
    }

    /// Create the folders where missing; `restrict` sets the ACL on the root when
    /// it was just created, or always when `always_restrict` (the service does, so a
    /// folder an administrator made by hand to drop `agent.toml` into is locked down too).
    pub fn ensure(
        &self,
        always_restrict: bool,
        restrict: impl FnOnce(&Path) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let existed = self.root.is_dir();
        std::fs::create_dir_all(&self.root)
            .map_err(|e| Error::io(format!("cannot create {}", self.root.display()), e))?;
        if always_restrict || !existed {
            restrict(&self.root)?;
        }
        for dir in [&self.state, &self.dumps, &self.logs] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        Ok(())
    }
}

/// Arguments of `icacls` that limit `dir` to SYSTEM and Administrators.
pub fn icacls_args(dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        dir.as_os_str().to_owned(),
        "/inheritance:r".into(),
        "/grant:r".into(),
    ];
    args.extend(ACL_GRANTS.iter().map(OsString::from));
    args.push("/Q".into());
    args
}

/// Run `icacls` (from System32, no shell) on `dir`.
#[cfg(windows)]
pub fn restrict_acl(dir: &Path, env: &BTreeMap<String, String>) -> Result<(), Error> {
    let system_root = env
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("SystemRoot"))
        .map_or(r"C:\Windows", |(_, v)| v.as_str());
    let icacls = Path::new(system_root).join("System32").join("icacls.exe");
    let out = std::process::Command::new(&icacls)
        .args(icacls_args(dir))
        .output()
        .map_err(|e| Error::Acl {
            path: dir.to_path_buf(),
            reason: format!("cannot run {}: {e}", icacls.display()),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Acl {
            path: dir.to_path_buf(),
            reason: format!(
                "icacls {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }
}

/// Where the Windows defaults apply (`--config`, `BATON_AGENT_CONFIG`, `state_dir`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Use this config file (the default one exists and none was named).
    pub config: Option<PathBuf>,
    /// Use this state directory (none was set anywhere).
    pub state_dir: Option<PathBuf>,
}

/// The Windows defaults: `%ProgramData%\Baton\agent.toml` when no config is named
/// and it exists; `%ProgramData%\Baton\state` when neither the flag, the
/// environment nor the config file sets `state_dir`. `read` returns a file's
/// text (None when unreadable: the config loader then reports it).
pub fn defaults(
    layout: &Layout,
    flag_config: Option<&Path>,
    flag_state_dir: bool,
    env: &BTreeMap<String, String>,
    read: impl Fn(&Path) -> Option<String>,
) -> Defaults {
    let named: Option<PathBuf> = flag_config
        .map(Path::to_path_buf)
        .or_else(|| env.get(crate::config::ENV_CONFIG).map(PathBuf::from));
    let mut out = Defaults::default();
    let file = match named {
        Some(p) => Some(p),
        None => {
            if layout.config.is_file() {
                out.config = Some(layout.config.clone());
            }
            out.config.clone()
        }
    };
    if flag_state_dir || env.contains_key(baton_proto::env::AGENT_STATE_DIR.name) {
        return out;
    }
    let sets_state_dir = match file {
        None => Some(false),
        Some(p) => read(&p).map(|text| match toml::from_str::<toml::Table>(&text) {
            Ok(table) => table.contains_key("state_dir"),
            // Let the loader report the syntax error.
            Err(_) => true,
        }),
    };
    if sets_state_dir == Some(false) {
        out.state_dir = Some(layout.state.clone());
    }
    out
}

#[cfg(test)]
mod tests;
