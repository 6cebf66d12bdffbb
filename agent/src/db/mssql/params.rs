//! A `procedure` job as an RPC: the checked, bracket-quoted procedure name and
//! every parameter as a typed, bound value (never spliced into SQL).
//!
//! Names: `name`, `schema.name` or `database.schema.name`, each part 1-128
//! characters of `[A-Za-z0-9_@#$]` not starting with a digit or `$`, sent as
//! `[dbo].[usp_x]`. Parameters: `[A-Za-z0-9_]{1,127}`, unique
//! case-insensitively, sent as `@name`.
//!
//! Types: with `sql_type` (see [`baton_proto::SqlType`]) the value is
//! converted and range-checked for that type; without it `int` binds as
//! bigint, `string` nvarchar, `decimal` numeric (exact), `float` float, `bool`
//! bit, `bytes` (base64) varbinary, `date` date, `date_time` datetime2, and
//! `null` as an untyped NULL. Every mode binds its value: SQL Server passes an
//! OUTPUT parameter's value in as well; an OUT parameter given without a
//! value needs a `sql_type` and goes in as a NULL of that type. A NULL is typed on the wire only for
//! integer, float, bit and uniqueidentifier types; tiberius sends other NULLs
//! untyped (NULLTYPE), which SQL Server converts to the parameter's type.

use std::borrow::Cow;
use std::collections::BTreeSet;

use baton_proto::session::{self, Engine};
use baton_proto::{ParamMode, ParamValue, ProcedureSpec, Session, SqlType};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, IntoSql};

use crate::db::common::value::base64;

/// Longest identifier part (SQL Server `sysname`).
pub const MAX_IDENT: usize = 128;
/// Longest parameter name without its `@`.
pub const MAX_PARAM: usize = 127;

/// One bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// `@name`.
    pub name: String,
    /// The name as given (key of `data.out`).
    pub key: String,
    /// Sent as OUTPUT (OUT and INOUT).
    pub output: bool,
    /// The value, typed.
    pub value: ColumnData<'static>,
}

/// A procedure call ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    /// The bracket-quoted name, `[dbo].[usp_x]`.
    pub procedure: String,
    /// Parameters in call order.
    pub params: Vec<Bound>,
}

/// Whether `part` is 1-128 characters of `[A-Za-z0-9_@#$]`, not starting
/// with a digit or `$`.
fn valid_part(part: &str) -> bool {
    let Some(first) = part.bytes().next() else {
        return false;
    };
    part.len() <= MAX_IDENT
        && !first.is_ascii_digit()
        && first != b'$'
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'#' | b'$'))
}

/// `name`, `schema.name` or `database.schema.name`, bracket-quoted.
pub fn quote_procedure(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 3 || !parts.iter().all(|p| valid_part(p)) {
        return Err(format!(
            "spec.procedure {name:?} must be `name`, `schema.name` or `database.schema.name`, \
             each part 1-128 characters of A-Z a-z 0-9 _ @ # $ not starting with a digit or $"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| format!("[{p}]"))
        .collect::<Vec<_>>()
        .join("."))
}

/// Whether a parameter name is `[A-Za-z0-9_]{1,127}`.
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAM
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The job's session settings as one SQL batch, `SET DATEFORMAT dmy;
/// SET LOCK_TIMEOUT 5000;` (`None` without settings).
///
/// Not bound parameters: a parameterized request is `sp_executesql`, and a
/// SET inside it reverts when that call ends; `SET LOCK_TIMEOUT` and
/// `SET DATEFIRST` take only literals. So the batch is built from values the
/// allow-list ([`baton_proto::session`]) has checked — integers in range,
/// keywords of the list itself, a language name of letters quoted as
/// `N'...'` — and sent as a plain batch, whose SETs last for the session.
/// `LANGUAGE` comes first (it resets `DATEFORMAT` and `DATEFIRST`), then
/// the others in key order. A key of another engine is refused.
pub fn session_batch(session: &Session) -> Result<Option<String>, String> {
    if session.is_empty() {
        return Ok(None);
    }
    let mut checked =
        session::check_all(Engine::Mssql, session).map_err(|e| format!("spec.session: {e}"))?;
    // SET LANGUAGE also sets DATEFORMAT and DATEFIRST: it goes first, so
    // that those given explicitly win.
    checked.sort_by_key(|(key, _)| *key != "LANGUAGE");
    let statements: Vec<String> = checked
        .into_iter()
        .map(|(key, value)| format!("SET {key} {};", value.to_tsql()))
        .collect();
    Ok(Some(statements.join(" ")))
}

/// Check a procedure spec and bind its values.
pub fn plan(spec: &ProcedureSpec) -> Result<CallPlan, String> {
    let procedure = quote_procedure(&spec.procedure)?;
    let mut seen = BTreeSet::new();
    let mut params = Vec::with_capacity(spec.params.len());
    for (i, p) in spec.params.iter().enumerate() {
        if !valid_param_name(&p.name) {
            return Err(format!(
                "spec.params[{i}].name {:?} must be 1-127 characters of A-Z a-z 0-9 _",
                p.name
            ));
        }
        if !seen.insert(p.name.to_ascii_lowercase()) {
            return Err(format!(
                "spec.params[{i}].name {:?} is given twice (names are case-insensitive)",
                p.name
            ));
        }
        let ty = match &p.sql_type {
            Some(t) => {
                Some(SqlType::parse(t).map_err(|e| format!("spec.params[{i}].sql_type {e}"))?)
            }
            None => None,
        };
        let value = match (&p.value, ty) {
            (Some(v), ty) => bind(v, ty),
            // An OUT parameter without a value goes in as a NULL of its type.
            (None, Some(ty)) if p.mode == ParamMode::Out => bind(&ParamValue::Null, Some(ty)),
            (None, None) if p.mode == ParamMode::Out => Err(
                "an out parameter without a value needs a sql_type on SQL Server (the value's \
                 type would otherwise give it)"
                    .into(),
            ),
            (None, _) => Err("required for in and inout parameters".into()),
        }
        .map_err(|e| format!("spec.params[{i}].value ({}): {e}", p.name))?;
        params.push(Bound {
            name: format!("@{}", p.name),
            key: p.name.clone(),
            output: p.mode != ParamMode::In,
            value,
        });
    }
    Ok(CallPlan { procedure, params })
}

/// The JSON type word of a value, for messages.
fn kind(v: &ParamValue) -> &'static str {
    match v {
        ParamValue::Null => "null",
        ParamValue::Bool(_) => "bool",
        ParamValue::Int(_) => "int",
        ParamValue::Decimal(_) => "decimal",
        ParamValue::Float(_) => "float",
        ParamValue::String(_) => "string",
        ParamValue::Bytes(_) => "bytes",
        ParamValue::Date(_) => "date",
        ParamValue::DateTime(_) => "date_time",
    }
}

/// A value as a typed TDS value.
pub fn bind(value: &ParamValue, ty: Option<SqlType>) -> Result<ColumnData<'static>, String> {
    match ty {
        None => bind_natural(value),
        Some(t) => bind_as(value, t),
    }
}

fn bind_natural(value: &ParamValue) -> Result<ColumnData<'static>, String> {
    Ok(match value {
        ParamValue::Null => ColumnData::String(None),
        ParamValue::Bool(b) => ColumnData::Bit(Some(*b)),
        ParamValue::Int(i) => ColumnData::I64(Some(*i)),
        ParamValue::Decimal(s) => ColumnData::Numeric(Some(numeric(s)?)),
        ParamValue::Float(f) => ColumnData::F64(Some(finite(*f)?)),
        ParamValue::String(s) => ColumnData::String(Some(Cow::Owned(s.clone()))),
        ParamValue::Bytes(b) => ColumnData::Binary(Some(Cow::Owned(base64::decode(b)?))),
        ParamValue::Date(s) => date(s)?.into_sql(),
        ParamValue::DateTime(s) => datetime(s)?.into_sql(),
    })
}

fn bind_as(value: &ParamValue, ty: SqlType) -> Result<ColumnData<'static>, String> {
    let int = |lo: i64, hi: i64| -> Result<Option<i64>, String> {
        match value {
            ParamValue::Null => Ok(None),
            ParamValue::Int(i) if (lo..=hi).contains(i) => Ok(Some(*i)),
            ParamValue::Int(i) => Err(format!("{i} is out of range for {ty} ({lo} to {hi})")),
            _ => Err(format!("a {} value cannot be bound as {ty}", kind(value))),
        }
    };
    Ok(match ty {
        SqlType::Bit => match value {
            ParamValue::Null => ColumnData::Bit(None),
            ParamValue::Bool(b) => ColumnData::Bit(Some(*b)),
            ParamValue::Int(i @ (0 | 1)) => ColumnData::Bit(Some(*i == 1)),
            _ => return refuse(value, ty),
        },
        SqlType::TinyInt => ColumnData::U8(int(0, 255)?.map(|i| i as u8)),
        SqlType::SmallInt => {
            ColumnData::I16(int(i16::MIN.into(), i16::MAX.into())?.map(|i| i as i16))
        }
        SqlType::Int => ColumnData::I32(int(i32::MIN.into(), i32::MAX.into())?.map(|i| i as i32)),
        SqlType::BigInt => ColumnData::I64(int(i64::MIN, i64::MAX)?),
        SqlType::Decimal { precision, scale } => decimal_as(value, ty, precision, scale)?,
        SqlType::Float | SqlType::Real => float_as(value, ty)?,
        SqlType::NVarChar(n) | SqlType::VarChar(n) => text_as(value, ty, n)?,
        SqlType::VarBinary(n) => bytes_as(value, ty, n)?,
        SqlType::Date => match value {
            ParamValue::Null => ColumnData::Date(None),
            ParamValue::Date(s) | ParamValue::String(s) => date(s)?.into_sql(),
            _ => return refuse(value, ty),
        },
        SqlType::Time(_) => match value {
            ParamValue::Null => ColumnData::Time(None),
            ParamValue::String(s) => NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
                .map_err(|e| format!("time {s:?} is not HH:MM:SS[.fffffff]: {e}"))?
                .into_sql(),
            _ => return refuse(value, ty),
        },
        SqlType::DateTime2(_) => match value {
            ParamValue::Null => ColumnData::DateTime2(None),
            ParamValue::DateTime(s) | ParamValue::String(s) => datetime(s)?.into_sql(),
            _ => return refuse(value, ty),
        },
        SqlType::DateTime => match value {
            ParamValue::Null => ColumnData::DateTime(None),
            ParamValue::DateTime(s) | ParamValue::String(s) => legacy_datetime(&datetime(s)?)?,
            _ => return refuse(value, ty),
        },
        SqlType::UniqueIdentifier => match value {
            ParamValue::Null => ColumnData::Guid(None),
            ParamValue::String(s) => ColumnData::Guid(Some(
                tiberius::Uuid::parse_str(s.trim())
                    .map_err(|e| format!("{s:?} is not a uniqueidentifier: {e}"))?,
            )),
            _ => return refuse(value, ty),
        },
    })
}

fn refuse(value: &ParamValue, ty: SqlType) -> Result<ColumnData<'static>, String> {
    Err(format!("a {} value cannot be bound as {ty}", kind(value)))
}

fn decimal_as(
    value: &ParamValue,
    ty: SqlType,
    precision: u8,
    scale: u8,
) -> Result<ColumnData<'static>, String> {
    let text = match value {
        ParamValue::Null => return Ok(ColumnData::Numeric(None)),
        ParamValue::Decimal(s) | ParamValue::String(s) => s.clone(),
        ParamValue::Int(i) => i.to_string(),
        _ => return refuse(value, ty),
    };
    Ok(ColumnData::Numeric(Some(numeric_as(
        &text, precision, scale,
    )?)))
}

fn float_as(value: &ParamValue, ty: SqlType) -> Result<ColumnData<'static>, String> {
    let f = match value {
        ParamValue::Null => None,
        ParamValue::Float(f) => Some(finite(*f)?),
        ParamValue::Int(i) => Some(*i as f64),
        ParamValue::Decimal(s) => Some(
            s.trim()
                .parse::<f64>()
                .map_err(|_| format!("decimal {s:?} is not a number"))?,
        ),
        _ => return refuse(value, ty),
    };
    if ty == SqlType::Real {
        if let Some(f) = f
            && f.abs() > f64::from(f32::MAX)
        {
            return Err(format!("{f} is out of range for real"));
        }
        Ok(ColumnData::F32(f.map(|f| f as f32)))
    } else {
        Ok(ColumnData::F64(f))
    }
}

fn text_as(value: &ParamValue, ty: SqlType, n: Option<u16>) -> Result<ColumnData<'static>, String> {
    Ok(match value {
        ParamValue::Null => ColumnData::String(None),
        ParamValue::String(s) | ParamValue::Decimal(s) => {
            let units = s.encode_utf16().count();
            if let Some(n) = n
                && units > usize::from(n)
            {
                return Err(format!("{units} characters do not fit {ty}"));
            }
            ColumnData::String(Some(Cow::Owned(s.clone())))
        }
        _ => return refuse(value, ty),
    })
}

fn bytes_as(
    value: &ParamValue,
    ty: SqlType,
    n: Option<u16>,
) -> Result<ColumnData<'static>, String> {
    Ok(match value {
        ParamValue::Null => ColumnData::Binary(None),
        ParamValue::Bytes(b) => {
            let bytes = base64::decode(b)?;
            if let Some(n) = n
                && bytes.len() > usize::from(n)
            {
                return Err(format!("{} bytes do not fit {ty}", bytes.len()));
            }
            ColumnData::Binary(Some(Cow::Owned(bytes)))
        }
        _ => return refuse(value, ty),
    })
}

fn finite(f: f64) -> Result<f64, String> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(format!("float {f} is not a finite number"))
    }
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("date {s:?} is not YYYY-MM-DD: {e}"))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fffffff]`, no time zone (the server's applies).
fn datetime(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim().replacen(' ', "T", 1);
    let dt = NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f").map_err(|e| {
        format!(
            "datetime {s:?} is not YYYY-MM-DDTHH:MM:SS[.fffffff] without a time zone \
             (the server's time zone applies): {e}"
        )
    })?;
    if dt.and_utc().timestamp_subsec_nanos() % 100 != 0 {
        return Err(format!("datetime {s:?} has more than 7 fractional digits"));
    }
    Ok(dt)
}

/// `datetime` (1753-9999, 1/300 s): days since 1900-01-01 and 1/300 s ticks.
fn legacy_datetime(dt: &NaiveDateTime) -> Result<ColumnData<'static>, String> {
    use chrono::Timelike;
    let min = NaiveDate::from_ymd_opt(1753, 1, 1).unwrap_or_default();
    if dt.date() < min {
        return Err(format!("{dt} is before 1753-01-01, the first datetime"));
    }
    let epoch = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or_default();
    let days = i32::try_from((dt.date() - epoch).num_days())
        .map_err(|_| format!("{dt} is out of range for datetime"))?;
    let nanos =
        u64::from(dt.num_seconds_from_midnight()) * 1_000_000_000 + u64::from(dt.nanosecond());
    let ticks = (nanos * 3 + 5_000_000) / 10_000_000;
    let ticks = u32::try_from(ticks).map_err(|_| format!("{dt} is out of range for datetime"))?;
    Ok(ColumnData::DateTime(Some(tiberius::time::DateTime::new(
        days, ticks,
    ))))
}

/// Split `[+-]digits[.digits]` into (negative, integer digits, fraction digits).
fn decimal_parts(s: &str) -> Result<(bool, &str, &str), String> {
    let t = s.trim();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return Err(format!(
            "decimal {s:?} is not a decimal number (digits, an optional sign and point)"
        ));
    }
    Ok((neg, int.trim_start_matches('0'), frac))
}

fn to_numeric(s: &str, neg: bool, int: &str, frac: &str) -> Result<Numeric, String> {
    if int.len() + frac.len() > 38 {
        return Err(format!("decimal {s:?} has more than 38 digits"));
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    let scale = u8::try_from(frac.len()).map_err(|_| format!("decimal {s:?} is too long"))?;
    Ok(Numeric::new_with_scale(if neg { -v } else { v }, scale))
}

/// A decimal exactly as written (scale = its fraction digits).
pub fn numeric(s: &str) -> Result<Numeric, String> {
    let (neg, int, frac) = decimal_parts(s)?;
    to_numeric(s, neg, int, frac)
}

/// A decimal at `decimal(precision, scale)`: padded to the scale, refused
/// when it has more (non-zero) fraction digits or too many integer digits.
pub fn numeric_as(s: &str, precision: u8, scale: u8) -> Result<Numeric, String> {
    let (neg, int, frac) = decimal_parts(s)?;
    let scale = usize::from(scale);
    let kept = frac.trim_end_matches('0');
    if kept.len() > scale {
        return Err(format!(
            "decimal {s:?} has more than {scale} fraction digits (no silent rounding)"
        ));
    }
    if int.len() > usize::from(precision) - scale {
        return Err(format!(
            "decimal {s:?} does not fit decimal({precision},{scale})"
        ));
    }
    let padded = format!("{kept:0<scale$}");
    to_numeric(s, neg, int, &padded)
}

#[cfg(test)]
mod tests;
