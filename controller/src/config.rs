//! Controller configuration: defaults → TOML file → `BATON_*` env → flags,
//! validated once at start. Every error names the source, key and line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use baton_proto::config::{ConfigError, Source, parse_toml};
use baton_proto::limits;
use serde::Deserialize;

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
    auth: Option<FileAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    #[serde(default)]
    operator_tokens: Vec<String>,
    #[serde(default)]
    agent_tokens: Vec<String>,
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
    /// Accepted operator tokens, as `sha256:<hex>` or plain (hashed on load).
    pub operator_tokens: Vec<String>,
    /// Accepted agent tokens, same forms.
    pub agent_tokens: Vec<String>,
}

impl Config {
    /// Load and validate: `path` (optional TOML file), `env` (the process
    /// environment, passed in for testability), then `flags`.
    pub fn load(
        path: Option<&std::path::Path>,
        env: &BTreeMap<String, String>,
        flags: &Flags,
    ) -> Result<Config, Error> {
        let (file, src, path_s) = match path {
            Some(p) => {
                let path_s = p.display().to_string();
                let src = std::fs::read_to_string(p).map_err(|e| ConfigError {
                    origin: Source::File(path_s.clone()),
                    key: String::new(),
                    line: None,
                    message: format!("cannot read: {e}"),
                })?;
                (parse_toml::<FileConfig>(&path_s, &src)?, src, path_s)
            }
            None => (FileConfig::default(), String::new(), String::new()),
        };
        let file_err = |key: &str, msg: String| ConfigError::in_file(&path_s, &src, key, msg);
        let env_err = |var: &str, key: &str, msg: String| ConfigError {
            origin: Source::Env(var.to_owned()),
            key: key.to_owned(),
            line: None,
            message: msg,
        };
        let flag_err = |flag: &str, msg: String| ConfigError {
            origin: Source::Flag(flag.to_owned()),
            key: flag.replace('-', "_"),
            line: None,
            message: msg,
        };

        // listen
        let listen = if let Some(v) = &flags.listen {
            parse_addr(v).map_err(|m| flag_err("listen", m))?
        } else if let Some(v) = env.get("BATON_LISTEN") {
            parse_addr(v).map_err(|m| env_err("BATON_LISTEN", "listen", m))?
        } else if let Some(v) = &file.listen {
            parse_addr(v).map_err(|m| file_err("listen", m))?
        } else {
            SocketAddr::from(([127, 0, 0, 1], baton_proto::DEFAULT_PORT))
        };

        let state_dir = flags
            .state_dir
            .clone()
            .or_else(|| env.get("BATON_STATE_DIR").map(PathBuf::from))
            .or(file.state_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/baton/controller"));
        let database = file
            .database
            .map(|d| {
                if d.is_relative() {
                    state_dir.join(d)
                } else {
                    d
                }
            })
            .unwrap_or_else(|| state_dir.join("baton.db"));

        let dur = |key: &str, var: &str, file_v: &Option<String>, default: Duration| {
            if let Some(v) = env.get(var) {
                humantime::parse_duration(v).map_err(|e| env_err(var, key, e.to_string()))
            } else if let Some(v) = file_v {
                humantime::parse_duration(v).map_err(|e| file_err(key, e.to_string()))
            } else {
                Ok(default)
            }
        };
        let poll_hold = dur(
            "poll_hold",
            "BATON_POLL_HOLD",
            &file.poll_hold,
            Duration::from_millis(limits::DEFAULT_POLL_HOLD_MS),
        )?;
        if poll_hold > Duration::from_secs(300) {
            return Err(file_err("poll_hold", "must be at most 5m".into()));
        }
        let default_lease_ttl = dur(
            "default_lease_ttl",
            "BATON_DEFAULT_LEASE_TTL",
            &file.default_lease_ttl,
            Duration::from_millis(limits::DEFAULT_LEASE_TTL_MS),
        )?;
        let ttl_ms = default_lease_ttl.as_millis() as u64;
        if !(limits::MIN_LEASE_TTL_MS..=limits::MAX_LEASE_TTL_MS).contains(&ttl_ms) {
            return Err(file_err(
                "default_lease_ttl",
                "must be between 2s and 1h".into(),
            ));
        }
        let agent_offline_after = dur(
            "agent_offline_after",
            "BATON_AGENT_OFFLINE_AFTER",
            &file.agent_offline_after,
            poll_hold + Duration::from_secs(20),
        )?;
        let max_body_bytes = file.max_body_bytes.unwrap_or(1 << 20);
        if !(1024..=64 << 20).contains(&max_body_bytes) {
            return Err(file_err(
                "max_body_bytes",
                "must be between 1024 and 67108864".into(),
            ));
        }
        let max_log_tail_bytes = file.max_log_tail_bytes.unwrap_or(16 << 10);
        if max_log_tail_bytes > max_body_bytes {
            return Err(file_err(
                "max_log_tail_bytes",
                "must not exceed max_body_bytes".into(),
            ));
        }

        let auth = file.auth.unwrap_or_default();
        let mut operator_tokens = auth.operator_tokens;
        let mut agent_tokens = auth.agent_tokens;
        for (i, t) in operator_tokens.iter().enumerate() {
            check_token(t).map_err(|m| file_err(&format!("auth.operator_tokens[{i}]"), m))?;
        }
        for (i, t) in agent_tokens.iter().enumerate() {
            check_token(t).map_err(|m| file_err(&format!("auth.agent_tokens[{i}]"), m))?;
        }
        if let Some(t) = env.get("BATON_OPERATOR_TOKEN") {
            check_token(t).map_err(|m| env_err("BATON_OPERATOR_TOKEN", "auth", m))?;
            operator_tokens.push(t.clone());
        }
        if let Some(t) = env.get("BATON_AGENT_TOKEN") {
            check_token(t).map_err(|m| env_err("BATON_AGENT_TOKEN", "auth", m))?;
            agent_tokens.push(t.clone());
        }
        if operator_tokens.is_empty() {
            return Err(ConfigError {
                origin: if path_s.is_empty() {
                    Source::Default
                } else {
                    Source::File(path_s.clone())
                },
                key: "auth.operator_tokens".into(),
                line: None,
                message: "at least one operator token is required (or BATON_OPERATOR_TOKEN)".into(),
            });
        }

        let log_level = env
            .get("BATON_LOG")
            .cloned()
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());

        Ok(Config {
            listen,
            state_dir,
            database,
            sync: file.sync.unwrap_or(SyncMode::Full),
            poll_hold,
            default_lease_ttl,
            max_body_bytes,
            max_log_tail_bytes,
            agent_offline_after,
            log_level,
            operator_tokens,
            agent_tokens,
        })
    }
}

fn parse_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("`{v}` is not an address like 127.0.0.1:8420"))
}

fn check_token(t: &str) -> Result<(), String> {
    if let Some(hex_part) = t.strip_prefix("sha256:") {
        if hex_part.len() != 64 || hex::decode(hex_part).is_err() {
            return Err("a `sha256:` token must be followed by 64 hex digits".into());
        }
    } else if t.len() < 16 {
        return Err("tokens must be at least 16 characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(src: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(src.as_bytes()).expect("write");
        f
    }

    const TOKENS: &str = "[auth]\noperator_tokens = [\"0123456789abcdef\"]\n";

    #[test]
    fn layering_file_env_flag() {
        let f = write(&format!(
            "listen = \"127.0.0.1:9000\"\npoll_hold = \"5s\"\n{TOKENS}"
        ));
        let mut env = BTreeMap::new();
        let c = Config::load(Some(f.path()), &env, &Flags::default()).expect("load");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.poll_hold, Duration::from_secs(5));
        env.insert("BATON_LISTEN".into(), "127.0.0.1:9001".into());
        let c = Config::load(Some(f.path()), &env, &Flags::default()).expect("load");
        assert_eq!(c.listen.port(), 9001);
        let flags = Flags {
            listen: Some("127.0.0.1:9002".into()),
            state_dir: None,
        };
        let c = Config::load(Some(f.path()), &env, &flags).expect("load");
        assert_eq!(c.listen.port(), 9002);
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let f = write(&format!("# x\nlisten = \"nowhere\"\n{TOKENS}"));
        let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
            .expect_err("bad listen");
        assert_eq!(e.key, "listen");
        assert_eq!(e.line, Some(2));
        let f = write(&format!("default_lease_ttl = \"1s\"\n{TOKENS}"));
        let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
            .expect_err("ttl below floor");
        assert_eq!(e.key, "default_lease_ttl");
        assert_eq!(e.line, Some(1));
    }

    #[test]
    fn unknown_key_and_short_token_refused() {
        let f = write(&format!("{TOKENS}colour = 1\n"));
        let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
            .expect_err("unknown key");
        assert_eq!(e.line, Some(3));
        let f = write("[auth]\noperator_tokens = [\"short\"]\n");
        let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
            .expect_err("short token");
        assert_eq!(e.key, "auth.operator_tokens[0]");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn operator_token_required() {
        let e = Config::load(None, &BTreeMap::new(), &Flags::default()).expect_err("no token");
        assert_eq!(e.key, "auth.operator_tokens");
    }
}
