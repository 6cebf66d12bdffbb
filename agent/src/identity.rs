//! The agent's identity: what enrollment returned, kept in `<state_dir>/identity.json`.
//!
//! The file holds the agent secret, so it is created with mode 0600 (temp file,
//! fsync, rename, fsync of the directory, like the outbox) and refused when it
//! is readable by group or others. The secret is held in a [`Secret`], which
//! never shows in `Debug` output or messages.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use baton_proto::valid_name;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// File name of the identity, in the state dir.
pub const FILE_NAME: &str = "identity.json";
/// Largest identity file read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Identity file failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system call failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds the secret but others may read it.
    #[error(
        "identity file {path} is readable by group or others (mode {mode:04o}); it holds the \
         agent secret: run `chmod 600 {path}` (and re-enroll if it may have leaked)"
    )]
    Insecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a valid identity.
    #[error("identity file {path} is not valid: {message}; delete it and enroll again")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why (never the secret).
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Who the agent is, as the controller enrolled it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The agent id (may differ from the one asked for).
    pub agent_id: String,
    /// The bearer secret of every agent call.
    pub secret: Secret,
    /// Groups the agent may serve.
    pub groups: Vec<String>,
    /// The controller that answered the enrollment.
    pub controller_url: String,
    /// Every controller configured at enrollment, when there were several
    /// (replicas on one database: enrolled with one is enrolled with all).
    /// Empty in identity files written before, or with one controller.
    pub controller_urls: Vec<String>,
    /// When.
    pub enrolled_at: DateTime<Utc>,
    /// The controller installation's fleet id (namespaces database locks and
    /// run ledgers); empty for identities from before fleet ids existed.
    pub fleet: String,
}

/// The file as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    agent_id: String,
    secret: String,
    groups: Vec<String>,
    controller_url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    controller_urls: Vec<String>,
    enrolled_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    fleet: String,
}

/// `<state_dir>/identity.json`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Check an agent secret: it goes into a header, and must never be empty.
pub fn check_secret(secret: &str) -> Result<(), String> {
    if secret.is_empty() {
        return Err("the agent secret is empty".into());
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the agent secret must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// The host name, from the kernel (on Windows: `COMPUTERNAME`); `None` when it cannot be read.
pub fn system_hostname() -> Option<String> {
    #[cfg(unix)]
    if let Ok(name) = nix::unistd::gethostname()
        && let Ok(name) = name.into_string()
        && !name.trim().is_empty()
    {
        return Some(name.trim().to_owned());
    }
    #[cfg(windows)]
    if let Ok(name) = std::env::var("COMPUTERNAME")
        && !name.trim().is_empty()
    {
        return Some(name.trim().to_owned());
    }
    None
}

/// The default agent id for a host name: lower case, every character outside
/// `a-z 0-9 _ . -` replaced by `-`, at most 128 characters. `None` when nothing is left.
pub fn name_from_hostname(hostname: &str) -> Option<String> {
    let name: String = hostname
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(baton_proto::limits::MAX_NAME_LEN)
        .collect();
    let name = name.trim_matches(|c| c == '-' || c == '.').to_owned();
    valid_name(&name).then_some(name)
}

impl Identity {
    /// Whether the agent enrolled with one of `urls` (the controllers it is
    /// configured with now): replicas share one database, so any overlap
    /// means the same installation.
    pub fn enrolled_with_any(&self, urls: &[String]) -> bool {
        urls.iter()
            .any(|u| *u == self.controller_url || self.controller_urls.contains(u))
    }

    /// Load `<state_dir>/identity.json`; `None` when the agent was never enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Identity>, Error> {
        let path = path(state_dir);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let meta = file.metadata().map_err(io(&path))?;
        if !meta.is_file() {
            return Err(Error::Invalid {
                path,
                message: "not a regular file".into(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            let shown = path.display().to_string();
            if baton_proto::env::secret_mode_problem(&shown, mode).is_some() {
                return Err(Error::Insecure { path, mode });
            }
        }
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io(&path))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(Error::Invalid {
                path,
                message: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let raw: IdentityFile = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            path: path.clone(),
            // serde_json's message quotes at most a field name, never a value.
            message: format!("not an identity (line {}, column {})", e.line(), e.column()),
        })?;
        let invalid = |message: String| Error::Invalid {
            path: path.clone(),
            message,
        };
        if !valid_name(&raw.agent_id) {
            return Err(invalid(format!(
                "agent_id {:?} is not a valid name",
                raw.agent_id
            )));
        }
        check_secret(&raw.secret).map_err(invalid)?;
        Ok(Some(Identity {
            agent_id: raw.agent_id,
            secret: Secret::new(raw.secret),
            groups: raw.groups,
            controller_url: raw.controller_url,
            controller_urls: raw.controller_urls,
            enrolled_at: raw.enrolled_at,
            fleet: raw.fleet,
        }))
    }

    /// Write `<state_dir>/identity.json` durably, mode 0600; returns its path.
    pub fn save(&self, state_dir: &Path) -> Result<PathBuf, Error> {
        let path = path(state_dir);
        let tmp = state_dir.join(format!(".{FILE_NAME}.tmp"));
        let raw = IdentityFile {
            agent_id: self.agent_id.clone(),
            secret: self.secret.expose().to_owned(),
            groups: self.groups.clone(),
            controller_url: self.controller_url.clone(),
            controller_urls: self.controller_urls.clone(),
            enrolled_at: self.enrolled_at,
            fleet: self.fleet.clone(),
        };
        let json = serde_json::to_vec_pretty(&raw).map_err(|e| Error::Invalid {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // A temp file left by a crash may have other permissions: start afresh.
        match fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&tmp)(e)),
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io(&tmp))?;
        file.write_all(&json).map_err(io(&tmp))?;
        file.write_all(b"\n").map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        #[cfg(unix)]
        File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(state_dir))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests;
