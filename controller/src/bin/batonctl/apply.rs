//! `batonctl apply -f FILE_OR_DIR [--prune] [--dry-run]`: make the
//! controller's schedules and pipelines what the TOML files say.
//!
//! Every file is read and checked before anything is sent (a mistake exits
//! 2 and changes nothing). Each definition is then compared with the
//! controller's by the canonical JSON of its spec: created, updated (the
//! changed keys are printed, old → new) or left unchanged. Pipelines are
//! applied before schedules (a schedule may name a new pipeline); with
//! `--prune`, schedules and then pipelines the files no longer name are
//! deleted. The first refused request stops the run (exit 1); what was done
//! before it stays done, and a second apply picks up from there.
//!
//! A schedule's `paused` only matters when apply creates it: afterwards
//! pause and resume are operations (`batonctl schedule pause`) that the
//! controller keeps across a replace, and apply does not compare it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use baton_proto::pipeline::{PipelineList, PipelineSpec};
use baton_proto::schedule::{ScheduleList, ScheduleSpec};
use clap::Args;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Api, segment, usage};
use crate::manifest::{self, Manifest};
use crate::{decode, out};

/// Longest value shown in a diff line.
const VALUE_WIDTH: usize = 200;

/// `batonctl apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A TOML file, or a directory whose *.toml files are read (sorted, not recursive).
    #[arg(short = 'f', long, value_name = "FILE_OR_DIR")]
    pub file: PathBuf,
    /// Delete the schedules and pipelines the files do not name.
    #[arg(long)]
    pub prune: bool,
    /// Show what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A schedule or a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A pipeline.
    Pipeline,
    /// A schedule.
    Schedule,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipeline",
            Kind::Schedule => "schedule",
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Kind::Pipeline => "/v1/pipelines",
            Kind::Schedule => "/v1/schedules",
        }
    }
}

/// What apply does to one definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// It is new.
    Create,
    /// It differs.
    Update,
    /// It is the same.
    Unchanged,
    /// The files no longer name it (`--prune`).
    Delete,
    /// The files no longer name it; kept (no `--prune`).
    Keep,
}

/// One changed key: its path and its values (`None`: absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Dotted path; steps are named by their name: `steps[copy].job.spec.args`.
    pub path: String,
    /// The controller's value.
    pub old: Option<Value>,
    /// The files' value.
    pub new: Option<Value>,
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Action {
    /// Schedule or pipeline.
    pub kind: Kind,
    /// Its name.
    pub name: String,
    /// What to do.
    pub op: Op,
    /// For updates: what changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The spec to send (create and update).
    #[serde(skip)]
    pub spec: Option<Value>,
}

/// The files to read: `path` itself, or the *.toml files in it, sorted.
pub fn files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| usage(format!("cannot read directory {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(usage(format!("{} holds no *.toml file", path.display())));
    }
    Ok(out)
}

/// Read and check every file.
pub fn load(paths: &[PathBuf]) -> Result<Manifest> {
    let mut all = Manifest::default();
    for p in paths {
        let shown = p.display().to_string();
        let text =
            std::fs::read_to_string(p).map_err(|e| usage(format!("cannot read {shown}: {e}")))?;
        let m = manifest::parse_manifest(&shown, &text).map_err(|e| usage(e.to_string()))?;
        all.merge(m).map_err(|e| usage(e.to_string()))?;
    }
    Ok(all)
}

/// The canonical JSON of a spec (typed, so defaults are filled the same way
/// on both sides).
pub fn canonical<T: Serialize>(spec: &T) -> Result<Value> {
    Ok(serde_json::to_value(spec)?)
}

/// The plan: pipelines (create/update/unchanged), schedules (the same),
/// then the schedules and pipelines the files do not name (delete with
/// `prune`, else keep).
pub fn plan(
    m: &Manifest,
    pipelines: &[PipelineSpec],
    schedules: &[ScheduleSpec],
    prune: bool,
) -> Result<Vec<Action>> {
    let mut actions = Vec::new();
    let have_p: BTreeMap<&str, &PipelineSpec> =
        pipelines.iter().map(|p| (p.name.as_str(), p)).collect();
    for p in &m.pipelines {
        let old = have_p
            .get(p.spec.name.as_str())
            .map(canonical)
            .transpose()?;
        actions.push(compare(
            Kind::Pipeline,
            &p.spec.name,
            old,
            canonical(&p.spec)?,
        ));
    }
    let have_s: BTreeMap<&str, &ScheduleSpec> =
        schedules.iter().map(|s| (s.name.as_str(), s)).collect();
    for s in &m.schedules {
        let have = have_s.get(s.spec.name.as_str());
        // `paused` is how a schedule starts; afterwards pausing and resuming
        // are operations, which a replace keeps and apply leaves alone.
        let mut spec = s.spec.clone();
        if let Some(h) = have {
            spec.paused = h.paused;
        }
        let old = have.map(canonical).transpose()?;
        actions.push(compare(Kind::Schedule, &spec.name, old, canonical(&spec)?));
    }
    let named_s: BTreeSet<&str> = m.schedules.iter().map(|s| s.spec.name.as_str()).collect();
    let named_p: BTreeSet<&str> = m.pipelines.iter().map(|p| p.spec.name.as_str()).collect();
    let extra = |kind, name: &str| Action {
        kind,
        name: name.to_owned(),
        op: if prune { Op::Delete } else { Op::Keep },
        changes: vec![],
        spec: None,
    };
    for name in have_s.keys().filter(|n| !named_s.contains(*n)) {
        actions.push(extra(Kind::Schedule, name));
    }
    for name in have_p.keys().filter(|n| !named_p.contains(*n)) {
        actions.push(extra(Kind::Pipeline, name));
    }
    Ok(actions)
}

fn compare(kind: Kind, name: &str, old: Option<Value>, new: Value) -> Action {
    let (op, changes) = match &old {
        None => (Op::Create, vec![]),
        Some(old) if *old == new => (Op::Unchanged, vec![]),
        Some(old) => (Op::Update, diff(old, &new)),
    };
    Action {
        kind,
        name: name.to_owned(),
        op,
        changes,
        spec: matches!(op, Op::Create | Op::Update).then_some(new),
    }
}

/// The keys that differ between `old` and `new`, in order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    diff_into("", Some(old), Some(new), &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The names of an array whose items are objects with distinct `name`s.
fn names(items: &[Value]) -> Option<Vec<&str>> {
    let names: Vec<&str> = items
        .iter()
        .map(|v| v.get("name").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let distinct: BTreeSet<&str> = names.iter().copied().collect();
    (distinct.len() == names.len()).then_some(names)
}

fn diff_into(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                diff_into(&join(path, k), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) if a != b => match (names(a), names(b)) {
            (Some(na), Some(nb)) => diff_named(path, a, &na, b, &nb, out),
            _ if a.len() == b.len() => {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    diff_into(&format!("{path}[{i}]"), Some(x), Some(y), out);
                }
            }
            _ => out.push(change(path, old, new)),
        },
        (a, b) if a == b => {}
        _ => out.push(change(path, old, new)),
    }
}

/// Arrays of named items (pipeline steps): matched by name, then the order.
fn diff_named(
    path: &str,
    a: &[Value],
    na: &[&str],
    b: &[Value],
    nb: &[&str],
    out: &mut Vec<Change>,
) {
    let find = |items: &[Value], names: &[&str], n: &str| {
        names.iter().position(|x| *x == n).map(|i| items[i].clone())
    };
    let mut seen = BTreeSet::new();
    for n in na.iter().chain(nb) {
        if seen.insert(*n) {
            let (x, y) = (find(a, na, n), find(b, nb, n));
            diff_into(&format!("{path}[{n}]"), x.as_ref(), y.as_ref(), out);
        }
    }
    let common_a: Vec<&str> = na.iter().copied().filter(|n| nb.contains(n)).collect();
    let common_b: Vec<&str> = nb.iter().copied().filter(|n| na.contains(n)).collect();
    if common_a != common_b {
        out.push(Change {
            path: format!("{path} (order)"),
            old: Some(Value::from(common_a)),
            new: Some(Value::from(common_b)),
        });
    }
}

fn change(path: &str, old: Option<&Value>, new: Option<&Value>) -> Change {
    Change {
        path: path.to_owned(),
        old: old.cloned(),
        new: new.cloned(),
    }
}

fn shown(v: &Option<Value>) -> String {
    match v {
        None => "(unset)".to_owned(),
        Some(v) => crate::render::truncate(&v.to_string(), VALUE_WIDTH),
    }
}

/// One action in words: `pipeline nightly: updated` and its changes.
pub fn render_action(a: &Action, dry_run: bool) -> String {
    let verb = match (a.op, dry_run) {
        (Op::Create, false) => "created",
        (Op::Create, true) => "would be created",
        (Op::Update, false) => "updated",
        (Op::Update, true) => "would be updated",
        (Op::Unchanged, _) => "unchanged",
        (Op::Delete, false) => "deleted",
        (Op::Delete, true) => "would be deleted",
        (Op::Keep, _) => "not in the files (kept; --prune deletes it)",
    };
    let mut s = format!("{} {}: {verb}\n", a.kind.as_str(), a.name);
    for c in &a.changes {
        s.push_str(&format!(
            "  {}: {} → {}\n",
            c.path,
            shown(&c.old),
            shown(&c.new)
        ));
    }
    s
}

/// The closing line.
pub fn render_summary(actions: &[Action], dry_run: bool) -> String {
    let count = |op| actions.iter().filter(|a| a.op == op).count();
    let (c, u, d) = (count(Op::Create), count(Op::Update), count(Op::Delete));
    if c + u + d == 0 {
        let of = |k| {
            actions
                .iter()
                .filter(|a| a.kind == k && a.op == Op::Unchanged)
                .count()
        };
        return format!(
            "Nothing changed: {} pipeline(s) and {} schedule(s) are up to date.\n",
            of(Kind::Pipeline),
            of(Kind::Schedule)
        );
    }
    let (head, cw, uw, dw) = if dry_run {
        (
            "Dry run, nothing sent",
            "to create",
            "to update",
            "to delete",
        )
    } else {
        ("Applied", "created", "updated", "deleted")
    };
    format!(
        "{head}: {c} {cw}, {u} {uw}, {} unchanged, {d} {dw}.\n",
        count(Op::Unchanged)
    )
}

/// Send one action (create, update, delete).
async fn execute(api: &Api, a: &Action) -> Result<()> {
    let item = format!("{}/{}", a.kind.collection(), segment(&a.name));
    match (a.op, &a.spec) {
        (Op::Create, Some(spec)) => {
            api.post_json(a.kind.collection(), Some(spec)).await?;
        }
        (Op::Update, Some(spec)) => {
            api.put_json(&item, spec).await?;
        }
        (Op::Delete, _) => {
            api.delete(&item).await?;
        }
        _ => {}
    }
    Ok(())
}

/// `batonctl apply`.
pub async fn apply(api: &Api, args: &ApplyArgs, json: bool) -> Result<ExitCode> {
    let m = load(&files(&args.file)?)?;
    let pipelines: PipelineList = decode(
        &api.get_json("/v1/pipelines", &[]).await?.body,
        "pipeline list",
    )?;
    let schedules: ScheduleList = decode(
        &api.get_json("/v1/schedules", &[]).await?.body,
        "schedule list",
    )?;
    let have_p: Vec<PipelineSpec> = pipelines.pipelines.into_iter().map(|p| p.spec).collect();
    let have_s: Vec<ScheduleSpec> = schedules.schedules.into_iter().map(|s| s.spec).collect();
    let actions = plan(&m, &have_p, &have_s, args.prune)?;
    for a in &actions {
        if !args.dry_run {
            execute(api, a).await.map_err(|e| {
                e.context(format!(
                    "{} {}: cannot {}",
                    a.kind.as_str(),
                    a.name,
                    op_word(a.op)
                ))
            })?;
        }
        if !json {
            out(&render_action(a, args.dry_run))?;
        }
    }
    if json {
        out(&serde_json::to_string_pretty(&serde_json::json!({
            "dry_run": args.dry_run,
            "actions": actions,
        }))?)?;
    } else {
        out(&render_summary(&actions, args.dry_run))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn op_word(op: Op) -> &'static str {
    match op {
        Op::Create => "create it",
        Op::Update => "update it",
        Op::Delete => "delete it",
        Op::Unchanged | Op::Keep => "leave it",
    }
}

#[cfg(test)]
mod tests;
