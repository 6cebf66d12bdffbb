//! Text rendering of jobs and agents. Pure: every function takes `now`.

use std::fmt::Write as _;

use baton_proto::{AgentList, AttemptView, JobList, JobResult, JobSpec, JobView, RetryPolicy};
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
fn one_line(s: &str) -> String {
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
        JobSpec::Noop(n) if n.sleep_ms == 0 => "noop".to_owned(),
        JobSpec::Noop(n) => format!("noop, sleep {}", fmt_ms(n.sleep_ms)),
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
fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    t
}

fn finish(mut t: Table) -> String {
    let columns = t.column_count();
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i + 1 == columns { 0 } else { 2 }));
    }
    let mut s = t.trim_fmt();
    s.push('\n');
    s
}

fn dash(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.trim().is_empty() => s.to_owned(),
        _ => "-".to_owned(),
    }
}

fn join_or_dash<I: IntoIterator<Item = String>>(items: I) -> String {
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
            format!("{}/{}", j.attempts_spent, j.retry.max_attempts),
            dash(j.lease_agent.as_deref()),
            fmt_ago(j.created_at, now),
            fmt_ago(j.updated_at, now),
            truncate(&spec_summary(&j.spec), SUMMARY_WIDTH),
        ]);
    }
    finish(t)
}

/// `batonctl agents`.
pub fn render_agents(list: &AgentList, now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "ID",
        "ONLINE",
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
            if a.online { "yes" } else { "no" }.to_owned(),
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
struct Fields(Vec<(String, String)>);

impl Fields {
    fn add(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_owned(), value.into()));
    }

    fn render(&self, out: &mut String) {
        let width = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
        for (k, v) in &self.0 {
            let key = format!("{k}:");
            let _ = writeln!(out, "{key:<width$}{v}");
        }
    }
}

fn indented(out: &mut String, text: &str, indent: &str) {
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
    for (name, text) in [("Stdout", &r.stdout), ("Stderr", &r.stderr)] {
        if text.is_empty() {
            let _ = writeln!(out, "  {name}: (empty)");
        } else {
            let mark = if r.truncated { " (truncated)" } else { "" };
            let _ = writeln!(out, "  {name}{mark}:");
            indented(out, text, "    ");
        }
    }
    if let Some(data) = &r.data {
        let _ = writeln!(out, "  Data:");
        let pretty = serde_json::to_string_pretty(data).unwrap_or_else(|_| data.to_string());
        indented(out, &pretty, "    ");
    }
}

/// `batonctl get`: details, attempts, result.
pub fn render_job(j: &JobView, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let mut f = Fields::default();
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
    let multi_line_sql = match &j.spec {
        JobSpec::Sql(s) if s.sql.trim().contains('\n') => Some(s.sql.as_str()),
        _ => None,
    };
    if multi_line_sql.is_none() {
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
    f.render(&mut out);
    if let Some(sql) = multi_line_sql {
        let _ = writeln!(out, "SQL:");
        indented(&mut out, sql, "  ");
    }
    if let JobSpec::Procedure(p) = &j.spec
        && !p.params.is_empty()
    {
        let _ = writeln!(out, "Params:");
        for p in &p.params {
            let mode = serde_json::to_value(p.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let value = serde_json::to_string(&p.value).unwrap_or_default();
            let _ = writeln!(out, "  {} ({mode}) = {value}", p.name);
        }
    }

    out.push('\n');
    if j.attempts.is_empty() {
        out.push_str("Attempts: none\n");
    } else {
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
        if let Some(last) = j.attempts.last() {
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
                indented(&mut out, &last.log_tail, "    ");
            }
        }
    }

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
mod tests {
    use super::*;
    use baton_proto::{
        AgentView, AttemptOutcome, Capabilities, CommandSpec, ConnectionInfo, JobKind, JobState,
        LeaseHeld, NoopSpec, SqlSpec,
    };
    use chrono::TimeDelta;
    use std::collections::BTreeMap;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("ts")
    }

    fn ago(secs: i64) -> DateTime<Utc> {
        now() - TimeDelta::seconds(secs)
    }

    fn job() -> JobView {
        JobView {
            id: 42,
            group: "db".into(),
            kind: JobKind::Command,
            spec: JobSpec::Command(CommandSpec {
                program: "/bin/echo".into(),
                args: vec!["hello".into(), "big world".into()],
                env: BTreeMap::from([("A".into(), "1".into())]),
                working_dir: None,
            }),
            connection: None,
            state: JobState::Succeeded,
            priority: 3,
            retry: RetryPolicy::default(),
            timeout_ms: Some(30_000),
            lease_ttl_ms: 15_000,
            labels: BTreeMap::from([("team".into(), "dba".into())]),
            idempotency_key: None,
            attempts_spent: 2,
            not_before: None,
            cancel_requested: false,
            lease_agent: None,
            created_at: ago(75),
            updated_at: ago(3),
            finished_at: Some(ago(3)),
            result: Some(JobResult {
                exit_code: Some(0),
                stdout: "hello big world\nsecond line\n".into(),
                stderr: String::new(),
                truncated: true,
                data: None,
            }),
            error: None,
            blocked_reason: None,
            attempts: vec![
                AttemptView {
                    number: 1,
                    agent_id: "agent-a".into(),
                    token: 7,
                    started_at: ago(60),
                    ended_at: Some(ago(40)),
                    outcome: Some(AttemptOutcome::LeaseExpired),
                    error: Some("lease expired\nafter 15s".into()),
                    progress: None,
                    log_tail: String::new(),
                    result: None,
                },
                AttemptView {
                    number: 2,
                    agent_id: "agent-b".into(),
                    token: 8,
                    started_at: ago(5),
                    ended_at: Some(ago(5) + TimeDelta::milliseconds(1_234)),
                    outcome: Some(AttemptOutcome::Succeeded),
                    error: None,
                    progress: None,
                    log_tail: String::new(),
                    result: None,
                },
            ],
        }
    }

    #[test]
    fn human_durations_and_ages() {
        assert_eq!(fmt_ms(350), "350ms");
        assert_eq!(fmt_ms(1_234), "1.2s");
        assert_eq!(fmt_ms(2_000), "2s");
        assert_eq!(fmt_ms(15_000), "15s");
        assert_eq!(fmt_ms(125_000), "2m5s");
        assert_eq!(fmt_ms(3_600_000), "1h");
        assert_eq!(fmt_ms(5_400_000), "1h30m");
        assert_eq!(fmt_ms(97_200_000), "1d3h");
        assert_eq!(fmt_ago(ago(12), now()), "12s ago");
        assert_eq!(fmt_ago(ago(0), now()), "0s ago");
        assert_eq!(fmt_ago(ago(-4), now()), "in 4s");
        assert_eq!(fmt_time(ago(3), now()), "2026-09-21T14:13:17Z (3s ago)");
    }

    #[test]
    fn summaries_quote_and_truncate() {
        assert_eq!(spec_summary(&job().spec), "/bin/echo hello 'big world'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        let sql = JobSpec::Sql(SqlSpec {
            connection: "main".into(),
            sql: "select *\n  from orders\n where id = 1".into(),
            exactly_once: false,
        });
        assert_eq!(
            spec_summary(&sql),
            "main: select * from orders where id = 1"
        );
        assert_eq!(truncate("abcdefghij", 6), "abc...");
        assert_eq!(truncate("abc", 6), "abc");
        assert_eq!(
            spec_summary(&JobSpec::Noop(NoopSpec { sleep_ms: 2000 })),
            "noop, sleep 2s"
        );
        assert_eq!(
            spec_summary(&JobSpec::Noop(NoopSpec { sleep_ms: 0 })),
            "noop"
        );
    }

    #[test]
    fn list_table_columns() {
        let mut running = job();
        running.id = 43;
        running.state = JobState::Running;
        running.lease_agent = Some("agent-b".into());
        running.spec = JobSpec::Command(CommandSpec {
            program: "/usr/bin/long".into(),
            args: vec!["x".repeat(100)],
            ..CommandSpec::default()
        });
        let text = render_list(
            &JobList {
                jobs: vec![running, job()],
                next_before: None,
            },
            now(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "ID", "STATE", "KIND", "GROUP", "ATTEMPTS", "AGENT", "AGE", "UPDATED", "SUMMARY"
            ]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            &row[..9],
            [
                "43", "running", "command", "db", "2/3", "agent-b", "1m15s", "ago", "3s"
            ]
        );
        assert!(lines[1].ends_with("..."), "{}", lines[1]);
        assert!(lines[1].chars().count() < 160, "{}", lines[1]);
        assert!(lines[2].starts_with("42 "), "{}", lines[2]);
        assert!(
            lines[2].contains(" - "),
            "no agent shown as -: {}",
            lines[2]
        );
        assert!(!text.lines().any(|l| l.ends_with(' ')));
    }

    #[test]
    fn job_with_attempts_renders_details_table_and_result() {
        let text = render_job(&job(), now());
        for needle in [
            "ID:",
            "State:",
            "succeeded",
            "Spec:",
            "/bin/echo hello 'big world'",
            "Env:",
            "A=1",
            "Priority:",
            "Attempts:",
            "2/3",
            "max 3 attempts, backoff 1s..1m x2 jitter 0.2, on error,timeout,lease_expired",
            "Timeout:",
            "30s",
            "Lease TTL:",
            "15s",
            "Labels:",
            "team=dba",
            "Finished:",
            "(3s ago)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert!(!text.contains("Cancel requested"));
        assert!(!text.contains("Blocked"));

        let header = text
            .lines()
            .find(|l| l.starts_with("#  "))
            .expect("attempts header");
        let cols: Vec<&str> = header.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "#", "AGENT", "TOKEN", "STARTED", "DURATION", "OUTCOME", "ERROR"
            ]
        );
        let first = text
            .lines()
            .find(|l| l.starts_with("1 "))
            .expect("attempt 1");
        let cols: Vec<&str> = first.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "1",
                "agent-a",
                "7",
                "1m",
                "ago",
                "20s",
                "lease_expired",
                "lease",
                "expired",
                "after",
                "15s"
            ]
        );
        let second = text
            .lines()
            .find(|l| l.starts_with("2 "))
            .expect("attempt 2");
        assert!(second.contains("1.2s"), "{second}");
        assert!(second.contains("succeeded"), "{second}");

        let result = &text[text.find("Result:").expect("result section")..];
        assert!(result.contains("Exit code: 0"), "{result}");
        assert!(result.contains("Truncated: yes"), "{result}");
        assert!(result.contains("  Stdout (truncated):\n    hello big world\n    second line\n"));
        assert!(result.contains("  Stderr: (empty)"), "{result}");
    }

    #[test]
    fn running_job_shows_cancel_and_last_attempt_result() {
        let mut j = job();
        j.state = JobState::Running;
        j.cancel_requested = true;
        j.result = None;
        j.finished_at = None;
        j.blocked_reason = Some("no agent runs sql".into());
        j.attempts[0].result = Some(JobResult {
            exit_code: Some(3),
            stderr: "boom".into(),
            ..JobResult::default()
        });
        j.attempts[1].ended_at = None;
        j.attempts[1].outcome = None;
        j.attempts[1].log_tail = "step 1\nstep 2".into();
        let text = render_job(&j, now());
        assert!(text.contains("Cancel requested:"), "{text}");
        assert!(text.contains("Blocked:"), "{text}");
        assert!(text.contains("no agent runs sql"), "{text}");
        let second = text
            .lines()
            .find(|l| l.starts_with("2 "))
            .expect("attempt 2");
        assert!(second.contains(" 5s "), "elapsed so far: {second}");
        assert!(second.contains("running"), "{second}");
        assert!(text.contains("Log tail (attempt #2):\n    step 1\n    step 2\n"));
        assert!(
            text.contains("Result (attempt #1):\n  Exit code: 3\n"),
            "{text}"
        );
        assert!(text.contains("  Stderr:\n    boom\n"), "{text}");
        assert_eq!(
            render_state_line(&j),
            "Job 42: running (cancel requested)\n"
        );

        j.attempts.clear();
        let text = render_job(&j, now());
        assert!(text.contains("Attempts: none"), "{text}");
        assert!(text.contains("Result: none"), "{text}");
    }

    #[test]
    fn agents_table() {
        let list = AgentList {
            agents: vec![AgentView {
                id: "agent-a".into(),
                groups: vec!["db".into(), "etl".into()],
                capabilities: Capabilities {
                    kinds: vec![JobKind::Command, JobKind::Sql],
                    connections: vec![ConnectionInfo {
                        name: "main".into(),
                        kind: "mysql".into(),
                    }],
                },
                version: "0.1.0".into(),
                os: "linux".into(),
                last_seen: ago(3),
                online: true,
                free_slots: 2,
                metrics: None,
                leases: vec![
                    LeaseHeld {
                        job_id: 12,
                        token: 1,
                        expires_at: now(),
                    },
                    LeaseHeld {
                        job_id: 14,
                        token: 2,
                        expires_at: now(),
                    },
                ],
            }],
        };
        let text = render_agents(&list, now());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "ID",
                "ONLINE",
                "GROUPS",
                "KINDS",
                "CONNECTIONS",
                "SLOTS",
                "FREE",
                "LEASES",
                "LAST",
                "SEEN"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "agent-a",
                "yes",
                "db,etl",
                "command,sql",
                "main(mysql)",
                "2",
                "12,14",
                "3s",
                "ago"
            ]
        );
    }
}
