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

use baton_proto::param::mssql::{self, Typed};
use baton_proto::session::{self, Engine};
use baton_proto::{ParamMode, ParamValue, ProcedureSpec, Session, SqlType};
use chrono::NaiveDateTime;
use tiberius::numeric::Numeric;
use tiberius::{ColumnData, IntoSql};

pub use baton_proto::param::mssql::{MAX_IDENT, MAX_PARAM};

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

/// `name`, `schema.name` or `database.schema.name`, bracket-quoted (the
/// rule is [`mssql::routine_parts`], which the controller checks at submit).
pub fn quote_procedure(name: &str) -> Result<String, String> {
    let parts = mssql::routine_parts(name).map_err(|e| format!("spec.{e}"))?;
    Ok(parts
        .iter()
        .map(|p| format!("[{p}]"))
        .collect::<Vec<_>>()
        .join("."))
}

/// Whether a parameter name is `[A-Za-z0-9_]{1,127}`.
pub fn valid_param_name(name: &str) -> bool {
    mssql::valid_param_name(name)
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
        let value = mssql::bind_param(p.value.as_ref(), p.mode, ty)
            .map(column)
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

/// A value as a typed TDS value: typed by [`mssql::bind`] (shared with the
/// controller's submit check), mapped here one to one.
pub fn bind(value: &ParamValue, ty: Option<SqlType>) -> Result<ColumnData<'static>, String> {
    mssql::bind(value, ty).map(column)
}

/// A typed value as the driver's value, one to one.
fn column(typed: Typed) -> ColumnData<'static> {
    match typed {
        Typed::Null => ColumnData::String(None),
        Typed::Bit(b) => ColumnData::Bit(b),
        Typed::U8(i) => ColumnData::U8(i),
        Typed::I16(i) => ColumnData::I16(i),
        Typed::I32(i) => ColumnData::I32(i),
        Typed::I64(i) => ColumnData::I64(i),
        Typed::F32(f) => ColumnData::F32(f),
        Typed::F64(f) => ColumnData::F64(f),
        Typed::Text(s) => ColumnData::String(s.map(Cow::Owned)),
        Typed::Binary(b) => ColumnData::Binary(b.map(Cow::Owned)),
        Typed::Numeric(n) => {
            ColumnData::Numeric(n.map(|(v, scale)| Numeric::new_with_scale(v, scale)))
        }
        Typed::Date(None) => ColumnData::Date(None),
        Typed::Date(Some(d)) => d.into_sql(),
        Typed::Time(None) => ColumnData::Time(None),
        Typed::Time(Some(t)) => t.into_sql(),
        Typed::DateTime2(None) => ColumnData::DateTime2(None),
        Typed::DateTime2(Some(dt)) => dt.into_sql(),
        Typed::DateTime(dt) => {
            ColumnData::DateTime(dt.map(|(days, ticks)| tiberius::time::DateTime::new(days, ticks)))
        }
        Typed::Guid(g) => ColumnData::Guid(g),
    }
}

/// `datetime` (1753-9999, 1/300 s): days since 1900-01-01 and 1/300 s ticks.
pub fn legacy_datetime(dt: &NaiveDateTime) -> Result<ColumnData<'static>, String> {
    let (days, ticks) = mssql::legacy_datetime(dt)?;
    Ok(ColumnData::DateTime(Some(tiberius::time::DateTime::new(
        days, ticks,
    ))))
}

#[cfg(test)]
mod tests;
