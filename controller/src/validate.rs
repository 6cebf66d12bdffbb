//! Validation of job submissions: every refusal names the field at fault,
//! and says whether the OpenAPI document already calls the request invalid
//! ([`Kind::Malformed`], 400) or the request is valid by the document but
//! breaks a rule no schema can state ([`Kind::Unprocessable`], 422: rules
//! across fields, sizes in bytes, grammars such as `sql_type`, configured
//! limits).

use baton_proto::param::{self, Engine};
use baton_proto::session::{self, Session};
use baton_proto::{
    CommandSpec, JobSpec, JobSubmit, ParamMode, ProcedureSpec, RestoreSpec, SqlType, limits,
    restore, valid_name,
};

pub mod export;

/// A refused field: `(dotted field path, message)` and its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Error {
    /// Dotted path of the field.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Whether the document says so (400) or only the server (422).
    pub kind: Kind,
}

/// How a refusal relates to the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The document's schema refuses it too (a pattern, a bound, a
    /// required field): 400 `bad_request`.
    Malformed,
    /// Valid by the document, refused by a rule it cannot state: 422
    /// `unprocessable`.
    Unprocessable,
}

/// A refusal the document states (400).
fn err(field: &str, message: impl Into<String>) -> Error {
    Error {
        field: field.to_owned(),
        message: message.into(),
        kind: Kind::Malformed,
    }
}

/// A refusal by a rule the document cannot state (422).
fn rule(field: &str, message: impl Into<String>) -> Error {
    Error {
        kind: Kind::Unprocessable,
        ..err(field, message)
    }
}

/// Check a list of worker groups (`groups`, `groups[i]` named on error).
pub fn groups(groups: &[String]) -> Result<(), Error> {
    if groups.is_empty() {
        return Err(err("groups", "at least one group"));
    }
    match groups.iter().position(|g| !valid_name(g)) {
        Some(i) => Err(err(
            &format!("groups[{i}]"),
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        )),
        None => Ok(()),
    }
}

/// Longest execution timeout a job may ask for (30 days).
pub const MAX_TIMEOUT_MS: u64 = 30 * DAY_MS;
/// Longest retry backoff (7 days).
pub const MAX_BACKOFF_MS: u64 = 7 * DAY_MS;
/// Most labels on a job.
pub const MAX_LABELS: usize = 64;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// Most entries in `retry.retry_on` and `retry.retry_codes`.
pub const MAX_RETRY_LIST: usize = 64;
/// Deepest nesting of a completion's `result.data` (arrays and objects);
/// the agent cuts its data to the same bound before sending.
pub use baton_proto::limits::MAX_DATA_DEPTH;
const DAY_MS: u64 = 86_400_000;

/// `value` as milliseconds within `1..=max` (`name` on error).
fn ms_in_range(field: &str, value: u64, max: u64, max_text: &str) -> Result<(), Error> {
    if value == 0 {
        return Err(err(field, "must be positive"));
    }
    if value > max {
        return Err(err(field, format!("must be at most {max} ({max_text})")));
    }
    Ok(())
}

/// A map key as named in an error: at most 64 bytes of it.
fn clip_key(k: &str) -> String {
    clip(k, 64)
}

/// At most `max` bytes of `s`, cut on a character boundary (`…` marks a cut).
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Check a submission; returns the effective lease TTL. `max_spec_bytes`
/// bounds the spec as JSON (args, env, SQL, parameters in total).
pub fn submission(s: &JobSubmit, default_ttl_ms: u64, max_spec_bytes: usize) -> Result<u64, Error> {
    if !valid_name(&s.group) {
        return Err(err(
            "group",
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    let ttl = s.lease_ttl_ms.unwrap_or(default_ttl_ms);
    if ttl < limits::MIN_LEASE_TTL_MS {
        return Err(err("lease_ttl_ms", "must be at least 2000 (2 s)"));
    }
    if ttl > limits::MAX_LEASE_TTL_MS {
        return Err(err("lease_ttl_ms", "must be at most 3600000 (1 h)"));
    }
    if let Some(t) = s.timeout_ms {
        ms_in_range("timeout_ms", t, MAX_TIMEOUT_MS, "30 days")?;
    }
    retry(&s.retry)?;
    labels(&s.labels)?;
    spec(&s.spec, max_spec_bytes)?;
    Ok(ttl)
}

fn retry(r: &baton_proto::RetryPolicy) -> Result<(), Error> {
    if r.max_attempts == 0 || r.max_attempts > limits::MAX_ATTEMPTS {
        return Err(err("retry.max_attempts", "must be between 1 and 100"));
    }
    if r.max_backoff_ms > MAX_BACKOFF_MS {
        return Err(err(
            "retry.max_backoff_ms",
            format!("must be at most {MAX_BACKOFF_MS} (7 days)"),
        ));
    }
    if r.retry_on.len() > MAX_RETRY_LIST {
        return Err(err(
            "retry.retry_on",
            format!("at most {MAX_RETRY_LIST} entries"),
        ));
    }
    if r.retry_codes.len() > MAX_RETRY_LIST {
        return Err(err(
            "retry.retry_codes",
            format!("at most {MAX_RETRY_LIST} entries"),
        ));
    }
    if !(1.0..=10.0).contains(&r.multiplier) {
        return Err(err("retry.multiplier", "must be between 1 and 10"));
    }
    if !(0.0..=1.0).contains(&r.jitter) {
        return Err(err("retry.jitter", "must be between 0 and 1"));
    }
    // An initial backoff above the cap is taken: every delay is the cap
    // (`RetryPolicy::base_delay_ms`), and no schema can compare two fields;
    // it is bounded as the cap is.
    if r.initial_backoff_ms > MAX_BACKOFF_MS {
        return Err(err(
            "retry.initial_backoff_ms",
            format!("must be at most {MAX_BACKOFF_MS} (7 days)"),
        ));
    }
    Ok(())
}

fn labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), Error> {
    if labels.len() > MAX_LABELS {
        return Err(err("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (k, v) in labels {
        if !valid_name(k) {
            return Err(err(
                &format!("labels.{}", clip_key(k)),
                "label keys must be valid names",
            ));
        }
        if v.len() > MAX_LABEL_VALUE {
            // The document bounds characters; bytes are the server's rule.
            let kind = if v.chars().count() > MAX_LABEL_VALUE {
                Kind::Malformed
            } else {
                Kind::Unprocessable
            };
            return Err(Error {
                kind,
                ..err(
                    &format!("labels.{}", clip_key(k)),
                    "label values are at most 256 bytes",
                )
            });
        }
    }
    Ok(())
}

/// The spec's size as JSON, and the field that holds most of it.
fn spec_size(spec: &JobSpec) -> (usize, &'static str) {
    let total = serde_json::to_vec(spec).map_or(usize::MAX, |v| v.len());
    let field = match spec {
        JobSpec::Command(c) => {
            let args: usize = c.args.iter().map(|a| a.len() + 3).sum();
            let env: usize = c.env.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
            let program = c.program.len() + c.working_dir.as_ref().map_or(0, String::len);
            if program > args.max(env) {
                "spec.program"
            } else if env > args {
                "spec.env"
            } else {
                "spec.args"
            }
        }
        JobSpec::Procedure(_) => "spec.params",
        JobSpec::Sql(_) => "spec.sql",
        JobSpec::Dump(_) | JobSpec::Noop(_) | JobSpec::Restore(_) | JobSpec::Upload(_) => "spec",
        JobSpec::Export(_) => "spec.query",
    };
    (total, field)
}

/// Check a spec: its connection, the fields of its kind, then its size.
fn spec(spec: &JobSpec, max_spec_bytes: usize) -> Result<(), Error> {
    if let Some(c) = spec.connection()
        && !valid_name(c)
    {
        return Err(err("spec.connection", "must be a valid name"));
    }
    match spec {
        JobSpec::Command(c) => command(c)?,
        JobSpec::Procedure(p) => procedure(p)?,
        JobSpec::Sql(q) => {
            if q.sql.trim().is_empty() {
                return Err(err("spec.sql", "must not be empty"));
            }
        }
        JobSpec::Dump(d) => {
            if !valid_name(&d.database) {
                return Err(err("spec.database", "must be a valid name"));
            }
        }
        JobSpec::Noop(n) => {
            if n.sleep_ms > 86_400_000 {
                return Err(err("spec.sleep_ms", "must be at most one day"));
            }
        }
        JobSpec::Export(e) => export::spec(e)?,
        JobSpec::Restore(r) => restore(r)?,
        JobSpec::Upload(u) => upload::check(u)?,
    }
    if let Some(settings) = spec.session() {
        session(settings)?;
    }
    let (size, field) = spec_size(spec);
    if size > max_spec_bytes {
        return Err(rule(
            field,
            format!(
                "the spec is {size} bytes as JSON; at most {max_spec_bytes} (max_spec_bytes) are allowed"
            ),
        ));
    }
    Ok(())
}

/// A restore: a target database a restore may create, and exactly one
/// source (a file, or an object of a store; where the file may lie and
/// whether the store exists are the agent's and placement's to check).
fn restore(r: &RestoreSpec) -> Result<(), Error> {
    // The database may be a pipeline reference: no pattern in the document.
    if let Some(why) = restore::database_refusal(&r.database) {
        return Err(rule("spec.database", why));
    }
    match r.source.origin() {
        Ok(_) => Ok(()),
        Err((field, why)) => Err(rule(&format!("spec.{field}"), why)),
    }
}

/// A command: a program, no NUL bytes, valid environment variable names.
fn command(c: &CommandSpec) -> Result<(), Error> {
    if c.program.trim().is_empty() {
        return Err(err("spec.program", "must not be empty"));
    }
    if c.program.contains('\0') || c.args.iter().any(|a| a.contains('\0')) {
        return Err(rule("spec.args", "must not contain NUL bytes"));
    }
    for k in c.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(rule(
                &format!("spec.env.{}", clip_key(k)),
                "invalid variable name",
            ));
        }
    }
    Ok(())
}

/// A procedure call: a routine name, parameter names valid, a value for
/// every in/inout parameter (what the document states, 400), then names
/// distinct (case-insensitive) and SQL types on the allow-list (422).
fn procedure(p: &ProcedureSpec) -> Result<(), Error> {
    if !valid_routine_name(&p.procedure) {
        return Err(err(
            "spec.procedure",
            "must be `name`, `schema.name` or `database.schema.name`, each part 1-128 \
             characters of A-Z a-z 0-9 _ @ # $",
        ));
    }
    for (i, param) in p.params.iter().enumerate() {
        if !valid_param_name(&param.name) {
            return Err(err(
                &format!("spec.params[{i}].name"),
                "must be 1-127 characters of A-Z a-z 0-9 _",
            ));
        }
        if param.value.is_none() && param.mode != ParamMode::Out {
            return Err(err(
                &format!("spec.params[{i}].value"),
                "required for in and inout parameters (only out parameters may leave it out)",
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, param) in p.params.iter().enumerate() {
        if !seen.insert(param.name.to_ascii_lowercase()) {
            return Err(rule(
                &format!("spec.params[{i}].name"),
                format!(
                    "{:?} is given twice (names are case-insensitive)",
                    param.name
                ),
            ));
        }
        if let Some(t) = &param.sql_type
            && let Err(e) = SqlType::parse(t)
        {
            return Err(rule(&format!("spec.params[{i}].sql_type"), e));
        }
    }
    Ok(())
}

/// Check a job by the engines of its connection, as the agent will: a
/// procedure call with `baton_proto::param` (names by engine, every value
/// parsed by its type), and the session settings of a procedure or sql job
/// against each engine's allow-list. Refused if any of `engines` refuses it.
/// With no engine known (no agent advertises the connection yet,
/// `allow_unplaced`), only what every engine refuses is refused (the
/// settings were checked so by [`submission`]). Other kinds of spec pass.
/// Every refusal here is [`Kind::Unprocessable`]: the document cannot say
/// what an engine takes.
pub fn call(spec: &JobSpec, engines: &[Engine]) -> Result<(), Error> {
    by_engines(spec, engines).map_err(|e| Error {
        kind: Kind::Unprocessable,
        ..e
    })
}

fn by_engines(spec: &JobSpec, engines: &[Engine]) -> Result<(), Error> {
    for e in engines {
        for (k, v) in spec.session().into_iter().flatten() {
            session_setting(*e, k, v)?;
        }
    }
    if let JobSpec::Export(e) = spec {
        return export::params(e, engines);
    }
    let JobSpec::Procedure(p) = spec else {
        return Ok(());
    };
    let refusal = |r: param::Refusal| err(&r.field, r.message);
    if engines.is_empty() {
        // Refused only when every engine refuses; name the refusal that got
        // furthest into the call (the most lenient engine's).
        let mut furthest: Option<param::Refusal> = None;
        for e in Engine::ALL {
            match param::check_call(p, e) {
                Ok(()) => return Ok(()),
                Err(r) if furthest.as_ref().is_none_or(|f| reach(&r) > reach(f)) => {
                    furthest = Some(r);
                }
                Err(_) => {}
            }
        }
        return furthest.map_or(Ok(()), |r| Err(refusal(r)));
    }
    for e in engines {
        param::check_call(p, *e).map_err(refusal)?;
    }
    Ok(())
}

/// Session settings of a procedure or sql job, against the allow-lists of
/// every engine (the connection's engine is not known here): an unknown key
/// or a value no engine accepts is refused, naming `spec.session.KEY`.
/// [`session_setting`] checks one setting for a known engine.
fn session(settings: &Session) -> Result<(), Error> {
    if settings.len() > session::MAX_SETTINGS {
        return Err(err(
            "spec.session",
            format!("at most {} settings", session::MAX_SETTINGS),
        ));
    }
    for (k, v) in settings {
        session::check_any(k, v).map_err(|e| session_error(k, e))?;
    }
    Ok(())
}

/// How far into a procedure call a refusal's field is: the name first, then
/// each parameter's name, `sql_type` and value.
fn reach(r: &param::Refusal) -> (usize, u8) {
    let Some(rest) = r.field.strip_prefix("spec.params[") else {
        return (0, 0);
    };
    let (i, part) = rest.split_once(']').unwrap_or((rest, ""));
    let stage = match part {
        ".name" => 0,
        ".sql_type" => 1,
        _ => 2,
    };
    (i.parse::<usize>().map_or(0, |i| i + 1), stage)
}

/// Check one session setting for a connection of `engine` (`spec.session.KEY`
/// named on error).
pub fn session_setting(
    engine: session::Engine,
    key: &str,
    value: &baton_proto::SessionValue,
) -> Result<(), Error> {
    session::check(engine, key, value)
        .map(drop)
        .map_err(|e| session_error(key, e))
}

fn session_error(key: &str, e: session::Error) -> Error {
    err(&format!("spec.session.{}", clip_key(key)), e.to_string())
}

/// Whether a value nests at most `max` levels (shared with the agent).
pub use baton_proto::limits::nesting_at_most;

/// `name`, `schema.name` or `database.schema.name` (SQL Server's three-part
/// names), each part 1-128 characters of `[A-Za-z0-9_@#$]`: the rule that
/// holds whatever the engine. The engine's own rule (MySQL: at most two
/// parts of 1-64 `[A-Za-z0-9_$]`) is checked by [`call`] once placement knows
/// the connection's kind.
pub fn valid_routine_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 128
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'#' | b'$'))
        })
}

/// A parameter name: 1-127 characters of `[A-Za-z0-9_]` (sent as `@name` on
/// SQL Server; MySQL's executor allows 64).
pub fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 127
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

mod upload;

#[cfg(test)]
mod tests;
