//! Secrets the agent handles: the [`Secret`] wrapper (never shown by `Debug`,
//! no `Display`), and where the enrollment token comes from.

use std::path::{Path, PathBuf};

use baton_proto::auth::ENROLLMENT_PREFIX;
use baton_proto::config::{ConfigError, Source};

/// Environment variable carrying the enrollment token itself (for containers).
pub const ENV_ENROLLMENT_TOKEN: &str = baton_proto::env::AGENT_ENROLLMENT_TOKEN.name;

/// A secret (agent secret, enrollment token, private key). Its `Debug` never
/// shows the value, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the `Authorization` header or the request body only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the enrollment token comes from. It is read only when the agent
/// enrolls: a token file may be gone once it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollmentToken {
    /// The token itself (`BATON_AGENT_ENROLLMENT_TOKEN`).
    Value(Secret),
    /// A file holding it; `origin`, `key` and `line` name the setting for errors.
    File {
        /// The file.
        path: PathBuf,
        /// Where the setting came from.
        origin: Source,
        /// The config key (or variable) that named the file.
        key: String,
        /// Its line in the config file.
        line: Option<usize>,
    },
}

impl EnrollmentToken {
    /// Read the token (trimmed) and check it looks like an enrollment token.
    pub fn read(&self) -> Result<Secret, ConfigError> {
        match self {
            EnrollmentToken::Value(v) => check_enrollment_token(v.expose().trim())
                .map(Secret::new)
                .map_err(|message| ConfigError {
                    origin: Source::Env(ENV_ENROLLMENT_TOKEN.into()),
                    key: "enrollment_token".into(),
                    line: None,
                    message,
                }),
            EnrollmentToken::File {
                path,
                origin,
                key,
                line,
            } => {
                let err = |message: String| ConfigError {
                    origin: origin.clone(),
                    key: key.clone(),
                    line: *line,
                    message: format!("{}: {message}", path.display()),
                };
                if path != Path::new("-") {
                    check_secret_file(path).map_err(err)?;
                }
                let text = read_secret_file(path).map_err(|e| err(format!("cannot read: {e}")))?;
                check_enrollment_token(text.trim())
                    .map(Secret::new)
                    .map_err(err)
            }
        }
    }
}

/// Read a file holding a secret (`-` is standard input), at most 64 KiB.
pub fn read_secret_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().take(64 * 1024).read_to_string(&mut text)?;
    } else {
        std::fs::File::open(path)?
            .take(64 * 1024)
            .read_to_string(&mut text)?;
    }
    Ok(text)
}

/// Refuse a file holding a secret that group or others may open (Unix, like
/// ssh; see [`baton_proto::env::secret_mode_problem`]). The error message has
/// no path in front. On Windows there is no check (ACLs, not mode bits).
pub fn check_secret_file(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
        let shown = path.display().to_string();
        if let Some(m) = baton_proto::env::secret_mode_problem(&shown, meta.permissions().mode()) {
            return Err(m);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// An enrollment token: printable ASCII without spaces, with its prefix.
pub fn check_enrollment_token(token: &str) -> Result<&str, String> {
    if token.is_empty() {
        return Err("the enrollment token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the enrollment token must be printable ASCII without spaces".into());
    }
    if !token.starts_with(ENROLLMENT_PREFIX) {
        return Err(format!(
            "not an enrollment token (those start with {ENROLLMENT_PREFIX})"
        ));
    }
    Ok(token)
}

#[cfg(test)]
pub(crate) mod tests;
