//! The SQL types a procedure parameter may be bound as (`sql_type`, SQL
//! Server): an allow-list, parsed the same way by the controller (refusing a
//! submission) and the agent (choosing the TDS type).
//!
//! Accepted (case-insensitive, blanks ignored): `bit`, `tinyint`, `smallint`,
//! `int`, `bigint`, `decimal[(p[,s])]`, `numeric[(p[,s])]` (p 1-38, s 0-p),
//! `float`, `real`, `nvarchar(n|max)` (n 1-4000), `varchar(n|max)` (n
//! 1-8000; bound as nvarchar), `varbinary(n|max)` (n 1-8000), `date`,
//! `time[(s)]`, `datetime2[(s)]` (s 0-7), `datetime`, `uniqueidentifier`.

/// A parsed `sql_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// `bit`.
    Bit,
    /// `tinyint` (0-255).
    TinyInt,
    /// `smallint`.
    SmallInt,
    /// `int`.
    Int,
    /// `bigint`.
    BigInt,
    /// `decimal(p,s)` / `numeric(p,s)`.
    Decimal {
        /// Precision, 1-38.
        precision: u8,
        /// Scale, 0-precision.
        scale: u8,
    },
    /// `float` (8 bytes).
    Float,
    /// `real` (4 bytes).
    Real,
    /// `nvarchar(n)`; `None` is `max`.
    NVarChar(Option<u16>),
    /// `varchar(n)`; `None` is `max` (bound as nvarchar).
    VarChar(Option<u16>),
    /// `varbinary(n)`; `None` is `max`.
    VarBinary(Option<u16>),
    /// `date`.
    Date,
    /// `time(s)`.
    Time(u8),
    /// `datetime2(s)`.
    DateTime2(u8),
    /// `datetime`.
    DateTime,
    /// `uniqueidentifier`.
    UniqueIdentifier,
}

/// What `sql_type` accepts, for error messages.
pub const SQL_TYPES: &str = "bit, tinyint, smallint, int, bigint, decimal(p,s), numeric(p,s), \
     float, real, nvarchar(n|max), varchar(n|max), varbinary(n|max), date, time, datetime2, \
     datetime, uniqueidentifier";

impl SqlType {
    /// Parse a type name; the error says what is accepted.
    pub fn parse(text: &str) -> Result<SqlType, String> {
        let s: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let bad = |why: &str| format!("{text:?} {why}");
        let (name, args) = match s.split_once('(') {
            Some((n, rest)) => match rest.strip_suffix(')') {
                Some(a) if !a.is_empty() => (n, Some(a)),
                _ => return Err(bad("has an unbalanced or empty argument list")),
            },
            None => (s.as_str(), None),
        };
        let number = |a: &str, max: u16, what: &str| -> Result<u16, String> {
            match a.parse::<u16>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad(&format!("needs a {what} of 1-{max} or max"))),
            }
        };
        let length = |max: u16| -> Result<Option<u16>, String> {
            match args {
                None => Err(bad("needs a length: (n) or (max)")),
                Some("max") => Ok(None),
                Some(a) => number(a, max, "length").map(Some),
            }
        };
        let fraction = || -> Result<u8, String> {
            match args {
                None => Ok(7),
                Some(a) => match a.parse::<u8>() {
                    Ok(n) if n <= 7 => Ok(n),
                    _ => Err(bad("needs a fractional-second scale of 0-7")),
                },
            }
        };
        let plain = |t: SqlType| match args {
            None => Ok(t),
            Some(_) => Err(bad("takes no arguments")),
        };
        match name {
            "bit" => plain(SqlType::Bit),
            "tinyint" => plain(SqlType::TinyInt),
            "smallint" => plain(SqlType::SmallInt),
            "int" => plain(SqlType::Int),
            "bigint" => plain(SqlType::BigInt),
            "float" => plain(SqlType::Float),
            "real" => plain(SqlType::Real),
            "date" => plain(SqlType::Date),
            "datetime" => plain(SqlType::DateTime),
            "uniqueidentifier" => plain(SqlType::UniqueIdentifier),
            "decimal" | "numeric" => {
                let (precision, scale) = match args {
                    None => (18, 0),
                    Some(a) => {
                        let (p, s) = a.split_once(',').unwrap_or((a, "0"));
                        match (p.parse::<u8>(), s.parse::<u8>()) {
                            (Ok(p), Ok(s)) if (1..=38).contains(&p) && s <= p => (p, s),
                            _ => {
                                return Err(bad(
                                    "needs a precision of 1-38 and a scale of 0 to the precision",
                                ));
                            }
                        }
                    }
                };
                Ok(SqlType::Decimal { precision, scale })
            }
            "nvarchar" => length(4000).map(SqlType::NVarChar),
            "varchar" => length(8000).map(SqlType::VarChar),
            "varbinary" => length(8000).map(SqlType::VarBinary),
            "time" => fraction().map(SqlType::Time),
            "datetime2" => fraction().map(SqlType::DateTime2),
            _ => Err(format!(
                "{text:?} is not a supported SQL type (supported: {SQL_TYPES})"
            )),
        }
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |n: &Option<u16>| n.map_or_else(|| "max".to_owned(), |n| n.to_string());
        match self {
            SqlType::Bit => write!(f, "bit"),
            SqlType::TinyInt => write!(f, "tinyint"),
            SqlType::SmallInt => write!(f, "smallint"),
            SqlType::Int => write!(f, "int"),
            SqlType::BigInt => write!(f, "bigint"),
            SqlType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            SqlType::Float => write!(f, "float"),
            SqlType::Real => write!(f, "real"),
            SqlType::NVarChar(n) => write!(f, "nvarchar({})", len(n)),
            SqlType::VarChar(n) => write!(f, "varchar({})", len(n)),
            SqlType::VarBinary(n) => write!(f, "varbinary({})", len(n)),
            SqlType::Date => write!(f, "date"),
            SqlType::Time(s) => write!(f, "time({s})"),
            SqlType::DateTime2(s) => write!(f, "datetime2({s})"),
            SqlType::DateTime => write!(f, "datetime"),
            SqlType::UniqueIdentifier => write!(f, "uniqueidentifier"),
        }
    }
}

#[cfg(test)]
mod tests;
