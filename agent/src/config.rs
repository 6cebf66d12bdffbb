//! Agent configuration: built-in defaults → TOML file → `BATON_*` environment → flags.
//!
//! Everything is validated at start. Every error names where the bad value
//! came from (file path and line, environment variable or flag) and the key;
//! the process then exits with [`EX_CONFIG`] (78). The agent token is read
//! from `token_file` or `BATON_AGENT_TOKEN`, never from a flag, and never
//! appears in a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::config::{ConfigError, EX_CONFIG, Source, parse_toml};
use baton_proto::valid_name;
use serde::Deserialize;

/// Environment variable naming the config file (like `--config`).
pub const ENV_CONFIG: &str = "BATON_CONFIG";
/// Environment variable carrying the agent token itself.
pub const ENV_TOKEN: &str = "BATON_AGENT_TOKEN";

const DEFAULT_CONTROLLER_URL: &str = "http://127.0.0.1:8420";
const DEFAULT_GROUP: &str = "default";
const MAX_SLOTS: i64 = 256;
const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
const MAX_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_LOG_TAIL_BYTES: u64 = 4096;
const MAX_LOG_TAIL_BYTES: u64 = 1024 * 1024;
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
    /// `--group` (repeatable); replaces the groups of lower layers when given.
    pub groups: Vec<String>,
    /// `--slots` (kept as text so a bad value is reported like any other).
    pub slots: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// The agent token. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a token.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[command]`: what command jobs may run and how much output is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Allowed programs: absolute paths, or bare names resolved through PATH at spawn.
    pub allow: Vec<String>,
    /// Bytes kept per stream (the first ones).
    pub max_output_bytes: usize,
    /// Bytes of the rolling log tail sent with heartbeats.
    pub log_tail_bytes: usize,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            allow: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES as usize,
            log_tail_bytes: DEFAULT_LOG_TAIL_BYTES as usize,
        }
    }
}

/// `[connections.<name>]`: reserved for database executors (accepted, not used yet).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// Engine (`mysql`, `mssql`, ...).
    pub kind: String,
    /// Every other key, kept as TOML values for the executors to come.
    pub settings: BTreeMap<String, toml::Value>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Agent id (sent in the path and the `X-Baton-Agent` header).
    pub agent_id: String,
    /// Controller base URL (http or https, no trailing slash).
    pub controller_url: String,
    /// Agent token.
    pub token: Secret,
    /// Worker groups served.
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
    /// `[command]`.
    pub command: CommandConfig,
    /// `[connections.*]` (reserved).
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Things worth a WARN line once logging is up.
    pub warnings: Vec<String>,
}

impl Config {
    /// One line for `baton-agent validate`.
    pub fn summary(&self) -> String {
        format!(
            "agent_id={} controller={} groups=[{}] slots={} state_dir={} poll_wait={} \
             command.allow={} connections={}",
            self.agent_id,
            self.controller_url,
            self.groups.join(","),
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

/// Load and validate: reads the file named by `--config` or `BATON_CONFIG`.
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
    token_file: Option<String>,
    groups: Option<Vec<String>>,
    slots: Option<i64>,
    state_dir: Option<String>,
    poll_wait: Option<String>,
    shutdown_grace: Option<String>,
    log_level: Option<String>,
    command: Option<FileCommand>,
    #[serde(default)]
    connections: BTreeMap<String, FileConnection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCommand {
    #[serde(default)]
    allow: Vec<String>,
    max_output_bytes: Option<i64>,
    log_tail_bytes: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct FileConnection {
    kind: String,
    #[serde(flatten)]
    settings: BTreeMap<String, toml::Value>,
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
        let mut warnings = Vec::new();

        // agent_id
        let agent_id = self
            .text(
                ("agent-id", &self.flags.agent_id),
                "BATON_AGENT_ID",
                raw.agent_id,
            )
            .ok_or_else(|| ctx.missing("agent_id", "BATON_AGENT_ID or --agent-id"))?;
        if !valid_name(&agent_id.value) {
            return Err(ctx
                .err(
                    &agent_id.src,
                    "agent_id",
                    "must be 1-128 characters of A-Z a-z 0-9 _ . -",
                )
                .into());
        }

        // controller_url
        let url = self
            .text(
                ("controller-url", &self.flags.controller_url),
                "BATON_CONTROLLER_URL",
                raw.controller_url,
            )
            .unwrap_or(Val {
                value: DEFAULT_CONTROLLER_URL.into(),
                src: Source::Default,
            });
        let controller_url = crate::transport::check_base_url(&url.value)
            .map_err(|m| ctx.err(&url.src, "controller_url", m))?;

        // token
        let token = self.token(raw.token_file, &mut warnings)?;

        // groups
        let groups = if !self.flags.groups.is_empty() {
            Val {
                value: self.flags.groups.clone(),
                src: Source::Flag("group".into()),
            }
        } else if let Some(v) = self.env("BATON_GROUPS") {
            Val {
                value: v.value.split(',').map(|g| g.trim().to_owned()).collect(),
                src: v.src,
            }
        } else if let Some(v) = self.file(raw.groups) {
            v
        } else {
            Val {
                value: vec![DEFAULT_GROUP.to_owned()],
                src: Source::Default,
            }
        };
        if groups.value.is_empty() {
            return Err(ctx
                .err(&groups.src, "groups", "at least one group is required")
                .into());
        }
        for (i, g) in groups.value.iter().enumerate() {
            let key = format!("groups[{i}]");
            if !valid_name(g) {
                let msg = format!("group {g:?} must be 1-128 characters of A-Z a-z 0-9 _ . -");
                return Err(ctx.err(&groups.src, &key, msg).into());
            }
            if groups.value[..i].contains(g) {
                return Err(ctx
                    .err(&groups.src, &key, format!("group {g:?} is listed twice"))
                    .into());
            }
        }

        // slots
        let slots = match self.text(("slots", &self.flags.slots), "BATON_SLOTS", None) {
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
            None => self.file(raw.slots).unwrap_or(Val {
                value: 1,
                src: Source::Default,
            }),
        };
        if !(1..=MAX_SLOTS).contains(&slots.value) {
            let msg = format!("must be between 1 and {MAX_SLOTS}, got {}", slots.value);
            return Err(ctx.err(&slots.src, "slots", msg).into());
        }

        // state_dir
        let state_dir = self
            .flag("state-dir", &self.flags.state_dir)
            .or_else(|| {
                self.env("BATON_STATE_DIR").map(|v| Val {
                    value: PathBuf::from(v.value),
                    src: v.src,
                })
            })
            .or_else(|| self.file(raw.state_dir).map(|v| ctx.path(v)))
            .ok_or_else(|| ctx.missing("state_dir", "BATON_STATE_DIR or --state-dir"))?;
        if state_dir.value.as_os_str().is_empty() {
            return Err(ctx
                .err(&state_dir.src, "state_dir", "must not be empty")
                .into());
        }
        if state_dir.value.exists() && !state_dir.value.is_dir() {
            let msg = format!(
                "{} exists and is not a directory",
                state_dir.value.display()
            );
            return Err(ctx.err(&state_dir.src, "state_dir", msg).into());
        }

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
            .env("BATON_LOG")
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

        let command = self.command(raw.command)?;
        let connections = self.connections(raw.connections)?;

        Ok(Config {
            config_file: ctx.file.map(|(p, _)| PathBuf::from(p)),
            agent_id: agent_id.value,
            controller_url,
            token,
            groups: groups.value,
            slots: u32::try_from(slots.value).unwrap_or(1),
            state_dir: state_dir.value,
            poll_wait,
            shutdown_grace,
            log_level: log.value,
            command,
            connections,
            warnings,
        })
    }

    fn token(
        &self,
        token_file: Option<String>,
        warnings: &mut Vec<String>,
    ) -> Result<Secret, ConfigError> {
        let ctx = &self.ctx;
        if let Some(v) = self.env(ENV_TOKEN) {
            return check_token(v.value.trim())
                .map_err(|m| ctx.err(&v.src, "token", m))
                .map(Secret::new);
        }
        let file = self
            .env("BATON_TOKEN_FILE")
            .or_else(|| self.file(token_file))
            .ok_or_else(|| {
                ctx.missing(
                    "token_file",
                    "BATON_TOKEN_FILE, or give the token in BATON_AGENT_TOKEN",
                )
            })?;
        let file = ctx.path(file);
        let text = std::fs::read_to_string(&file.value).map_err(|e| {
            ctx.err(
                &file.src,
                "token_file",
                format!("cannot read {}: {e}", file.value.display()),
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(&file.value)
                && meta.permissions().mode() & 0o077 != 0
            {
                warnings.push(format!(
                    "Token file {} is readable by group or others (mode {:o}); chmod 600 it",
                    file.value.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
        }
        #[cfg(not(unix))]
        let _ = warnings;
        check_token(text.trim())
            .map_err(|m| {
                ctx.err(
                    &file.src,
                    "token_file",
                    format!("{}: {m}", file.value.display()),
                )
            })
            .map(Secret::new)
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

    fn command(&self, raw: Option<FileCommand>) -> Result<CommandConfig, ConfigError> {
        let ctx = &self.ctx;
        let src = ctx.file_src();
        let raw = raw.unwrap_or_default();
        for (i, prog) in raw.allow.iter().enumerate() {
            let key = format!("command.allow[{i}]");
            let path = Path::new(prog);
            let bare = !prog.is_empty() && !prog.contains('/') && !prog.contains('\\');
            if !(bare || path.is_absolute()) {
                let msg = format!("{prog:?} must be an absolute path or a bare program name");
                return Err(ctx.err(&src, &key, msg));
            }
        }
        let bytes =
            |key: &str, v: Option<i64>, default: u64, max: u64| -> Result<usize, ConfigError> {
                let n = v.map_or(Ok(default), |n| {
                    u64::try_from(n)
                        .ok()
                        .filter(|n| *n <= max)
                        .ok_or_else(|| ctx.err(&src, key, format!("must be between 0 and {max}")))
                })?;
                usize::try_from(n).map_err(|_| ctx.err(&src, key, "too large for this platform"))
            };
        Ok(CommandConfig {
            max_output_bytes: bytes(
                "command.max_output_bytes",
                raw.max_output_bytes,
                DEFAULT_MAX_OUTPUT_BYTES,
                MAX_MAX_OUTPUT_BYTES,
            )?,
            log_tail_bytes: bytes(
                "command.log_tail_bytes",
                raw.log_tail_bytes,
                DEFAULT_LOG_TAIL_BYTES,
                MAX_LOG_TAIL_BYTES,
            )?,
            allow: raw.allow,
        })
    }

    fn connections(
        &self,
        raw: BTreeMap<String, FileConnection>,
    ) -> Result<BTreeMap<String, ConnectionConfig>, ConfigError> {
        let src = self.ctx.file_src();
        let mut out = BTreeMap::new();
        for (name, conn) in raw {
            if !valid_name(&name) {
                let key = format!("connections.{name}");
                let msg = "connection names are 1-128 characters of A-Z a-z 0-9 _ . -";
                return Err(self.ctx.err(&src, &key, msg));
            }
            if conn.kind.trim().is_empty() {
                let key = format!("connections.{name}.kind");
                return Err(self.ctx.err(&src, &key, "must not be empty"));
            }
            out.insert(
                name,
                ConnectionConfig {
                    kind: conn.kind,
                    settings: conn.settings,
                },
            );
        }
        Ok(out)
    }
}

/// A token must be printable ASCII without spaces (it goes into a header).
fn check_token(token: &str) -> Result<&str, String> {
    if token.is_empty() {
        return Err("the agent token is empty".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the agent token must be printable ASCII without spaces".into());
    }
    Ok(token)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
