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

use crate::config::Secret;

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
        "identity file {path} is readable by group or others (mode {mode:o}); it holds the \
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
    /// The controller it enrolled with.
    pub controller_url: String,
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
            if mode & 0o077 != 0 {
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
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            agent_id: "db1".into(),
            secret: Secret::new("baton_agt_s3cret"),
            groups: vec!["nightly".into(), "db".into()],
            controller_url: "https://ctl.test:8420".into(),
            enrolled_at: DateTime::from_timestamp_millis(1_790_000_000_000).expect("ts"),
            fleet: "f1".into(),
        }
    }

    #[test]
    fn host_names_become_valid_agent_ids() {
        assert_eq!(
            name_from_hostname("DB1.Example.COM").as_deref(),
            Some("db1.example.com")
        );
        assert_eq!(
            name_from_hostname(" db host#2 \n").as_deref(),
            Some("db-host-2")
        );
        assert_eq!(name_from_hostname("héllo").as_deref(), Some("h-llo"));
        assert_eq!(name_from_hostname(""), None);
        assert_eq!(name_from_hostname("---"), None);
        let long = "x".repeat(300);
        let name = name_from_hostname(&long).expect("truncated");
        assert_eq!(name.len(), 128);
        assert!(valid_name(&name));
        if let Some(host) = system_hostname() {
            let id = name_from_hostname(&host).expect("this host's name is usable");
            assert!(valid_name(&id), "{id:?}");
            assert_eq!(id, id.to_lowercase());
        }
    }

    #[test]
    fn save_and_load_round_trip_with_mode_0600() {
        let state = tempfile::tempdir().expect("tempdir");
        assert!(Identity::load(state.path()).expect("load").is_none());
        let id = identity();
        let written = id.save(state.path()).expect("save");
        assert_eq!(written, state.path().join("identity.json"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&written).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<String> = fs::read_dir(state.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["identity.json"], "no temp file left");
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(&written).expect("read")).expect("json");
        for key in [
            "agent_id",
            "secret",
            "groups",
            "controller_url",
            "enrolled_at",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        let back = Identity::load(state.path()).expect("load").expect("some");
        assert_eq!(back, id);
        assert!(
            !format!("{back:?}").contains("s3cret"),
            "Debug hides the secret"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().expect("tempdir");
        let path = identity().save(state.path()).expect("save");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Identity::load(state.path()).expect_err("insecure");
        assert!(matches!(e, Error::Insecure { mode: 0o644, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("readable by group or others"), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains("s3cret"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
        assert!(matches!(
            Identity::load(state.path()),
            Err(Error::Insecure { mode: 0o640, .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(Identity::load(state.path()).expect("owner only").is_some());
    }

    #[cfg(unix)]
    #[test]
    fn saving_over_a_stale_temp_file_still_gives_0600() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().expect("tempdir");
        let tmp = state.path().join(".identity.json.tmp");
        fs::write(&tmp, "partial").expect("write");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).expect("chmod");
        let path = identity().save(state.path()).expect("save");
        let mode = fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tmp.exists());
    }

    #[cfg(unix)]
    #[test]
    fn invalid_files_are_reported_without_the_secret() {
        use std::os::unix::fs::OpenOptionsExt;
        let state = tempfile::tempdir().expect("tempdir");
        let write = |text: &str| {
            let _ = fs::remove_file(path(state.path()));
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path(state.path()))
                .expect("open");
            f.write_all(text.as_bytes()).expect("write");
        };
        write("{\"agent_id\": \"db1\", \"secret\": \"baton_agt_s3cret\"");
        let e = Identity::load(state.path()).expect_err("truncated");
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        write(
            "{\"agent_id\": \"bad id\", \"secret\": \"x\", \"groups\": [], \
             \"controller_url\": \"http://x\", \"enrolled_at\": \"2026-01-01T00:00:00Z\"}",
        );
        let e = Identity::load(state.path()).expect_err("bad id");
        assert!(e.to_string().contains("agent_id"), "{e}");
        write(
            "{\"agent_id\": \"a\", \"secret\": \"two words\", \"groups\": [], \
             \"controller_url\": \"http://x\", \"enrolled_at\": \"2026-01-01T00:00:00Z\"}",
        );
        let e = Identity::load(state.path()).expect_err("bad secret");
        assert!(e.to_string().contains("printable"), "{e}");
        assert!(!e.to_string().contains("two words"), "{e}");
    }
}
