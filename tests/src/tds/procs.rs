//! What SQL Server checks before running an RPC: `sp_executesql`'s statement,
//! declarations and arguments, and a declared procedure's parameters (names,
//! OUTPUT, missing and surplus arguments, implicit type conversions). A failed
//! check becomes SQL Server's ERROR, never a silent success.

use chrono::{NaiveDate, NaiveDateTime};

use super::record::{Param, Rpc, normalize_name};
use super::tokens::ServerMessage;
use super::types::{SqlType, Value};

/// A stored procedure the script declares; once any is declared, RPCs to
/// other names fail with error 2812 like on a real server.
#[derive(Debug, Clone)]
pub struct Procedure {
    pub name: String,
    pub params: Vec<ProcParam>,
}

/// A declared procedure parameter.
#[derive(Debug, Clone)]
pub struct ProcParam {
    pub name: String,
    pub ty: SqlType,
    pub output: bool,
    /// Has a default, so it may be left out.
    pub optional: bool,
}

impl Procedure {
    pub fn new(name: impl Into<String>) -> Procedure {
        Procedure {
            name: name.into(),
            params: Vec::new(),
        }
    }

    fn push(mut self, name: &str, ty: SqlType, output: bool, optional: bool) -> Procedure {
        self.params.push(ProcParam {
            name: name.to_string(),
            ty,
            output,
            optional,
        });
        self
    }

    /// A required input parameter.
    pub fn param(self, name: &str, ty: SqlType) -> Procedure {
        self.push(name, ty, false, false)
    }

    /// An input parameter with a default.
    pub fn optional(self, name: &str, ty: SqlType) -> Procedure {
        self.push(name, ty, false, true)
    }

    /// An OUTPUT parameter (may be left out, as T-SQL allows when it has a
    /// default; declare it required with [`Procedure::required_output`]).
    pub fn output(self, name: &str, ty: SqlType) -> Procedure {
        self.push(name, ty, true, true)
    }

    pub fn required_output(self, name: &str, ty: SqlType) -> Procedure {
        self.push(name, ty, true, false)
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let want = normalize_name(&self.name);
        let got = normalize_name(name);
        got == want
            || (!want.contains('.') && got == format!("dbo.{want}"))
            || (!got.contains('.') && want == format!("dbo.{got}"))
    }
}

fn err(number: i32, class: u8, message: String) -> ServerMessage {
    ServerMessage::new(number, class, message).line(0)
}

/// Base type name as SQL Server's messages spell it.
fn base(ty: SqlType) -> String {
    let s = ty.to_string();
    match s.find('(') {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Parse a T-SQL type name (`int`, `nvarchar(4000)`, `numeric(10,2)`, …);
/// `None` for types this server does not model (those are not type-checked).
pub(crate) fn parse_type(s: &str) -> Option<SqlType> {
    let s = s.trim().to_lowercase().replace(' ', "");
    let (name, args) = match s.find('(') {
        Some(i) => (&s[..i], Some(s[i + 1..].strip_suffix(')')?)),
        None => (s.as_str(), None),
    };
    let nums = |a: &str| -> Option<Vec<u16>> {
        a.split(',')
            .map(|x| x.parse::<u16>().ok())
            .collect::<Option<Vec<_>>>()
    };
    let len = |a: Option<&str>, default: u16| -> Option<Option<u16>> {
        match a {
            None => Some(Some(default)),
            Some("max") => Some(None),
            Some(n) => n.parse().ok().map(Some),
        }
    };
    Some(match name {
        "tinyint" => SqlType::TinyInt,
        "smallint" => SqlType::SmallInt,
        "int" => SqlType::Int,
        "bigint" => SqlType::BigInt,
        "bit" => SqlType::Bit,
        "real" => SqlType::Real,
        "float" => match args.and_then(|a| a.parse::<u8>().ok()) {
            Some(n) if n <= 24 => SqlType::Real,
            _ => SqlType::Float,
        },
        "decimal" | "numeric" => {
            let (precision, scale) = match args.map(nums) {
                None => (18, 0),
                Some(Some(v)) if v.len() == 1 => (v[0] as u8, 0),
                Some(Some(v)) if v.len() == 2 => (v[0] as u8, v[1] as u8),
                _ => return None,
            };
            if name == "decimal" {
                SqlType::Decimal { precision, scale }
            } else {
                SqlType::Numeric { precision, scale }
            }
        }
        "nvarchar" | "nchar" => SqlType::NVarChar(len(args, 1)?),
        "varbinary" | "binary" => SqlType::VarBinary(len(args, 1)?),
        "datetime2" => SqlType::DateTime2(args.map_or(Some(7), |a| a.parse().ok())?),
        "date" => SqlType::Date,
        _ => return None,
    })
}

/// The implicit conversion of an argument to a declared type, as SQL Server
/// performs it: `Some(error)` where SQL Server refuses.
pub(crate) fn convert(declared: SqlType, arg: &Param) -> Option<ServerMessage> {
    use SqlType as T;
    let (from, to) = (base(arg.ty), base(declared));
    let clash = || {
        err(
            206,
            16,
            format!("Operand type clash: {from} is incompatible with {to}"),
        )
    };
    let overflow = || {
        err(
            8115,
            16,
            format!("Arithmetic overflow error converting {from} to data type {to}."),
        )
    };
    let numeric = |t: SqlType| {
        matches!(
            t,
            T::TinyInt
                | T::SmallInt
                | T::Int
                | T::BigInt
                | T::Bit
                | T::Real
                | T::Float
                | T::Decimal { .. }
                | T::Numeric { .. }
        )
    };
    let date = |t: SqlType| matches!(t, T::DateTime2(_) | T::Date);
    if arg.value.is_null() {
        return None;
    }
    // The value as a number (integer part and digits), if it is one.
    let as_number = |v: &Value| -> Option<(f64, u32)> {
        match v {
            Value::Int(i) => Some((*i as f64, digits(i.unsigned_abs() as u128))),
            Value::Bit(b) => Some((f64::from(u8::from(*b)), 1)),
            Value::Float(f) => Some((f.trunc(), digits(f.abs().trunc() as u128))),
            Value::Decimal { value, scale } => {
                let int = value.unsigned_abs() / 10u128.pow(u32::from(*scale));
                Some((*value as f64 / 10f64.powi(i32::from(*scale)), digits(int)))
            }
            Value::String(s) => {
                let f: f64 = s.trim().parse().ok()?;
                Some((f, digits(f.abs().trunc() as u128)))
            }
            _ => None,
        }
    };
    if numeric(declared) {
        if date(arg.ty) {
            return Some(clash());
        }
        if matches!(arg.ty, T::VarBinary(_)) {
            return None;
        }
        let Some((value, int_digits)) = as_number(&arg.value) else {
            return Some(err(
                8114,
                16,
                format!("Error converting data type {from} to {to}."),
            ));
        };
        let fits = match declared {
            T::TinyInt => (0.0..=255.0).contains(&value.trunc()),
            T::SmallInt => (-32768.0..=32767.0).contains(&value.trunc()),
            T::Int => (-2147483648.0..=2147483647.0).contains(&value.trunc()),
            T::BigInt => value.trunc().abs() < 9.3e18,
            T::Decimal { precision, scale } | T::Numeric { precision, scale } => {
                int_digits <= u32::from(precision - scale)
            }
            _ => true,
        };
        return (!fits).then(overflow);
    }
    if date(declared) {
        if let Value::String(s) = &arg.value {
            return (!parses_as_date(s)).then(|| {
                err(
                    241,
                    16,
                    "Conversion failed when converting date and/or time from character string."
                        .into(),
                )
            });
        }
        return (!date(arg.ty)).then(clash);
    }
    if matches!(declared, T::VarBinary(_)) {
        if matches!(arg.ty, T::NVarChar(_)) {
            return Some(err(
                257,
                16,
                format!(
                    "Implicit conversion from data type {from} to {to} is not allowed. \
                     Use the CONVERT function to run this query."
                ),
            ));
        }
        return date(arg.ty).then(clash);
    }
    None
}

fn digits(mut n: u128) -> u32 {
    let mut d = 0;
    while n > 0 {
        n /= 10;
        d += 1;
    }
    d
}

fn parses_as_date(s: &str) -> bool {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || NaiveDate::parse_from_str(s, "%Y%m%d").is_ok()
        || [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(s, f).is_ok())
}

/// A parameter declaration (from `sp_executesql`'s list or a [`Procedure`]).
struct Decl {
    name: String,
    ty: Option<SqlType>,
    output: bool,
    optional: bool,
}

enum Bind {
    TooMany,
    Unknown(String),
    Duplicate(String),
    NotOutput(String),
    Missing(String),
    Mixed(usize),
    Convert(ServerMessage),
}

/// Bind arguments to declarations the way SQL Server does.
fn bind(decls: &[Decl], args: &[Param]) -> Result<(), Bind> {
    let mut supplied = vec![false; decls.len()];
    let mut named = false;
    for (i, arg) in args.iter().enumerate() {
        let idx = if arg.name.is_empty() {
            if named {
                return Err(Bind::Mixed(i + 1));
            }
            if i >= decls.len() {
                return Err(Bind::TooMany);
            }
            i
        } else {
            named = true;
            match decls
                .iter()
                .position(|d| d.name.eq_ignore_ascii_case(&arg.name))
            {
                Some(idx) => idx,
                None if decls.is_empty() => return Err(Bind::TooMany),
                None => return Err(Bind::Unknown(arg.name.clone())),
            }
        };
        if supplied[idx] {
            return Err(Bind::Duplicate(decls[idx].name.clone()));
        }
        supplied[idx] = true;
        let decl = &decls[idx];
        if arg.output && !decl.output {
            return Err(Bind::NotOutput(decl.name.clone()));
        }
        if let Some(ty) = decl.ty
            && let Some(e) = convert(ty, arg)
        {
            return Err(Bind::Convert(e));
        }
    }
    for (decl, given) in decls.iter().zip(&supplied) {
        if !given && !decl.optional {
            return Err(Bind::Missing(decl.name.clone()));
        }
    }
    Ok(())
}

/// Split `@a int, @b numeric(10,2) OUTPUT` at top-level commas.
fn parse_declarations(list: &str) -> Result<Vec<Decl>, ServerMessage> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, ch) in list.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    let mut decls = Vec::new();
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let syntax = || err(102, 15, format!("Incorrect syntax near '{part}'."));
        let (name, rest) = part.split_once(char::is_whitespace).ok_or_else(syntax)?;
        if !name.starts_with('@') || name.len() < 2 {
            return Err(syntax());
        }
        let mut rest = rest.trim().to_string();
        let lower = rest.to_lowercase();
        let mut output = false;
        for kw in [" output", " out"] {
            if lower.ends_with(kw) {
                rest.truncate(rest.len() - kw.len());
                output = true;
                break;
            }
        }
        decls.push(Decl {
            name: name.to_string(),
            ty: parse_type(&rest),
            output,
            optional: false,
        });
    }
    Ok(decls)
}

/// `sp_executesql`'s checks: an nvarchar statement, an nvarchar declaration
/// list when arguments follow, and every argument bound to a declaration.
pub(crate) fn check_execute_sql(rpc: &Rpc) -> Option<ServerMessage> {
    let is_text = |p: Option<&Param>| {
        p.is_some_and(|p| matches!(p.ty, SqlType::NVarChar(_)) && !p.value.is_null())
    };
    if !is_text(rpc.params.first()) {
        return Some(err(
            214,
            16,
            "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'.".into(),
        ));
    }
    let args = rpc.args();
    if !args.is_empty() && !is_text(rpc.params.get(1)) {
        return Some(err(
            214,
            16,
            "Procedure expects parameter '@params' of type 'ntext/nchar/nvarchar'.".into(),
        ));
    }
    let list = rpc.declarations().unwrap_or("");
    let decls = match parse_declarations(list) {
        Ok(d) => d,
        Err(e) => return Some(e),
    };
    let stmt = rpc.statement().unwrap_or("");
    match bind(&decls, args) {
        Ok(()) => None,
        Err(Bind::TooMany) => Some(err(
            8144,
            16,
            "Procedure or function has too many arguments specified.".into(),
        )),
        Err(Bind::Unknown(p)) => Some(err(
            8145,
            16,
            format!("{p} is not a parameter for procedure sp_executesql."),
        )),
        Err(Bind::Duplicate(p)) => Some(err(
            8143,
            16,
            format!("Parameter '{p}' was supplied multiple times."),
        )),
        Err(Bind::NotOutput(p)) => Some(not_output(&p)),
        Err(Bind::Missing(p)) => Some(err(
            8178,
            16,
            format!(
                "The parameterized query '({list}){stmt}' expects the parameter '{p}', \
                 which was not supplied."
            ),
        )),
        Err(Bind::Mixed(n)) => Some(mixed(n)),
        Err(Bind::Convert(e)) => Some(e),
    }
}

fn not_output(p: &str) -> ServerMessage {
    err(
        8162,
        16,
        format!(
            "The formal parameter \"{p}\" was not declared as an OUTPUT parameter, \
             but the actual parameter passed in requested output."
        ),
    )
}

fn mixed(n: usize) -> ServerMessage {
    err(
        119,
        15,
        format!(
            "Must pass parameter number {n} and subsequent parameters as '@name = value'. \
             After the form '@name = value' has been used, all subsequent parameters \
             must be passed in the form '@name = value'."
        ),
    )
}

/// A named procedure's checks against the declared procedures.
pub(crate) fn check_procedure(procs: &[Procedure], rpc: &Rpc) -> Option<ServerMessage> {
    let name = rpc.name()?;
    if procs.is_empty() {
        return None;
    }
    let Some(proc) = procs.iter().find(|p| p.matches(name)) else {
        return Some(err(
            2812,
            16,
            format!("Could not find stored procedure '{name}'."),
        ));
    };
    let decls: Vec<Decl> = proc
        .params
        .iter()
        .map(|p| Decl {
            name: p.name.clone(),
            ty: Some(p.ty),
            output: p.output,
            optional: p.optional,
        })
        .collect();
    let short = proc
        .name
        .rsplit('.')
        .next()
        .unwrap_or(&proc.name)
        .to_string();
    let e = match bind(&decls, &rpc.params) {
        Ok(()) => return None,
        Err(Bind::TooMany) => err(
            8144,
            16,
            format!("Procedure or function {short} has too many arguments specified."),
        ),
        Err(Bind::Unknown(p)) => err(
            8145,
            16,
            format!("{p} is not a parameter for procedure {short}."),
        ),
        Err(Bind::Duplicate(p)) => err(
            8143,
            16,
            format!("Parameter '{p}' was supplied multiple times."),
        ),
        Err(Bind::NotOutput(p)) => not_output(&p),
        Err(Bind::Missing(p)) => err(
            201,
            16,
            format!(
                "Procedure or function '{short}' expects parameter '{p}', which was not supplied."
            ),
        ),
        Err(Bind::Mixed(n)) => mixed(n),
        Err(Bind::Convert(e)) => e,
    };
    Some(e.procedure(short))
}
