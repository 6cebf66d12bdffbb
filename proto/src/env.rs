//! The environment variables of the three programs, one table each, and the
//! permission check of secret files (pure: callers pass the mode bits).
//!
//! The names are disjoint so that one host can run all three with one shell
//! environment: the agent reads only `BATON_AGENT_*`, the controller only
//! `BATON_CONTROLLER_*`, batonctl only `BATON_URL`, `BATON_TOKEN`,
//! `BATON_TOKEN_FILE` and `BATON_CA_FILE`. Each program ignores the others'
//! names. The names the daemons read before the split ([`AGENT_OLD`],
//! [`CONTROLLER_OLD`]) are not applied; a daemon that finds one of its own old
//! names set logs one WARN naming the new variable, except for a name that is
//! now batonctl's (then it stays silent: that variable is meant for batonctl).
//! `--help` of each program lists its table ([`help`]); the README has the same tables.

/// One environment variable a program reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets (the config key it overrides, when there is one).
    pub meaning: &'static str,
}

const fn var(name: &'static str, meaning: &'static str) -> EnvVar {
    EnvVar { name, meaning }
}

/// `baton-agent`: config file (like `--config`).
pub const AGENT_CONFIG: EnvVar = var("BATON_AGENT_CONFIG", "config file (like --config)");
/// `baton-agent`: `agent_id`.
pub const AGENT_ID: EnvVar = var("BATON_AGENT_ID", "agent_id asked for at enrollment");
/// `baton-agent`: `controller_url`.
pub const AGENT_CONTROLLER_URL: EnvVar = var(
    "BATON_AGENT_CONTROLLER_URL",
    "controller_url (http or https)",
);
/// `baton-agent`: `controller_urls`, comma-separated.
pub const AGENT_CONTROLLER_URLS: EnvVar = var(
    "BATON_AGENT_CONTROLLER_URLS",
    "controller_urls, comma-separated (several controllers on one database)",
);
/// `baton-agent`: `groups`, comma-separated.
pub const AGENT_GROUPS: EnvVar = var("BATON_AGENT_GROUPS", "groups, comma-separated");
/// `baton-agent`: `slots`.
pub const AGENT_SLOTS: EnvVar = var("BATON_AGENT_SLOTS", "slots (jobs run at once, 1-256)");
/// `baton-agent`: `state_dir`.
pub const AGENT_STATE_DIR: EnvVar = var("BATON_AGENT_STATE_DIR", "state_dir");
/// `baton-agent`: `log_level`.
pub const AGENT_LOG: EnvVar = var(
    "BATON_AGENT_LOG",
    "log_level (a tracing filter; RUST_LOG wins when set)",
);
/// `baton-agent`: `log_format`.
pub const AGENT_LOG_FORMAT: EnvVar = var("BATON_AGENT_LOG_FORMAT", "log_format (text or json)");
/// `baton-agent`: `tls.ca_file`.
pub const AGENT_TLS_CA_FILE: EnvVar = var("BATON_AGENT_TLS_CA_FILE", "tls.ca_file");
/// `baton-agent`: `tls.client_cert_file`.
pub const AGENT_TLS_CLIENT_CERT_FILE: EnvVar =
    var("BATON_AGENT_TLS_CLIENT_CERT_FILE", "tls.client_cert_file");
/// `baton-agent`: `tls.client_key_file`.
pub const AGENT_TLS_CLIENT_KEY_FILE: EnvVar = var(
    "BATON_AGENT_TLS_CLIENT_KEY_FILE",
    "tls.client_key_file (mode 0600 or stricter)",
);
/// `baton-agent`: `enrollment_token_file`.
pub const AGENT_ENROLLMENT_TOKEN_FILE: EnvVar = var(
    "BATON_AGENT_ENROLLMENT_TOKEN_FILE",
    "enrollment_token_file (mode 0600 or stricter)",
);
/// `baton-agent`: the enrollment token itself (containers).
pub const AGENT_ENROLLMENT_TOKEN: EnvVar = var(
    "BATON_AGENT_ENROLLMENT_TOKEN",
    "the enrollment token itself (wins over the file)",
);
/// `baton-agent`: the removed static agent token, refused with exit 78.
pub const AGENT_TOKEN: EnvVar = var(
    "BATON_AGENT_TOKEN",
    "removed (agents enroll now): refused, exit 78",
);

/// Every variable `baton-agent` reads.
pub const AGENT: &[EnvVar] = &[
    AGENT_CONFIG,
    AGENT_ID,
    AGENT_CONTROLLER_URL,
    AGENT_CONTROLLER_URLS,
    AGENT_GROUPS,
    AGENT_SLOTS,
    AGENT_STATE_DIR,
    AGENT_LOG,
    AGENT_LOG_FORMAT,
    AGENT_TLS_CA_FILE,
    AGENT_TLS_CLIENT_CERT_FILE,
    AGENT_TLS_CLIENT_KEY_FILE,
    AGENT_ENROLLMENT_TOKEN_FILE,
    AGENT_ENROLLMENT_TOKEN,
    AGENT_TOKEN,
];

/// The agent's names before the split: `(old, new)`. Not applied; a WARN
/// names the new one (`None`: now batonctl's, no WARN).
pub const AGENT_OLD: &[(&str, Option<&str>)] = &[
    ("BATON_CONFIG", Some(AGENT_CONFIG.name)),
    ("BATON_CONTROLLER_URL", Some(AGENT_CONTROLLER_URL.name)),
    ("BATON_GROUPS", Some(AGENT_GROUPS.name)),
    ("BATON_SLOTS", Some(AGENT_SLOTS.name)),
    ("BATON_STATE_DIR", Some(AGENT_STATE_DIR.name)),
    ("BATON_LOG", Some(AGENT_LOG.name)),
    ("BATON_LOG_FORMAT", Some(AGENT_LOG_FORMAT.name)),
    ("BATON_TLS_CA_FILE", Some(AGENT_TLS_CA_FILE.name)),
    (
        "BATON_TLS_CLIENT_CERT_FILE",
        Some(AGENT_TLS_CLIENT_CERT_FILE.name),
    ),
    (
        "BATON_TLS_CLIENT_KEY_FILE",
        Some(AGENT_TLS_CLIENT_KEY_FILE.name),
    ),
    (
        "BATON_ENROLLMENT_TOKEN_FILE",
        Some(AGENT_ENROLLMENT_TOKEN_FILE.name),
    ),
    ("BATON_ENROLLMENT_TOKEN", Some(AGENT_ENROLLMENT_TOKEN.name)),
    // Refused before the split; batonctl's name now: silent.
    ("BATON_TOKEN_FILE", None),
];

/// `baton-controller`: config file (like `--config`).
pub const CONTROLLER_CONFIG: EnvVar = var("BATON_CONTROLLER_CONFIG", "config file (like --config)");
/// `baton-controller`: `listen`.
pub const CONTROLLER_LISTEN: EnvVar = var("BATON_CONTROLLER_LISTEN", "listen address");
/// `baton-controller`: `state_dir`.
pub const CONTROLLER_STATE_DIR: EnvVar = var("BATON_CONTROLLER_STATE_DIR", "state_dir");
/// `baton-controller`: `[store] url`.
pub const CONTROLLER_STORE_URL: EnvVar = var(
    "BATON_CONTROLLER_STORE_URL",
    "[store] url (postgres://… for several controllers; default: SQLite in state_dir)",
);
/// `baton-controller`: the PostgreSQL password (instead of `[store] password_file`).
pub const CONTROLLER_STORE_PASSWORD: EnvVar = var(
    "BATON_CONTROLLER_STORE_PASSWORD",
    "the PostgreSQL password (or [store] password_file)",
);
/// `baton-controller`: `log_level`.
pub const CONTROLLER_LOG: EnvVar = var(
    "BATON_CONTROLLER_LOG",
    "log_level (a tracing filter; RUST_LOG wins when set)",
);
/// `baton-controller`: `log_format`.
pub const CONTROLLER_LOG_FORMAT: EnvVar =
    var("BATON_CONTROLLER_LOG_FORMAT", "log_format (text or json)");
/// `baton-controller`: `poll_hold`.
pub const CONTROLLER_POLL_HOLD: EnvVar = var("BATON_CONTROLLER_POLL_HOLD", "poll_hold");
/// `baton-controller`: `default_lease_ttl`.
pub const CONTROLLER_DEFAULT_LEASE_TTL: EnvVar =
    var("BATON_CONTROLLER_DEFAULT_LEASE_TTL", "default_lease_ttl");
/// `baton-controller`: `agent_offline_after`.
pub const CONTROLLER_AGENT_OFFLINE_AFTER: EnvVar = var(
    "BATON_CONTROLLER_AGENT_OFFLINE_AFTER",
    "agent_offline_after",
);
/// `baton-controller`: `body_read_timeout`.
pub const CONTROLLER_BODY_READ_TIMEOUT: EnvVar =
    var("BATON_CONTROLLER_BODY_READ_TIMEOUT", "body_read_timeout");
/// `baton-controller`: `job_keep`.
pub const CONTROLLER_JOB_KEEP: EnvVar = var("BATON_CONTROLLER_JOB_KEEP", "job_keep");
/// `baton-controller`: `audit_keep`.
pub const CONTROLLER_AUDIT_KEEP: EnvVar = var("BATON_CONTROLLER_AUDIT_KEEP", "audit_keep");
/// `baton-controller`: `allow_plain_http`.
pub const CONTROLLER_ALLOW_PLAIN_HTTP: EnvVar = var(
    "BATON_CONTROLLER_ALLOW_PLAIN_HTTP",
    "allow_plain_http (true or false)",
);

/// Every variable `baton-controller` reads.
pub const CONTROLLER: &[EnvVar] = &[
    CONTROLLER_CONFIG,
    CONTROLLER_LISTEN,
    CONTROLLER_STATE_DIR,
    CONTROLLER_STORE_URL,
    CONTROLLER_STORE_PASSWORD,
    CONTROLLER_LOG,
    CONTROLLER_LOG_FORMAT,
    CONTROLLER_POLL_HOLD,
    CONTROLLER_DEFAULT_LEASE_TTL,
    CONTROLLER_AGENT_OFFLINE_AFTER,
    CONTROLLER_BODY_READ_TIMEOUT,
    CONTROLLER_JOB_KEEP,
    CONTROLLER_AUDIT_KEEP,
    CONTROLLER_ALLOW_PLAIN_HTTP,
];

/// The controller's names before the split: `(old, new)`. Not applied; a WARN names the new one.
pub const CONTROLLER_OLD: &[(&str, Option<&str>)] = &[
    ("BATON_CONFIG", Some(CONTROLLER_CONFIG.name)),
    ("BATON_LISTEN", Some(CONTROLLER_LISTEN.name)),
    ("BATON_STATE_DIR", Some(CONTROLLER_STATE_DIR.name)),
    ("BATON_LOG", Some(CONTROLLER_LOG.name)),
    ("BATON_LOG_FORMAT", Some(CONTROLLER_LOG_FORMAT.name)),
    ("BATON_POLL_HOLD", Some(CONTROLLER_POLL_HOLD.name)),
    (
        "BATON_DEFAULT_LEASE_TTL",
        Some(CONTROLLER_DEFAULT_LEASE_TTL.name),
    ),
    (
        "BATON_AGENT_OFFLINE_AFTER",
        Some(CONTROLLER_AGENT_OFFLINE_AFTER.name),
    ),
    (
        "BATON_BODY_READ_TIMEOUT",
        Some(CONTROLLER_BODY_READ_TIMEOUT.name),
    ),
    ("BATON_JOB_KEEP", Some(CONTROLLER_JOB_KEEP.name)),
    ("BATON_AUDIT_KEEP", Some(CONTROLLER_AUDIT_KEEP.name)),
    (
        "BATON_ALLOW_PLAIN_HTTP",
        Some(CONTROLLER_ALLOW_PLAIN_HTTP.name),
    ),
];

/// `batonctl`: `--url`.
pub const CTL_URL: EnvVar = var(
    "BATON_URL",
    "controller base URL, or several comma-separated (like --url, repeatable)",
);
/// `batonctl`: the operator token itself.
pub const CTL_TOKEN: EnvVar = var("BATON_TOKEN", "the operator token (the file wins)");
/// `batonctl`: `--token-file`.
pub const CTL_TOKEN_FILE: EnvVar = var(
    "BATON_TOKEN_FILE",
    "file holding the operator token (like --token-file; mode 0600 or stricter)",
);
/// `batonctl`: `--ca-file`.
pub const CTL_CA_FILE: EnvVar = var(
    "BATON_CA_FILE",
    "CA certificate(s) of an https controller (like --ca-file)",
);

/// Every variable `batonctl` reads.
pub const BATONCTL: &[EnvVar] = &[CTL_URL, CTL_TOKEN, CTL_TOKEN_FILE, CTL_CA_FILE];

/// The `--help` section listing `vars` (clap `after_help`).
pub fn help(vars: &[EnvVar]) -> String {
    let width = vars.iter().map(|v| v.name.len()).max().unwrap_or(0);
    let mut out = String::from("Environment variables (no other BATON_* names are read):\n");
    for v in vars {
        out.push_str(&format!("  {:width$}  {}\n", v.name, v.meaning));
    }
    out
}

/// The WARN lines for the old names in `old` that are set (`is_set`): each
/// names the new variable; an old name without a new one (now batonctl's)
/// gives none.
pub fn old_name_warnings(
    old: &[(&str, Option<&str>)],
    is_set: impl Fn(&str) -> bool,
) -> Vec<String> {
    old.iter()
        .filter_map(|(old, new)| new.filter(|_| is_set(old)).map(|new| (old, new)))
        .map(|(old, new)| {
            format!(
                "Environment variable {old} is no longer read and was ignored; set {new} instead"
            )
        })
        .collect()
}

/// Why the file `path` holding a secret may not be used: its permission bits
/// `mode` let group or others in (any of `0o077`), as ssh refuses such keys.
/// The message (without the path in front) says how to fix it. Unix only; on
/// Windows callers skip the check (ACLs, not mode bits).
pub fn secret_mode_problem(path: &str, mode: u32) -> Option<String> {
    let mode = mode & 0o7777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "holds a secret but is open to group or others (mode {mode:04o}); \
             run `chmod 600 {path}`"
        )
    })
}

#[cfg(test)]
mod tests;
