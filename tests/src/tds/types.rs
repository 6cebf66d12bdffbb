//! SQL types and values as TDS encodes them (MS-TDS 2.2.5): TYPE_INFO and value
//! bytes, decoded from RPC parameters and encoded into COLMETADATA, ROW and
//! RETURNVALUE tokens.

use std::fmt;

use anyhow::{Result, bail, ensure};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::wire::{Cursor, put_utf16, utf16_to_string};

/// The collation sent with character types: `Latin1_General_CI_AS`.
pub(crate) const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];
/// Days from 0001-01-01 to 9999-12-31, the last valid `date`.
const MAX_DAYS: u32 = 3_652_058;
const PLP_NULL: u64 = u64::MAX;
const PLP_UNKNOWN: u64 = u64::MAX - 1;

const NULLTYPE: u8 = 0x1F;
const INTN: u8 = 0x26;
const BITN: u8 = 0x68;
const FLTN: u8 = 0x6D;
const DECIMALN: u8 = 0x6A;
const NUMERICN: u8 = 0x6C;
const NVARCHAR: u8 = 0xE7;
const BIGVARBINARY: u8 = 0xA5;
const DATETIME2N: u8 = 0x2A;
const DATEN: u8 = 0x28;

/// A SQL type as carried by TYPE_INFO. Character lengths are in characters,
/// `None` is `MAX` (sent as PLP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `NULLTYPE` (0x1F): an RPC parameter bound as an untyped NULL.
    Null,
    /// INTN(1).
    TinyInt,
    /// INTN(2).
    SmallInt,
    /// INTN(4).
    Int,
    /// INTN(8).
    BigInt,
    /// BITN(1).
    Bit,
    /// FLTN(4).
    Real,
    /// FLTN(8).
    Float,
    /// DECIMALN.
    Decimal { precision: u8, scale: u8 },
    /// NUMERICN.
    Numeric { precision: u8, scale: u8 },
    /// NVARCHAR(n) (characters) or NVARCHAR(MAX).
    NVarChar(Option<u16>),
    /// VARBINARY(n) or VARBINARY(MAX).
    VarBinary(Option<u16>),
    /// DATETIME2(scale).
    DateTime2(u8),
    /// DATE.
    Date,
}

impl SqlType {
    /// `decimal(precision, scale)`.
    pub fn decimal(precision: u8, scale: u8) -> SqlType {
        SqlType::Decimal { precision, scale }
    }

    /// `numeric(precision, scale)`.
    pub fn numeric(precision: u8, scale: u8) -> SqlType {
        SqlType::Numeric { precision, scale }
    }
}

impl fmt::Display for SqlType {
    /// The T-SQL spelling: `int`, `nvarchar(4000)`, `decimal(10,2)`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Null => write!(f, "null"),
            SqlType::TinyInt => write!(f, "tinyint"),
            SqlType::SmallInt => write!(f, "smallint"),
            SqlType::Int => write!(f, "int"),
            SqlType::BigInt => write!(f, "bigint"),
            SqlType::Bit => write!(f, "bit"),
            SqlType::Real => write!(f, "real"),
            SqlType::Float => write!(f, "float"),
            SqlType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            SqlType::Numeric { precision, scale } => write!(f, "numeric({precision},{scale})"),
            SqlType::NVarChar(Some(n)) => write!(f, "nvarchar({n})"),
            SqlType::NVarChar(None) => write!(f, "nvarchar(max)"),
            SqlType::VarBinary(Some(n)) => write!(f, "varbinary({n})"),
            SqlType::VarBinary(None) => write!(f, "varbinary(max)"),
            SqlType::DateTime2(s) => write!(f, "datetime2({s})"),
            SqlType::Date => write!(f, "date"),
        }
    }
}

/// A value of one of the supported types.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Any integer type.
    Int(i64),
    Bit(bool),
    /// REAL or FLOAT.
    Float(f64),
    /// DECIMAL/NUMERIC: `value / 10^scale`.
    Decimal {
        value: i128,
        scale: u8,
    },
    String(String),
    Binary(Vec<u8>),
    DateTime2(NaiveDateTime),
    Date(NaiveDate),
}

impl Value {
    /// A DECIMAL value, e.g. `Value::decimal(1234, 2)` is 12.34.
    pub fn decimal(value: i128, scale: u8) -> Value {
        Value::Decimal { value, scale }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $arm:expr),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                #[allow(clippy::redundant_closure_call)]
                ($arm)(v)
            }
        })*
    };
}

value_from! {
    i32 => |v: i32| Value::Int(v.into()),
    i64 => Value::Int,
    u8 => |v: u8| Value::Int(v.into()),
    i16 => |v: i16| Value::Int(v.into()),
    bool => Value::Bit,
    f64 => Value::Float,
    &str => |v: &str| Value::String(v.to_string()),
    String => Value::String,
    Vec<u8> => Value::Binary,
    &[u8] => |v: &[u8]| Value::Binary(v.to_vec()),
    NaiveDateTime => Value::DateTime2,
    NaiveDate => Value::Date,
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

fn epoch() -> Result<NaiveDate> {
    NaiveDate::from_ymd_opt(1, 1, 1).ok_or_else(|| anyhow::anyhow!("no 0001-01-01"))
}

/// Bytes of a DECIMAL/NUMERIC value (sign byte included) for a precision.
pub(crate) fn decimal_len(precision: u8) -> u8 {
    match precision {
        1..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// Bytes of the time part of a DATETIME2/TIME for a scale.
fn time_len(scale: u8) -> usize {
    match scale {
        0..=2 => 3,
        3..=4 => 4,
        _ => 5,
    }
}

fn pow10(n: u32) -> u128 {
    10u128.pow(n)
}

/// Read an RPC parameter's TYPE_INFO.
pub(crate) fn read_type_info(c: &mut Cursor<'_>) -> Result<SqlType> {
    let ty = c.u8()?;
    Ok(match ty {
        NULLTYPE => SqlType::Null,
        INTN => match c.u8()? {
            1 => SqlType::TinyInt,
            2 => SqlType::SmallInt,
            4 => SqlType::Int,
            8 => SqlType::BigInt,
            n => bail!("INTN with length {n}"),
        },
        BITN => {
            let n = c.u8()?;
            ensure!(n == 1, "BITN with length {n}");
            SqlType::Bit
        }
        FLTN => match c.u8()? {
            4 => SqlType::Real,
            8 => SqlType::Float,
            n => bail!("FLTN with length {n}"),
        },
        DECIMALN | NUMERICN => {
            let len = c.u8()?;
            let precision = c.u8()?;
            let scale = c.u8()?;
            ensure!(
                (1..=38).contains(&precision) && scale <= precision,
                "DECIMAL/NUMERIC with precision {precision} and scale {scale}"
            );
            ensure!(
                [5, 9, 13, 17].contains(&len) && len >= decimal_len(precision),
                "DECIMAL/NUMERIC length {len} for precision {precision}"
            );
            if ty == DECIMALN {
                SqlType::Decimal { precision, scale }
            } else {
                SqlType::Numeric { precision, scale }
            }
        }
        NVARCHAR => {
            let max = c.u16_le()?;
            c.take(COLLATION.len())?;
            if max == 0xFFFF {
                SqlType::NVarChar(None)
            } else {
                ensure!(
                    max > 0 && max <= 8000 && max % 2 == 0,
                    "NVARCHAR with max length {max} bytes"
                );
                SqlType::NVarChar(Some(max / 2))
            }
        }
        BIGVARBINARY => {
            let max = c.u16_le()?;
            if max == 0xFFFF {
                SqlType::VarBinary(None)
            } else {
                ensure!(max > 0 && max <= 8000, "VARBINARY with max length {max}");
                SqlType::VarBinary(Some(max))
            }
        }
        DATETIME2N => {
            let scale = c.u8()?;
            ensure!(scale <= 7, "DATETIME2 with scale {scale}");
            SqlType::DateTime2(scale)
        }
        DATEN => SqlType::Date,
        other => bail!("unsupported parameter type 0x{other:02X}"),
    })
}

/// Read a PLP value (MAX types): `None` for NULL.
fn read_plp(c: &mut Cursor<'_>) -> Result<Option<Vec<u8>>> {
    let total = c.u64_le()?;
    if total == PLP_NULL {
        return Ok(None);
    }
    let mut data = Vec::new();
    loop {
        let chunk = c.u32_le()? as usize;
        if chunk == 0 {
            break;
        }
        data.extend_from_slice(c.take(chunk)?);
    }
    if total != PLP_UNKNOWN {
        ensure!(
            data.len() as u64 == total,
            "PLP value of {} bytes announced as {total}",
            data.len()
        );
    }
    Ok(Some(data))
}

/// Read one value of type `ty` (an RPC parameter value).
pub(crate) fn read_value(c: &mut Cursor<'_>, ty: SqlType) -> Result<Value> {
    let width = |ty: SqlType| match ty {
        SqlType::TinyInt => 1,
        SqlType::SmallInt => 2,
        SqlType::Int | SqlType::Real => 4,
        _ => 8,
    };
    Ok(match ty {
        SqlType::Null => Value::Null,
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let len = c.u8()?;
            if len == 0 {
                return Ok(Value::Null);
            }
            ensure!(usize::from(len) == width(ty), "{ty} value of {len} bytes");
            let raw = c.uint_le(width(ty))?;
            Value::Int(match ty {
                SqlType::TinyInt => raw as i64,
                SqlType::SmallInt => i64::from(raw as u16 as i16),
                SqlType::Int => i64::from(raw as u32 as i32),
                _ => raw as u64 as i64,
            })
        }
        SqlType::Bit => match c.u8()? {
            0 => Value::Null,
            1 => Value::Bit(c.u8()? != 0),
            n => bail!("bit value of {n} bytes"),
        },
        SqlType::Real | SqlType::Float => {
            let len = c.u8()?;
            if len == 0 {
                return Ok(Value::Null);
            }
            ensure!(usize::from(len) == width(ty), "{ty} value of {len} bytes");
            let raw = c.uint_le(width(ty))?;
            let v = if ty == SqlType::Real {
                f64::from(f32::from_bits(raw as u32))
            } else {
                f64::from_bits(raw as u64)
            };
            ensure!(v.is_finite(), "{ty} value {v} is not a finite number");
            Value::Float(v)
        }
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            let len = c.u8()?;
            if len == 0 {
                return Ok(Value::Null);
            }
            ensure!([5, 9, 13, 17].contains(&len), "{ty} value of {len} bytes");
            let sign = c.u8()?;
            ensure!(sign <= 1, "{ty} value with sign byte {sign}");
            let magnitude = c.uint_le(usize::from(len) - 1)?;
            ensure!(
                magnitude < pow10(u32::from(precision)),
                "{ty} value {magnitude} exceeds the precision"
            );
            let value = magnitude as i128;
            Value::Decimal {
                value: if sign == 0 { -value } else { value },
                scale,
            }
        }
        SqlType::NVarChar(max) => {
            let bytes = match max {
                Some(n) => {
                    let len = c.u16_le()?;
                    if len == 0xFFFF {
                        return Ok(Value::Null);
                    }
                    ensure!(len <= n * 2, "{ty} value of {len} bytes");
                    c.take(usize::from(len))?.to_vec()
                }
                None => match read_plp(c)? {
                    None => return Ok(Value::Null),
                    Some(b) => b,
                },
            };
            ensure!(bytes.len() % 2 == 0, "{ty} value of an odd byte count");
            Value::String(utf16_to_string(&bytes))
        }
        SqlType::VarBinary(max) => match max {
            Some(n) => {
                let len = c.u16_le()?;
                if len == 0xFFFF {
                    return Ok(Value::Null);
                }
                ensure!(len <= n, "{ty} value of {len} bytes");
                Value::Binary(c.take(usize::from(len))?.to_vec())
            }
            None => read_plp(c)?.map_or(Value::Null, Value::Binary),
        },
        SqlType::DateTime2(scale) => {
            let len = c.u8()?;
            if len == 0 {
                return Ok(Value::Null);
            }
            let tl = time_len(scale);
            ensure!(usize::from(len) == tl + 3, "{ty} value of {len} bytes");
            let increments = c.uint_le(tl)?;
            let per_day = 86_400 * pow10(u32::from(scale));
            ensure!(increments < per_day, "{ty} time of day out of range");
            let date = read_date(c)?;
            let nanos = increments * pow10(9 - u32::from(scale));
            let secs = (nanos / 1_000_000_000) as u32;
            let frac = (nanos % 1_000_000_000) as u32;
            let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)
                .ok_or_else(|| anyhow::anyhow!("{ty} time out of range"))?;
            Value::DateTime2(NaiveDateTime::new(date, time))
        }
        SqlType::Date => match c.u8()? {
            0 => Value::Null,
            3 => Value::Date(read_date(c)?),
            n => bail!("date value of {n} bytes"),
        },
    })
}

fn read_date(c: &mut Cursor<'_>) -> Result<NaiveDate> {
    let days = c.uint_le(3)? as u32;
    ensure!(
        days <= MAX_DAYS,
        "date {days} days after 0001-01-01 is out of range"
    );
    epoch()?
        .checked_add_days(chrono::Days::new(u64::from(days)))
        .ok_or_else(|| anyhow::anyhow!("date out of range"))
}

/// Write a TYPE_INFO for a result column or a RETURNVALUE.
pub(crate) fn write_type_info(out: &mut Vec<u8>, ty: SqlType) -> Result<()> {
    match ty {
        SqlType::Null => bail!("NULLTYPE cannot describe a result column"),
        SqlType::TinyInt => out.extend_from_slice(&[INTN, 1]),
        SqlType::SmallInt => out.extend_from_slice(&[INTN, 2]),
        SqlType::Int => out.extend_from_slice(&[INTN, 4]),
        SqlType::BigInt => out.extend_from_slice(&[INTN, 8]),
        SqlType::Bit => out.extend_from_slice(&[BITN, 1]),
        SqlType::Real => out.extend_from_slice(&[FLTN, 4]),
        SqlType::Float => out.extend_from_slice(&[FLTN, 8]),
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            ensure!(
                (1..=38).contains(&precision) && scale <= precision,
                "invalid {ty}"
            );
            let t = if matches!(ty, SqlType::Decimal { .. }) {
                DECIMALN
            } else {
                NUMERICN
            };
            out.extend_from_slice(&[t, decimal_len(precision), precision, scale]);
        }
        SqlType::NVarChar(max) => {
            out.push(NVARCHAR);
            let bytes = match max {
                Some(n) => {
                    ensure!((1..=4000).contains(&n), "invalid {ty}");
                    n * 2
                }
                None => 0xFFFF,
            };
            out.extend_from_slice(&bytes.to_le_bytes());
            out.extend_from_slice(&COLLATION);
        }
        SqlType::VarBinary(max) => {
            out.push(BIGVARBINARY);
            let bytes = match max {
                Some(n) => {
                    ensure!((1..=8000).contains(&n), "invalid {ty}");
                    n
                }
                None => 0xFFFF,
            };
            out.extend_from_slice(&bytes.to_le_bytes());
        }
        SqlType::DateTime2(scale) => {
            ensure!(scale <= 7, "invalid {ty}");
            out.extend_from_slice(&[DATETIME2N, scale]);
        }
        SqlType::Date => out.push(DATEN),
    }
    Ok(())
}

fn write_plp(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    if !data.is_empty() {
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out.extend_from_slice(&0u32.to_le_bytes());
}

fn days_since_epoch(d: NaiveDate) -> Result<u32> {
    let days = (d - epoch()?).num_days();
    ensure!(
        (0..=i64::from(MAX_DAYS)).contains(&days),
        "date {d} out of range"
    );
    Ok(days as u32)
}

/// Write one value of type `ty` (a ROW column or a RETURNVALUE value).
pub(crate) fn write_value(out: &mut Vec<u8>, ty: SqlType, v: &Value) -> Result<()> {
    let mismatch = || anyhow::anyhow!("value {v:?} does not fit a {ty} column");
    if v.is_null() {
        match ty {
            SqlType::Null => bail!("NULLTYPE cannot describe a result column"),
            SqlType::NVarChar(Some(_)) | SqlType::VarBinary(Some(_)) => {
                out.extend_from_slice(&0xFFFFu16.to_le_bytes())
            }
            SqlType::NVarChar(None) | SqlType::VarBinary(None) => {
                out.extend_from_slice(&PLP_NULL.to_le_bytes())
            }
            _ => out.push(0),
        }
        return Ok(());
    }
    match (ty, v) {
        (SqlType::TinyInt, Value::Int(i)) => {
            let b = u8::try_from(*i).map_err(|_| mismatch())?;
            out.extend_from_slice(&[1, b]);
        }
        (SqlType::SmallInt, Value::Int(i)) => {
            let b = i16::try_from(*i).map_err(|_| mismatch())?;
            out.push(2);
            out.extend_from_slice(&b.to_le_bytes());
        }
        (SqlType::Int, Value::Int(i)) => {
            let b = i32::try_from(*i).map_err(|_| mismatch())?;
            out.push(4);
            out.extend_from_slice(&b.to_le_bytes());
        }
        (SqlType::BigInt, Value::Int(i)) => {
            out.push(8);
            out.extend_from_slice(&i.to_le_bytes());
        }
        (SqlType::Bit, Value::Bit(b)) => out.extend_from_slice(&[1, u8::from(*b)]),
        (SqlType::Real, Value::Float(f)) => {
            out.push(4);
            out.extend_from_slice(&(*f as f32).to_le_bytes());
        }
        (SqlType::Float, Value::Float(f)) => {
            out.push(8);
            out.extend_from_slice(&f.to_le_bytes());
        }
        (
            SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale },
            Value::Decimal { value, scale: vs },
        ) => {
            ensure!(*vs <= scale, "{v:?} has more decimals than {ty}");
            let scaled = value
                .checked_mul(pow10(u32::from(scale - vs)) as i128)
                .ok_or_else(mismatch)?;
            let magnitude = scaled.unsigned_abs();
            ensure!(
                magnitude < pow10(u32::from(precision)),
                "{v:?} exceeds {ty}"
            );
            let len = decimal_len(precision);
            out.push(len);
            out.push(u8::from(scaled >= 0));
            out.extend_from_slice(&magnitude.to_le_bytes()[..usize::from(len) - 1]);
        }
        (SqlType::NVarChar(max), Value::String(s)) => {
            let mut bytes = Vec::with_capacity(s.len() * 2);
            put_utf16(&mut bytes, s);
            match max {
                Some(n) => {
                    ensure!(
                        bytes.len() <= usize::from(n) * 2,
                        "{v:?} is longer than {ty}"
                    );
                    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                None => write_plp(out, &bytes),
            }
        }
        (SqlType::VarBinary(max), Value::Binary(b)) => match max {
            Some(n) => {
                ensure!(b.len() <= usize::from(n), "{v:?} is longer than {ty}");
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            None => write_plp(out, b),
        },
        (SqlType::DateTime2(scale), Value::DateTime2(dt)) => {
            let t = dt.time();
            let nanos = u128::from(t.num_seconds_from_midnight()) * 1_000_000_000
                + u128::from(t.nanosecond());
            let increments = nanos / pow10(9 - u32::from(scale));
            let tl = time_len(scale);
            out.push((tl + 3) as u8);
            out.extend_from_slice(&increments.to_le_bytes()[..tl]);
            out.extend_from_slice(&days_since_epoch(dt.date())?.to_le_bytes()[..3]);
        }
        (SqlType::Date, Value::Date(d)) => {
            out.push(3);
            out.extend_from_slice(&days_since_epoch(*d)?.to_le_bytes()[..3]);
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
