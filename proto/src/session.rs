//! Session settings of `procedure` and `sql` jobs: the allow-list per
//! database engine and the check of each value (pure).
//!
//! A job's `session` table (`{"time_zone": "+00:00", "timestamp":
//! "2026-11-26T00:00:00Z"}`) is applied by the agent on the job's session
//! before the call or batch. Only the keys below are allowed, each with its
//! value check; [`check`] returns the value in the form the agent applies it.
//!
//! MySQL/MariaDB keys are lower case, SQL Server keys upper case (as each
//! engine's manual writes them):
//!
//! | engine | key | value |
//! |---|---|---|
//! | mysql | `time_zone` | `SYSTEM`, `+HH:MM`/`-HH:MM`, or a zone name (`Europe/Paris`; needs the server's time zone tables) |
//! | mysql | `sql_mode` | comma-separated mode names (`A-Z 0-9 _`), may be empty |
//! | mysql | `timestamp` | Unix seconds (1 to 2147483647), or an RFC 3339 time with offset in whole seconds (`2026-11-26T00:00:00Z`) |
//! | mysql | `lock_wait_timeout` | seconds, 1 to 31536000 |
//! | mysql | `innodb_lock_wait_timeout` | seconds, 1 to 1073741824 |
//! | mysql | `max_statement_time` | seconds, 0 (off) to 31536000 (MariaDB) |
//! | mysql | `max_execution_time` | milliseconds, 0 (off) to 4294967295 (MySQL) |
//! | mssql | `DATEFORMAT` | `mdy`, `dmy`, `ymd`, `ydm`, `myd`, `dym` |
//! | mssql | `LANGUAGE` | a language name (letters, space, `_`, `-`, parentheses; 1-128) |
//! | mssql | `LOCK_TIMEOUT` | milliseconds, -1 (wait forever) to 2147483647 |
//! | mssql | `DATEFIRST` | 1 to 7 |
//! | mssql | `DEADLOCK_PRIORITY` | `LOW`, `NORMAL`, `HIGH`, or -10 to 10 |
//! | mssql | `ARITHABORT` | `true`/`false` (or `ON`/`OFF`) |
//!
//! Numbers may be given as JSON numbers or as text (`"5"`), so that flags
//! (`--session lock_wait_timeout=5`) and files agree.

use std::collections::BTreeMap;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

/// Most settings in one job's `session`.
pub const MAX_SETTINGS: usize = 16;

/// A job's session settings, by key.
pub type Session = BTreeMap<String, SessionValue>;

/// One setting's value as given: a boolean, an integer or text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum SessionValue {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// Text (numbers as text are read as numbers where a number is wanted).
    Text(String),
}

impl std::fmt::Display for SessionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionValue::Bool(b) => write!(f, "{b}"),
            SessionValue::Int(i) => write!(f, "{i}"),
            SessionValue::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// The database engine a connection speaks (`ConnectionInfo::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// MySQL or MariaDB (`mysql`).
    Mysql,
    /// SQL Server (`mssql`).
    Mssql,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 2] = [Engine::Mysql, Engine::Mssql];

    /// The engine of an advertised connection kind.
    pub fn parse(kind: &str) -> Option<Engine> {
        match kind {
            "mysql" | "mariadb" => Some(Engine::Mysql),
            "mssql" => Some(Engine::Mssql),
            _ => None,
        }
    }

    /// The advertised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Mysql => "mysql",
            Engine::Mssql => "mssql",
        }
    }
}

/// A checked value, in the form the agent applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// An integer.
    Int(i64),
    /// Text (bound on MySQL; a checked, quoted `N'...'` literal on SQL Server).
    Text(String),
    /// A keyword from the allow-list itself (`dmy`, `LOW`, `ON`).
    Word(&'static str),
}

impl Checked {
    /// The value as a T-SQL literal: digits, the keyword, or `N'text'`
    /// (quotes doubled, though the checks already keep them out).
    pub fn to_tsql(&self) -> String {
        match self {
            Checked::Int(i) => i.to_string(),
            Checked::Word(w) => (*w).to_owned(),
            Checked::Text(s) => format!("N'{}'", s.replace('\'', "''")),
        }
    }
}

/// Why a setting is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No engine knows the key.
    #[error("unknown session setting {key:?} (allowed: {allowed})")]
    UnknownKey {
        /// The key.
        key: String,
        /// The allowed keys, comma-separated.
        allowed: String,
    },
    /// The key is not one of this engine's.
    #[error("session setting {key:?} is not allowed on {engine} connections (allowed: {allowed})")]
    OtherEngine {
        /// The key.
        key: String,
        /// The engine.
        engine: &'static str,
        /// The engine's keys, comma-separated.
        allowed: String,
    },
    /// The value is refused.
    #[error("session setting {key}: {message}")]
    BadValue {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

type Check = fn(&SessionValue) -> Result<Checked, String>;

/// The allow-list: engine, key, value check.
const RULES: &[(Engine, &str, Check)] = &[
    (Engine::Mysql, "time_zone", time_zone),
    (Engine::Mysql, "sql_mode", sql_mode),
    (Engine::Mysql, "timestamp", timestamp),
    (Engine::Mysql, "lock_wait_timeout", |v| {
        int(v, 1, 31_536_000)
    }),
    (Engine::Mysql, "innodb_lock_wait_timeout", |v| {
        int(v, 1, 1_073_741_824)
    }),
    (Engine::Mysql, "max_statement_time", |v| {
        int(v, 0, 31_536_000)
    }),
    (Engine::Mysql, "max_execution_time", |v| {
        int(v, 0, 4_294_967_295)
    }),
    (Engine::Mssql, "DATEFORMAT", |v| {
        word(v, &["mdy", "dmy", "ymd", "ydm", "myd", "dym"])
    }),
    (Engine::Mssql, "LANGUAGE", language),
    (Engine::Mssql, "LOCK_TIMEOUT", |v| int(v, -1, 2_147_483_647)),
    (Engine::Mssql, "DATEFIRST", |v| int(v, 1, 7)),
    (Engine::Mssql, "DEADLOCK_PRIORITY", deadlock_priority),
    (Engine::Mssql, "ARITHABORT", on_off),
];

/// The keys an engine allows, in allow-list order.
pub fn keys(engine: Engine) -> Vec<&'static str> {
    RULES
        .iter()
        .filter(|(e, _, _)| *e == engine)
        .map(|(_, k, _)| *k)
        .collect()
}

/// Check one setting for an engine: the value as the agent applies it.
pub fn check(engine: Engine, key: &str, value: &SessionValue) -> Result<Checked, Error> {
    let Some((_, _, rule)) = RULES.iter().find(|(e, k, _)| *e == engine && *k == key) else {
        if RULES.iter().any(|(_, k, _)| *k == key) {
            return Err(Error::OtherEngine {
                key: key.to_owned(),
                engine: engine.as_str(),
                allowed: keys(engine).join(", "),
            });
        }
        return Err(unknown(key));
    };
    rule(value).map_err(|message| Error::BadValue {
        key: key.to_owned(),
        message,
    })
}

/// Check one setting without knowing the engine: the key must be allowed on
/// some engine and the value valid there.
pub fn check_any(key: &str, value: &SessionValue) -> Result<(), Error> {
    let mut last = None;
    for (engine, _, _) in RULES.iter().filter(|(_, k, _)| *k == key) {
        match check(*engine, key, value) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| unknown(key)))
}

/// Check every setting of a job for an engine, in key order.
pub fn check_all(engine: Engine, session: &Session) -> Result<Vec<(&str, Checked)>, Error> {
    if session.len() > MAX_SETTINGS {
        return Err(Error::BadValue {
            key: "session".into(),
            message: format!("at most {MAX_SETTINGS} settings"),
        });
    }
    session
        .iter()
        .map(|(k, v)| check(engine, k, v).map(|c| (k.as_str(), c)))
        .collect()
}

fn unknown(key: &str) -> Error {
    let all: Vec<&str> = RULES.iter().map(|(_, k, _)| *k).collect();
    Error::UnknownKey {
        key: key.chars().take(64).collect(),
        allowed: all.join(", "),
    }
}

/// An integer within `lo..=hi`, given as a number or as text.
fn int(v: &SessionValue, lo: i64, hi: i64) -> Result<Checked, String> {
    let i = match v {
        SessionValue::Int(i) => *i,
        SessionValue::Text(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("expected an integer, got {v}"))?,
        SessionValue::Bool(_) => return Err(format!("expected an integer, got {v}")),
    };
    if (lo..=hi).contains(&i) {
        Ok(Checked::Int(i))
    } else {
        Err(format!("{i} is out of range ({lo} to {hi})"))
    }
}

fn text(v: &SessionValue) -> Result<&str, String> {
    match v {
        SessionValue::Text(s) => Ok(s),
        _ => Err(format!("expected text, got {v}")),
    }
}

/// One of `words`, case-insensitively: the allow-list's spelling.
fn word(v: &SessionValue, words: &[&'static str]) -> Result<Checked, String> {
    let s = text(v)?.trim();
    words
        .iter()
        .find(|w| w.eq_ignore_ascii_case(s))
        .map(|w| Checked::Word(w))
        .ok_or_else(|| format!("expected one of {}, got {v}", words.join(", ")))
}

fn time_zone(v: &SessionValue) -> Result<Checked, String> {
    let s = text(v)?.trim();
    let offset = |s: &str| {
        let b = s.as_bytes();
        b.len() == 6
            && matches!(b[0], b'+' | b'-')
            && b[3] == b':'
            && s[1..3].parse::<u8>().is_ok_and(|h| h <= 14)
            && s[4..6].parse::<u8>().is_ok_and(|m| m < 60)
    };
    let name = |s: &str| {
        s.len() <= 64
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'+' | b'-'))
    };
    if offset(s) || name(s) {
        Ok(Checked::Text(s.to_owned()))
    } else {
        Err(format!(
            "expected SYSTEM, an offset like +02:00, or a zone name like Europe/Paris, got {v}"
        ))
    }
}

fn sql_mode(v: &SessionValue) -> Result<Checked, String> {
    let s = text(v)?.trim();
    let ok = s.len() <= 1024
        && s.split(',').all(|m| {
            let m = m.trim();
            m.is_empty() || m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        let modes: Vec<String> = s
            .split(',')
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty())
            .collect();
        Ok(Checked::Text(modes.join(",")))
    } else {
        Err(format!(
            "expected comma-separated mode names (A-Z 0-9 _), got {v}"
        ))
    }
}

/// Unix seconds, or an RFC 3339 time in whole seconds.
fn timestamp(v: &SessionValue) -> Result<Checked, String> {
    const MAX: i64 = 2_147_483_647;
    if let SessionValue::Text(s) = v
        && s.trim().parse::<i64>().is_err()
    {
        let t = DateTime::parse_from_rfc3339(s.trim()).map_err(|e| {
            format!("expected Unix seconds or an RFC 3339 time like 2026-11-26T00:00:00Z ({e})")
        })?;
        if t.timestamp_subsec_nanos() != 0 {
            return Err("whole seconds only".into());
        }
        let secs = t.timestamp();
        return if (1..=MAX).contains(&secs) {
            Ok(Checked::Int(secs))
        } else {
            Err(format!(
                "{s} is out of range (1970-01-01T00:00:01Z to 2038-01-19T03:14:07Z)"
            ))
        };
    }
    int(v, 1, MAX)
}

fn language(v: &SessionValue) -> Result<Checked, String> {
    let s = text(v)?.trim();
    let ok = (1..=128).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphabetic() || matches!(c, ' ' | '_' | '-' | '(' | ')'));
    if ok {
        Ok(Checked::Text(s.to_owned()))
    } else {
        Err(format!(
            "expected a language name (letters, space, _ - and parentheses), got {v}"
        ))
    }
}

fn deadlock_priority(v: &SessionValue) -> Result<Checked, String> {
    match v {
        SessionValue::Text(s) if s.trim().parse::<i64>().is_err() => {
            word(v, &["LOW", "NORMAL", "HIGH"])
        }
        _ => int(v, -10, 10).map_err(|e| format!("expected LOW, NORMAL, HIGH or -10 to 10: {e}")),
    }
}

fn on_off(v: &SessionValue) -> Result<Checked, String> {
    match v {
        SessionValue::Bool(true) => Ok(Checked::Word("ON")),
        SessionValue::Bool(false) => Ok(Checked::Word("OFF")),
        SessionValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(Checked::Word("ON")),
            "off" | "false" => Ok(Checked::Word("OFF")),
            _ => Err(format!("expected true or false, got {v}")),
        },
        SessionValue::Int(_) => Err(format!("expected true or false, got {v}")),
    }
}

#[cfg(test)]
mod tests;
