//! Result values (columns, OUT values) as JSON, with the same conventions as
//! the MySQL executor: integers numbers, floats numbers (strings when not
//! finite), decimals exact strings, bit `true`/`false`, and dates and times
//! as `sqlcmd`/SSMS print them: `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS` with as
//! many fractional digits as the type has (`datetime` 3, rounded to the
//! millisecond as the server shows it; `smalldatetime` none; `datetime2(n)`
//! and `time(n)` n), `datetimeoffset` the same plus ` +hh:mm`; no zone
//! otherwise (the server's). Text strings, binary base64, uniqueidentifier
//! upper-case, NULL `null`.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value as Json;
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, ColumnType, FromSql};

use crate::db::common::value::{base64, float_json};

/// A one-word type for a column, given next to the column names so a reader
/// knows that a string is base64 or a decimal.
pub fn type_name(t: ColumnType) -> &'static str {
    use ColumnType::*;
    match t {
        Null => "null",
        Bit | Bitn => "bit",
        Int1 | Int2 | Int4 | Int8 | Intn => "int",
        Float4 | Float8 | Floatn => "float",
        Money | Money4 => "money",
        Decimaln | Numericn => "decimal",
        Datetime | Datetime4 | Datetimen | Datetime2 => "datetime",
        Daten => "date",
        Timen => "time",
        DatetimeOffsetn => "datetimeoffset",
        Guid => "uuid",
        BigVarBin | BigBinary | Image | Udt => "bytes",
        Xml => "xml",
        BigVarChar | BigChar | NVarchar | NChar | Text | NText => "string",
        SSVariant => "variant",
    }
}

/// A decimal exactly: `-12.50`, `0.05`.
pub fn numeric_text(n: Numeric) -> String {
    let scale = usize::from(n.scale());
    let digits = n.value().unsigned_abs().to_string();
    let sign = if n.value() < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// `HH:MM:SS` and `digits` (0–7) fractional digits.
fn time_text(t: NaiveTime, digits: u8) -> String {
    let base = t.format("%H:%M:%S").to_string();
    if digits == 0 {
        return base;
    }
    let nanos = format!("{:09}", chrono::Timelike::nanosecond(&t).min(999_999_999));
    format!("{base}.{}", &nanos[..usize::from(digits.min(7))])
}

/// `YYYY-MM-DD HH:MM:SS[.f…]`, as the tools print it.
fn datetime_text(dt: NaiveDateTime, digits: u8) -> String {
    format!(
        "{} {}",
        dt.date().format("%Y-%m-%d"),
        time_text(dt.time(), digits)
    )
}

/// Legacy `datetime` counts 1/300 s; the server shows it rounded to the
/// millisecond (.997, not .996666…).
fn round_to_ms(dt: NaiveDateTime) -> NaiveDateTime {
    let nanos = i64::from(chrono::Timelike::nanosecond(&dt));
    let ms = (nanos + 500_000) / 1_000_000;
    dt - chrono::Duration::nanoseconds(nanos) + chrono::Duration::milliseconds(ms)
}

/// Fractional digits of a date-time value, by its type.
fn datetime_digits(v: &ColumnData<'static>) -> u8 {
    match v {
        ColumnData::DateTime(_) => 3,
        ColumnData::DateTime2(Some(x)) => x.time().scale(),
        ColumnData::DateTimeOffset(Some(x)) => x.datetime2().time().scale(),
        _ => 0,
    }
}

/// A value as JSON.
pub fn to_json(v: &ColumnData<'static>) -> Json {
    let opt = |x: Option<Json>| x.unwrap_or(Json::Null);
    match v {
        ColumnData::U8(x) => opt(x.map(Json::from)),
        ColumnData::I16(x) => opt(x.map(Json::from)),
        ColumnData::I32(x) => opt(x.map(Json::from)),
        ColumnData::I64(x) => opt(x.map(Json::from)),
        ColumnData::F32(x) => opt(x.map(|f| {
            // Through its shortest decimal text, so 0.1f32 stays 0.1.
            float_json(f.to_string().parse().unwrap_or(f64::from(f)))
        })),
        ColumnData::F64(x) => opt(x.map(float_json)),
        ColumnData::Bit(x) => opt(x.map(Json::Bool)),
        ColumnData::String(x) => opt(x.as_ref().map(|s| Json::String(s.to_string()))),
        ColumnData::Guid(x) => {
            opt(x.map(|u| Json::String(u.hyphenated().to_string().to_ascii_uppercase())))
        }
        ColumnData::Binary(x) => opt(x.as_ref().map(|b| Json::String(base64::encode(b)))),
        ColumnData::Numeric(x) => opt(x.map(|n| Json::String(numeric_text(n)))),
        ColumnData::Xml(x) => opt(x.as_ref().map(|x| Json::String(x.to_string()))),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            match NaiveDateTime::from_sql(v) {
                Ok(Some(dt)) if matches!(v, ColumnData::DateTime(_)) => {
                    Json::String(datetime_text(round_to_ms(dt), 3))
                }
                Ok(Some(dt)) => Json::String(datetime_text(dt, datetime_digits(v))),
                Ok(None) => Json::Null,
                Err(e) => Json::String(format!("<unreadable datetime: {e}>")),
            }
        }
        ColumnData::Date(_) => match NaiveDate::from_sql(v) {
            Ok(Some(d)) => Json::String(d.format("%Y-%m-%d").to_string()),
            Ok(None) => Json::Null,
            Err(e) => Json::String(format!("<unreadable date: {e}>")),
        },
        ColumnData::Time(_) => match NaiveTime::from_sql(v) {
            Ok(Some(t)) => {
                let digits = match v {
                    ColumnData::Time(Some(t)) => t.scale(),
                    _ => 0,
                };
                Json::String(time_text(t, digits))
            }
            Ok(None) => Json::Null,
            Err(e) => Json::String(format!("<unreadable time: {e}>")),
        },
        ColumnData::DateTimeOffset(_) => match DateTime::<FixedOffset>::from_sql(v) {
            Ok(Some(dt)) => Json::String(format!(
                "{} {}",
                datetime_text(dt.naive_local(), datetime_digits(v)),
                dt.format("%:z")
            )),
            Ok(None) => Json::Null,
            Err(e) => Json::String(format!("<unreadable datetimeoffset: {e}>")),
        },
    }
}

#[cfg(test)]
mod tests;
