//! Naming the field inside a job spec. A spec is tagged by `kind` inside
//! the object (`{"kind": "command", ...}`), so serde buffers it and an error
//! in it only names `spec`; this parses the spec again as its kind's own
//! struct to name the field within (`spec.params[0].mode`,
//! `spec.params[2].value`). Used by the controller's JSON body extractor and
//! by batonctl for job files (JSON and TOML).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{CommandSpec, DumpSpec, NoopSpec, ProcedureSpec, RestoreSpec, SqlSpec};

/// For an error at `field` (`spec`, `job.spec`, `jobs[3].spec`) of the body
/// `bytes`: the field inside the spec and the message, when a field inside
/// it is at fault.
pub fn refine(bytes: &[u8], field: &str) -> Option<(String, String)> {
    refine_value(&serde_json::from_slice(bytes).ok()?, field)
}

/// [`refine`] on a parsed document (a TOML job file converted to JSON, say).
pub fn refine_value(root: &Value, field: &str) -> Option<(String, String)> {
    if field != "spec" && !field.ends_with(".spec") {
        return None;
    }
    let mut obj = navigate(root, field)?.as_object()?.clone();
    let kind = obj.remove("kind")?;
    let spec = Value::Object(obj);
    let (path, message) = match kind.as_str()? {
        "command" => inner::<CommandSpec>(&spec),
        "procedure" => inner::<ProcedureSpec>(&spec),
        "sql" => inner::<SqlSpec>(&spec),
        "dump" => inner::<DumpSpec>(&spec),
        "noop" => inner::<NoopSpec>(&spec),
        "restore" => inner::<RestoreSpec>(&spec),
        _ => None,
    }?;
    Some((format!("{field}.{path}"), message))
}

/// The error of parsing `v` as `T`, when it names a field (`.`: the spec
/// itself, left to the caller's message). A missing or unknown field is
/// named itself (`params[2].name`), not its parent.
fn inner<T: DeserializeOwned>(v: &Value) -> Option<(String, String)> {
    let e = serde_path_to_error::deserialize::<_, T>(v).err()?;
    let path = e.path().to_string();
    let message = e.into_inner().to_string();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|start| between(&message, start, "`"));
    let path = match (named, path.as_str()) {
        (Some(name), ".") => name.to_owned(),
        (Some(name), p) if p != name && !p.ends_with(&format!(".{name}")) => {
            format!("{p}.{name}")
        }
        (_, p) => p.to_owned(),
    };
    (path != ".").then_some((path, message))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)? + i;
    Some(&s[i..j])
}

/// The value at a dotted path with indexes (`jobs[3].spec`).
fn navigate<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = root;
    for segment in path.split('.') {
        let (name, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        if !name.is_empty() {
            v = v.get(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            v = v.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

#[cfg(test)]
mod tests;
