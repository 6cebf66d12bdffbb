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
mod tests;
