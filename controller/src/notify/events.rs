//! The events that come from time passing, and each event's line of text.

use baton_proto::agent::AgentView;
use serde_json::{Value, json};

use crate::store::notifications::{NewNotification, StoredEvent};
use crate::store::rows_ts;
use crate::store::schedules::StoredSchedule;

/// `agent_offline` for each agent (not revoked) not seen for `after_ms`:
/// one event per silence (keyed by its last sighting).
pub fn offline_events(agents: &[AgentView], now: i64, after_ms: i64) -> Vec<NewNotification> {
    agents
        .iter()
        .filter(|a| a.revoked_at.is_none())
        .filter(|a| now - a.last_seen.timestamp_millis() >= after_ms)
        .map(|a| {
            let seen = a.last_seen.timestamp_millis();
            NewNotification {
                event: "agent_offline".into(),
                dedup: format!("agent_offline:{}:{seen}", a.id),
                subject: a.id.clone(),
                groups: a.groups.clone(),
                labels: Default::default(),
                detail: json!({
                    "agent_id": a.id,
                    "last_seen_at": a.last_seen,
                    "offline_after_ms": after_ms,
                }),
                at: now,
            }
        })
        .collect()
}

/// `schedule_stale` for a schedule whose last success (or creation) is older
/// than its `alert_after`: one event per stale spell.
pub fn stale_event(
    s: &StoredSchedule,
    last_success_at: Option<i64>,
    now: i64,
) -> Option<NewNotification> {
    let alert = s.spec.alert_after_ms? as i64;
    let since = last_success_at.unwrap_or(s.created_at);
    if now.saturating_sub(since) <= alert {
        return None;
    }
    let labels = s
        .spec
        .job
        .as_ref()
        .map(|j| j.labels.clone())
        .unwrap_or_default();
    Some(NewNotification {
        event: "schedule_stale".into(),
        dedup: format!("schedule_stale:{}:{since}", s.id),
        subject: s.spec.name.clone(),
        groups: s.spec.group.iter().cloned().collect(),
        labels,
        detail: json!({
            "schedule": s.spec.name,
            "last_success_at": last_success_at.map(rows_ts),
            "alert_after_ms": alert,
        }),
        at: now,
    })
}

/// One line for humans (Slack's `text`).
pub fn text(e: &StoredEvent) -> String {
    let d = &e.detail;
    let s = |k: &str| match &d[k] {
        Value::String(v) => v.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let group = e.groups.join(", ");
    let error = match s("error") {
        e if e.is_empty() => String::new(),
        e => format!(": {e}"),
    };
    match e.event.as_str() {
        "job_failed" => format!(
            "Baton: job {} ({group}) failed after {} attempt(s){error}",
            e.subject,
            s("attempts")
        ),
        "job_succeeded_after_retry" => format!(
            "Baton: job {} ({group}) succeeded after {} attempts",
            e.subject,
            s("attempts")
        ),
        "occurrence_missed" => format!(
            "Baton: schedule {} missed {} occurrence(s) from {}{}",
            e.subject,
            s("count"),
            rows_ts(d["nominal_at"].as_i64().unwrap_or_default()).to_rfc3339(),
            match s("reason") {
                r if r.is_empty() => String::new(),
                r => format!(" ({r})"),
            }
        ),
        "schedule_stale" => match s("last_success_at") {
            t if t.is_empty() => format!("Baton: schedule {} has never succeeded", e.subject),
            t => format!("Baton: schedule {} is stale: last success {t}", e.subject),
        },
        "drill_failed" => format!(
            "Baton: drill {} ({}, group {group}) ended {}",
            e.subject,
            s("method"),
            s("verdict")
        ),
        "agent_offline" => format!(
            "Baton: agent {} ({group}) offline, last seen {}",
            e.subject,
            s("last_seen_at")
        ),
        "pipeline_failed" => format!(
            "Baton: pipeline {} run {} failed{error}",
            s("pipeline"),
            e.subject
        ),
        other => format!("Baton: {other} {}", e.subject),
    }
}
