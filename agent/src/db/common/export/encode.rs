//! Rows as text: RFC 4180 CSV or JSON Lines, from the values each engine
//! already makes for results (`to_json` of [`crate::db::mysql::value`] and
//! [`crate::db::mssql::value`]: DECIMAL exact text, binary base64, dates and
//! times in the server's textual form, NULL `null`).
//!
//! CSV: a header row of the column names, then one record per row; records
//! end with CRLF. A field is quoted (`"`, inner quotes doubled) when it is
//! empty or holds a comma, a quote, CR or LF. **NULL is an unquoted empty
//! field; an empty string is `""`.** Numbers and booleans (`true`/`false`)
//! as JSON writes them; strings as they are.
//!
//! JSON Lines: one object per row, keys the column names in column order,
//! LF after each; NULL is `null`. Columns with the same name give the same
//! key twice (the manifest lists the columns in order).

use baton_proto::ExportFormat;
use serde_json::Value as Json;

/// Encodes rows of one result set.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: ExportFormat,
    /// JSON Lines: `"name":` per column, encoded once.
    keys: Vec<Vec<u8>>,
}

impl Encoder {
    /// An encoder for a result set with these column names.
    pub fn new(format: ExportFormat, names: &[String]) -> Self {
        let keys = match format {
            ExportFormat::Csv => Vec::new(),
            ExportFormat::Jsonl => names
                .iter()
                .map(|n| {
                    let mut k = Json::String(n.clone()).to_string().into_bytes();
                    k.push(b':');
                    k
                })
                .collect(),
        };
        Encoder { format, keys }
    }

    /// The header (CSV: the names; JSON Lines: nothing).
    pub fn header(&self, out: &mut Vec<u8>, names: &[String]) {
        if self.format == ExportFormat::Csv {
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                csv_text(out, n);
            }
            out.extend_from_slice(b"\r\n");
        }
    }

    /// One row; `row` has one value per column.
    pub fn row(&self, out: &mut Vec<u8>, row: &[Json]) {
        match self.format {
            ExportFormat::Csv => {
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    csv_field(out, v);
                }
                out.extend_from_slice(b"\r\n");
            }
            ExportFormat::Jsonl => {
                out.push(b'{');
                for (i, v) in row.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    if let Some(k) = self.keys.get(i) {
                        out.extend_from_slice(k);
                    } else {
                        out.extend_from_slice(format!("\"column{}\":", i + 1).as_bytes());
                    }
                    json_value(out, v);
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

/// One CSV field: NULL empty and unquoted, the rest as text.
pub fn csv_field(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Null => {}
        Json::String(s) => csv_text(out, s),
        Json::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Json::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        other => csv_text(out, &other.to_string()),
    }
}

/// Text as a CSV field: quoted when empty or holding `,` `"` CR LF.
pub fn csv_text(out: &mut Vec<u8>, s: &str) {
    let needs = s.is_empty() || s.bytes().any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if !needs {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    out.push(b'"');
    for part in s.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

fn json_value(out: &mut Vec<u8>, v: &Json) {
    // Writing a Value into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests;
