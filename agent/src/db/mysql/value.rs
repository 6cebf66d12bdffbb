//! Values both ways: job parameters into bound driver values, and result
//! values into JSON.
//!
//! Into JSON: integers (and BIT, YEAR) become numbers, floats numbers (or
//! strings when not finite), DECIMAL strings (exact), and DATE, DATETIME,
//! TIMESTAMP and TIME as the server prints them (`2006-02-14`,
//! `2006-02-14 22:04:36`, `.123` only when the column has fractional
//! seconds, `[-]HHH:MM:SS[.fff]`; no zone: the server's), text strings,
//! binary strings and geometry base64, NULL `null`. The column types say
//! which is which (`date`, `datetime`, `timestamp`, `time`, ...). Both
//! protocols are handled: the text protocol sends everything as bytes (kept
//! as they are for temporal types) and the column type says what they are;
//! the binary protocol (prepared `CALL`) sends typed values, printed the
//! server's way.

use baton_proto::ParamValue;
use baton_proto::param::mysql::{self, Scalar};
use mysql_async::consts::ColumnType;
use mysql_async::{Column, Value};
use serde_json::Value as Json;

pub use crate::db::common::value::base64;
use crate::db::common::value::float_json;

/// The `binary` character set number: bytes, not text.
const BINARY_CHARSET: u16 = 63;

/// A one-word type for a column, given next to the column names so a reader
/// knows that a string is base64 or a decimal.
pub fn type_name(col: &Column) -> &'static str {
    use ColumnType::*;
    match col.column_type() {
        MYSQL_TYPE_TINY | MYSQL_TYPE_SHORT | MYSQL_TYPE_LONG | MYSQL_TYPE_INT24
        | MYSQL_TYPE_LONGLONG | MYSQL_TYPE_YEAR => "int",
        MYSQL_TYPE_BIT => "bit",
        MYSQL_TYPE_DECIMAL | MYSQL_TYPE_NEWDECIMAL => "decimal",
        MYSQL_TYPE_FLOAT | MYSQL_TYPE_DOUBLE => "float",
        MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE => "date",
        MYSQL_TYPE_DATETIME | MYSQL_TYPE_DATETIME2 => "datetime",
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        MYSQL_TYPE_TIME | MYSQL_TYPE_TIME2 => "time",
        MYSQL_TYPE_NULL => "null",
        MYSQL_TYPE_JSON => "json",
        MYSQL_TYPE_GEOMETRY => "bytes",
        _ if col.character_set() == BINARY_CHARSET => "bytes",
        _ => "string",
    }
}

/// A result value as JSON, read with its column.
pub fn to_json(value: Value, col: &Column) -> Json {
    match value {
        Value::NULL => Json::Null,
        Value::Int(i) => Json::from(i),
        Value::UInt(u) => Json::from(u),
        Value::Float(f) => float_json(f.to_string().parse().unwrap_or(f64::from(f))),
        Value::Double(d) => float_json(d),
        Value::Date(y, mo, d, h, mi, s, us) => {
            if type_name(col) == "date" {
                Json::String(format!("{y:04}-{mo:02}-{d:02}"))
            } else {
                Json::String(format!(
                    "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
                    fraction(us, col.decimals())
                ))
            }
        }
        Value::Time(neg, days, h, mi, s, us) => {
            let hours = u64::from(days) * 24 + u64::from(h);
            let sign = if neg { "-" } else { "" };
            Json::String(format!(
                "{sign}{hours:02}:{mi:02}:{s:02}{}",
                fraction(us, col.decimals())
            ))
        }
        Value::Bytes(b) => bytes_json(b, col),
    }
}

/// `.ffffff` cut to the column's scale (0–6); six digits when the scale is unknown.
fn fraction(us: u32, decimals: u8) -> String {
    let digits = match decimals {
        0 if us == 0 => return String::new(),
        1..=6 => usize::from(decimals),
        _ => 6,
    };
    let all = format!("{us:06}");
    format!(".{}", &all[..digits])
}

/// Bytes from the text protocol (any type) or the binary protocol (strings, decimals, bit).
fn bytes_json(b: Vec<u8>, col: &Column) -> Json {
    let text = || String::from_utf8_lossy(&b).into_owned();
    match type_name(col) {
        "int" => {
            let s = text();
            s.parse::<i64>()
                .map(Json::from)
                .or_else(|_| s.parse::<u64>().map(Json::from))
                .unwrap_or(Json::String(s))
        }
        "float" => {
            let s = text();
            match s.parse::<f64>() {
                Ok(d) if d.is_finite() => float_json(d),
                _ => Json::String(s),
            }
        }
        "bit" if b.len() <= 8 => {
            Json::from(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
        }
        "bytes" | "bit" => Json::String(base64::encode(&b)),
        "null" => Json::Null,
        // decimal, date, datetime, timestamp, time (the server's text), json, string
        _ => Json::String(text()),
    }
}

/// Shape an OUT value by the type hint of its parameter (the `value` given
/// with an OUT parameter): session variables lose the column type, so the
/// hint says what the caller wants back.
pub fn apply_hint(value: Json, hint: &ParamValue) -> Json {
    match (hint, value) {
        (_, Json::Null) => Json::Null,
        (ParamValue::Bool(_), Json::Number(n)) => Json::Bool(n.as_f64().is_some_and(|f| f != 0.0)),
        (ParamValue::Bool(_), Json::String(s)) => match s.trim() {
            "0" => Json::Bool(false),
            "1" => Json::Bool(true),
            _ => Json::String(s),
        },
        (ParamValue::Int(_), Json::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Json::from)
            .unwrap_or(Json::String(s)),
        (ParamValue::Float(_), Json::String(s)) => match s.trim().parse::<f64>() {
            Ok(d) if d.is_finite() => float_json(d),
            _ => Json::String(s),
        },
        (ParamValue::Decimal(_), Json::Number(n)) => Json::String(n.to_string()),
        (ParamValue::Bytes(_), Json::String(s)) => Json::String(base64::encode(s.as_bytes())),
        (ParamValue::String(_), Json::Number(n)) => Json::String(n.to_string()),
        (_, v) => v,
    }
}

/// A job parameter as a value to bind: read by [`mysql::bind`] (shared with
/// the controller's submit check). Values are never spliced into SQL.
pub fn bind(value: &ParamValue) -> Result<Value, String> {
    Ok(match mysql::bind(value)? {
        Scalar::Null => Value::NULL,
        Scalar::Int(i) => Value::Int(i),
        Scalar::Double(d) => Value::Double(d),
        Scalar::Bytes(b) => Value::Bytes(b),
    })
}

/// Optional sign, digits, an optional point and digits; at least one digit.
pub use baton_proto::param::mysql::is_decimal;

#[cfg(test)]
mod tests;
