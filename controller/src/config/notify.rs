//! `[notifications]`: webhooks told about failures (ARCHITECTURE.md
//! "Notifications").
//!
//! ```toml
//! [notifications]
//! offline_after = "5m"        # agent_offline: not seen for this long
//! max_attempts = 12           # a delivery is given up after this many
//! max_age = "24h"             # ... or when its event is this old
//! keep = "30d"                # ended deliveries and their events are then deleted
//!
//! [[notifications.webhooks]]
//! name = "ops"
//! url = "https://hooks.example.com/baton"
//! ca_file = "/etc/baton/hooks-ca.pem"          # optional pinned CA (https)
//! secret_file = "/etc/baton/hooks-ops.secret"  # or secret_env = "BATON_HOOK_OPS"
//! events = ["job_failed", "agent_offline"]     # default: every event
//! groups = ["nightly"]                         # default: any group
//! labels = { team = "db" }                     # default: any labels
//! ```
//!
//! The signing secret is never written in the file: it is read from
//! `secret_file` (mode 0600 or stricter) or the environment variable named
//! by `secret_env`, and never logged (its `Debug` is redacted).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use baton_proto::config::ConfigError;
use baton_proto::notify::EVENTS;
use serde::Deserialize;

use super::Sources;

/// `[notifications]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileNotifications {
    offline_after: Option<String>,
    max_attempts: Option<u32>,
    max_age: Option<String>,
    keep: Option<String>,
    #[serde(default)]
    webhooks: Vec<FileWebhook>,
}

/// One `[[notifications.webhooks]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    name: String,
    url: String,
    ca_file: Option<PathBuf>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A webhook's signing secret; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from its text (tests).
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The bytes to key the HMAC with.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A webhook, validated.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Unique name (deliveries name it).
    pub name: String,
    /// Where to POST (http or https).
    pub url: reqwest::Url,
    /// A pinned CA for an https URL (PEM).
    pub ca_file: Option<PathBuf>,
    /// The HMAC key.
    pub secret: Secret,
    /// Events wanted (empty: all).
    pub events: Vec<String>,
    /// Groups (empty: any).
    pub groups: Vec<String>,
    /// Labels an event must carry (empty: any).
    pub labels: BTreeMap<String, String>,
}

/// `[notifications]`, validated.
#[derive(Debug, Clone)]
pub struct NotificationsConfig {
    /// The webhooks (none: notifications off, no event is sent).
    pub webhooks: Vec<Webhook>,
    /// `agent_offline` fires for an agent not seen for this long.
    pub offline_after: Duration,
    /// A delivery is given up after this many attempts.
    pub max_attempts: u32,
    /// ... or once its event is this old.
    pub max_age: Duration,
    /// Events whose deliveries ended are deleted this long after they
    /// happened (a cause still true then, an agent still offline, is
    /// reported again).
    pub keep: Duration,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            webhooks: Vec::new(),
            offline_after: Duration::from_secs(300),
            max_attempts: 12,
            max_age: Duration::from_secs(86_400),
            keep: Duration::from_secs(30 * 86_400),
        }
    }
}

impl Sources<'_> {
    /// `[notifications]` checked: names unique, URLs http(s), events known,
    /// each secret read now (a missing file or variable names its key).
    pub(super) fn notifications(
        &self,
        file: Option<FileNotifications>,
    ) -> Result<NotificationsConfig, ConfigError> {
        let Some(file) = file else {
            return Ok(NotificationsConfig::default());
        };
        let d = NotificationsConfig::default();
        let dur = |key: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(1) => Ok(d),
                Ok(_) => Err(self.file_err(key, "must be at least 1s".into())),
                Err(e) => Err(self.file_err(key, e.to_string())),
            },
        };
        let offline_after = dur(
            "notifications.offline_after",
            &file.offline_after,
            d.offline_after,
        )?;
        let max_age = dur("notifications.max_age", &file.max_age, d.max_age)?;
        let keep = dur("notifications.keep", &file.keep, d.keep)?;
        if keep < max_age {
            return Err(self.file_err("notifications.keep", "must be at least max_age".into()));
        }
        let max_attempts = file.max_attempts.unwrap_or(d.max_attempts);
        if !(1..=1000).contains(&max_attempts) {
            return Err(self.file_err(
                "notifications.max_attempts",
                "must be between 1 and 1000".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut webhooks = Vec::with_capacity(file.webhooks.len());
        for (i, w) in file.webhooks.into_iter().enumerate() {
            let at = format!("notifications.webhooks[{i}]");
            if !names.insert(w.name.clone()) {
                return Err(
                    self.file_err(&format!("{at}.name"), format!("`{}` is used twice", w.name))
                );
            }
            webhooks.push(self.webhook(&at, w)?);
        }
        Ok(NotificationsConfig {
            webhooks,
            offline_after,
            max_attempts,
            max_age,
            keep,
        })
    }

    fn webhook(&self, at: &str, w: FileWebhook) -> Result<Webhook, ConfigError> {
        let err = |key: &str, m: String| self.file_err(&format!("{at}.{key}"), m);
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        if !name_ok(&w.name) {
            return Err(err("name", "must be 1–64 of A-Z a-z 0-9 _ . -".into()));
        }
        let url =
            reqwest::Url::parse(&w.url).map_err(|e| err("url", format!("`{}`: {e}", w.url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(err(
                "url",
                "must be an http:// or https:// URL with a host".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(err(
                "url",
                "must not hold credentials (the body is signed with the secret)".into(),
            ));
        }
        if let Some(ca) = &w.ca_file {
            if url.scheme() != "https" {
                return Err(err("ca_file", "needs an https:// url".into()));
            }
            let pem =
                std::fs::read(ca).map_err(|e| err("ca_file", format!("{}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                err(
                    "ca_file",
                    format!("{}: not a PEM certificate: {e}", ca.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(err(
                    "ca_file",
                    format!("{}: holds no PEM certificate", ca.display()),
                ));
            }
        }
        for e in &w.events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(err(
                    "events",
                    format!("`{e}` is not one of {}", EVENTS.join(", ")),
                ));
            }
        }
        let secret = self.webhook_secret(at, &w)?;
        Ok(Webhook {
            name: w.name,
            url,
            ca_file: w.ca_file,
            secret,
            events: w.events,
            groups: w.groups,
            labels: w.labels,
        })
    }

    fn webhook_secret(&self, at: &str, w: &FileWebhook) -> Result<Secret, ConfigError> {
        let err = |key: &str, m: String| self.file_err(&format!("{at}.{key}"), m);
        let text = match (&w.secret_file, &w.secret_env) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "secret_env",
                    "set secret_file or secret_env, not both".into(),
                ));
            }
            (None, None) => {
                return Err(err(
                    "name",
                    "needs secret_file or secret_env (the signing secret is never written in this file)"
                        .into(),
                ));
            }
            (Some(path), None) => {
                super::check_secret_file(path)
                    .map_err(|m| err("secret_file", format!("{}: {m}", path.display())))?;
                std::fs::read_to_string(path)
                    .map_err(|e| err("secret_file", format!("{}: {e}", path.display())))?
            }
            (None, Some(var)) => self
                .env
                .get(var)
                .cloned()
                .ok_or_else(|| err("secret_env", format!("the variable {var} is not set")))?,
        };
        let text = text.trim_end_matches(['\r', '\n']).to_owned();
        if text.len() < 16 {
            return Err(err(
                if w.secret_file.is_some() {
                    "secret_file"
                } else {
                    "secret_env"
                },
                "the secret must be at least 16 characters".into(),
            ));
        }
        Ok(Secret(text))
    }
}

#[cfg(test)]
mod tests;
