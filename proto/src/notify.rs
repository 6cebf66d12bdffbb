//! Notifications: the webhook body the controller POSTs, and the deliveries
//! operators list (`GET /v1/notifications/deliveries`, `batonctl
//! notifications ls`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The events a webhook may subscribe to.
pub const EVENTS: &[&str] = &[
    "job_failed",
    "job_succeeded_after_retry",
    "occurrence_missed",
    "schedule_stale",
    "drill_failed",
    "agent_offline",
    "pipeline_failed",
];

/// The JSON body of a webhook POST. Signed: `X-Baton-Signature:
/// sha256=<hex HMAC-SHA256 of "<X-Baton-Timestamp>.<body>">`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// The event's id: the same on every retry of its deliveries (a
    /// receiver drops one it has seen: delivery is at least once).
    pub id: i64,
    /// One of [`EVENTS`].
    pub event: String,
    /// What it is about: a job, run, drill id, a schedule or agent name.
    pub subject: String,
    /// The groups it concerns.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The job's (or schedule's job's) labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Event-specific fields (`job_id`, `error`, `attempts`, …).
    #[serde(default)]
    pub detail: serde_json::Value,
    /// The webhook it was sent to.
    pub webhook: String,
    /// One line for humans (Slack's incoming webhooks show it).
    pub text: String,
}

/// A delivery's state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; retried at `next_at`.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (attempts or age exhausted, or the webhook was removed).
    Failed,
}

impl DeliveryState {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    /// From the stored text.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One event sent (or being sent) to one webhook.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    /// Delivery id.
    pub id: i64,
    /// The event's id ([`WebhookBody::id`]).
    pub notification_id: i64,
    /// The event.
    pub event: String,
    /// What it is about.
    pub subject: String,
    /// The webhook's name.
    pub webhook: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last attempt, if the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the event happened.
    pub event_at: DateTime<Utc>,
    /// Next attempt (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// `GET /v1/notifications/deliveries`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
    /// Pass as `before` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[cfg(test)]
mod tests;
