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
