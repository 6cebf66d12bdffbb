//! Notifications: the outbox of events, their deliveries to webhooks, and
//! each delivery attempt.
//!
//! Events that follow a state change (a job failed or succeeded after a
//! retry, a run failed, a drill failed, an occurrence missed) are written by
//! database triggers in the transaction that changes the state (SQLite
//! 0010, PostgreSQL 0003): no write path can forget one, and none is written
//! for a change that rolls back. Events that come from time passing (an
//! agent offline, a schedule stale) are written by the notification service
//! with [`NotificationStore::notify`], keyed by a `dedup` text naming the
//! cause, so every replica and every restart writes one.
//!
//! The service then fans each event out to the webhooks whose filters match
//! ([`Route`]), claims due deliveries (a claim ends at `claimed_until`, so a
//! replica that dies mid-send leaves the row to another one), sends them and
//! records each attempt.

use std::collections::BTreeMap;

use async_trait::async_trait;
use baton_proto::notify::{DeliveryList, DeliveryState, DeliveryView};

use super::{Error, Result, rows_ts};

/// An event written by the service (time-derived ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// One of `baton_proto::notify::EVENTS`.
    pub event: String,
    /// The cause, unique: a second write with it is ignored.
    pub dedup: String,
    /// What it is about.
    pub subject: String,
    /// Groups it concerns.
    pub groups: Vec<String>,
    /// Labels (filters).
    pub labels: BTreeMap<String, String>,
    /// Event-specific fields.
    pub detail: serde_json::Value,
    /// When (Unix ms).
    pub at: i64,
}

/// A webhook's filters, for the fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The webhook's name.
    pub name: String,
    /// Events it wants (every event of `baton_proto::notify::EVENTS` when empty).
    pub events: Vec<String>,
    /// Only events concerning one of these groups (any when empty).
    pub groups: Vec<String>,
    /// Only events carrying all these labels (any when empty).
    pub labels: BTreeMap<String, String>,
}

impl Route {
    /// Whether an event with these fields goes to this webhook.
    pub fn matches(
        &self,
        event: &str,
        groups: &[String],
        labels: &BTreeMap<String, String>,
    ) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && (self.groups.is_empty() || groups.iter().any(|g| self.groups.contains(g)))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|x| x == v))
    }
}

/// A delivery claimed for sending, with its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    /// Delivery id.
    pub id: i64,
    /// The webhook's name.
    pub webhook: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// The event.
    pub event: StoredEvent,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Event id.
    pub id: i64,
    /// Event name.
    pub event: String,
    /// What it is about.
    pub subject: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Event-specific fields.
    pub detail: serde_json::Value,
    /// When (Unix ms).
    pub at: i64,
}

/// One attempt's result and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// HTTP status, if the receiver answered.
    pub status: Option<u16>,
    /// Why it failed (`None`: delivered).
    pub error: Option<String>,
    /// The delivery's next state: `Pending` (with `next_at`), or final.
    pub next: DeliveryState,
    /// When to try again (pending only).
    pub next_at: i64,
}

/// The notification tables of a backend.
#[async_trait]
pub trait NotificationStore {
    /// Write an event unless one with its `dedup` exists; whether it was new.
    async fn notify(&self, n: &NewNotification) -> Result<bool>;

    /// Make the deliveries of up to `limit` events not fanned out yet, one
    /// per matching route (several replicas: each event once); the number of
    /// events handled.
    async fn fan_out(&self, routes: &[Route], now: i64, limit: u32) -> Result<u32>;

    /// Claim up to `limit` pending deliveries due at `now` until
    /// `now + claim_ms` (rows another replica claims are skipped).
    async fn claim_deliveries(&self, now: i64, claim_ms: i64, limit: u32) -> Result<Vec<Claimed>>;

    /// Record an attempt of a claimed delivery and release the claim.
    async fn record_attempt(&self, delivery: i64, a: &Attempt, now: i64) -> Result<()>;

    /// Delete up to `limit` events older than `before` whose deliveries all
    /// ended (with their deliveries and attempts); how many.
    async fn prune_notifications(&self, before: i64, limit: u32) -> Result<u64>;

    /// Deliveries newest first, below `before` (a delivery id), optionally in
    /// one state, at most `limit` clamped to 1–1000.
    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<DeliveryList>;
}

/// The columns of a delivery view, joined with its event (`d`, `n`).
pub(crate) const VIEW_COLUMNS: &str = "d.id, d.notification_id, n.event, n.subject, d.webhook, d.state, d.attempts, d.last_status, d.last_error, n.at, d.next_at, d.updated_at";

/// The columns of a claimed delivery, joined with its event.
pub(crate) const CLAIM_COLUMNS: &str = "d.id, d.webhook, d.attempts, n.id AS nid, n.event, n.subject, n.groups, n.labels, n.detail, n.at";

/// A delivery view from a row of [`VIEW_COLUMNS`].
pub(crate) fn view<R>(r: &R) -> Result<DeliveryView>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let state: String = r.try_get("state")?;
    let state = DeliveryState::parse(&state)
        .ok_or_else(|| Error::Corrupt("notification_deliveries.state".into()))?;
    Ok(DeliveryView {
        id: r.try_get("id")?,
        notification_id: r.try_get("notification_id")?,
        event: r.try_get("event")?,
        subject: r.try_get("subject")?,
        webhook: r.try_get("webhook")?,
        state,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        last_status: r
            .try_get::<Option<i64>, _>("last_status")?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
        event_at: rows_ts(r.try_get("at")?),
        next_at: (state == DeliveryState::Pending)
            .then(|| r.try_get::<i64, _>("next_at").map(rows_ts))
            .transpose()?,
        updated_at: rows_ts(r.try_get("updated_at")?),
    })
}

/// A claimed delivery from a row of [`CLAIM_COLUMNS`].
pub(crate) fn claimed<R>(r: &R) -> Result<Claimed>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let corrupt = |_| Error::Corrupt("notifications".into());
    Ok(Claimed {
        id: r.try_get("id")?,
        webhook: r.try_get("webhook")?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        event: StoredEvent {
            id: r.try_get("nid")?,
            event: r.try_get("event")?,
            subject: r.try_get("subject")?,
            groups: serde_json::from_str(&r.try_get::<String, _>("groups")?).map_err(corrupt)?,
            labels: serde_json::from_str(&r.try_get::<String, _>("labels")?).map_err(corrupt)?,
            detail: serde_json::from_str(&r.try_get::<String, _>("detail")?).map_err(corrupt)?,
            at: r.try_get("at")?,
        },
    })
}

/// The routes an event goes to, from its stored `groups` and `labels`.
pub(crate) fn targets<'a>(
    routes: &'a [Route],
    event: &str,
    groups: &str,
    labels: &str,
) -> Result<Vec<&'a str>> {
    let corrupt = |_| Error::Corrupt("notifications".into());
    let groups: Vec<String> = serde_json::from_str(groups).map_err(corrupt)?;
    let labels: BTreeMap<String, String> = serde_json::from_str(labels).map_err(corrupt)?;
    Ok(routes
        .iter()
        .filter(|r| r.matches(event, &groups, &labels))
        .map(|r| r.name.as_str())
        .collect())
}

/// A page from views fetched with `limit + 1` rows.
pub(crate) fn page(mut deliveries: Vec<DeliveryView>, limit: u32) -> DeliveryList {
    let more = deliveries.len() > limit as usize;
    deliveries.truncate(limit as usize);
    let next_before = if more {
        deliveries.last().map(|d| d.id)
    } else {
        None
    };
    DeliveryList {
        deliveries,
        next_before,
    }
}

#[cfg(test)]
mod tests;
