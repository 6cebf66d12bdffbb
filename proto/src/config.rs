//! Config errors that name the file, the key and the line.
//!
//! Both daemons read layered TOML (defaults → file → `BATON_*` env → flags)
//! and must point an operator at the exact place of a mistake. This module is
//! pure: callers read the file and pass its text.

use serde::de::DeserializeOwned;

/// Exit code for configuration errors (`EX_CONFIG` from sysexits.h).
pub const EX_CONFIG: i32 = 78;

/// How a daemon writes its log lines (`log_format`): plain text (the
/// default) or one JSON object per line, carrying the fields of the spans
/// the line was logged in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `text`: human-readable lines.
    #[default]
    Text,
    /// `json`: one JSON object per line.
    Json,
}

impl LogFormat {
    /// What a bad value is told.
    pub const EXPECTED: &'static str = "must be \"text\" or \"json\"";
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} {}", Self::EXPECTED)),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML file (its path).
    File(String),
    /// An environment variable (its name).
    Env(String),
    /// A command-line flag (its name).
    Flag(String),
    /// A built-in default.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{p}"),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(n) => write!(f, "flag --{n}"),
            Source::Default => f.write_str("built-in default"),
        }
    }
}

/// A configuration error: file (or other source), key, line, message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the bad value came from.
    pub origin: Source,
    /// Dotted key path (`agent.slots`, `allow[2]`); empty for syntax errors.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "config error in {}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error about `key` in the file `path` whose text is `src`.
    pub fn in_file(path: &str, src: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError {
            origin: Source::File(path.to_owned()),
            key: key.to_owned(),
            line: line_of_key(src, key),
            message: message.into(),
        }
    }
}

/// Parse `src` (the text of `path`) into `T`, naming key and line on error.
pub fn parse_toml<T: DeserializeOwned>(path: &str, src: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(src).map_err(|e| ConfigError {
        origin: Source::File(path.to_owned()),
        key: String::new(),
        line: e.span().map(|s| line_of_offset(src, s.start)),
        message: e.message().to_owned(),
    })?;
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| line_of_offset(src, s.start))
            .or_else(|| line_of_key(src, &key));
        ConfigError {
            origin: Source::File(path.to_owned()),
            key,
            line,
            message: inner.message().to_owned(),
        }
    })
}

/// 1-based line of a byte offset.
pub fn line_of_offset(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// 1-based line where a dotted key (`a.b`, `list[2]`, `tables[0].x`) is set in `src`.
pub fn line_of_key(src: &str, key: &str) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(src).ok()?;
    let mut span = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut value: Option<&DeValue<'_>> = None;
    for segment in split_key(key) {
        match segment {
            Segment::Name(name) => {
                let t = match (table, value) {
                    (Some(t), None) => t,
                    (_, Some(DeValue::Table(t))) => t,
                    _ => return span,
                };
                let (k, v) = t.get_key_value(name)?;
                span = Some(k.span().start);
                value = Some(v.get_ref());
                table = None;
            }
            Segment::Index(i) => {
                let Some(DeValue::Array(a)) = value else {
                    return span.map(|s| line_of_offset(src, s));
                };
                let item = a.get(i)?;
                span = Some(item.span().start);
                value = Some(item.get_ref());
            }
        }
    }
    span.map(|s| line_of_offset(src, s))
}

enum Segment<'a> {
    Name(&'a str),
    Index(usize),
}

fn split_key(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Name(name));
        }
        while let Some(close) = rest.find(']') {
            if let Ok(i) = rest[1..close].parse() {
                out.push(Segment::Index(i));
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

#[cfg(test)]
mod tests;
