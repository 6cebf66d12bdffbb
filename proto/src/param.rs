//! Procedure calls read by the engine of their connection: routine and
//! parameter names, and every parameter value parsed by its type. Pure (no
//! I/O): the agent binds with these functions, and the controller runs the
//! same ones at submit, so a submission is refused exactly when the agent
//! would refuse it later.
//!
//! - MySQL/MariaDB ([`mysql`]): `name` or `schema.name`, each part 1-64
//!   characters of `[A-Za-z0-9_$]`; parameter names `[A-Za-z0-9_]{1,64}`;
//!   values by their own type (`sql_type` is not used).
//! - SQL Server ([`mssql`]): up to `database.schema.name`, each part 1-128
//!   characters of `[A-Za-z0-9_@#$]` not starting with a digit or `$`;
//!   parameter names `[A-Za-z0-9_]{1,127}`; values by `sql_type` when given.
//!
//! Shared value rules: dates `YYYY-MM-DD` (a real day), date-times
//! `YYYY-MM-DD[T ]HH:MM:SS[.f…]` without a zone (6 fraction digits on MySQL,
//! 7 on SQL Server), decimals `[+-]digits[.digits]`, bytes standard base64,
//! floats finite.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use crate::base64;
use crate::job::{ParamMode, ParamValue, ProcedureSpec};

pub mod mssql;

/// The database engine of a connection, as agents advertise it
/// (`ConnectionInfo::kind`): the one the session settings use.
pub use crate::session::Engine;

/// A refused part of a procedure call: the field (`spec.procedure`,
/// `spec.params[2].value`, …) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Refusal {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Check a procedure call the way `engine`'s executor will: the routine
/// name, the parameter names and every parameter value.
pub fn check_call(spec: &ProcedureSpec, engine: Engine) -> Result<(), Refusal> {
    let refuse = |field: String, message: String| Refusal { field, message };
    let name = match engine {
        Engine::Mysql => mysql::routine_parts(&spec.procedure).map(drop),
        Engine::Mssql => mssql::routine_parts(&spec.procedure).map(drop),
    };
    name.map_err(|e| {
        refuse(
            "spec.procedure".into(),
            format!("{e} (on {})", engine.as_str()),
        )
    })?;
    for (i, p) in spec.params.iter().enumerate() {
        let name_ok = match engine {
            Engine::Mysql => mysql::valid_param_name(&p.name),
            Engine::Mssql => mssql::valid_param_name(&p.name),
        };
        if !name_ok {
            let max = match engine {
                Engine::Mysql => mysql::MAX_IDENT,
                Engine::Mssql => mssql::MAX_PARAM,
            };
            return Err(refuse(
                format!("spec.params[{i}].name"),
                format!(
                    "{:?} must be 1-{max} characters of A-Z a-z 0-9 _ (on {})",
                    p.name,
                    engine.as_str()
                ),
            ));
        }
        let value = match (engine, &p.value) {
            (Engine::Mysql, Some(v)) => mysql::bind(v).map(drop),
            (Engine::Mssql, value) => {
                let ty = match &p.sql_type {
                    Some(t) => Some(
                        crate::SqlType::parse(t)
                            .map_err(|e| refuse(format!("spec.params[{i}].sql_type"), e))?,
                    ),
                    None => None,
                };
                mssql::bind_param(value.as_ref(), p.mode, ty).map(drop)
            }
            // MySQL: an OUT parameter's value is only a type hint.
            (Engine::Mysql, None) if p.mode == ParamMode::Out => Ok(()),
            (Engine::Mysql, None) => Err(required(p.mode)),
        };
        value.map_err(|e| {
            refuse(
                format!("spec.params[{i}].value"),
                format!("{} ({}): {e}", p.name, engine.as_str()),
            )
        })?;
    }
    Ok(())
}

/// Why a parameter without a value is refused.
pub fn required(mode: ParamMode) -> String {
    let mode = match mode {
        ParamMode::In => "in",
        ParamMode::InOut => "inout",
        ParamMode::Out => "out",
    };
    format!("required for {mode} parameters")
}

/// A date `YYYY-MM-DD` that exists.
pub fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("date {s:?} is not YYYY-MM-DD: {e}"))
}

/// A time `HH:MM:SS[.f…]`.
pub fn time(s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
        .map_err(|e| format!("time {s:?} is not HH:MM:SS[.fffffff]: {e}"))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f…]` without a time zone (the server's applies),
/// with at most `digits` (6 or 7) fraction digits.
pub fn datetime(s: &str, digits: u32) -> Result<NaiveDateTime, String> {
    let t = s.trim().replacen(' ', "T", 1);
    let fraction = "f".repeat(digits as usize);
    let dt = NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S%.f").map_err(|e| {
        format!(
            "datetime {s:?} is not YYYY-MM-DDTHH:MM:SS[.{fraction}] without a time zone \
             (the server's time zone applies): {e}"
        )
    })?;
    if dt.nanosecond() % 10u32.pow(9 - digits.min(9)) != 0 {
        return Err(format!(
            "datetime {s:?} has more than {digits} fractional digits"
        ));
    }
    Ok(dt)
}

/// A decimal split into (negative, integer digits without leading zeros,
/// fraction digits): `[+-]digits[.digits]`, at least one digit.
pub fn decimal_parts(s: &str) -> Result<(bool, &str, &str), String> {
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

/// A float JSON can carry and a server can store.
pub fn finite(f: f64) -> Result<f64, String> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(format!("float {f} is not a finite number"))
    }
}

/// MySQL and MariaDB.
pub mod mysql {
    use chrono::{Datelike, Timelike};

    use super::{ParamValue, base64, date, datetime, decimal_parts, finite};

    /// Longest identifier part.
    pub const MAX_IDENT: usize = 64;
    /// Longest decimal text.
    pub const MAX_DECIMAL: usize = 100;

    /// A value to bind, as the driver takes it.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Scalar {
        /// NULL.
        Null,
        /// An integer (booleans as 0/1).
        Int(i64),
        /// A double.
        Double(f64),
        /// Text the server converts (decimals, dates, strings, bytes).
        Bytes(Vec<u8>),
    }

    fn valid_part(part: &str) -> bool {
        !part.is_empty()
            && part.len() <= MAX_IDENT
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    }

    /// Whether a database or schema name is 1-64 characters of `[A-Za-z0-9_$]`.
    pub fn valid_schema(name: &str) -> bool {
        valid_part(name)
    }

    /// `name` or `schema.name`, each part `[A-Za-z0-9_$]{1,64}`.
    pub fn routine_parts(name: &str) -> Result<Vec<&str>, String> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 2 || !parts.iter().all(|p| valid_part(p)) {
            return Err(format!(
                "procedure name {name:?} must be `name` or `schema.name`, each part 1-64 \
                 characters of A-Z a-z 0-9 _ $"
            ));
        }
        Ok(parts)
    }

    /// Whether a parameter name is `[A-Za-z0-9_]{1,64}`.
    pub fn valid_param_name(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_IDENT
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }

    /// Optional sign, digits, an optional point and digits; at least one
    /// digit; at most [`MAX_DECIMAL`] characters.
    pub fn is_decimal(s: &str) -> bool {
        let t = s.trim();
        let unsigned = t.strip_prefix(['+', '-']).unwrap_or(t);
        decimal_parts(s).is_ok() && unsigned.len() <= MAX_DECIMAL
    }

    /// A parameter value as the driver binds it. Values are never spliced into SQL.
    pub fn bind(value: &ParamValue) -> Result<Scalar, String> {
        Ok(match value {
            ParamValue::Null => Scalar::Null,
            ParamValue::Bool(b) => Scalar::Int(i64::from(*b)),
            ParamValue::Int(i) => Scalar::Int(*i),
            ParamValue::Decimal(s) => {
                if !is_decimal(s) {
                    return Err(format!(
                        "decimal {s:?} is not a decimal number (digits, an optional sign and point)"
                    ));
                }
                Scalar::Bytes(s.trim().as_bytes().to_vec())
            }
            ParamValue::Float(f) => Scalar::Double(finite(*f)?),
            ParamValue::String(s) => Scalar::Bytes(s.as_bytes().to_vec()),
            ParamValue::Bytes(b) => Scalar::Bytes(base64::decode(b)?),
            ParamValue::Date(s) => {
                let d = date(s)?;
                Scalar::Bytes(
                    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day()).into_bytes(),
                )
            }
            ParamValue::DateTime(s) => {
                let dt = datetime(s, 6)?;
                let base = dt.format("%Y-%m-%d %H:%M:%S").to_string();
                let text = match dt.nanosecond() {
                    0 => base,
                    n => format!("{base}.{:06}", n / 1000),
                };
                Scalar::Bytes(text.into_bytes())
            }
        })
    }
}

#[cfg(test)]
mod tests;
