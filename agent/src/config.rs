//! Agent configuration: built-in defaults → TOML file → `BATON_AGENT_*` environment → flags.
//!
//! The variables are listed once, in [`baton_proto::env::AGENT`] (also shown by
//! `--help`); the agent reads no other `BATON_*` name, and an old name of its
//! own (`BATON_STATE_DIR`, …) only gives a WARN naming the new one.
//!
//! Everything is validated at start. Every error names where the bad value
//! came from (file path and line, environment variable or flag) and the key;
//! the process then exits with [`EX_CONFIG`] (78). The agent's credentials
//! come from enrollment ([`crate::identity`]); the enrollment token is read
//! from `enrollment_token_file`, `BATON_AGENT_ENROLLMENT_TOKEN_FILE` or
//! `BATON_AGENT_ENROLLMENT_TOKEN`, never from a flag, and never appears in a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use baton_proto::config::LogFormat;
use baton_proto::config::{ConfigError, EX_CONFIG, Source, line_of_key, parse_toml};
use baton_proto::env;
use baton_proto::valid_name;
use serde::Deserialize;

pub use crate::secret::{ENV_ENROLLMENT_TOKEN, EnrollmentToken, Secret, read_secret_file};
use crate::secret::{check_enrollment_token, check_secret_file};
pub use crate::tls::TlsConfig;
use crate::tls::{CaBundle, ClientIdentity, Part};
pub use command::CommandConfig;
use command::FileCommand;
pub use connection::ConnectionConfig;
use connection::FileConnection;
pub use store::StoreConfig;

/// Environment variable naming the config file (like `--config`).
pub const ENV_CONFIG: &str = env::AGENT_CONFIG.name;
/// Environment variable naming the enrollment token file.
pub const ENV_ENROLLMENT_TOKEN_FILE: &str = env::AGENT_ENROLLMENT_TOKEN_FILE.name;

const DEFAULT_CONTROLLER_URL: &str = "https://127.0.0.1:8420";
const REMOVED_TOKEN: &str = "the static agent token was removed: agents enroll now. Run \
     `baton-agent enroll --token-file FILE` with an enrollment token from an admin, or set \
     enrollment_token_file (BATON_AGENT_ENROLLMENT_TOKEN_FILE, BATON_AGENT_ENROLLMENT_TOKEN); the agent \
     secret is then kept in <state_dir>/identity.json";
const MAX_SLOTS: i64 = 256;
const MIN_POLL_WAIT: Duration = Duration::from_millis(100);
const MAX_POLL_WAIT: Duration = Duration::from_secs(600);
const MAX_SHUTDOWN_GRACE: Duration = Duration::from_secs(3600);

/// A configuration error; every variant maps to exit code [`EX_CONFIG`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value is missing, malformed or out of range (names source, key, line).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl Error {
    /// The process exit code for configuration errors (78, `EX_CONFIG`).
    pub const EXIT_CODE: i32 = EX_CONFIG;

    /// The exit code the process should end with.
    pub fn exit_code(&self) -> i32 {
        Self::EXIT_CODE
    }
}

/// Values given on the command line (the highest layer).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config PATH`.
    pub config: Option<PathBuf>,
    /// `--agent-id`.
    pub agent_id: Option<String>,
    /// `--controller-url`.
    pub controller_url: Option<String>,
    /// `--controller-urls` (comma-separated).
    pub controller_urls: Option<String>,
    /// `--group` (repeatable); replaces the groups of lower layers when given.
    pub groups: Vec<String>,
    /// `--slots` (kept as text so a bad value is reported like any other).
    pub slots: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Agent id asked for at enrollment (default: the host name, made a valid name).
    /// Once enrolled, the id in the identity file is used.
    pub agent_id: String,
    /// Host name, reported at enrollment.
    pub hostname: String,
    /// Controller base URLs (http or https, no trailing slash): one
    /// (`controller_url`, maybe a load balancer's name) or several replicas
    /// on one database (`controller_urls`). Never empty.
    pub controller_urls: Vec<String>,
    /// Enrollment token, when one is configured.
    pub enrollment_token: Option<EnrollmentToken>,
    /// `[tls]`.
    pub tls: TlsConfig,
    /// Worker groups served; empty: every group the enrollment granted.
    pub groups: Vec<String>,
    /// Jobs run at once.
    pub slots: u32,
    /// State directory (outbox lives under it).
    pub state_dir: PathBuf,
    /// Long-poll hold asked of the controller.
    pub poll_wait: Duration,
    /// How long running jobs may go on after SIGTERM.
    pub shutdown_grace: Duration,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// Log lines as text or JSON (`log_format`, `BATON_AGENT_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// `[command]`.
    pub command: CommandConfig,
    /// `[connections.*]` (reserved).
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// `[stores.*]`: object stores for `upload` jobs.
    pub stores: BTreeMap<String, StoreConfig>,
    /// Things worth a WARN line once logging is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// One line for `baton-agent validate`.
    pub fn summary(&self) -> String {
        let groups = if self.groups.is_empty() {
            "(enrolled)".to_owned()
        } else {
            self.groups.join(",")
        };
        let ca = self
            .tls
            .ca
            .as_ref()
            .map_or("system".to_owned(), |c| c.path().display().to_string());
        format!(
            "agent_id={} controller={} tls.ca={ca} tls.client_cert={} groups=[{groups}] \
             slots={} state_dir={} poll_wait={} command.allow={} connections={}",
            self.agent_id,
            self.controller_urls.join(","),
            if self.tls.client.is_some() {
                "yes"
            } else {
                "no"
            },
            self.slots,
            self.state_dir.display(),
            humantime::format_duration(self.poll_wait),
            self.command.allow.len(),
            self.connections.len(),
        )
    }

    /// Create the state directory (mode 0700) if it is missing.
    pub fn prepare_state_dir(&self) -> Result<(), Error> {
        create_private_dir(&self.state_dir).map_err(|e| {
            Error::from(ConfigError {
                origin: Source::Default,
                key: "state_dir".into(),
                line: None,
                message: format!("cannot create {}: {e}", self.state_dir.display()),
            })
        })
    }
}

/// Check a controller base URL: http or https with a host. Returns it without a trailing slash.
pub fn check_base_url(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Whether `url` is plain `http://` to a host that is not loopback.
pub fn plain_http_remote(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    if parsed.scheme() != "http" {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

/// Create `dir` and its parents with mode 0700 (owner only) where missing.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Load and validate: reads the file named by `--config` or `BATON_AGENT_CONFIG`.
pub fn load(flags: &Flags, env: &BTreeMap<String, String>) -> Result<Config, Error> {
    let path = match (&flags.config, env.get(ENV_CONFIG)) {
        (Some(p), _) => Some((p.clone(), Source::Flag("config".into()))),
        (None, Some(p)) => Some((PathBuf::from(p), Source::Env(ENV_CONFIG.into()))),
        (None, None) => None,
    };
    let file = match path {
        Some((path, origin)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError {
                origin,
                key: String::new(),
                line: None,
                message: format!("cannot read config file {}: {e}", path.display()),
            })?;
            Some((path, text))
        }
        None => None,
    };
    load_from(
        flags,
        env,
        file.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
    )
}

/// Load and validate from an already read file (`(path, text)`), the environment and flags.
pub fn load_from(
    flags: &Flags,
    env: &BTreeMap<String, String>,
    file: Option<(&Path, &str)>,
) -> Result<Config, Error> {
    let path_text = file.map(|(p, _)| p.display().to_string());
    let raw: FileConfig = match (&path_text, file) {
        (Some(path), Some((_, text))) => parse_toml(path, text)?,
        _ => FileConfig::default(),
    };
    let ctx = Ctx {
        file: path_text.as_deref().zip(file.map(|(_, t)| t)),
        dir: file.and_then(|(p, _)| p.parent()).map(Path::to_path_buf),
    };
    Resolver { ctx, env, flags }.resolve(raw)
}

// ---------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    agent_id: Option<String>,
    controller_url: Option<String>,
    controller_urls: Option<Vec<String>>,
    /// Removed (enrollment replaced it): reported as an error.
    token_file: Option<toml::Value>,
    enrollment_token_file: Option<String>,
    tls: Option<FileTls>,
    groups: Option<Vec<String>>,
    slots: Option<i64>,
    state_dir: Option<String>,
    poll_wait: Option<String>,
    shutdown_grace: Option<String>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    command: Option<FileCommand>,
    #[serde(default)]
    connections: BTreeMap<String, FileConnection>,
    #[serde(default)]
    stores: BTreeMap<String, store::FileStore>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca_file: Option<String>,
    client_cert_file: Option<String>,
    client_key_file: Option<String>,
}

// ---------------------------------------------------------------------------
// Layering.

/// A value with the place it came from.
struct Val<T> {
    value: T,
    src: Source,
}

struct Ctx<'a> {
    /// `(path, text)` of the file, for line numbers.
    file: Option<(&'a str, &'a str)>,
    /// Directory of the file: relative paths in it are taken from there.
    dir: Option<PathBuf>,
}

impl Ctx<'_> {
    fn file_src(&self) -> Source {
        match self.file {
            Some((p, _)) => Source::File(p.to_owned()),
            None => Source::Default,
        }
    }

    fn err(&self, src: &Source, key: &str, message: impl Into<String>) -> ConfigError {
        match (src, self.file) {
            (Source::File(p), Some((_, text))) => ConfigError::in_file(p, text, key, message),
            _ => ConfigError {
                origin: src.clone(),
                key: key.to_owned(),
                line: None,
                message: message.into(),
            },
        }
    }

    fn missing(&self, key: &str, how: &str) -> ConfigError {
        ConfigError {
            origin: self.file_src(),
            key: key.to_owned(),
            line: None,
            message: format!("a value is required: set `{key}` in the config file, {how}"),
        }
    }

    /// A path from the file is relative to the file's directory.
    fn path(&self, v: Val<String>) -> Val<PathBuf> {
        let p = PathBuf::from(&v.value);
        let value = match (&v.src, &self.dir) {
            (Source::File(_), Some(dir)) if p.is_relative() => dir.join(p),
            _ => p,
        };
        Val { value, src: v.src }
    }
}

struct Resolver<'a> {
    ctx: Ctx<'a>,
    env: &'a BTreeMap<String, String>,
    flags: &'a Flags,
}

impl Resolver<'_> {
    fn file<T>(&self, v: Option<T>) -> Option<Val<T>> {
        v.map(|value| Val {
            value,
            src: self.ctx.file_src(),
        })
    }

    fn env(&self, name: &str) -> Option<Val<String>> {
        self.env.get(name).map(|value| Val {
            value: value.clone(),
            src: Source::Env(name.to_owned()),
        })
    }

    fn flag<T: Clone>(&self, name: &str, v: &Option<T>) -> Option<Val<T>> {
        v.as_ref().map(|value| Val {
            value: value.clone(),
            src: Source::Flag(name.to_owned()),
        })
    }

    /// Highest layer first: flag, env, file.
    fn text(
        &self,
        flag: (&str, &Option<String>),
        env: &str,
        file: Option<String>,
    ) -> Option<Val<String>> {
        self.flag(flag.0, flag.1)
            .or_else(|| self.env(env))
            .or_else(|| self.file(file))
    }

    fn resolve(self, raw: FileConfig) -> Result<Config, Error> {
        let ctx = &self.ctx;
        let warnings = env::old_name_warnings(env::AGENT_OLD, |n| self.env.contains_key(n));
        self.removed_token(raw.token_file.is_some())?;
        let (hostname, agent_id) = self.agent_id(raw.agent_id)?;
        let controller_urls = self.controller_urls(raw.controller_url, raw.controller_urls)?;
        let enrollment_token = self.enrollment_token(raw.enrollment_token_file)?;
        let tls = self.tls(raw.tls.unwrap_or_default())?;

        let groups = self.groups(raw.groups)?;
        let slots = self.slots(raw.slots)?;
        let state_dir = self.state_dir(raw.state_dir)?;

        let poll_wait = self.duration(
            "poll_wait",
            raw.poll_wait,
            "25s",
            MIN_POLL_WAIT,
            MAX_POLL_WAIT,
        )?;
        let shutdown_grace = self.duration(
            "shutdown_grace",
            raw.shutdown_grace,
            "30s",
            Duration::ZERO,
            MAX_SHUTDOWN_GRACE,
        )?;

        // log_level
        let log = self
            .env(env::AGENT_LOG.name)
            .or_else(|| self.file(raw.log_level))
            .unwrap_or(Val {
                value: "info".into(),
                src: Source::Default,
            });
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log.value) {
            return Err(ctx
                .err(&log.src, "log_level", format!("not a log filter: {e}"))
                .into());
        }

        let log_format = self.log_format(raw.log_format)?;
        let command = self.command(raw.command)?;
        let connections = self.connections(raw.connections)?;
        let stores = self.stores(raw.stores)?;

        Ok(Config {
            config_file: ctx.file.map(|(p, _)| PathBuf::from(p)),
            agent_id: agent_id.value,
            hostname,
            controller_urls,
            enrollment_token,
            tls,
            groups: groups.value,
            slots: u32::try_from(slots.value).unwrap_or(1),
            state_dir: state_dir.value,
            poll_wait,
            shutdown_grace,
            log_level: log.value,
            log_format,
            command,
            connections,
            stores,
            warnings,
        })
    }

    /// `log_format`: `BATON_AGENT_LOG_FORMAT`, else the file, else text.
    fn log_format(&self, file: Option<LogFormat>) -> Result<LogFormat, ConfigError> {
        match self.env(env::AGENT_LOG_FORMAT.name) {
            Some(v) => v
                .value
                .parse()
                .map_err(|m: String| self.ctx.err(&v.src, "log_format", m)),
            None => Ok(file.unwrap_or_default()),
        }
    }

    fn enrollment_token(
        &self,
        file: Option<String>,
    ) -> Result<Option<EnrollmentToken>, ConfigError> {
        let ctx = &self.ctx;
        if let Some(v) = self.env(ENV_ENROLLMENT_TOKEN) {
            check_enrollment_token(v.value.trim())
                .map_err(|m| ctx.err(&v.src, "enrollment_token", m))?;
            return Ok(Some(EnrollmentToken::Value(Secret::new(v.value))));
        }
        let Some(v) = self
            .env(ENV_ENROLLMENT_TOKEN_FILE)
            .or_else(|| self.file(file))
        else {
            return Ok(None);
        };
        let key = "enrollment_token_file";
        if v.value.trim().is_empty() {
            return Err(ctx.err(&v.src, key, "must not be empty"));
        }
        let v = ctx.path(v);
        let line = match (&v.src, ctx.file) {
            (Source::File(_), Some((_, text))) => line_of_key(text, key),
            _ => None,
        };
        // A used token file may be gone; one that is there must be private.
        if v.value.exists() {
            check_secret_file(&v.value)
                .map_err(|m| ctx.err(&v.src, key, format!("{}: {m}", v.value.display())))?;
        }
        Ok(Some(EnrollmentToken::File {
            path: v.value,
            origin: v.src,
            key: key.to_owned(),
            line,
        }))
    }

    /// `[tls]` (and `BATON_AGENT_TLS_*`): the files must exist and parse.
    fn tls(&self, raw: FileTls) -> Result<TlsConfig, ConfigError> {
        let ctx = &self.ctx;
        let pick = |env: &str, file: Option<String>| {
            self.env(env)
                .or_else(|| self.file(file))
                .map(|v| ctx.path(v))
        };
        let ca = pick(env::AGENT_TLS_CA_FILE.name, raw.ca_file);
        let cert = pick(env::AGENT_TLS_CLIENT_CERT_FILE.name, raw.client_cert_file);
        let key = pick(env::AGENT_TLS_CLIENT_KEY_FILE.name, raw.client_key_file);
        let ca = match ca {
            Some(v) => Some(
                CaBundle::load(&v.value)
                    .map_err(|e| ctx.err(&v.src, Part::Ca.key(), e.to_string()))?,
            ),
            None => None,
        };
        let client = match (cert, key) {
            (None, None) => None,
            (Some(given), None) => return Err(half_pair(ctx, &given.src, Part::ClientCert)),
            (None, Some(given)) => return Err(half_pair(ctx, &given.src, Part::ClientKey)),
            (Some(c), Some(k)) => Some(ClientIdentity::load(&c.value, &k.value).map_err(|e| {
                let src = if e.part == Part::ClientCert {
                    &c.src
                } else {
                    &k.src
                };
                ctx.err(src, e.part.key(), e.to_string())
            })?),
        };
        Ok(TlsConfig { ca, client })
    }

    fn duration(
        &self,
        key: &str,
        file: Option<String>,
        default: &str,
        min: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let v = self.file(file).unwrap_or(Val {
            value: default.into(),
            src: Source::Default,
        });
        let d = humantime::parse_duration(v.value.trim()).map_err(|e| {
            self.ctx.err(
                &v.src,
                key,
                format!("{:?} is not a duration like \"25s\": {e}", v.value),
            )
        })?;
        if d < min || d > max {
            let msg = format!(
                "must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            );
            return Err(self.ctx.err(&v.src, key, msg));
        }
        Ok(d)
    }

    /// The static token that enrollment replaced is an error.
    fn removed_token(&self, in_file: bool) -> Result<(), ConfigError> {
        let ctx = &self.ctx;
        if in_file {
            return Err(ctx.err(&ctx.file_src(), "token_file", REMOVED_TOKEN));
        }
        if let Some(v) = self.env(env::AGENT_TOKEN.name) {
            return Err(ctx.err(&v.src, "token_file", REMOVED_TOKEN));
        }
        Ok(())
    }

    /// The host name and `agent_id` (by default the host name made a valid name).
    fn agent_id(&self, file: Option<String>) -> Result<(String, Val<String>), ConfigError> {
        let ctx = &self.ctx;
        let hostname = crate::identity::system_hostname()
            .or_else(|| self.env.get("HOSTNAME").cloned())
            .unwrap_or_default();
        let agent_id = self
            .text(("agent-id", &self.flags.agent_id), env::AGENT_ID.name, file)
            .or_else(|| {
                crate::identity::name_from_hostname(&hostname).map(|value| Val {
                    value,
                    src: Source::Default,
                })
            })
            .ok_or_else(|| {
                ctx.missing(
                    "agent_id",
                    "BATON_AGENT_ID or --agent-id (the host name is not usable)",
                )
            })?;
        if !valid_name(&agent_id.value) {
            return Err(ctx.err(
                &agent_id.src,
                "agent_id",
                "must be 1-128 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        Ok((hostname, agent_id))
    }

    /// `controller_url` (one URL) or `controller_urls` (several): each http
    /// or https with a host, no trailing slash. The highest layer that sets
    /// either wins; one layer setting both is an error, as is a URL listed twice.
    fn controller_urls(
        &self,
        file_one: Option<String>,
        file_many: Option<Vec<String>>,
    ) -> Result<Vec<String>, ConfigError> {
        let ctx = &self.ctx;
        let split = |v: Val<String>| Val {
            value: v.value.split(',').map(|u| u.trim().to_owned()).collect(),
            src: v.src,
        };
        let layers = [
            (
                self.flag("controller-url", &self.flags.controller_url),
                self.flag("controller-urls", &self.flags.controller_urls)
                    .map(split),
            ),
            (
                self.env(env::AGENT_CONTROLLER_URL.name),
                self.env(env::AGENT_CONTROLLER_URLS.name).map(split),
            ),
            (self.file(file_one), self.file(file_many)),
        ];
        for (one, many) in layers {
            match (one, many) {
                (Some(_), Some(m)) => {
                    return Err(ctx.err(
                        &m.src,
                        "controller_urls",
                        "controller_url is set too: give one of controller_url and controller_urls",
                    ));
                }
                (Some(one), None) => {
                    let url = check_base_url(&one.value)
                        .map_err(|m| ctx.err(&one.src, "controller_url", m))?;
                    return Ok(vec![url]);
                }
                (None, Some(many)) => return self.url_list(many),
                (None, None) => {}
            }
        }
        Ok(vec![DEFAULT_CONTROLLER_URL.to_owned()])
    }

    /// The checked `controller_urls`: at least one, none twice.
    fn url_list(&self, many: Val<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let ctx = &self.ctx;
        if many.value.is_empty() || many.value.iter().all(String::is_empty) {
            return Err(ctx.err(&many.src, "controller_urls", "at least one URL is required"));
        }
        let mut urls: Vec<String> = Vec::with_capacity(many.value.len());
        for (i, u) in many.value.iter().enumerate() {
            let key = format!("controller_urls[{i}]");
            let url = check_base_url(u).map_err(|m| ctx.err(&many.src, &key, m))?;
            if urls.contains(&url) {
                return Err(ctx.err(&many.src, &key, format!("{url:?} is listed twice")));
            }
            urls.push(url);
        }
        Ok(urls)
    }

    /// `groups` (none: every group the enrollment granted).
    fn groups(&self, file: Option<Vec<String>>) -> Result<Val<Vec<String>>, ConfigError> {
        let ctx = &self.ctx;
        let groups = if !self.flags.groups.is_empty() {
            Val {
                value: self.flags.groups.clone(),
                src: Source::Flag("group".into()),
            }
        } else if let Some(v) = self.env(env::AGENT_GROUPS.name) {
            Val {
                value: v.value.split(',').map(|g| g.trim().to_owned()).collect(),
                src: v.src,
            }
        } else if let Some(v) = self.file(file) {
            v
        } else {
            Val {
                value: Vec::new(),
                src: Source::Default,
            }
        };
        if groups.value.is_empty() && groups.src != Source::Default {
            return Err(ctx.err(&groups.src, "groups", "at least one group is required"));
        }
        for (i, g) in groups.value.iter().enumerate() {
            let key = format!("groups[{i}]");
            if !valid_name(g) {
                let msg = format!("group {g:?} must be 1-128 characters of A-Z a-z 0-9 _ . -");
                return Err(ctx.err(&groups.src, &key, msg));
            }
            if groups.value[..i].contains(g) {
                return Err(ctx.err(&groups.src, &key, format!("group {g:?} is listed twice")));
            }
        }
        Ok(groups)
    }

    /// `slots`: jobs run at once.
    fn slots(&self, file: Option<i64>) -> Result<Val<i64>, ConfigError> {
        let ctx = &self.ctx;
        let slots = match self.text(("slots", &self.flags.slots), env::AGENT_SLOTS.name, None) {
            Some(v) => {
                let n = v.value.trim().parse::<i64>().map_err(|_| {
                    ctx.err(
                        &v.src,
                        "slots",
                        format!("{:?} is not a whole number", v.value),
                    )
                })?;
                Val {
                    value: n,
                    src: v.src,
                }
            }
            None => self.file(file).unwrap_or(Val {
                value: 1,
                src: Source::Default,
            }),
        };
        if !(1..=MAX_SLOTS).contains(&slots.value) {
            let msg = format!("must be between 1 and {MAX_SLOTS}, got {}", slots.value);
            return Err(ctx.err(&slots.src, "slots", msg));
        }
        Ok(slots)
    }

    /// `state_dir`: required; a directory when it exists.
    fn state_dir(&self, file: Option<String>) -> Result<Val<PathBuf>, ConfigError> {
        let ctx = &self.ctx;
        let state_dir = self
            .flag("state-dir", &self.flags.state_dir)
            .or_else(|| {
                self.env(env::AGENT_STATE_DIR.name).map(|v| Val {
                    value: PathBuf::from(v.value),
                    src: v.src,
                })
            })
            .or_else(|| self.file(file).map(|v| ctx.path(v)))
            .ok_or_else(|| ctx.missing("state_dir", "BATON_AGENT_STATE_DIR or --state-dir"))?;
        if state_dir.value.as_os_str().is_empty() {
            return Err(ctx.err(&state_dir.src, "state_dir", "must not be empty"));
        }
        if state_dir.value.exists() && !state_dir.value.is_dir() {
            let msg = format!(
                "{} exists and is not a directory",
                state_dir.value.display()
            );
            return Err(ctx.err(&state_dir.src, "state_dir", msg));
        }
        Ok(state_dir)
    }
}

/// Only one of client certificate and key is set: the error names the missing
/// key, at the line of the one that is set.
fn half_pair(ctx: &Ctx<'_>, src: &Source, set: Part) -> ConfigError {
    let missing = match set {
        Part::ClientCert => Part::ClientKey,
        _ => Part::ClientCert,
    };
    let mut e = ctx.err(
        src,
        set.key(),
        format!(
            "missing: {} is set, so {} must be set too (mutual TLS needs both)",
            set.key(),
            missing.key()
        ),
    );
    e.key = missing.key().to_owned();
    e
}

pub mod command;
pub mod connection;
pub mod mssql;
pub mod mysql;
pub mod store;

#[cfg(test)]
mod tests;
