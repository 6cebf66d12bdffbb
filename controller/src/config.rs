//! Controller configuration: defaults → TOML file → `BATON_CONTROLLER_*` env →
//! flags, validated once at start. Every error names the source, key and line.
//! The variables are listed once, in [`baton_proto::env::CONTROLLER`] (also
//! shown by `--help`); an old name (`BATON_LISTEN`, …) is not applied and gives
//! one WARN naming the new one ([`Config::warnings`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use baton_proto::config::LogFormat;
use baton_proto::config::{ConfigError, Source, parse_toml};
use baton_proto::env::{self, EnvVar};
use baton_proto::limits;
use serde::Deserialize;

mod notify;
mod store;
pub use notify::{NotificationsConfig, Secret, Webhook};
pub use store::{PgConfig, StoreConfig};

/// A configuration error (re-exported from proto so both daemons print the same).
pub type Error = ConfigError;

/// How hard SQLite syncs a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// fsync on every commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives process crashes, may lose the last commits on power loss.
    Normal,
}

/// The file as written by the operator; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    state_dir: Option<PathBuf>,
    database: Option<PathBuf>,
    sync: Option<SyncMode>,
    poll_hold: Option<String>,
    default_lease_ttl: Option<String>,
    max_body_bytes: Option<usize>,
    max_log_tail_bytes: Option<usize>,
    agent_offline_after: Option<String>,
    log_level: Option<String>,
    log_format: Option<LogFormat>,
    max_output_bytes: Option<usize>,
    enroll_per_minute: Option<u32>,
    allow_plain_http: Option<bool>,
    job_keep: Option<String>,
    audit_keep: Option<String>,
    tls: Option<FileTls>,
    body_read_timeout: Option<String>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_address: Option<usize>,
    max_spec_bytes: Option<usize>,
    worker_threads: Option<usize>,
    store: Option<store::FileStore>,
    drills: Option<DrillsConfig>,
    notifications: Option<notify::FileNotifications>,
}

/// `[drills]`: what failover drills may do to this controller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillsConfig {
    /// A `controller_crash` drill may abort this process (default false:
    /// such a drill is refused, 422 naming `method`).
    #[serde(default)]
    pub allow_controller_crash: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    require_agent_client_cert: bool,
}

/// TLS settings: the controller serves HTTPS with these files.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Agent calls must come over a verified client certificate.
    pub require_agent_client_cert: bool,
}

/// Overrides from the command line.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to serve the API on (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// State directory (database, `listen.addr`).
    pub state_dir: PathBuf,
    /// SQLite database file.
    pub database: PathBuf,
    /// SQLite sync mode.
    pub sync: SyncMode,
    /// The store backend (`[store]`): SQLite (`database`, `sync`) or
    /// PostgreSQL.
    pub store: StoreConfig,
    /// Longest a poll is held.
    pub poll_hold: Duration,
    /// Lease TTL when a job does not set one.
    pub default_lease_ttl: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest log tail kept per attempt.
    pub max_log_tail_bytes: usize,
    /// An agent not seen for this long is shown offline.
    pub agent_offline_after: Duration,
    /// Log filter.
    pub log_level: String,
    /// Log lines as text or JSON (`log_format`, `BATON_CONTROLLER_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Largest stdout/stderr a completion may carry (each).
    pub max_output_bytes: usize,
    /// Enrollment attempts allowed per source address per minute.
    pub enroll_per_minute: u32,
    /// Finished jobs are deleted this long after they end (`None`: kept forever).
    pub job_keep: Option<Duration>,
    /// Audit rows are deleted this long after they were written (`None`: kept forever).
    pub audit_keep: Option<Duration>,
    /// HTTPS settings; `None` only when `allow_plain_http` is set.
    pub tls: Option<TlsConfig>,
    /// Longest a request body may take to arrive (408 and the connection
    /// closed after it).
    pub body_read_timeout: Duration,
    /// Requests without a credential in flight at once (503 past it).
    pub max_unauthenticated: usize,
    /// Requests without a credential in flight at once from one address
    /// (IPv6: one /64; 429 past it).
    pub max_unauthenticated_per_address: usize,
    /// Largest job spec (its args, env, SQL, parameters in total, as JSON).
    pub max_spec_bytes: usize,
    /// Threads of the async runtime (`worker_threads`; default: the CPUs
    /// the process may use, less one, at least one).
    pub worker_threads: usize,
    /// `[drills]`.
    pub drills: DrillsConfig,
    /// `[notifications]`: webhooks.
    pub notifications: NotificationsConfig,
    /// Old environment variables found set (not applied): one WARN line each.
    pub warnings: Vec<String>,
}

impl Config {
    /// Load and validate: `path` (optional TOML file), `env` (the process
    /// environment, passed in for testability), then `flags`.
    pub fn load(
        path: Option<&std::path::Path>,
        env: &BTreeMap<String, String>,
        flags: &Flags,
    ) -> Result<Config, Error> {
        let (mut file, src) = Sources::read(path)?;
        let at = Sources {
            path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            src,
            env,
            flags,
        };
        let listen = at.listen(&file.listen)?;
        let (state_dir, database) = at.paths(&mut file);
        let timing = at.timing(&file)?;
        let sizes = at.sizes(&file)?;
        let job_keep = at.keep(
            "job_keep",
            env::CONTROLLER_JOB_KEEP,
            &file.job_keep,
            Duration::from_secs(30 * 86_400),
        )?;
        let audit_keep = at.keep(
            "audit_keep",
            env::CONTROLLER_AUDIT_KEEP,
            &file.audit_keep,
            Duration::from_secs(90 * 86_400),
        )?;
        let plain = at.allow_plain_http(file.allow_plain_http)?;
        let tls = at.tls(file.tls.take(), plain)?;
        let log_level = env
            .get(env::CONTROLLER_LOG.name)
            .cloned()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let log_format = at.log_format(file.log_format)?;
        let sync = file.sync.unwrap_or(SyncMode::Full);
        let store = at.store(file.store.take(), database.clone(), sync)?;
        let notifications = at.notifications(file.notifications.take())?;
        Ok(Config {
            listen,
            state_dir,
            database,
            sync,
            store,
            poll_hold: timing.poll_hold,
            default_lease_ttl: timing.default_lease_ttl,
            max_body_bytes: sizes.max_body_bytes,
            max_log_tail_bytes: sizes.max_log_tail_bytes,
            agent_offline_after: timing.agent_offline_after,
            log_level,
            log_format,
            max_output_bytes: sizes.max_output_bytes,
            enroll_per_minute: sizes.enroll_per_minute,
            job_keep,
            audit_keep,
            tls,
            body_read_timeout: timing.body_read_timeout,
            max_unauthenticated: sizes.max_unauthenticated,
            max_unauthenticated_per_address: sizes.max_unauthenticated_per_address,
            max_spec_bytes: sizes.max_spec_bytes,
            worker_threads: sizes.worker_threads,
            drills: file.drills.unwrap_or_default(),
            notifications,
            warnings: env::old_name_warnings(env::CONTROLLER_OLD, |n| env.contains_key(n)),
        })
    }
}

/// Where the values of one load come from: the file (its text kept for line
/// numbers in errors), the environment and the flags.
struct Sources<'a> {
    path: String,
    src: String,
    env: &'a BTreeMap<String, String>,
    flags: &'a Flags,
}

/// The durations of [`Config`].
struct Timing {
    poll_hold: Duration,
    default_lease_ttl: Duration,
    agent_offline_after: Duration,
    body_read_timeout: Duration,
}

/// The sizes and counts of [`Config`].
struct Sizes {
    max_body_bytes: usize,
    max_log_tail_bytes: usize,
    max_output_bytes: usize,
    max_spec_bytes: usize,
    enroll_per_minute: u32,
    max_unauthenticated: usize,
    max_unauthenticated_per_address: usize,
    worker_threads: usize,
}

/// Most runtime threads `worker_threads` accepts.
const MAX_WORKER_THREADS: usize = 256;

/// The runtime's threads when `worker_threads` is not set: one less than
/// the CPUs this process may use (affinity and cgroup quota), at least one.
/// The SQLite store's connection threads and the kernel's network and disk
/// work run beside the runtime; on a small host a second runtime thread
/// mostly costs wake-ups (benchmark `trickle` on 2 CPUs, alternated runs:
/// 0.3 – 1.7 points of a core less with one thread; throughput unchanged).
pub fn default_worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .clamp(1, MAX_WORKER_THREADS)
}

impl Sources<'_> {
    /// The file's parsed keys and its text (none: defaults, empty text).
    fn read(path: Option<&std::path::Path>) -> Result<(FileConfig, String), ConfigError> {
        let Some(p) = path else {
            return Ok((FileConfig::default(), String::new()));
        };
        let path_s = p.display().to_string();
        let src = std::fs::read_to_string(p).map_err(|e| ConfigError {
            origin: Source::File(path_s.clone()),
            key: String::new(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Ok((parse_toml::<FileConfig>(&path_s, &src)?, src))
    }

    fn file_err(&self, key: &str, msg: String) -> ConfigError {
        ConfigError::in_file(&self.path, &self.src, key, msg)
    }

    fn env_err(&self, var: &str, key: &str, msg: String) -> ConfigError {
        ConfigError {
            origin: Source::Env(var.to_owned()),
            key: key.to_owned(),
            line: None,
            message: msg,
        }
    }

    fn flag_err(&self, flag: &str, msg: String) -> ConfigError {
        ConfigError {
            origin: Source::Flag(flag.to_owned()),
            key: flag.replace('-', "_"),
            line: None,
            message: msg,
        }
    }

    fn listen(&self, file_v: &Option<String>) -> Result<SocketAddr, ConfigError> {
        if let Some(v) = &self.flags.listen {
            parse_addr(v).map_err(|m| self.flag_err("listen", m))
        } else if let Some(v) = self.env.get(env::CONTROLLER_LISTEN.name) {
            parse_addr(v).map_err(|m| self.env_err(env::CONTROLLER_LISTEN.name, "listen", m))
        } else if let Some(v) = file_v {
            parse_addr(v).map_err(|m| self.file_err("listen", m))
        } else {
            Ok(SocketAddr::from((
                [127, 0, 0, 1],
                baton_proto::DEFAULT_PORT,
            )))
        }
    }

    /// The state dir and the database file (relative: under the state dir).
    fn paths(&self, file: &mut FileConfig) -> (PathBuf, PathBuf) {
        let state_dir = self
            .flags
            .state_dir
            .clone()
            .or_else(|| {
                self.env
                    .get(env::CONTROLLER_STATE_DIR.name)
                    .map(PathBuf::from)
            })
            .or(file.state_dir.take())
            .unwrap_or_else(|| PathBuf::from("/var/lib/baton/controller"));
        let database = match file.database.take() {
            Some(d) if d.is_relative() => state_dir.join(d),
            Some(d) => d,
            None => state_dir.join("baton.db"),
        };
        (state_dir, database)
    }

    /// A duration key: environment, then file, then `default`.
    fn dur(
        &self,
        key: &str,
        var: EnvVar,
        file_v: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let var = var.name;
        if let Some(v) = self.env.get(var) {
            humantime::parse_duration(v).map_err(|e| self.env_err(var, key, e.to_string()))
        } else if let Some(v) = file_v {
            humantime::parse_duration(v).map_err(|e| self.file_err(key, e.to_string()))
        } else {
            Ok(default)
        }
    }

    /// A retention key: a duration of at least 1 s, or `forever` (`None`).
    fn keep(
        &self,
        key: &str,
        var: EnvVar,
        file_v: &Option<String>,
        default: Duration,
    ) -> Result<Option<Duration>, ConfigError> {
        let var = var.name;
        let (text, from_env) = match self.env.get(var) {
            Some(v) => (Some(v), true),
            None => (file_v.as_ref(), false),
        };
        let err = |m: String| {
            if from_env {
                self.env_err(var, key, m)
            } else {
                self.file_err(key, m)
            }
        };
        match text.map(String::as_str) {
            None => Ok(Some(default)),
            Some("forever") => Ok(None),
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(1) => Ok(Some(d)),
                Ok(_) => Err(err("must be at least 1s, or \"forever\"".into())),
                Err(e) => Err(err(format!(
                    "{e} (a duration like \"30d\", or \"forever\")"
                ))),
            },
        }
    }

    fn timing(&self, file: &FileConfig) -> Result<Timing, ConfigError> {
        let poll_hold = self.dur(
            "poll_hold",
            env::CONTROLLER_POLL_HOLD,
            &file.poll_hold,
            Duration::from_millis(limits::DEFAULT_POLL_HOLD_MS),
        )?;
        if poll_hold > Duration::from_secs(300) {
            return Err(self.file_err("poll_hold", "must be at most 5m".into()));
        }
        let default_lease_ttl = self.dur(
            "default_lease_ttl",
            env::CONTROLLER_DEFAULT_LEASE_TTL,
            &file.default_lease_ttl,
            Duration::from_millis(limits::DEFAULT_LEASE_TTL_MS),
        )?;
        let ttl_ms = default_lease_ttl.as_millis() as u64;
        if !(limits::MIN_LEASE_TTL_MS..=limits::MAX_LEASE_TTL_MS).contains(&ttl_ms) {
            return Err(self.file_err("default_lease_ttl", "must be between 2s and 1h".into()));
        }
        let agent_offline_after = self.dur(
            "agent_offline_after",
            env::CONTROLLER_AGENT_OFFLINE_AFTER,
            &file.agent_offline_after,
            poll_hold + Duration::from_secs(20),
        )?;
        let body_read_timeout = self.dur(
            "body_read_timeout",
            env::CONTROLLER_BODY_READ_TIMEOUT,
            &file.body_read_timeout,
            Duration::from_secs(30),
        )?;
        if !(Duration::from_millis(100)..=Duration::from_secs(600)).contains(&body_read_timeout) {
            return Err(self.file_err("body_read_timeout", "must be between 100ms and 10m".into()));
        }
        Ok(Timing {
            poll_hold,
            default_lease_ttl,
            agent_offline_after,
            body_read_timeout,
        })
    }

    fn sizes(&self, file: &FileConfig) -> Result<Sizes, ConfigError> {
        let bad = |key: &str, msg: &str| Err(self.file_err(key, msg.into()));
        let max_body_bytes = file.max_body_bytes.unwrap_or(4 << 20);
        if !(1024..=64 << 20).contains(&max_body_bytes) {
            return bad("max_body_bytes", "must be between 1024 and 67108864");
        }
        let max_log_tail_bytes = file.max_log_tail_bytes.unwrap_or(16 << 10);
        if max_log_tail_bytes > max_body_bytes {
            return bad("max_log_tail_bytes", "must not exceed max_body_bytes");
        }
        let max_output_bytes = file.max_output_bytes.unwrap_or(1 << 20);
        if max_output_bytes > max_body_bytes / 2 {
            return bad(
                "max_output_bytes",
                "must be at most half of max_body_bytes (a completion carries stdout and stderr)",
            );
        }
        let enroll_per_minute = file.enroll_per_minute.unwrap_or(10);
        if enroll_per_minute == 0 {
            return bad("enroll_per_minute", "must be at least 1");
        }
        let max_unauthenticated = file.max_unauthenticated.unwrap_or(256);
        if !(1..=100_000).contains(&max_unauthenticated) {
            return bad("max_unauthenticated", "must be between 1 and 100000");
        }
        let max_unauthenticated_per_address = file.max_unauthenticated_per_address.unwrap_or(16);
        if !(1..=max_unauthenticated).contains(&max_unauthenticated_per_address) {
            return bad(
                "max_unauthenticated_per_address",
                "must be between 1 and max_unauthenticated",
            );
        }
        let max_spec_bytes = file.max_spec_bytes.unwrap_or(256 << 10);
        if !(1024..=max_body_bytes).contains(&max_spec_bytes) {
            return bad("max_spec_bytes", "must be between 1024 and max_body_bytes");
        }
        let worker_threads = file.worker_threads.unwrap_or_else(default_worker_threads);
        if !(1..=MAX_WORKER_THREADS).contains(&worker_threads) {
            return Err(self.file_err(
                "worker_threads",
                format!("must be between 1 and {MAX_WORKER_THREADS}"),
            ));
        }
        Ok(Sizes {
            worker_threads,
            max_body_bytes,
            max_log_tail_bytes,
            max_output_bytes,
            max_spec_bytes,
            enroll_per_minute,
            max_unauthenticated,
            max_unauthenticated_per_address,
        })
    }

    /// `log_format`: `BATON_CONTROLLER_LOG_FORMAT`, else the file, else text.
    fn log_format(&self, file_v: Option<LogFormat>) -> Result<LogFormat, ConfigError> {
        let var = env::CONTROLLER_LOG_FORMAT.name;
        match self.env.get(var) {
            Some(v) => v.parse().map_err(|m| self.env_err(var, "log_format", m)),
            None => Ok(file_v.unwrap_or_default()),
        }
    }

    fn allow_plain_http(&self, file_v: Option<bool>) -> Result<bool, ConfigError> {
        match self.env.get(env::CONTROLLER_ALLOW_PLAIN_HTTP.name) {
            Some(v) => parse_bool(v).ok_or_else(|| {
                self.env_err(
                    env::CONTROLLER_ALLOW_PLAIN_HTTP.name,
                    "allow_plain_http",
                    "must be true or false".into(),
                )
            }),
            None => Ok(file_v.unwrap_or(false)),
        }
    }

    /// `[tls]` checked (files readable, a client CA when client
    /// certificates are required); `None` only with plain HTTP allowed.
    fn tls(&self, file_v: Option<FileTls>, plain: bool) -> Result<Option<TlsConfig>, ConfigError> {
        let Some(t) = file_v else {
            if plain {
                return Ok(None);
            }
            return Err(ConfigError {
                origin: if self.path.is_empty() {
                    Source::Default
                } else {
                    Source::File(self.path.clone())
                },
                key: "tls".into(),
                line: None,
                message: "configure [tls] cert_file and key_file, or set allow_plain_http = true to serve plain HTTP".into(),
            });
        };
        let cert_file = t
            .cert_file
            .ok_or_else(|| self.file_err("tls", "`cert_file` is required in [tls]".into()))?;
        let key_file = t
            .key_file
            .ok_or_else(|| self.file_err("tls", "`key_file` is required in [tls]".into()))?;
        for (key, path) in [
            ("tls.cert_file", Some(&cert_file)),
            ("tls.key_file", Some(&key_file)),
            ("tls.client_ca_file", t.client_ca_file.as_ref()),
        ] {
            if let Some(p) = path
                && let Err(e) = std::fs::metadata(p)
            {
                return Err(self.file_err(key, format!("{}: {e}", p.display())));
            }
        }
        check_secret_file(&key_file)
            .map_err(|m| self.file_err("tls.key_file", format!("{}: {m}", key_file.display())))?;
        if t.require_agent_client_cert && t.client_ca_file.is_none() {
            return Err(self.file_err(
                "tls.require_agent_client_cert",
                "needs tls.client_ca_file to verify client certificates".into(),
            ));
        }
        Ok(Some(TlsConfig {
            cert_file,
            key_file,
            client_ca_file: t.client_ca_file,
            require_agent_client_cert: t.require_agent_client_cert,
        }))
    }
}

/// Refuse a file holding a secret that group or others may open (Unix, like
/// ssh; the rule is [`baton_proto::env::secret_mode_problem`]). The message has
/// no path in front. On Windows there is no check (ACLs, not mode bits).
/// Used for `tls.key_file` and by batonctl for `--token-file`.
pub fn check_secret_file(path: &std::path::Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
        let shown = path.display().to_string();
        if let Some(m) = env::secret_mode_problem(&shown, meta.permissions().mode()) {
            return Err(m);
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not an address like 127.0.0.1:8420"))
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
