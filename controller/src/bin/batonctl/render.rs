//! Text rendering of jobs and agents. Pure: every function takes `now`.

use std::fmt::Write as _;

use baton_proto::{
    AgentList, AgentView, AttemptView, JobKind, JobList, JobResult, JobSpec, JobSummary, JobView,
    OutputEncoding, RetryPolicy,
};
use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{ContentArrangement, Table, presets};

/// Longest summary in `list`.
const SUMMARY_WIDTH: usize = 60;
/// Longest error in the attempts table.
const ERROR_WIDTH: usize = 80;

/// A duration in milliseconds, short: `350ms`, `1.2s`, `12s`, `2m5s`, `1h30m`, `2d3h`.
pub fn fmt_ms(ms: u64) -> String {
    const S: u64 = 1_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    let pair = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    if ms < S {
        format!("{ms}ms")
    } else if ms < M {
        let tenths = (ms + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else if ms < H {
        pair(ms / M, "m", ms % M / S, "s")
    } else if ms < D {
        pair(ms / H, "h", ms % H / M, "m")
    } else {
        pair(ms / D, "d", ms % D / H, "h")
    }
}

/// A time relative to `now`: `12s ago`, `3m5s ago`, `in 4s`.
pub fn fmt_ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    let span = match secs.unsigned_abs() {
        0 => "0s".to_owned(),
        n => fmt_ms(n.saturating_mul(1000)),
    };
    if secs >= 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

/// An absolute time with its relative form: `2025-01-02T03:04:05Z (12s ago)`.
pub fn fmt_time(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        "{} ({})",
        t.to_rfc3339_opts(SecondsFormat::Secs, true),
        fmt_ago(t, now)
    )
}

/// Quote a word for a shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,@%+".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Collapse whitespace (newlines included) to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Cut `s` to `max` characters, ending with `...` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let kept: String = s.chars().take(max.saturating_sub(3)).collect();
    format!("{kept}...")
}

/// One line describing what a job runs (not truncated).
pub fn spec_summary(spec: &JobSpec) -> String {
    match spec {
        JobSpec::Command(c) => std::iter::once(&c.program)
            .chain(&c.args)
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
        JobSpec::Procedure(p) => {
            let params: Vec<&str> = p.params.iter().map(|p| p.name.as_str()).collect();
            format!(
                "{}: call {}({})",
                p.connection,
                p.procedure,
                params.join(", ")
            )
        }
        JobSpec::Sql(s) => format!("{}: {}", s.connection, one_line(&s.sql)),
        JobSpec::Dump(d) => format!("{}: dump {}", d.connection, d.database),
        JobSpec::Export(e) => format!(
            "{}: export {} ({}, {}) {}",
            e.connection,
            e.prefix_or_default(),
            e.format.as_str(),
            e.compression.as_str(),
            one_line(&e.query)
        ),
        JobSpec::Restore(r) => format!(
            "{}: restore {} into {}{}",
            r.connection,
            match r.source.origin() {
                Ok(baton_proto::RestoreOrigin::File(f)) => f.to_owned(),
                Ok(baton_proto::RestoreOrigin::Object { store, key }) => format!("{store}:{key}"),
                Ok(baton_proto::RestoreOrigin::Latest { store, prefix }) => {
                    format!("the newest of {store}:{prefix}")
                }
                Err(_) => "?".to_owned(),
            },
            r.database,
            if r.replace { " (replace)" } else { "" }
        ),
        JobSpec::Noop(n) if n.sleep_ms == 0 => "noop".to_owned(),
        JobSpec::Noop(n) => format!("noop, sleep {}", fmt_ms(n.sleep_ms)),
        JobSpec::Upload(u) => format!("upload {} to {}", u.file, u.store),
    }
}

/// One line describing what a listed job runs (lists carry no arguments,
/// parameters or whole SQL text: `batonctl get` shows them).
pub fn list_summary(j: &JobSummary) -> String {
    let what = j.what.as_deref().unwrap_or("?");
    let conn = j.connection.as_deref().unwrap_or("?");
    match j.kind {
        JobKind::Command => shell_quote(what),
        JobKind::Procedure => format!("{conn}: call {what}"),
        JobKind::Sql => format!("{conn}: {}", one_line(what)),
        JobKind::Dump => format!("{conn}: dump {what}"),
        JobKind::Noop => "noop".to_owned(),
        JobKind::Export => format!("{conn}: export {}", one_line(what)),
        JobKind::Restore => format!("{conn}: restore into {what}"),
        JobKind::Upload => format!("upload {what}"),
    }
}

/// The retry policy in one line.
pub fn retry_summary(r: &RetryPolicy) -> String {
    let on: Vec<String> = r
        .retry_on
        .iter()
        .map(|o| {
            serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{o:?}"))
        })
        .collect();
    format!(
        "max {} attempts, backoff {}..{} x{} jitter {}, on {}",
        r.max_attempts,
        fmt_ms(r.initial_backoff_ms),
        fmt_ms(r.max_backoff_ms),
        r.multiplier,
        r.jitter,
        if on.is_empty() {
            "nothing".to_owned()
        } else {
            on.join(",")
        }
    )
}

/// A borderless table, columns two spaces apart, no trailing blanks.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    t
}

pub fn finish(mut t: Table) -> String {
    let columns = t.column_count();
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i + 1 == columns { 0 } else { 2 }));
    }
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

pub fn dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.trim().is_empty() => s.to_owned(),
        _ => "-".to_owned(),
    }
}

pub fn join_or_dash<I: IntoIterator<Item = String>>(items: I) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(",")
    }
}

/// `batonctl list`.
pub fn render_list(list: &JobList, now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "ID", "STATE", "KIND", "GROUP", "ATTEMPTS", "AGENT", "AGE", "UPDATED", "SUMMARY",
    ]);
    for j in &list.jobs {
        t.add_row(vec![
            j.id.to_string(),
            j.state.to_string(),
            j.kind.to_string(),
            j.group.clone(),
            format!("{}/{}", j.attempts_spent, j.max_attempts),
            dash(j.lease_agent.as_deref()),
            fmt_ago(j.created_at, now),
            fmt_ago(j.updated_at, now),
            truncate(&list_summary(j), SUMMARY_WIDTH),
        ]);
    }
    finish(t)
}

/// An agent's state: `revoked` wins over `draining`, which wins over
/// `online`/`offline`.
pub fn agent_state(a: &AgentView) -> &'static str {
    match (a.revoked_at, a.drained_at, a.online) {
        (Some(_), _, _) => "revoked",
        (None, Some(_), _) => "draining",
        (None, None, true) => "online",
        (None, None, false) => "offline",
    }
}

/// `batonctl agents drain|resume`: one line.
pub fn agent_drain_line(d: &baton_proto::AgentDrain) -> String {
    match (d.draining, d.running.as_slice()) {
        (false, _) => format!("Agent {}: resumed, takes new work", d.agent_id),
        (true, []) => format!(
            "Agent {}: drained, takes no new work; runs nothing",
            d.agent_id
        ),
        (true, running) => format!(
            "Agent {}: drained, takes no new work; still running job{} {}",
            d.agent_id,
            if running.len() == 1 { "" } else { "s" },
            running
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `batonctl agents`.
pub fn render_agents(list: &AgentList, now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "ID",
        "STATE",
        "GROUPS",
        "KINDS",
        "CONNECTIONS",
        "SLOTS FREE",
        "LEASES",
        "LAST SEEN",
    ]);
    for a in &list.agents {
        t.add_row(vec![
            a.id.clone(),
            agent_state(a).to_owned(),
            join_or_dash(a.groups.iter().cloned()),
            join_or_dash(a.capabilities.kinds.iter().map(|k| k.to_string())),
            join_or_dash(
                a.capabilities
                    .connections
                    .iter()
                    .map(|c| format!("{}({})", c.name, c.kind)),
            ),
            a.free_slots.to_string(),
            join_or_dash(a.leases.iter().map(|l| l.job_id.to_string())),
            fmt_ago(a.last_seen, now),
        ]);
    }
    finish(t)
}

/// Key/value lines with aligned values.
#[derive(Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// Add a line.
    pub fn add(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_owned(), value.into()));
    }

    /// Append the lines to `out`.
    pub fn render(&self, out: &mut String) {
        let width = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
        for (k, v) in &self.0 {
            let key = format!("{k}:");
            let _ = writeln!(out, "{key:<width$}{v}");
        }
    }
}

/// Append `text` with every line indented.
pub fn indented(out: &mut String, text: &str, indent: &str) {
    for line in text.trim_end_matches(['\n', '\r']).lines() {
        let _ = writeln!(out, "{indent}{line}");
    }
}

fn attempt_duration(a: &AttemptView, now: DateTime<Utc>) -> String {
    let end = a.ended_at.unwrap_or(now);
    let ms = (end - a.started_at)
        .num_milliseconds()
        .max(0)
        .unsigned_abs();
    fmt_ms(ms)
}

fn attempt_outcome(a: &AttemptView) -> String {
    match (a.outcome, a.ended_at) {
        (Some(o), _) => o.to_string(),
        (None, None) => "running".to_owned(),
        (None, Some(_)) => "-".to_owned(),
    }
}

fn render_result(out: &mut String, title: &str, r: &JobResult) {
    let _ = writeln!(out, "{title}:");
    let _ = writeln!(
        out,
        "  Exit code: {}",
        r.exit_code
            .map_or_else(|| "-".to_owned(), |c| c.to_string())
    );
    if r.truncated {
        let _ = writeln!(out, "  Truncated: yes (output cut at the capture limit)");
    }
    for (name, text, encoding) in [
        ("Stdout", &r.stdout, r.stdout_encoding),
        ("Stderr", &r.stderr, r.stderr_encoding),
    ] {
        if text.is_empty() {
            let _ = writeln!(out, "  {name}: (empty)");
        } else {
            let mark = if r.truncated { " (truncated)" } else { "" };
            let enc = match encoding {
                Some(OutputEncoding::Base64) => " (not UTF-8: base64 of the bytes)",
                None => "",
            };
            let _ = writeln!(out, "  {name}{mark}{enc}:");
            indented(out, text, "    ");
        }
    }
    if let Some(data) = &r.data {
        render_data(out, data);
    }
}

/// Database results: result sets as tables, OUT values, counts; anything
/// else as indented JSON.
fn render_data(out: &mut String, data: &serde_json::Value) {
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut rest = data.clone();
    if let Some(sets) = data.get("result_sets").and_then(|v| v.as_array()) {
        for (i, set) in sets.iter().enumerate() {
            let cols: Vec<String> = set
                .get("columns")
                .and_then(|c| c.as_array())
                .map(|c| c.iter().map(cell).collect())
                .unwrap_or_default();
            let rows = set
                .get("rows")
                .and_then(|r| r.as_array())
                .cloned()
                .unwrap_or_default();
            let truncated = set
                .get("truncated")
                .and_then(|t| t.as_bool())
                .unwrap_or(false);
            let _ = writeln!(
                out,
                "  Result set {} ({} row{}{}):",
                i + 1,
                rows.len(),
                if rows.len() == 1 { "" } else { "s" },
                if truncated { ", truncated" } else { "" }
            );
            let header: Vec<&str> = cols.iter().map(String::as_str).collect();
            let mut t = table(&header);
            for row in rows.iter().take(50) {
                let cells: Vec<String> = row
                    .as_array()
                    .map(|r| r.iter().map(cell).collect())
                    .unwrap_or_default();
                t.add_row(cells);
            }
            indented(out, &finish(t), "    ");
            if rows.len() > 50 {
                let _ = writeln!(out, "    ({} more rows: see -o json)", rows.len() - 50);
            }
        }
        if let Some(obj) = rest.as_object_mut() {
            obj.remove("result_sets");
        }
    }
    if let Some(outs) = data.get("out").and_then(|v| v.as_object()) {
        let _ = writeln!(out, "  OUT parameters:");
        for (k, v) in outs {
            let _ = writeln!(out, "    {k} = {}", cell(v));
        }
        if let Some(obj) = rest.as_object_mut() {
            obj.remove("out");
        }
    }
    if rest.as_object().is_some_and(|o| !o.is_empty()) {
        let _ = writeln!(out, "  Data:");
        let pretty = serde_json::to_string_pretty(&rest).unwrap_or_else(|_| rest.to_string());
        indented(out, &pretty, "    ");
    }
}

/// `batonctl get`: details, attempts, result.
pub fn render_job(j: &JobView, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let multi_line_sql = match &j.spec {
        JobSpec::Sql(s) if s.sql.trim().contains('\n') => Some(s.sql.as_str()),
        _ => None,
    };
    let mut f = Fields::default();
    job_fields(&mut f, j, multi_line_sql.is_none());
    job_times(&mut f, j, now);
    f.render(&mut out);
    if let Some(sql) = multi_line_sql {
        let _ = writeln!(out, "SQL:");
        indented(&mut out, sql, "  ");
    }
    job_params(&mut out, j);
    out.push('\n');
    job_attempts(&mut out, j, now);
    out.push('\n');
    let last_result = j
        .attempts
        .iter()
        .rev()
        .find_map(|a| a.result.as_ref().map(|r| (a.number, r)));
    match (&j.result, last_result) {
        (Some(r), _) => render_result(&mut out, "Result", r),
        (None, Some((n, r))) => render_result(&mut out, &format!("Result (attempt #{n})"), r),
        (None, None) => out.push_str("Result: none\n"),
    }
    out
}

/// What the job is: identity, spec and policy (`with_spec`: the one-line
/// spec summary, left out when the SQL is shown as a block).
fn job_fields(f: &mut Fields, j: &JobView, with_spec: bool) {
    f.add("ID", j.id.to_string());
    f.add("State", j.state.to_string());
    if j.cancel_requested {
        f.add("Cancel requested", "yes");
    }
    f.add("Kind", j.kind.to_string());
    f.add("Group", j.group.clone());
    if let Some(c) = j.spec.connection().or(j.connection.as_deref()) {
        f.add("Connection", c);
    }
    if with_spec {
        f.add("Spec", spec_summary(&j.spec));
    }
    match &j.spec {
        JobSpec::Command(c) => {
            if !c.env.is_empty() {
                let env: Vec<String> = c
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={}", shell_quote(v)))
                    .collect();
                f.add("Env", env.join(" "));
            }
            if let Some(d) = &c.working_dir {
                f.add("Workdir", d.clone());
            }
        }
        JobSpec::Sql(s) if s.exactly_once => f.add("Exactly once", "yes"),
        JobSpec::Procedure(p) if p.exactly_once => f.add("Exactly once", "yes"),
        _ => {}
    }
    f.add("Priority", j.priority.to_string());
    f.add(
        "Attempts",
        format!("{}/{}", j.attempts_spent, j.retry.max_attempts),
    );
    f.add("Retry", retry_summary(&j.retry));
    f.add(
        "Timeout",
        j.timeout_ms.map_or_else(|| "none".to_owned(), fmt_ms),
    );
    f.add("Lease TTL", fmt_ms(j.lease_ttl_ms));
    if !j.labels.is_empty() {
        let labels: Vec<String> = j.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        f.add("Labels", labels.join(","));
    }
    if let Some(k) = &j.idempotency_key {
        f.add("Idempotency key", k.clone());
    }
    made_by(f, j);
}

/// Which schedule occurrence or pipeline step made the job, if any.
fn made_by(f: &mut Fields, j: &JobView) {
    if let (Some(run), Some(step)) = (j.run_id, &j.step) {
        f.add("Pipeline run", format!("{run}, step {step}"));
    }
    match (&j.schedule, j.nominal_at) {
        (Some(s), Some(n)) => f.add(
            "Schedule",
            format!(
                "{s}, occurrence {}",
                n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ),
        (Some(s), None) => f.add("Schedule", s.clone()),
        _ => {}
    }
}

/// Who holds it, when it was made and changed, and why it waits or failed.
fn job_times(f: &mut Fields, j: &JobView, now: DateTime<Utc>) {
    if let Some(a) = &j.lease_agent {
        f.add("Agent", a.clone());
    }
    f.add("Created", fmt_time(j.created_at, now));
    f.add("Updated", fmt_time(j.updated_at, now));
    if let Some(t) = j.not_before {
        f.add("Not before", fmt_time(t, now));
    }
    if let Some(t) = j.finished_at {
        f.add("Finished", fmt_time(t, now));
    }
    if let Some(e) = &j.error {
        f.add("Error", one_line(e));
    }
    if let Some(b) = &j.blocked_reason {
        f.add("Blocked", one_line(b));
    }
}

/// A procedure's parameters, one per line; then the session settings of a
/// procedure or sql job.
fn job_params(out: &mut String, j: &JobView) {
    if let JobSpec::Procedure(p) = &j.spec
        && !p.params.is_empty()
    {
        let _ = writeln!(out, "Params:");
        for p in &p.params {
            let mode = serde_json::to_value(p.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            match &p.value {
                Some(v) => {
                    let value = serde_json::to_string(v).unwrap_or_default();
                    let _ = writeln!(out, "  {} ({mode}) = {value}", p.name);
                }
                None => {
                    let _ = writeln!(out, "  {} ({mode})", p.name);
                }
            }
        }
    }
    if let Some(session) = j.spec.session().filter(|s| !s.is_empty()) {
        let _ = writeln!(out, "Session:");
        for (k, v) in session {
            let _ = writeln!(out, "  {k} = {v}");
        }
    }
}

/// The attempts table, then the last attempt's progress and log tail.
fn job_attempts(out: &mut String, j: &JobView, now: DateTime<Utc>) {
    if j.attempts.is_empty() {
        out.push_str("Attempts: none\n");
        return;
    }
    out.push_str("Attempts:\n");
    let mut t = table(&[
        "#", "AGENT", "TOKEN", "STARTED", "DURATION", "OUTCOME", "ERROR",
    ]);
    for a in &j.attempts {
        t.add_row(vec![
            a.number.to_string(),
            a.agent_id.clone(),
            a.token.to_string(),
            fmt_ago(a.started_at, now),
            attempt_duration(a, now),
            attempt_outcome(a),
            a.error
                .as_deref()
                .map_or_else(|| "-".to_owned(), |e| truncate(&one_line(e), ERROR_WIDTH)),
        ]);
    }
    out.push_str(&finish(t));
    let Some(last) = j.attempts.last() else {
        return;
    };
    if let Some(p) = &last.progress {
        let pct = p.percent.map(|x| format!("{x:.0}% ")).unwrap_or_default();
        let _ = writeln!(
            out,
            "Progress (attempt #{}): {pct}{}",
            last.number,
            one_line(&p.message)
        );
    }
    if !last.log_tail.is_empty() && last.result.is_none() {
        let _ = writeln!(out, "Log tail (attempt #{}):", last.number);
        indented(out, &last.log_tail, "    ");
    }
}

/// `batonctl cancel` / `retry`: the new state in one line.
pub fn render_state_line(j: &JobView) -> String {
    let mut s = format!("Job {}: {}", j.id, j.state);
    if j.cancel_requested && !j.state.is_terminal() {
        s.push_str(" (cancel requested)");
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests;
