//! The `export` kind: a query's result set streamed to a compressed CSV or
//! JSON Lines file on the agent host, with a sha256 and a manifest, ready for
//! an `upload` step (`${steps.<export>.result.file}`).

use serde::{Deserialize, Serialize};

use crate::job::ParamValue;

/// The text format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row, CRLF line ends; an unquoted empty
    /// field is NULL, `""` an empty string.
    #[default]
    Csv,
    /// One JSON object per row (keys in column order), `null` for NULL.
    Jsonl,
}

impl ExportFormat {
    /// The wire name, also the file extension (`csv`, `jsonl`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// How an export file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExportCompression {
    /// zstd (`.zst`).
    #[default]
    Zstd,
    /// gzip (`.gz`).
    Gzip,
    /// None.
    None,
}

impl ExportCompression {
    /// The wire name (`zstd`, `gzip`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            ExportCompression::Zstd => "zstd",
            ExportCompression::Gzip => "gzip",
            ExportCompression::None => "none",
        }
    }
}

/// The longest query text accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 64 * 1024;
/// The most bound parameters.
pub const MAX_PARAMS: usize = 256;

/// A query whose result set is written to a file on the agent host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"connection": "erp", "query": "SELECT id, total FROM orders WHERE day = ?", "params": [{"type": "date", "value": "2026-12-05"}], "format": "csv", "compression": "zstd", "prefix": "orders"})))]
pub struct ExportSpec {
    /// Connection name configured on the agent host.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub connection: String,
    /// The query (one statement; its first result set is exported); at
    /// most [`MAX_QUERY_BYTES`] bytes.
    #[cfg_attr(feature = "openapi", schema(pattern = r"\S"))]
    pub query: String,
    /// Values bound to the query's placeholders in order (`?` on
    /// MySQL/MariaDB, `@P1`, `@P2`, ... on SQL Server); never spliced into SQL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(max_items = 256))]
    pub params: Vec<ParamValue>,
    /// `csv` (default) or `jsonl`.
    #[serde(default)]
    pub format: ExportFormat,
    /// `zstd` (default), `gzip` or `none`.
    #[serde(default)]
    pub compression: ExportCompression,
    /// Names the export: its files go to `<export_dir>/<connection>/<prefix>/`
    /// (default `export`), where retention applies; a valid name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
    )]
    pub prefix: Option<String>,
}

impl ExportSpec {
    /// The prefix, or `export`.
    pub fn prefix_or_default(&self) -> &str {
        self.prefix.as_deref().unwrap_or("export")
    }
}

#[cfg(test)]
mod tests;
