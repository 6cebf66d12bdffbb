//! Text rendering of the identity model: enrollment tokens, operator tokens,
//! agent revocation, the audit log, `whoami`. Pure: times are rendered against `now`.

use baton_proto::auth::{
    AgentRevoked, AuditList, EnrollmentTokenList, EnrollmentTokenState, EnrollmentTokenView,
    OperatorTokenList, OperatorTokenView, WhoAmI,
};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::render::{dash, finish, fmt_ago, join_or_dash, one_line, table, truncate};

/// Longest note in `enroll list`.
const NOTE_WIDTH: usize = 40;
/// Longest error in `audit`.
const AUDIT_ERROR_WIDTH: usize = 60;

/// An absolute UTC time, to the second.
pub fn fmt_utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn enroll_state(s: EnrollmentTokenState) -> &'static str {
    match s {
        EnrollmentTokenState::Active => "active",
        EnrollmentTokenState::Used => "used",
        EnrollmentTokenState::Expired => "expired",
        EnrollmentTokenState::Revoked => "revoked",
    }
}

/// stderr line of `enroll create` (the secret itself goes to stdout).
pub fn enroll_created_note(v: &EnrollmentTokenView) -> String {
    format!(
        "Enrollment token {} for groups {} (expires {}); it is shown only now",
        v.id,
        join_or_dash(v.groups.iter().cloned()),
        fmt_utc(v.expires_at)
    )
}

/// `enroll revoke`.
pub fn enroll_revoked_line(v: &EnrollmentTokenView) -> String {
    format!("Enrollment token {}: {}", v.id, enroll_state(v.state))
}

/// `enroll list`.
pub fn render_enroll_list(list: &EnrollmentTokenList, now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "ID",
        "GROUPS",
        "STATE",
        "CREATED BY",
        "EXPIRES",
        "USED BY",
        "NOTE",
    ]);
    for e in &list.tokens {
        t.add_row(vec![
            e.id.clone(),
            join_or_dash(e.groups.iter().cloned()),
            enroll_state(e.state).to_owned(),
            e.created_by.clone(),
            fmt_ago(e.expires_at, now),
            dash(e.used_by.as_deref()),
            dash(Some(&truncate(&one_line(&e.note), NOTE_WIDTH))),
        ]);
    }
    finish(t)
}

/// stderr line of `tokens create` (the secret itself goes to stdout).
pub fn token_created_note(v: &OperatorTokenView) -> String {
    format!(
        "Operator token {} for {} ({}); it is shown only now",
        v.id, v.name, v.role
    )
}

/// `tokens revoke`.
pub fn token_revoked_line(v: &OperatorTokenView) -> String {
    let state = if v.revoked_at.is_some() {
        "revoked"
    } else {
        "active"
    };
    format!("Operator token {} ({}, {}): {state}", v.id, v.name, v.role)
}

/// `tokens list`.
pub fn render_tokens_list(list: &OperatorTokenList, now: DateTime<Utc>) -> String {
    let mut t = table(&[
        "ID",
        "NAME",
        "ROLE",
        "CREATED BY",
        "CREATED",
        "LAST USED",
        "REVOKED",
    ]);
    let ago = |x: Option<DateTime<Utc>>| x.map_or_else(|| "-".to_owned(), |x| fmt_ago(x, now));
    for o in &list.tokens {
        t.add_row(vec![
            o.id.clone(),
            o.name.clone(),
            o.role.to_string(),
            o.created_by.clone(),
            fmt_ago(o.created_at, now),
            ago(o.last_used_at),
            ago(o.revoked_at),
        ]);
    }
    finish(t)
}

/// `agents revoke`.
pub fn agent_revoked_line(r: &AgentRevoked) -> String {
    let jobs = if r.jobs_requeued.is_empty() {
        "none".to_owned()
    } else {
        r.jobs_requeued
            .iter()
            .map(|j| j.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("Revoked agent {}; requeued jobs: {jobs}", r.agent_id)
}

/// `audit`: newest first, absolute times.
pub fn render_audit(list: &AuditList) -> String {
    let mut t = table(&[
        "ID", "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "STATUS", "ERROR",
    ]);
    for e in &list.entries {
        t.add_row(vec![
            e.id.to_string(),
            fmt_utc(e.at),
            e.actor.clone(),
            dash(Some(&e.role)),
            e.action.clone(),
            e.target.clone(),
            e.status.to_string(),
            e.error.as_deref().map_or_else(
                || "-".to_owned(),
                |x| truncate(&one_line(x), AUDIT_ERROR_WIDTH),
            ),
        ]);
    }
    finish(t)
}

/// `whoami`: `ci (viewer)`.
pub fn whoami_line(w: &WhoAmI) -> String {
    format!("{} ({})", w.name, w.role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::auth::{AuditEntry, Role};
    use chrono::TimeDelta;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000, 0).expect("ts")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        now() + TimeDelta::seconds(secs)
    }

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    fn enroll_view() -> EnrollmentTokenView {
        EnrollmentTokenView {
            id: "e1".into(),
            groups: vec!["nightly".into(), "db".into()],
            note: String::new(),
            state: EnrollmentTokenState::Active,
            created_by: "token:admin".into(),
            created_at: at(-60),
            expires_at: at(86_400),
            used_at: None,
            used_by: None,
            revoked_at: None,
        }
    }

    fn token_view() -> OperatorTokenView {
        OperatorTokenView {
            id: "t2".into(),
            name: "ci".into(),
            role: Role::Viewer,
            created_by: "token:admin".into(),
            created_at: at(-7_200),
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn enroll_notes_and_lines() {
        assert_eq!(
            enroll_created_note(&enroll_view()),
            "Enrollment token e1 for groups nightly,db (expires 2026-09-22T14:13:20Z); \
             it is shown only now"
        );
        let mut v = enroll_view();
        v.state = EnrollmentTokenState::Revoked;
        assert_eq!(enroll_revoked_line(&v), "Enrollment token e1: revoked");
    }

    #[test]
    fn enroll_list_table() {
        let mut used = enroll_view();
        used.id = "e2".into();
        used.groups = vec!["etl".into()];
        used.state = EnrollmentTokenState::Used;
        used.expires_at = at(-30);
        used.used_by = Some("db1".into());
        used.note = "db hosts\nrack 4".into();
        let text = render_enroll_list(
            &EnrollmentTokenList {
                tokens: vec![used, enroll_view()],
            },
            now(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            words(lines[0]),
            [
                "ID", "GROUPS", "STATE", "CREATED", "BY", "EXPIRES", "USED", "BY", "NOTE"
            ]
        );
        assert_eq!(
            words(lines[1]),
            [
                "e2",
                "etl",
                "used",
                "token:admin",
                "30s",
                "ago",
                "db1",
                "db",
                "hosts",
                "rack",
                "4"
            ]
        );
        assert_eq!(
            words(lines[2]),
            [
                "e1",
                "nightly,db",
                "active",
                "token:admin",
                "in",
                "1d",
                "-",
                "-"
            ]
        );
        assert!(!text.lines().any(|l| l.ends_with(' ')));
    }

    #[test]
    fn token_notes_lines_and_table() {
        assert_eq!(
            token_created_note(&token_view()),
            "Operator token t2 for ci (viewer); it is shown only now"
        );
        let mut revoked = token_view();
        revoked.id = "t3".into();
        revoked.name = "old".into();
        revoked.role = Role::Admin;
        revoked.created_by = "init".into();
        revoked.last_used_at = Some(at(-90));
        revoked.revoked_at = Some(at(-5));
        assert_eq!(
            token_revoked_line(&revoked),
            "Operator token t3 (old, admin): revoked"
        );
        assert_eq!(
            token_revoked_line(&token_view()),
            "Operator token t2 (ci, viewer): active"
        );

        let text = render_tokens_list(
            &OperatorTokenList {
                tokens: vec![token_view(), revoked],
            },
            now(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            words(lines[0]),
            [
                "ID", "NAME", "ROLE", "CREATED", "BY", "CREATED", "LAST", "USED", "REVOKED"
            ]
        );
        assert_eq!(
            words(lines[1]),
            ["t2", "ci", "viewer", "token:admin", "2h", "ago", "-", "-"]
        );
        assert_eq!(
            words(lines[2]),
            [
                "t3", "old", "admin", "init", "2h", "ago", "1m30s", "ago", "5s", "ago"
            ]
        );
    }

    #[test]
    fn agent_revoked_lists_requeued_jobs() {
        let mut r = AgentRevoked {
            agent_id: "db1".into(),
            revoked_at: now(),
            jobs_requeued: vec![4, 5],
        };
        assert_eq!(
            agent_revoked_line(&r),
            "Revoked agent db1; requeued jobs: 4, 5"
        );
        r.jobs_requeued.clear();
        assert_eq!(
            agent_revoked_line(&r),
            "Revoked agent db1; requeued jobs: none"
        );
    }

    #[test]
    fn audit_table() {
        let list = AuditList {
            entries: vec![
                AuditEntry {
                    id: 12,
                    at: at(-3),
                    actor: "token:ci".into(),
                    role: "viewer".into(),
                    action: "POST /v1/jobs/{id}/cancel".into(),
                    target: "/v1/jobs/7/cancel".into(),
                    status: 403,
                    error: Some("forbidden".into()),
                },
                AuditEntry {
                    id: 11,
                    at: at(-60),
                    actor: "anonymous".into(),
                    role: String::new(),
                    action: "POST /v1/agents/enroll".into(),
                    target: "/v1/agents/enroll".into(),
                    status: 201,
                    error: None,
                },
            ],
            next_before: Some(11),
        };
        let text = render_audit(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(
            words(lines[0]),
            [
                "ID", "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "STATUS", "ERROR"
            ]
        );
        assert_eq!(
            words(lines[1]),
            [
                "12",
                "2026-09-21T14:13:17Z",
                "token:ci",
                "viewer",
                "POST",
                "/v1/jobs/{id}/cancel",
                "/v1/jobs/7/cancel",
                "403",
                "forbidden"
            ]
        );
        assert_eq!(
            words(lines[2]),
            [
                "11",
                "2026-09-21T14:12:20Z",
                "anonymous",
                "-",
                "POST",
                "/v1/agents/enroll",
                "/v1/agents/enroll",
                "201",
                "-"
            ]
        );
    }

    #[test]
    fn whoami_names_token_and_role() {
        let w = WhoAmI {
            name: "ci".into(),
            token_id: "t2".into(),
            role: Role::Viewer,
        };
        assert_eq!(whoami_line(&w), "ci (viewer)");
    }
}
