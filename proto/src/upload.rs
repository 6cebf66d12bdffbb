//! The `upload` job kind: a file an earlier step made on the agent, copied
//! to an object store (`[stores.<name>]` on the agent host) with its
//! manifest, then retention under its key prefix. The key template is
//! checked by the controller and rendered by the agent with the same code.

use serde::{Deserialize, Serialize};

/// The default key template.
pub const DEFAULT_KEY: &str = "{connection}/{database}/{yyyy}/{mm}/{dd}/{file}";

/// The placeholders a key template may use.
pub const PLACEHOLDERS: [&str; 7] = ["connection", "database", "yyyy", "mm", "dd", "hh", "file"];

/// Longest key template.
pub const MAX_TEMPLATE: usize = 512;

/// Copy a file to an object store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadSpec {
    /// Store name configured on the agent host (`[stores.<name>]`).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub store: String,
    /// Absolute path of the file on the agent, under one of its dump or
    /// backup directories, with `<stem>.manifest.json` next to it; usually
    /// `${steps.dump.result.file}` with `same_agent_as = "dump"`.
    pub file: String,
    /// Key template under the store's prefix; default [`DEFAULT_KEY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Retention in the bucket, applied after a successful upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<UploadRetention>,
}

/// Retention under the key prefix of an upload (the rendered template up to
/// its first date or `{file}` placeholder).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UploadRetention {
    /// Keep the newest N objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub keep_last: Option<u32>,
    /// Delete objects older than this (`30d`, `12h`: humantime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// The values a key is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValues<'a> {
    /// Connection name (from the manifest).
    pub connection: &'a str,
    /// Database (from the manifest).
    pub database: &'a str,
    /// When the file was made (UTC).
    pub at: chrono::DateTime<chrono::Utc>,
    /// The file's name.
    pub file: &'a str,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

/// Parse and check a template: known placeholders, `{file}` exactly once
/// and last, no empty, `.` or `..` segment, no leading `/`, literal text of
/// `A-Z a-z 0-9 _ . - = /` only.
fn parse(t: &str) -> Result<Vec<Piece<'_>>, String> {
    if t.is_empty() || t.len() > MAX_TEMPLATE {
        return Err(format!("must be 1-{MAX_TEMPLATE} characters"));
    }
    let mut out = Vec::new();
    let mut rest = t;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let end = rest.find('}').ok_or_else(|| "an unclosed `{`".to_owned())?;
                let name = &rest[1..end];
                if !PLACEHOLDERS.contains(&name) {
                    return Err(format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                    ));
                }
                out.push(Piece::Var(name));
                rest = &rest[end + 1..];
            }
            found => {
                let end = found.unwrap_or(rest.len());
                let text = &rest[..end];
                if let Some(c) = text.chars().find(|c| {
                    !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '=' | '/'))
                }) {
                    return Err(format!("{c:?} is not allowed outside a placeholder"));
                }
                out.push(Piece::Text(text));
                rest = &rest[end..];
            }
        }
    }
    if out.last() != Some(&Piece::Var("file"))
        || out.iter().filter(|p| **p == Piece::Var("file")).count() != 1
    {
        return Err("must end with {file}, once".into());
    }
    if t.starts_with('/') {
        return Err("must not start with `/` (the store's prefix comes first)".into());
    }
    if t.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("must not hold empty, `.` or `..` segments".into());
    }
    Ok(out)
}

/// Check a key template (the error says what is wrong, not where).
pub fn check_template(t: &str) -> Result<(), String> {
    parse(t).map(drop)
}

/// A placeholder's value; `None` when the value could break the key
/// (a `/`, or `.`/`..`, or empty).
fn var(name: &str, v: &KeyValues<'_>) -> Option<String> {
    let s = match name {
        "connection" => v.connection.to_owned(),
        "database" => v.database.to_owned(),
        "yyyy" => v.at.format("%Y").to_string(),
        "mm" => v.at.format("%m").to_string(),
        "dd" => v.at.format("%d").to_string(),
        "hh" => v.at.format("%H").to_string(),
        "file" => v.file.to_owned(),
        _ => return None,
    };
    (!s.is_empty() && !s.contains('/') && s != "." && s != "..").then_some(s)
}

/// The rendered key and the retention prefix (the key up to the first date
/// or `{file}` placeholder): `("db1/sales/2026/12/06/x.sql.zst", "db1/sales/")`.
pub fn render(t: &str, v: &KeyValues<'_>) -> Result<(String, String), String> {
    let pieces = parse(t)?;
    let mut key = String::new();
    let mut prefix = None;
    for p in pieces {
        match p {
            Piece::Text(s) => key.push_str(s),
            Piece::Var(name) => {
                if prefix.is_none() && !matches!(name, "connection" | "database") {
                    prefix = Some(key.clone());
                }
                let s = var(name, v).ok_or_else(|| format!("{{{name}}} has no usable value"))?;
                key.push_str(&s);
            }
        }
    }
    Ok((key, prefix.unwrap_or_default()))
}

#[cfg(test)]
mod tests;
