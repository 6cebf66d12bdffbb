//! A `procedure` job as statements: validated, quoted names and bound values.
//!
//! `CALL \`schema\`.\`name\`(?, @baton_out_2, @baton_out_3)`: IN parameters
//! are bound `?` values; OUT parameters are session variables
//! `@baton_out_N` (N = 1-based position), read back with one `SELECT` once
//! every result set of the call has been drained; INOUT parameters are set
//! first (`SET @baton_out_N = ?`, bound) and passed as the variable. Using
//! variables rather than `?` for OUT parameters keeps MariaDB's binary
//! protocol from adding a result set of its own.
//!
//! Session settings (`procedure` and `sql` jobs) become one
//! `SET SESSION time_zone = ?, SESSION timestamp = ?` with bound values
//! ([`session_set`]), run on the job's connection before the work; the pool
//! resets the session (`COM_RESET_CONNECTION`) when the connection goes back,
//! so they never reach the next job.

use std::collections::BTreeSet;

use baton_proto::param::mysql;
use baton_proto::session::{self, Checked, Engine};
use baton_proto::{ParamMode, ParamValue, ProcedureSpec, Session};
use mysql_async::Value;

use super::value;

/// Longest identifier part (MySQL and MariaDB).
pub use baton_proto::param::mysql::MAX_IDENT;

/// A procedure call ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    /// The quoted procedure name (for messages).
    pub procedure: String,
    /// `SET @baton_out_2 = ?, ...` for INOUT parameters, with its values.
    pub set: Option<(String, Vec<Value>)>,
    /// `CALL ...(...)`.
    pub call: String,
    /// Values of the `?` in `call`, in order.
    pub params: Vec<Value>,
    /// `SELECT @baton_out_2, ...` for OUT/INOUT values, when there are any.
    pub select_out: Option<String>,
    /// Name and type hint (if given) of each OUT/INOUT parameter, in
    /// `select_out` order.
    pub outs: Vec<(String, Option<ParamValue>)>,
}

/// `name` or `schema.name`, each part `[A-Za-z0-9_$]{1,64}`, quoted with
/// backticks (which the check keeps out of the parts); the rule is
/// [`mysql::routine_parts`], which the controller checks at submit.
pub fn quote_procedure(name: &str) -> Result<String, String> {
    Ok(mysql::routine_parts(name)?
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join("."))
}

/// A database name quoted for use in SQL (same rule as one procedure part).
pub fn quote_schema(name: &str) -> Result<String, String> {
    if mysql::valid_schema(name) {
        Ok(format!("`{name}`"))
    } else {
        Err(format!(
            "database name {name:?} must be 1-64 characters of A-Z a-z 0-9 _ $"
        ))
    }
}

/// Whether a parameter name is `[A-Za-z0-9_]{1,64}`.
pub fn valid_param_name(name: &str) -> bool {
    mysql::valid_param_name(name)
}

/// The session variable that carries OUT/INOUT parameter number `n` (1-based).
pub fn out_var(n: usize) -> String {
    format!("@baton_out_{n}")
}

/// The job's session settings as one `SET SESSION k = ?, ...` statement with
/// bound values (`None` without settings). Every key is checked against the
/// MySQL allow-list ([`baton_proto::session`]) first, so only allow-listed
/// names reach the SQL text; a key of another engine is refused.
pub fn session_set(session: &Session) -> Result<Option<(String, Vec<Value>)>, String> {
    if session.is_empty() {
        return Ok(None);
    }
    let checked =
        session::check_all(Engine::Mysql, session).map_err(|e| format!("spec.session: {e}"))?;
    let mut sets = Vec::with_capacity(checked.len());
    let mut values = Vec::with_capacity(checked.len());
    for (key, value) in checked {
        sets.push(format!("SESSION {key} = ?"));
        values.push(match value {
            Checked::Int(i) => Value::Int(i),
            Checked::Text(t) => Value::Bytes(t.into_bytes()),
            Checked::Word(w) => Value::Bytes(w.as_bytes().to_vec()),
        });
    }
    Ok(Some((format!("SET {}", sets.join(", ")), values)))
}

/// Validate a procedure spec and turn it into statements.
pub fn plan(spec: &ProcedureSpec) -> Result<CallPlan, String> {
    let procedure = quote_procedure(&spec.procedure)?;
    let mut seen = BTreeSet::new();
    let mut args = Vec::with_capacity(spec.params.len());
    let mut params = Vec::new();
    let mut sets = Vec::new();
    let mut set_values = Vec::new();
    let mut outs = Vec::new();
    for (i, p) in spec.params.iter().enumerate() {
        let n = i + 1;
        if !valid_param_name(&p.name) {
            return Err(format!(
                "params[{i}].name {:?} must be 1-64 characters of A-Z a-z 0-9 _",
                p.name
            ));
        }
        if !seen.insert(p.name.as_str()) {
            return Err(format!("params[{i}].name {:?} is given twice", p.name));
        }
        let bound = || match &p.value {
            Some(v) => value::bind(v).map_err(|e| format!("params[{i}].value ({}): {e}", p.name)),
            None => Err(format!(
                "params[{i}].value ({}): required for {} parameters",
                p.name,
                if p.mode == ParamMode::In {
                    "in"
                } else {
                    "inout"
                }
            )),
        };
        match p.mode {
            ParamMode::In => {
                params.push(bound()?);
                args.push("?".to_owned());
            }
            ParamMode::Out => {
                // Only the type hint matters (none is fine); still refuse a malformed one.
                if p.value.is_some() {
                    bound()?;
                }
                args.push(out_var(n));
                outs.push((p.name.clone(), p.value.clone()));
            }
            ParamMode::InOut => {
                set_values.push(bound()?);
                sets.push(format!("{} = ?", out_var(n)));
                args.push(out_var(n));
                outs.push((p.name.clone(), p.value.clone()));
            }
        }
    }
    let set = (!sets.is_empty()).then(|| (format!("SET {}", sets.join(", ")), set_values));
    let select_out = (!outs.is_empty()).then(|| {
        let cols: Vec<String> = spec
            .params
            .iter()
            .enumerate()
            .filter(|(_, p)| p.mode != ParamMode::In)
            .map(|(i, _)| out_var(i + 1))
            .collect();
        format!("SELECT {}", cols.join(", "))
    });
    Ok(CallPlan {
        call: format!("CALL {procedure}({})", args.join(", ")),
        procedure,
        set,
        params,
        select_out,
        outs,
    })
}

#[cfg(test)]
mod tests;
