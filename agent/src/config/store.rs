//! `[stores.<name>]`: object stores on this host's reach (`kind = "s3"`,
//! any S3-compatible server). Keys come from files (0600) or environment
//! variables, or the standard AWS chain ([`chain`]: the AWS variables, then
//! a profile of the shared credentials file); never inline, never sent to
//! the controller (agents advertise store names only). Read each time an
//! upload starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::connection::{Error, SettingsParser};

pub mod chain;

/// Default part size of a multipart upload.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Smallest part S3 accepts (but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Default parts in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most parts in flight.
pub const MAX_CONCURRENCY: usize = 32;
/// Default `read_timeout`: far above the pause of a healthy server (a busy
/// MinIO or RGW answers a part within seconds), short enough that a stalled
/// one costs ~30 s per try rather than minutes.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds of `read_timeout`.
pub const READ_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);

/// Keys that would put a secret in the file.
const INLINE_KEYS: [&str; 5] = [
    "access_key",
    "secret_key",
    "access_key_id",
    "secret_access_key",
    "session_token",
];

/// `[stores.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `kind = "s3"`.
    S3(S3Store),
}

impl StoreConfig {
    /// The S3 settings.
    pub fn as_s3(&self) -> &S3Store {
        match self {
            StoreConfig::S3(s) => s,
        }
    }
}

/// Where the access key pair comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `access_key_file` / `secret_key_file` (0600 files).
    Files {
        /// The access key id.
        access: PathBuf,
        /// The secret access key.
        secret: PathBuf,
    },
    /// `access_key_env` / `secret_key_env`.
    Env {
        /// Variable holding the access key id.
        access: String,
        /// Variable holding the secret.
        secret: String,
    },
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    AwsEnv,
    /// A profile of the shared credentials file ([`chain`]).
    Profile(chain::Profile),
}

/// Server-side encryption asked for on each object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// `sse = "AES256"` (SSE-S3).
    Aes256,
    /// `sse = "aws:kms"`, with `kms_key_id` when set.
    Kms(Option<String>),
}

/// An S3-compatible bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Store {
    /// Store name (what upload jobs refer to).
    pub name: String,
    /// `https://host[:port]` (or http for a loopback test server).
    pub endpoint: String,
    /// Signing region.
    pub region: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix (no leading slash; ends with `/` when not empty).
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`); else virtual-host.
    pub path_style: bool,
    /// The key pair's source.
    pub keys: KeySource,
    /// A pinned CA bundle (PEM) instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Server-side encryption.
    pub sse: Option<Sse>,
    /// `x-amz-storage-class`.
    pub storage_class: Option<String>,
    /// Bytes per part.
    pub part_size: u64,
    /// Parts in flight at most.
    pub concurrency: usize,
    /// The longest a request may make no progress (nothing received, no
    /// more of its body taken) before it is stalled and tried again; not a
    /// deadline for the whole transfer (objstore's `stall` module).
    pub read_timeout: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileS3 {
    endpoint: String,
    #[serde(default = "default_region")]
    region: String,
    bucket: String,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    path_style: bool,
    access_key_file: Option<PathBuf>,
    secret_key_file: Option<PathBuf>,
    access_key_env: Option<String>,
    secret_key_env: Option<String>,
    profile: Option<String>,
    ca_file: Option<PathBuf>,
    sse: Option<String>,
    kms_key_id: Option<String>,
    storage_class: Option<String>,
    part_size_mb: Option<u64>,
    concurrency: Option<usize>,
    read_timeout: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

impl S3Store {
    /// Parse `[stores.<name>]` (everything but `kind`); `env` is the
    /// agent's environment (the AWS chain's variables).
    pub fn parse(
        name: &str,
        settings: &BTreeMap<String, toml::Value>,
        base: Option<&Path>,
        env: &BTreeMap<String, String>,
    ) -> Result<S3Store, Error> {
        let s = SettingsParser::with_prefix(format!("stores.{name}"), base);
        if let Some(k) = INLINE_KEYS.iter().find(|k| settings.contains_key(**k)) {
            return Err(s.err(
                k,
                "keys are never inline: use access_key_file and secret_key_file (0600), \
                 access_key_env and secret_key_env, a profile of the shared credentials \
                 file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the agent's \
                 environment"
                    .into(),
            ));
        }
        let f: FileS3 = s.deserialize(settings)?;
        let endpoint = f.endpoint.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => return Err(s.err("endpoint", "must be an http(s) URL".into())),
        }
        if !valid_bucket(&f.bucket) {
            return Err(s.err(
                "bucket",
                "must be 3-63 characters of a-z 0-9 . - (S3 bucket naming rules)".into(),
            ));
        }
        if f.region.trim().is_empty() {
            return Err(s.err("region", "must not be empty".into()));
        }
        let prefix = prefix(&s, &f.prefix)?;
        let keys = keys(
            &s,
            Named {
                access_file: f.access_key_file,
                secret_file: f.secret_key_file,
                access_env: f.access_key_env,
                secret_env: f.secret_key_env,
                profile: f.profile,
            },
            env,
        )?;
        let ca_file = f.ca_file.map(|p| s.abs(p));
        if let Some(p) = &ca_file
            && !p.is_file()
        {
            return Err(s.err("ca_file", format!("{}: no such file", p.display())));
        }
        let sse = match (f.sse.as_deref(), f.kms_key_id) {
            (None, None) => None,
            (Some("AES256"), None) => Some(Sse::Aes256),
            (Some("aws:kms"), id) => Some(Sse::Kms(id)),
            (Some("AES256") | None, Some(_)) => {
                return Err(s.err("kms_key_id", "needs sse = \"aws:kms\"".into()));
            }
            (Some(_), _) => {
                return Err(s.err("sse", "must be \"AES256\" or \"aws:kms\"".into()));
            }
        };
        if let Some(c) = &f.storage_class
            && (c.is_empty() || !c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
        {
            return Err(s.err("storage_class", "must be like STANDARD_IA".into()));
        }
        let part_size = f
            .part_size_mb
            .map_or(DEFAULT_PART_SIZE, |mb| mb.saturating_mul(1024 * 1024));
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return Err(s.err("part_size_mb", "must be between 5 and 5120".into()));
        }
        let concurrency = f.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
            return Err(s.err(
                "concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY}"),
            ));
        }
        let read_timeout = read_timeout(&s, &f.read_timeout)?;
        Ok(S3Store {
            name: name.to_owned(),
            endpoint,
            region: f.region,
            bucket: f.bucket,
            prefix,
            path_style: f.path_style,
            keys,
            ca_file,
            sse,
            storage_class: f.storage_class,
            part_size,
            concurrency,
            read_timeout,
        })
    }
}

/// `read_timeout` (a duration like "30s"), within [`READ_TIMEOUT_RANGE`].
fn read_timeout(s: &SettingsParser<'_>, v: &Option<String>) -> Result<Duration, Error> {
    let d = s
        .duration("read_timeout", v)?
        .unwrap_or(DEFAULT_READ_TIMEOUT);
    if !READ_TIMEOUT_RANGE.contains(&d) {
        return Err(s.err(
            "read_timeout",
            format!(
                "must be between {} and {}",
                humantime::format_duration(*READ_TIMEOUT_RANGE.start()),
                humantime::format_duration(*READ_TIMEOUT_RANGE.end())
            ),
        ));
    }
    Ok(d)
}

/// S3's bucket naming rules (lower case, 3-63, no `..`).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && !b.contains("..")
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// `prefix` without a leading slash, with a trailing one when not empty.
fn prefix(s: &SettingsParser<'_>, p: &str) -> Result<String, Error> {
    let p = p.trim_start_matches('/');
    if p.split('/').any(|seg| seg == ".." || seg == ".") || p.contains("//") {
        return Err(s.err("prefix", "must not hold `.`, `..` or empty segments".into()));
    }
    Ok(if p.is_empty() || p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    })
}

/// The key settings of a store.
struct Named {
    access_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    access_env: Option<String>,
    secret_env: Option<String>,
    profile: Option<String>,
}

/// Files, variables, or the AWS chain: both halves from one place.
fn keys(
    s: &SettingsParser<'_>,
    n: Named,
    env: &BTreeMap<String, String>,
) -> Result<KeySource, Error> {
    let named = n.access_file.is_some()
        || n.secret_file.is_some()
        || n.access_env.is_some()
        || n.secret_env.is_some();
    if n.profile.is_some() && named {
        return Err(s.err(
            "profile",
            "set either profile or the key files/variables, not both".into(),
        ));
    }
    match (n.access_file, n.secret_file, n.access_env, n.secret_env) {
        (Some(a), Some(sf), None, None) => {
            let (a, sf) = (s.abs(a), s.abs(sf));
            for (key, p) in [("access_key_file", &a), ("secret_key_file", &sf)] {
                crate::secret::check_secret_file(p)
                    .map_err(|m| s.err(key, format!("{}: {m}", p.display())))?;
            }
            Ok(KeySource::Files {
                access: a,
                secret: sf,
            })
        }
        (None, None, Some(a), Some(sv)) => {
            for (key, v) in [("access_key_env", &a), ("secret_key_env", &sv)] {
                if !env.contains_key(v.as_str()) {
                    return Err(s.err(key, format!("environment variable {v} is not set")));
                }
            }
            Ok(KeySource::Env {
                access: a,
                secret: sv,
            })
        }
        (None, None, None, None) => match chain::resolve(env, n.profile.as_deref()) {
            Ok(chain::Found::Env) => Ok(KeySource::AwsEnv),
            Ok(chain::Found::Profile(p)) => Ok(KeySource::Profile(p)),
            Err(e) => Err(s.err(e.key, e.message)),
        },
        (Some(_), None, ..) => Err(s.err(
            "access_key_file",
            "set secret_key_file too (both keys come from files)".into(),
        )),
        (None, Some(_), ..) => Err(s.err(
            "secret_key_file",
            "set access_key_file too (both keys come from files)".into(),
        )),
        (None, None, Some(_), None) => Err(s.err(
            "access_key_env",
            "set secret_key_env too (both keys come from variables)".into(),
        )),
        (None, None, None, Some(_)) => Err(s.err(
            "secret_key_env",
            "set access_key_env too (both keys come from variables)".into(),
        )),
        (Some(_), Some(_), ..) => Err(s.err(
            "access_key_file",
            "set either the key files or the key variables, not both".into(),
        )),
    }
}

/// The key pair, read now.
#[derive(Clone)]
pub struct Keys {
    /// Access key id.
    pub access: String,
    /// Secret access key.
    pub secret: String,
    /// Session token (`AWS_SESSION_TOKEN`), when the chain gave one.
    pub token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl KeySource {
    /// Read the key pair now (the error names the file or variable, never a key).
    pub fn read(&self) -> Result<Keys, String> {
        let file = |p: &Path| {
            crate::secret::read_secret_file(p)
                .map(|t| t.trim().to_owned())
                .map_err(|e| format!("cannot read key file {}: {e}", p.display()))
        };
        let var =
            |v: &str| std::env::var(v).map_err(|_| format!("environment variable {v} is not set"));
        let (access, secret, token) = match self {
            KeySource::Files { access, secret } => (file(access)?, file(secret)?, None),
            KeySource::Env { access, secret } => (var(access)?, var(secret)?, None),
            KeySource::AwsEnv => (
                var("AWS_ACCESS_KEY_ID")?,
                var("AWS_SECRET_ACCESS_KEY")?,
                std::env::var("AWS_SESSION_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty()),
            ),
            KeySource::Profile(p) => {
                let k = p.read()?;
                (k.access, k.secret, k.token)
            }
        };
        if access.is_empty() || secret.is_empty() {
            return Err("the access key or the secret is empty".into());
        }
        Ok(Keys {
            access,
            secret,
            token,
        })
    }
}

/// `[stores.<name>]` as written: the kind and its settings.
#[derive(Debug, Deserialize)]
pub(super) struct FileStore {
    kind: String,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
}

impl super::Resolver<'_> {
    /// Every `[stores.<name>]`.
    pub(super) fn stores(
        &self,
        raw: BTreeMap<String, FileStore>,
    ) -> Result<BTreeMap<String, StoreConfig>, baton_proto::config::ConfigError> {
        let src = self.ctx.file_src();
        let mut out = BTreeMap::new();
        for (name, store) in raw {
            if !baton_proto::valid_name(&name) {
                let key = format!("stores.{name}");
                let msg = "store names are 1-128 characters of A-Z a-z 0-9 _ . -";
                return Err(self.ctx.err(&src, &key, msg));
            }
            let parsed = match store.kind.as_str() {
                "s3" => StoreConfig::S3(
                    S3Store::parse(&name, &store.settings, self.ctx.dir.as_deref(), self.env)
                        .map_err(|e| self.ctx.err(&src, &e.key, e.message))?,
                ),
                other => {
                    let key = format!("stores.{name}.kind");
                    let msg = format!("unknown kind `{other}`; expected s3");
                    return Err(self.ctx.err(&src, &key, msg));
                }
            };
            out.insert(name, parsed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
