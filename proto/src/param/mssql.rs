//! SQL Server: names and values as the agent's TDS executor binds them.
//!
//! With `sql_type` (see [`SqlType`]) a value is converted and range-checked
//! for that type; without it `int` binds as bigint, `string` nvarchar,
//! `decimal` numeric (exact), `float` float, `bool` bit, `bytes` (base64)
//! varbinary, `date` date, `date_time` datetime2 and `null` as an untyped
//! NULL. The agent turns a [`Typed`] into the driver's value one to one.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use super::{ParamMode, ParamValue, base64, date, datetime, decimal_parts, finite, time};
use crate::SqlType;

/// Longest identifier part (`sysname`).
pub const MAX_IDENT: usize = 128;
/// Longest parameter name without its `@`.
pub const MAX_PARAM: usize = 127;
/// Most digits of a decimal.
pub const MAX_DIGITS: usize = 38;

/// A value typed for the wire; `None` is a NULL of that type.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed {
    /// An untyped NULL (the server converts it to the parameter's type).
    Null,
    /// `bit`.
    Bit(Option<bool>),
    /// `tinyint`.
    U8(Option<u8>),
    /// `smallint`.
    I16(Option<i16>),
    /// `int`.
    I32(Option<i32>),
    /// `bigint`.
    I64(Option<i64>),
    /// `real`.
    F32(Option<f32>),
    /// `float`.
    F64(Option<f64>),
    /// `nvarchar`.
    Text(Option<String>),
    /// `varbinary`.
    Binary(Option<Vec<u8>>),
    /// `numeric`: the digits as an integer, and the scale.
    Numeric(Option<(i128, u8)>),
    /// `date`.
    Date(Option<NaiveDate>),
    /// `time`.
    Time(Option<NaiveTime>),
    /// `datetime2`.
    DateTime2(Option<NaiveDateTime>),
    /// `datetime`: days since 1900-01-01 and 1/300 s ticks since midnight.
    DateTime(Option<(i32, u32)>),
    /// `uniqueidentifier`.
    Guid(Option<uuid::Uuid>),
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

/// `name`, `schema.name` or `database.schema.name`.
pub fn routine_parts(name: &str) -> Result<Vec<&str>, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 3 || !parts.iter().all(|p| valid_part(p)) {
        return Err(format!(
            "procedure name {name:?} must be `name`, `schema.name` or `database.schema.name`, \
             each part 1-128 characters of A-Z a-z 0-9 _ @ # $ not starting with a digit or $"
        ));
    }
    Ok(parts)
}

/// Whether a parameter name is `[A-Za-z0-9_]{1,127}`.
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAM
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
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

/// A parameter's value typed for the wire: an OUT parameter without a
/// value goes in as a NULL of its `sql_type` (required then: the value's
/// type would otherwise give it); IN and INOUT parameters need a value.
pub fn bind_param(
    value: Option<&ParamValue>,
    mode: ParamMode,
    ty: Option<SqlType>,
) -> Result<Typed, String> {
    match (value, ty) {
        (Some(v), ty) => bind(v, ty),
        (None, Some(ty)) if mode == ParamMode::Out => bind(&ParamValue::Null, Some(ty)),
        (None, None) if mode == ParamMode::Out => Err(
            "an out parameter without a value needs a sql_type on SQL Server (the value's \
             type would otherwise give it)"
                .into(),
        ),
        (None, _) => Err(super::required(mode)),
    }
}

/// A value typed for the wire: by `ty` when given, else by its own type.
pub fn bind(value: &ParamValue, ty: Option<SqlType>) -> Result<Typed, String> {
    match ty {
        None => bind_natural(value),
        Some(t) => bind_as(value, t),
    }
}

fn bind_natural(value: &ParamValue) -> Result<Typed, String> {
    Ok(match value {
        ParamValue::Null => Typed::Null,
        ParamValue::Bool(b) => Typed::Bit(Some(*b)),
        ParamValue::Int(i) => Typed::I64(Some(*i)),
        ParamValue::Decimal(s) => Typed::Numeric(Some(numeric(s)?)),
        ParamValue::Float(f) => Typed::F64(Some(finite(*f)?)),
        ParamValue::String(s) => Typed::Text(Some(s.clone())),
        ParamValue::Bytes(b) => Typed::Binary(Some(base64::decode(b)?)),
        ParamValue::Date(s) => Typed::Date(Some(date(s)?)),
        ParamValue::DateTime(s) => Typed::DateTime2(Some(datetime(s, 7)?)),
    })
}

fn refuse(value: &ParamValue, ty: SqlType) -> Result<Typed, String> {
    Err(format!("a {} value cannot be bound as {ty}", kind(value)))
}

fn bind_as(value: &ParamValue, ty: SqlType) -> Result<Typed, String> {
    let int = |lo: i64, hi: i64| -> Result<Option<i64>, String> {
        match value {
            ParamValue::Null => Ok(None),
            ParamValue::Int(i) if (lo..=hi).contains(i) => Ok(Some(*i)),
            ParamValue::Int(i) => Err(format!("{i} is out of range for {ty} ({lo} to {hi})")),
            _ => Err(format!("a {} value cannot be bound as {ty}", kind(value))),
        }
    };
    let null = matches!(value, ParamValue::Null);
    Ok(match ty {
        SqlType::Bit => match value {
            ParamValue::Null => Typed::Bit(None),
            ParamValue::Bool(b) => Typed::Bit(Some(*b)),
            ParamValue::Int(i @ (0 | 1)) => Typed::Bit(Some(*i == 1)),
            _ => return refuse(value, ty),
        },
        SqlType::TinyInt => Typed::U8(int(0, 255)?.map(|i| i as u8)),
        SqlType::SmallInt => Typed::I16(int(i16::MIN.into(), i16::MAX.into())?.map(|i| i as i16)),
        SqlType::Int => Typed::I32(int(i32::MIN.into(), i32::MAX.into())?.map(|i| i as i32)),
        SqlType::BigInt => Typed::I64(int(i64::MIN, i64::MAX)?),
        SqlType::Decimal { precision, scale } => decimal_as(value, ty, precision, scale)?,
        SqlType::Float | SqlType::Real => float_as(value, ty)?,
        SqlType::NVarChar(n) | SqlType::VarChar(n) => text_as(value, ty, n)?,
        SqlType::VarBinary(n) => bytes_as(value, ty, n)?,
        SqlType::Date => match value {
            ParamValue::Date(s) | ParamValue::String(s) => Typed::Date(Some(date(s)?)),
            _ if null => Typed::Date(None),
            _ => return refuse(value, ty),
        },
        SqlType::Time(_) => match value {
            ParamValue::String(s) => Typed::Time(Some(time(s)?)),
            _ if null => Typed::Time(None),
            _ => return refuse(value, ty),
        },
        SqlType::DateTime2(_) => match value {
            ParamValue::DateTime(s) | ParamValue::String(s) => {
                Typed::DateTime2(Some(datetime(s, 7)?))
            }
            _ if null => Typed::DateTime2(None),
            _ => return refuse(value, ty),
        },
        SqlType::DateTime => match value {
            ParamValue::DateTime(s) | ParamValue::String(s) => {
                Typed::DateTime(Some(legacy_datetime(&datetime(s, 7)?)?))
            }
            _ if null => Typed::DateTime(None),
            _ => return refuse(value, ty),
        },
        SqlType::UniqueIdentifier => match value {
            ParamValue::String(s) => Typed::Guid(Some(
                uuid::Uuid::parse_str(s.trim())
                    .map_err(|e| format!("{s:?} is not a uniqueidentifier: {e}"))?,
            )),
            _ if null => Typed::Guid(None),
            _ => return refuse(value, ty),
        },
    })
}

fn decimal_as(value: &ParamValue, ty: SqlType, precision: u8, scale: u8) -> Result<Typed, String> {
    let text = match value {
        ParamValue::Null => return Ok(Typed::Numeric(None)),
        ParamValue::Decimal(s) | ParamValue::String(s) => s.clone(),
        ParamValue::Int(i) => i.to_string(),
        _ => return refuse(value, ty),
    };
    Ok(Typed::Numeric(Some(numeric_as(&text, precision, scale)?)))
}

fn float_as(value: &ParamValue, ty: SqlType) -> Result<Typed, String> {
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
        Ok(Typed::F32(f.map(|f| f as f32)))
    } else {
        Ok(Typed::F64(f))
    }
}

fn text_as(value: &ParamValue, ty: SqlType, n: Option<u16>) -> Result<Typed, String> {
    Ok(match value {
        ParamValue::Null => Typed::Text(None),
        ParamValue::String(s) | ParamValue::Decimal(s) => {
            let units = s.encode_utf16().count();
            if let Some(n) = n
                && units > usize::from(n)
            {
                return Err(format!("{units} characters do not fit {ty}"));
            }
            Typed::Text(Some(s.clone()))
        }
        _ => return refuse(value, ty),
    })
}

fn bytes_as(value: &ParamValue, ty: SqlType, n: Option<u16>) -> Result<Typed, String> {
    Ok(match value {
        ParamValue::Null => Typed::Binary(None),
        ParamValue::Bytes(b) => {
            let bytes = base64::decode(b)?;
            if let Some(n) = n
                && bytes.len() > usize::from(n)
            {
                return Err(format!("{} bytes do not fit {ty}", bytes.len()));
            }
            Typed::Binary(Some(bytes))
        }
        _ => return refuse(value, ty),
    })
}

/// `datetime` (1753-9999, 1/300 s): days since 1900-01-01 and 1/300 s ticks.
pub fn legacy_datetime(dt: &NaiveDateTime) -> Result<(i32, u32), String> {
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
    Ok((days, ticks))
}

fn to_numeric(s: &str, neg: bool, int: &str, frac: &str) -> Result<(i128, u8), String> {
    if int.len() + frac.len() > MAX_DIGITS {
        return Err(format!("decimal {s:?} has more than 38 digits"));
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    let scale = u8::try_from(frac.len()).map_err(|_| format!("decimal {s:?} is too long"))?;
    Ok((if neg { -v } else { v }, scale))
}

/// A decimal exactly as written (scale = its fraction digits).
pub fn numeric(s: &str) -> Result<(i128, u8), String> {
    let (neg, int, frac) = decimal_parts(s)?;
    to_numeric(s, neg, int, frac)
}

/// A decimal at `decimal(precision, scale)`: padded to the scale, refused
/// when it has more (non-zero) fraction digits or too many integer digits.
pub fn numeric_as(s: &str, precision: u8, scale: u8) -> Result<(i128, u8), String> {
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
