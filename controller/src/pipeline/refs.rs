//! References between steps: `${steps.<step>.<path>}` inside a step's
//! string fields, checked when the pipeline is defined and replaced by the
//! value's text when the step is queued. `$${` is a literal `${`.
//!
//! Paths: `result.exit_code`, `result.stdout`, `result.stderr` (command
//! steps), `result.file` and `result.manifest` (dump and export steps: `data.path` and
//! `data.manifest_path`), `data.<key>[.<key>…]` (a field of the step's
//! `result.data`, checked by its kind), `agent`, `job_id`.
//!
//! Where they may stand (templated fields): a command's `args[i]`,
//! `env.<K>` values and `working_dir`; a procedure's IN/INOUT parameter
//! values of the textual types (`string`, `decimal`, `date`, `date_time`);
//! a dump's `database`; an export's textual parameter values. Every other string field of a spec is never
//! rewritten, and a `${steps.` in one is refused: a command's program (the
//! agent's allow-list matches it as written), SQL text (values reach SQL
//! only as bound procedure parameters), connection and procedure names.
//! Labels and non-string values are left alone.

use baton_proto::{JobSpec, ParamMode, ParamValue, ProcedureSpec};
use serde_json::Value as Json;

/// What a referenced step left behind (see [`super::StepOutput`]).
use super::StepOutput;

/// Where a reference points inside a step's outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `result.exit_code`.
    ExitCode,
    /// `result.stdout`.
    Stdout,
    /// `result.stderr`.
    Stderr,
    /// `result.file`: a dump's `data.path`.
    File,
    /// `result.manifest`: a dump's `data.manifest_path`.
    Manifest,
    /// `data.<key>…`: a field of `result.data`.
    Data(Vec<String>),
    /// `agent`: the agent that ran the step.
    Agent,
    /// `job_id`: the step's job.
    JobId,
}

/// One `${steps.<step>.<path>}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The text as written, `${…}` included.
    pub raw: String,
    /// The referenced step.
    pub step: String,
    /// What of it.
    pub path: Path,
}

/// A templated string, cut into literal text and references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text (escapes already applied).
    Text(String),
    /// A reference.
    Ref(Reference),
}

/// The first segment of a path; a step name is everything before it.
const PATH_HEADS: [&str; 4] = ["result", "data", "agent", "job_id"];

/// Cut `text` into pieces; the error says what is malformed.
pub fn parse(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        lit.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            lit.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "an unclosed `${` (write `$${` for a literal `${`)".to_owned())?;
            let raw = format!("${{{}}}", &after[..end]);
            let (step, path) = parse_inner(&after[..end]).map_err(|e| format!("{raw}: {e}"))?;
            if !lit.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Ref(Reference { raw, step, path }));
            rest = &after[end + 1..];
        } else {
            lit.push('$');
            rest = &tail[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        pieces.push(Piece::Text(lit));
    }
    Ok(pieces)
}

/// `steps.<step>.<path>` (without `${` and `}`).
fn parse_inner(inner: &str) -> Result<(String, Path), String> {
    let body = inner.strip_prefix("steps.").ok_or_else(|| {
        "a reference is `${steps.<step>.<path>}` (write `$${` for a literal `${`)".to_owned()
    })?;
    let segs: Vec<&str> = body.split('.').collect();
    if let Some(bad) = segs.iter().find(|s| !valid_segment(s)) {
        return Err(format!(
            "{bad:?} is not a name (segments are 1-64 characters of A-Z a-z 0-9 _ -)"
        ));
    }
    let head = (1..segs.len())
        .find(|&k| PATH_HEADS.contains(&segs[k]))
        .ok_or_else(|| {
            "no path after the step name (result.…, data.…, agent or job_id)".to_owned()
        })?;
    let step = segs[..head].join(".");
    let path = match segs[head..] {
        ["result", "exit_code"] => Path::ExitCode,
        ["result", "stdout"] => Path::Stdout,
        ["result", "stderr"] => Path::Stderr,
        ["result", "file"] => Path::File,
        ["result", "manifest"] => Path::Manifest,
        ["data", ref keys @ ..] if !keys.is_empty() => {
            Path::Data(keys.iter().map(|k| (*k).to_owned()).collect())
        }
        ["agent"] => Path::Agent,
        ["job_id"] => Path::JobId,
        _ => {
            return Err(format!(
                "unknown path {:?}: one of result.exit_code, result.stdout, result.stderr, \
                 result.file, result.manifest, data.<key>…, agent, job_id",
                segs[head..].join(".")
            ));
        }
    };
    Ok((step, path))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Fields of a dump's `result.data`: both engines' manifests (MySQL's dump,
/// SQL Server's backup) plus the paths the agent adds.
const DUMP_FIELDS: &[&str] = &[
    "path",
    "manifest_path",
    "format",
    "kind",
    "file",
    "connection",
    "database",
    "server_version",
    "server",
    "recovery_model",
    "binlog",
    "tool",
    "arguments",
    "compression",
    "uncompressed_bytes",
    "compressed_bytes",
    "size_bytes",
    "sha256",
    "sha256_uncompressed",
    "sha256_error",
    "estimated_bytes",
    "started_at",
    "ended_at",
    "finished_at",
    "duration_ms",
    "checksum",
    "copy_only",
    "verify",
    "job_id",
    "attempt",
    "token",
    "warnings",
    "charset",
];

/// Fields of a restore's `result.data` (both engines).
const RESTORE_FIELDS: &[&str] = &[
    "connection",
    "database",
    "source",
    "replaced",
    "tables",
    "tables_compared",
    "mismatches",
    "checksums",
    "objects",
    "events_disabled",
    "files",
    "duration_ms",
    "warnings",
];

/// Fields of an export's `result.data`: its manifest plus the paths.
const EXPORT_FIELDS: &[&str] = &[
    "path",
    "manifest_path",
    "format",
    "kind",
    "file",
    "connection",
    "prefix",
    "query",
    "params",
    "rows",
    "columns",
    "file_format",
    "compression",
    "bytes",
    "sha256",
    "started_at",
    "ended_at",
    "duration_ms",
    "server_version",
    "job_id",
    "token",
    "warnings",
];

/// Scalar fields of a procedure's or batch's `result.data` (both engines'
/// capture, plus the run ledger's mark).
const CAPTURE_SCALARS: &[&str] = &[
    "affected_rows",
    "truncated",
    "ledger",
    "ledger_warning",
    "result_sets_omitted",
    "warnings_omitted",
];

/// Fields of an upload's result data.
const UPLOAD_FIELDS: &[&str] = &[
    "store",
    "bucket",
    "key",
    "size",
    "sha256",
    "etag",
    "manifest_key",
    "deleted",
];

/// Fields of a capture checked only by their first key (`result_sets.0.rows.0.1`).
const CAPTURE_TREES: &[&str] = &["result_sets", "warnings"];

/// Whether `path` names something a step of this spec produces.
pub fn check_path(path: &Path, spec: &JobSpec) -> Result<(), String> {
    let kind = spec.kind();
    match (path, spec) {
        (Path::Agent | Path::JobId, _) => Ok(()),
        (Path::ExitCode | Path::Stdout | Path::Stderr, JobSpec::Command(_)) => Ok(()),
        (Path::ExitCode | Path::Stdout | Path::Stderr, _) => Err(format!(
            "a {kind} step has no exit code or output (only command steps do)"
        )),
        (Path::File | Path::Manifest, JobSpec::Dump(_) | JobSpec::Export(_)) => Ok(()),
        (Path::File | Path::Manifest, _) => Err(format!(
            "result.file and result.manifest are a dump's or an export's; this is a {kind} step"
        )),
        (Path::Data(keys), JobSpec::Export(_)) => match EXPORT_FIELDS.contains(&keys[0].as_str()) {
            true => Ok(()),
            false => Err(format!(
                "an export's data has no field {:?} (known: {})",
                keys[0],
                EXPORT_FIELDS.join(", ")
            )),
        },
        (Path::Data(keys), JobSpec::Dump(_)) => match DUMP_FIELDS.contains(&keys[0].as_str()) {
            true => Ok(()),
            false => Err(format!(
                "a dump's data has no field {:?} (its manifest's fields, path, manifest_path)",
                keys[0]
            )),
        },
        (Path::Data(keys), JobSpec::Restore(_)) => match RESTORE_FIELDS.contains(&keys[0].as_str())
        {
            true => Ok(()),
            false => Err(format!(
                "a restore's data has no field {:?} (known: {})",
                keys[0],
                RESTORE_FIELDS.join(", ")
            )),
        },
        (Path::Data(keys), JobSpec::Upload(_)) => match UPLOAD_FIELDS.contains(&keys[0].as_str()) {
            true => Ok(()),
            false => Err(format!(
                "an upload's data has no field {:?} ({})",
                keys[0],
                UPLOAD_FIELDS.join(", ")
            )),
        },
        (Path::Data(keys), JobSpec::Procedure(p)) => procedure_data(keys, p),
        (Path::Data(keys), JobSpec::Sql(_)) => capture_data(keys, "sql"),
        (Path::Data(_), JobSpec::Command(_) | JobSpec::Noop(_)) => Err(format!(
            "a {kind} step has no data{}",
            if kind == baton_proto::JobKind::Command {
                " (use result.stdout or result.exit_code)"
            } else {
                ""
            }
        )),
    }
}

fn procedure_data(keys: &[String], p: &ProcedureSpec) -> Result<(), String> {
    match keys {
        [head, name] if head == "out" => match p.params.iter().find(|q| &q.name == name) {
            Some(q) if q.mode != ParamMode::In => Ok(()),
            Some(_) => Err(format!(
                "parameter {name:?} is IN only: it returns no value (make it OUT or INOUT)"
            )),
            None => Err(format!(
                "the procedure has no parameter {name:?} (OUT values are named as the spec names them)"
            )),
        },
        [head, ..] if head == "out" => Err("data.out.<parameter>: one parameter name".into()),
        [head] if head == "return_status" => Ok(()),
        _ => capture_data(keys, "procedure"),
    }
}

fn capture_data(keys: &[String], kind: &str) -> Result<(), String> {
    let head = keys[0].as_str();
    if CAPTURE_SCALARS.contains(&head) && keys.len() == 1 || CAPTURE_TREES.contains(&head) {
        return Ok(());
    }
    let mut known: Vec<&str> = CAPTURE_SCALARS
        .iter()
        .chain(CAPTURE_TREES)
        .copied()
        .collect();
    if kind == "procedure" {
        known.extend(["out.<parameter>", "return_status"]);
    }
    Err(format!(
        "a {kind} step's data has no field {:?} (known: {})",
        keys.join("."),
        known.join(", ")
    ))
}

/// How a string field of a spec takes references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// References are resolved in it.
    Templated,
    /// Never rewritten; a `${steps.` in it is refused with this reason.
    Plain(&'static str),
}

/// Why most fields take no reference.
const PLAIN: &str = "references are not allowed in this field";
/// Why a program takes no reference.
const PROGRAM: &str =
    "references are not allowed in program: the agent's allow-list matches the program as written";
/// Why SQL text takes no reference.
pub const SQL: &str = "references are not allowed in SQL text; pass values as procedure parameters";

/// Call `f(field, slot, text)` on every string field of `spec` (`field`
/// relative to the template, e.g. `spec.args[1]`); `f` may rewrite the text
/// of a field it is given mutably (env keys and OUT values are given as
/// copies).
pub fn each_string<E>(
    spec: &mut JobSpec,
    f: &mut dyn FnMut(&str, Slot, &mut String) -> Result<(), E>,
) -> Result<(), E> {
    match spec {
        JobSpec::Command(c) => {
            f("spec.program", Slot::Plain(PROGRAM), &mut c.program)?;
            for (i, a) in c.args.iter_mut().enumerate() {
                f(&format!("spec.args[{i}]"), Slot::Templated, a)?;
            }
            for (k, v) in c.env.iter_mut() {
                let field = format!("spec.env.{k}");
                f(&field, Slot::Plain(PLAIN), &mut k.clone())?;
                f(&field, Slot::Templated, v)?;
            }
            if let Some(w) = c.working_dir.as_mut() {
                f("spec.working_dir", Slot::Templated, w)?;
            }
        }
        JobSpec::Procedure(p) => {
            f("spec.connection", Slot::Plain(PLAIN), &mut p.connection)?;
            f("spec.procedure", Slot::Plain(PLAIN), &mut p.procedure)?;
            for (i, q) in p.params.iter_mut().enumerate() {
                f(
                    &format!("spec.params[{i}].name"),
                    Slot::Plain(PLAIN),
                    &mut q.name,
                )?;
                let field = format!("spec.params[{i}].value");
                let input = q.mode != ParamMode::Out;
                match &mut q.value {
                    Some(
                        ParamValue::String(s)
                        | ParamValue::Decimal(s)
                        | ParamValue::Date(s)
                        | ParamValue::DateTime(s),
                    ) if input => f(&field, Slot::Templated, s)?,
                    Some(
                        ParamValue::String(s)
                        | ParamValue::Decimal(s)
                        | ParamValue::Date(s)
                        | ParamValue::DateTime(s)
                        | ParamValue::Bytes(s),
                    ) => f(&field, Slot::Plain(PLAIN), &mut s.clone())?,
                    _ => {}
                }
                if let Some(t) = q.sql_type.as_mut() {
                    f(&format!("spec.params[{i}].sql_type"), Slot::Plain(PLAIN), t)?;
                }
            }
        }
        JobSpec::Sql(s) => {
            f("spec.connection", Slot::Plain(PLAIN), &mut s.connection)?;
            f("spec.sql", Slot::Plain(SQL), &mut s.sql)?;
        }
        JobSpec::Dump(d) => {
            f("spec.connection", Slot::Plain(PLAIN), &mut d.connection)?;
            f("spec.database", Slot::Templated, &mut d.database)?;
        }
        JobSpec::Export(e) => {
            f("spec.connection", Slot::Plain(PLAIN), &mut e.connection)?;
            f("spec.query", Slot::Plain(SQL), &mut e.query)?;
            for (i, v) in e.params.iter_mut().enumerate() {
                let field = format!("spec.params[{i}]");
                match v {
                    ParamValue::String(s)
                    | ParamValue::Decimal(s)
                    | ParamValue::Date(s)
                    | ParamValue::DateTime(s) => f(&field, Slot::Templated, s)?,
                    ParamValue::Bytes(s) => f(&field, Slot::Plain(PLAIN), s)?,
                    _ => {}
                }
            }
            if let Some(p) = e.prefix.as_mut() {
                f("spec.prefix", Slot::Plain(PLAIN), p)?;
            }
        }
        JobSpec::Restore(r) => {
            f("spec.connection", Slot::Plain(PLAIN), &mut r.connection)?;
            if let Some(file) = r.source.file.as_mut() {
                f("spec.source.file", Slot::Templated, file)?;
            }
            if let Some(store) = r.source.store.as_mut() {
                f("spec.source.store", Slot::Plain(PLAIN), store)?;
            }
            if let Some(key) = r.source.key.as_mut() {
                f("spec.source.key", Slot::Plain(PLAIN), key)?;
            }
            if let Some(prefix) = r.source.key_prefix.as_mut() {
                f("spec.source.key_prefix", Slot::Plain(PLAIN), prefix)?;
            }
            f("spec.database", Slot::Templated, &mut r.database)?;
        }
        JobSpec::Noop(_) => {}
        JobSpec::Upload(u) => {
            f("spec.store", Slot::Plain(PLAIN), &mut u.store)?;
            f("spec.file", Slot::Templated, &mut u.file)?;
            if let Some(k) = u.key.as_mut() {
                f("spec.key", Slot::Plain(PLAIN), k)?;
            }
        }
    }
    Ok(())
}

/// Whether a field that takes no reference holds one anyway.
pub fn names_a_step(text: &str) -> bool {
    text.contains("${steps.")
}

/// The text a reference stands for, from its step's outputs.
pub fn value(r: &Reference, out: &StepOutput) -> Result<String, String> {
    let result = || {
        out.result
            .as_ref()
            .ok_or_else(|| format!("step {} has no result", r.step))
    };
    let data = || {
        result()?
            .data
            .as_ref()
            .ok_or_else(|| format!("step {} has no result data", r.step))
    };
    match &r.path {
        Path::Agent => out
            .agent
            .clone()
            .ok_or_else(|| format!("step {} has no agent (it never ran)", r.step)),
        Path::JobId => Ok(out.job_id.to_string()),
        Path::ExitCode => result()?
            .exit_code
            .map(|c| c.to_string())
            .ok_or_else(|| format!("step {} has no exit code", r.step)),
        Path::Stdout | Path::Stderr => {
            let res = result()?;
            let (text, encoded) = match r.path {
                Path::Stdout => (&res.stdout, res.stdout_encoding.is_some()),
                _ => (&res.stderr, res.stderr_encoding.is_some()),
            };
            if encoded {
                return Err(format!("the output of step {} is not UTF-8", r.step));
            }
            if res.truncated {
                return Err(format!(
                    "the output of step {} was cut at the capture limit",
                    r.step
                ));
            }
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        Path::File => lookup(data()?, &["path".to_owned()]),
        Path::Manifest => lookup(data()?, &["manifest_path".to_owned()]),
        Path::Data(keys) => lookup(data()?, keys),
    }
}

/// The value at `keys` (object keys; array indices in decimal) as text: a
/// string as-is, numbers and booleans as JSON, objects and arrays as compact
/// JSON; null or missing is an error.
fn lookup(data: &Json, keys: &[String]) -> Result<String, String> {
    let mut at = data;
    for (n, k) in keys.iter().enumerate() {
        let next = match at {
            Json::Object(m) => m.get(k),
            Json::Array(a) => k.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        at = next.ok_or_else(|| format!("data.{} is missing", keys[..=n].join(".")))?;
    }
    match at {
        Json::Null => Err(format!("data.{} is null", keys.join("."))),
        Json::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
