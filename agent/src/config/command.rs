//! `[command]` of the agent's config: the program allow-list, the variables a
//! job may set, output bounds.

use baton_proto::config::ConfigError;
use serde::Deserialize;
use std::path::Path;

use super::Resolver;

const DEFAULT_MAX_OUTPUT_BYTES: u64 = 1024 * 1024;
const MAX_MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_LOG_TAIL_BYTES: u64 = 4096;
const MAX_LOG_TAIL_BYTES: u64 = 1024 * 1024;

/// `[command]`: what command jobs may run and how much output is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    /// Allowed programs: absolute paths, or bare names resolved through PATH at spawn.
    pub allow: Vec<String>,
    /// Environment variables a job may set (none by default: `LD_PRELOAD` and
    /// friends would run anything through any allowed program).
    pub allow_env: Vec<String>,
    /// Bytes kept per stream (the first ones).
    pub max_output_bytes: usize,
    /// Bytes of the rolling log tail sent with heartbeats.
    pub log_tail_bytes: usize,
}

impl Default for CommandConfig {
    fn default() -> Self {
        CommandConfig {
            allow: Vec::new(),
            allow_env: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES as usize,
            log_tail_bytes: DEFAULT_LOG_TAIL_BYTES as usize,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCommand {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_env: Vec<String>,
    max_output_bytes: Option<i64>,
    log_tail_bytes: Option<i64>,
}

impl Resolver<'_> {
    pub(super) fn command(&self, raw: Option<FileCommand>) -> Result<CommandConfig, ConfigError> {
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
            allow_env: match raw.allow_env.iter().find(|n| !env_name(n)) {
                Some(bad) => {
                    return Err(ctx.err(
                        &src,
                        "command.allow_env",
                        format!("{bad:?} is not an environment variable name"),
                    ));
                }
                None => raw.allow_env,
            },
        })
    }
}

/// Whether `name` can be an environment variable's name (not empty, no `=`,
/// no NUL).
fn env_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['=', '\0'])
}
