//! Submission checks of an `export` spec, each naming its field: the query,
//! the bound parameters (by the connection's engine when it is known, as the
//! agent binds them), the prefix.

use baton_proto::param::{self, Engine};
use baton_proto::{ExportSpec, ParamValue, valid_name};

use super::{Error, err, rule};
pub use baton_proto::export::{MAX_PARAMS, MAX_QUERY_BYTES};

/// The engine-independent checks (at submit, before placement).
pub fn spec(e: &ExportSpec) -> Result<(), Error> {
    if e.query.trim().is_empty() {
        return Err(err("spec.query", "must not be empty"));
    }
    if e.params.len() > MAX_PARAMS {
        return Err(err(
            "spec.params",
            format!("at most {MAX_PARAMS} parameters"),
        ));
    }
    if let Some(p) = &e.prefix
        && (!valid_name(p) || p.starts_with(['.', '-']))
    {
        return Err(err(
            "spec.prefix",
            "must be a valid name (A-Z a-z 0-9 _ . -), not starting with '.' or '-'",
        ));
    }
    if e.query.len() > MAX_QUERY_BYTES {
        return Err(rule(
            "spec.query",
            format!("must be at most {MAX_QUERY_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The parameter values, read by each of `engines` as the agent will (by
/// every engine when none is known yet: refused only if all refuse).
pub fn params(e: &ExportSpec, engines: &[Engine]) -> Result<(), Error> {
    for (i, value) in e.params.iter().enumerate() {
        let field = format!("spec.params[{i}]");
        if engines.is_empty() {
            let refusals: Vec<String> = Engine::ALL
                .into_iter()
                .filter_map(|engine| bind(value, engine).err())
                .collect();
            if refusals.len() == Engine::ALL.len() {
                return Err(err(&field, refusals.join("; ")));
            }
            continue;
        }
        for engine in engines {
            bind(value, *engine).map_err(|m| err(&field, m))?;
        }
    }
    Ok(())
}

fn bind(value: &ParamValue, engine: Engine) -> Result<(), String> {
    match engine {
        Engine::Mysql => param::mysql::bind(value).map(|_| ()),
        Engine::Mssql => param::mssql::bind(value, None).map(|_| ()),
    }
}

#[cfg(test)]
mod tests;
