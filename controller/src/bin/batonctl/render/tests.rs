//! Tests of the text rendering.
use super::*;
use baton_proto::{
    AgentView, AttemptOutcome, Capabilities, CommandSpec, ConnectionInfo, JobKind, JobState,
    JobSummary, LeaseHeld, NoopSpec, OutputEncoding, SqlSpec,
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
            stderr: "/w==".into(),
            stderr_encoding: Some(OutputEncoding::Base64),
            truncated: true,
            ..JobResult::default()
        }),
        error: None,
        blocked_reason: None,
        schedule: None,
        nominal_at: None,
        run_id: None,
        step: None,
        attempts: vec![
            AttemptView {
                running_at: None,
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
                running_at: None,
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
        session: Default::default(),
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

fn summary(j: &JobView) -> JobSummary {
    JobSummary {
        id: j.id,
        group: j.group.clone(),
        kind: j.kind,
        what: match &j.spec {
            JobSpec::Command(c) => Some(c.program.clone()),
            JobSpec::Sql(s) => Some(s.sql.clone()),
            _ => None,
        },
        connection: j.connection.clone(),
        state: j.state,
        priority: j.priority,
        attempts_spent: j.attempts_spent,
        max_attempts: j.retry.max_attempts,
        labels: j.labels.clone(),
        not_before: j.not_before,
        cancel_requested: j.cancel_requested,
        lease_agent: j.lease_agent.clone(),
        created_at: j.created_at,
        updated_at: j.updated_at,
        finished_at: j.finished_at,
        exit_code: j.result.as_ref().and_then(|r| r.exit_code),
        error: j.error.clone(),
        schedule: j.schedule.clone(),
        nominal_at: j.nominal_at,
        run_id: j.run_id,
        step: j.step.clone(),
    }
}

#[test]
fn list_table_columns() {
    let mut running = job();
    running.id = 43;
    running.state = JobState::Running;
    running.lease_agent = Some("agent-b".into());
    running.spec = JobSpec::Command(CommandSpec {
        program: format!("/usr/bin/{}", "x".repeat(100)),
        args: vec!["arg".into()],
        ..CommandSpec::default()
    });
    let mut sql = job();
    sql.id = 41;
    sql.kind = JobKind::Sql;
    sql.connection = Some("main".into());
    sql.spec = JobSpec::Sql(SqlSpec {
        connection: "main".into(),
        sql: "select\n 1".into(),
        exactly_once: false,
        session: Default::default(),
    });
    let text = render_list(
        &JobList {
            jobs: vec![summary(&running), summary(&job()), summary(&sql)],
            next_before: None,
        },
        now(),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
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
    assert!(lines[2].ends_with("/bin/echo"), "{}", lines[2]);
    assert!(
        lines[2].contains(" - "),
        "no agent shown as -: {}",
        lines[2]
    );
    assert!(lines[3].ends_with("main: select 1"), "{}", lines[3]);
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
    assert!(
        result.contains("  Stderr (truncated) (not UTF-8: base64 of the bytes):\n    /w==\n"),
        "{result}"
    );
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
    j.schedule = Some("nightly".into());
    j.nominal_at = Some(now());
    j.run_id = Some(7);
    j.step = Some("dump".into());
    let text = render_job(&j, now());
    assert!(
        text.contains("Pipeline run:") && text.contains("7, step dump"),
        "{text}"
    );
    assert!(text.contains("nightly, occurrence "), "{text}");
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
                stores: Vec::new(),
            },
            version: "0.1.0".into(),
            os: "linux".into(),
            last_seen: ago(3),
            online: true,
            free_slots: 2,
            metrics: None,
            enrolled_at: None,
            revoked_at: None,
            drained_at: None,
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
            "STATE",
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
            "online",
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

#[test]
fn agent_state_shows_revoked_over_online() {
    let mut a = AgentView {
        id: "db1".into(),
        groups: vec![],
        capabilities: Capabilities::default(),
        version: "0.1.0".into(),
        os: "linux".into(),
        last_seen: ago(600),
        online: false,
        free_slots: 0,
        metrics: None,
        leases: vec![],
        enrolled_at: Some(ago(3_600)),
        revoked_at: None,
        drained_at: None,
    };
    assert_eq!(agent_state(&a), "offline");
    a.online = true;
    assert_eq!(agent_state(&a), "online");
    a.drained_at = Some(ago(8));
    assert_eq!(agent_state(&a), "draining");
    a.revoked_at = Some(ago(5));
    assert_eq!(agent_state(&a), "revoked");
    let text = render_agents(&AgentList { agents: vec![a] }, now());
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .expect("row")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..3], ["db1", "revoked", "-"]);
}

#[test]
fn database_results_render_as_tables_and_out_values() {
    let mut out = String::new();
    render_data(
        &mut out,
        &serde_json::json!({
            "result_sets": [{"columns": ["id", "name"], "rows": [[1, "ada"], [2, null]], "truncated": false}],
            "out": {"total": 42},
            "affected_rows": 3
        }),
    );
    assert!(out.contains("Result set 1 (2 rows):"), "{out}");
    assert!(out.contains("ada") && out.contains("NULL"), "{out}");
    assert!(out.contains("total = 42"), "{out}");
    assert!(out.contains("\"affected_rows\": 3"), "{out}");
    assert!(!out.contains("result_sets"), "{out}");
}

#[test]
fn drain_lines_say_what_still_runs() {
    let mut d = baton_proto::AgentDrain {
        agent_id: "db1".into(),
        draining: true,
        drained_at: Some(now()),
        running: vec![4, 9],
    };
    assert_eq!(
        agent_drain_line(&d),
        "Agent db1: drained, takes no new work; still running jobs 4, 9"
    );
    d.running = vec![];
    assert_eq!(
        agent_drain_line(&d),
        "Agent db1: drained, takes no new work; runs nothing"
    );
    d.draining = false;
    assert_eq!(agent_drain_line(&d), "Agent db1: resumed, takes new work");
}

#[test]
fn an_attempt_ended_by_its_agents_restart_shows_so() {
    let mut j = job();
    j.attempts[0].outcome = Some(AttemptOutcome::AgentRestarted);
    j.attempts[0].error = Some("agent agent-a restarted".into());
    let text = render_job(&j, now());
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(row.contains("agent_restarted"), "{text}");
}
