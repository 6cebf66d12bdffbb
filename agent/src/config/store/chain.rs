//! The standard AWS credential chain, for a `[stores.<name>]` that names no
//! key files or variables:
//!
//! 1. `profile = "…"` in the store: that profile of the shared credentials
//!    file (the environment's keys are not looked at);
//! 2. else `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with
//!    `AWS_SESSION_TOKEN` when set), both or neither;
//! 3. else the shared credentials file, profile `AWS_PROFILE` or `default`.
//!
//! The shared credentials file is `AWS_SHARED_CREDENTIALS_FILE`, else
//! `~/.aws/credentials` (`HOME`, or `USERPROFILE` on Windows): INI, read with
//! rust-ini, static keys only (`aws_access_key_id`, `aws_secret_access_key`,
//! `aws_session_token`). It must not be open to group or others (Unix), like
//! the key files. It is read when the config loads (an error names the store's
//! key and the credentials file, with its line for a syntax error) and again
//! when each upload starts, so rotated keys are picked up. Roles, SSO and
//! `credential_process` are not followed (that needs the AWS SDK).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest credentials file read.
const MAX_FILE: u64 = 1024 * 1024;

/// Profile keys that ask for more than static keys.
const UNSUPPORTED: [&str; 5] = [
    "role_arn",
    "credential_process",
    "sso_session",
    "sso_start_url",
    "web_identity_token_file",
];

/// A profile of a shared credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The credentials file.
    pub file: PathBuf,
    /// The profile (an INI section).
    pub profile: String,
}

/// Static keys from a profile.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileKeys {
    /// `aws_access_key_id`.
    pub access: String,
    /// `aws_secret_access_key`.
    pub secret: String,
    /// `aws_session_token`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ProfileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileKeys")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Where the chain found keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    Env,
    /// A shared credentials file's profile.
    Profile(Profile),
}

/// Why the chain found no usable keys; `key` is the store setting to blame
/// (empty: the store's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    /// `profile`, or empty.
    pub key: &'static str,
    /// What is wrong, naming the variable or the file.
    pub message: String,
}

/// Walk the chain with `env` (the agent's environment) and `profile` (the
/// store's `profile` setting); a profile found is read once to check it.
pub fn resolve(env: &BTreeMap<String, String>, profile: Option<&str>) -> Result<Found, ChainError> {
    let err = |key, message| ChainError { key, message };
    if let Some(p) = profile {
        if p.trim().is_empty() {
            return Err(err("profile", "must not be empty".into()));
        }
        let found = Profile {
            file: credentials_file(env)
                .ok_or_else(|| err("profile", no_home("the profile's file")))?,
            profile: p.to_owned(),
        };
        found.read().map_err(|m| err("profile", m))?;
        return Ok(Found::Profile(found));
    }
    let var = |n: &str| env.get(n).filter(|v| !v.is_empty());
    match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        (Some(_), Some(_)) => return Ok(Found::Env),
        (Some(_), None) | (None, Some(_)) => {
            let (set, unset) = if var("AWS_ACCESS_KEY_ID").is_some() {
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            } else {
                ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
            };
            return Err(err(
                "",
                format!("{set} is set in the agent's environment but {unset} is not"),
            ));
        }
        (None, None) => {}
    }
    let explicit = var("AWS_SHARED_CREDENTIALS_FILE").is_some() || var("AWS_PROFILE").is_some();
    let Some(file) = credentials_file(env) else {
        return Err(err("", no_keys(&no_home("~/.aws/credentials"))));
    };
    let found = Profile {
        profile: var("AWS_PROFILE")
            .map_or("default", String::as_str)
            .to_owned(),
        file,
    };
    if !explicit && !found.file.exists() {
        return Err(err(
            "",
            no_keys(&format!("{} does not exist", found.file.display())),
        ));
    }
    found.read().map_err(|m| err("", m))?;
    Ok(Found::Profile(found))
}

/// `AWS_SHARED_CREDENTIALS_FILE`, else `<home>/.aws/credentials`.
fn credentials_file(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let var = |n: &str| env.get(n).filter(|v| !v.is_empty());
    if let Some(f) = var("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(PathBuf::from(f));
    }
    let home = var("HOME").or_else(|| var("USERPROFILE"))?;
    Some(Path::new(home).join(".aws").join("credentials"))
}

fn no_home(what: &str) -> String {
    format!("cannot find {what}: neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set")
}

fn no_keys(why: &str) -> String {
    format!(
        "no keys: set access_key_file and secret_key_file, access_key_env and secret_key_env, \
         or profile; or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the agent's environment; \
         or put a profile in the shared credentials file ({why})"
    )
}

impl Profile {
    /// Read the profile's keys now (the error names the file, the profile
    /// and, for a syntax error, the line; never a key).
    pub fn read(&self) -> Result<ProfileKeys, String> {
        let shown = self.file.display();
        let text = read_file(&self.file)
            .map_err(|e| format!("shared credentials file {shown}: cannot read: {e}"))?;
        crate::secret::check_secret_file(&self.file)
            .map_err(|m| format!("shared credentials file {shown}: {m}"))?;
        let opt = ini::ParseOption {
            enabled_quote: false,
            enabled_escape: false,
            ..ini::ParseOption::default()
        };
        let doc = ini::Ini::load_from_str_opt(&text, opt).map_err(|e| {
            format!(
                "shared credentials file {shown}, line {}: {}",
                e.line, e.msg
            )
        })?;
        let p = &self.profile;
        let Some(section) = doc.section(Some(p.as_str())) else {
            let names: Vec<&str> = doc.sections().flatten().collect();
            return Err(format!(
                "shared credentials file {shown} has no profile [{p}] (it has: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        };
        let get = |k: &str| section.get(k).map(str::trim).filter(|v| !v.is_empty());
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(access), Some(secret)) => Ok(ProfileKeys {
                access: access.to_owned(),
                secret: secret.to_owned(),
                token: get("aws_session_token").map(str::to_owned),
            }),
            _ => {
                let why = match UNSUPPORTED.iter().find(|k| section.contains_key(**k)) {
                    Some(k) => {
                        format!("it uses {k}, which this agent does not follow (static keys only)")
                    }
                    None => "set both aws_access_key_id and aws_secret_access_key".to_owned(),
                };
                Err(format!(
                    "shared credentials file {shown}, profile [{p}]: no static keys: {why}"
                ))
            }
        }
    }
}

/// The file's text, at most [`MAX_FILE`] bytes.
fn read_file(p: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    std::fs::File::open(p)?
        .take(MAX_FILE)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests;
