//! Notifications: the service that turns the outbox into signed webhook
//! POSTs (ARCHITECTURE.md "Notifications").
//!
//! Each tick it (1) writes the events that come from time passing — an
//! agent not seen for `offline_after`, a schedule whose last success is
//! older than its `alert_after` — keyed so each cause is one event however
//! many replicas look; (2) fans new events out to the webhooks whose
//! filters match (one delivery per webhook); (3) claims due deliveries and
//! sends them. A 2xx answer is delivered; anything else is retried with
//! exponential backoff (backon: 1 s doubling to 5 min, jittered) until
//! `max_attempts` or `max_age`, then failed. Every attempt is recorded.
//!
//! Nothing is lost across a crash: events are written in the transaction of
//! their state change (or re-derived from stored state), deliveries are rows,
//! and a claim of a replica that died ends after [`CLAIM_MS`]. A delivery may
//! be sent twice (a crash between the POST and its record): receivers drop
//! a repeated `id`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use baton_proto::notify::{DeliveryState, WebhookBody};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use crate::config::{NotificationsConfig, Webhook};
use crate::store::notifications::{Attempt, Claimed, Route, StoredEvent};
use crate::store::{self, Store};

mod events;
pub use events::{offline_events, stale_event, text};

/// How long a replica holds a claimed delivery: longer than a send.
pub const CLAIM_MS: i64 = 30_000;
/// Longest a receiver may take to answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the service looks.
const TICK: Duration = Duration::from_millis(500);
/// How often the time-derived events are looked for.
const SCAN_EVERY: u32 = 10;
/// How often ended events past `keep` are deleted (ticks).
const PRUNE_EVERY: u32 = 120;
/// Most events deleted per prune.
const PRUNE_BATCH: u32 = 1000;
/// Events fanned out, deliveries claimed per tick.
const BATCH: u32 = 64;

/// Service errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A webhook's HTTP client could not be built (its pinned CA).
    #[error("webhook {name}: {reason}")]
    Client {
        /// The webhook.
        name: String,
        /// Why.
        reason: String,
    },
}

/// Deliveries by result, for `/metrics` (the lead wires it into the
/// registry): attempts that delivered, attempts that failed and will be
/// retried, deliveries given up.
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    /// Delivered (2xx).
    pub delivered: AtomicU64,
    /// An attempt failed; retried later.
    pub retried: AtomicU64,
    /// Given up (attempts or age exhausted, webhook removed).
    pub failed: AtomicU64,
}

impl DeliveryCounters {
    /// `(delivered, retried, failed)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.retried.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The signature header's value for `body` sent at `timestamp` (Unix
/// seconds): `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry number `attempts` (1 = the first retry).
pub fn backoff(attempts: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(300))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_secs(300))
}

/// The notification service.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Store,
    config: Arc<NotificationsConfig>,
    routes: Arc<[Route]>,
    clients: Arc<BTreeMap<String, (Webhook, reqwest::Client)>>,
    counters: Arc<DeliveryCounters>,
}

impl Notifier {
    /// The service for `config`'s webhooks (one HTTP client each: its
    /// pinned CA).
    pub fn new(
        store: Store,
        config: &NotificationsConfig,
        counters: Arc<DeliveryCounters>,
    ) -> Result<Notifier, Error> {
        let mut clients = BTreeMap::new();
        for w in &config.webhooks {
            let client = client(w).map_err(|reason| Error::Client {
                name: w.name.clone(),
                reason,
            })?;
            clients.insert(w.name.clone(), (w.clone(), client));
        }
        let routes = config
            .webhooks
            .iter()
            .map(|w| Route {
                name: w.name.clone(),
                events: w.events.clone(),
                groups: w.groups.clone(),
                labels: w.labels.clone(),
            })
            .collect();
        Ok(Notifier {
            store,
            config: Arc::new(config.clone()),
            routes,
            clients: Arc::new(clients),
            counters,
        })
    }

    /// Run until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = 0u32;
        loop {
            if let Err(e) = self.once(tick.is_multiple_of(SCAN_EVERY)).await {
                tracing::warn!(error = %e, "Notifications: a pass failed; trying again");
            }
            if tick.is_multiple_of(PRUNE_EVERY)
                && let Err(e) = self.prune().await
            {
                tracing::warn!(error = %e, "Notifications: pruning old events failed");
            }
            tick = tick.wrapping_add(1);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// One pass: time-derived events (when `scan`), fan-out, sends.
    pub async fn once(&self, scan: bool) -> Result<(), Error> {
        if scan && !self.routes.is_empty() {
            self.scan(store::now_ms()).await?;
        }
        self.store
            .fan_out(&self.routes, store::now_ms(), BATCH)
            .await?;
        let claimed = self
            .store
            .claim_deliveries(store::now_ms(), CLAIM_MS, BATCH)
            .await?;
        let sends = claimed.into_iter().map(|c| self.deliver(c));
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }

    /// Delete events past `keep` whose deliveries ended.
    pub async fn prune(&self) -> Result<u64, Error> {
        let before = store::now_ms() - self.config.keep.as_millis() as i64;
        let n = self.store.prune_notifications(before, PRUNE_BATCH).await?;
        if n > 0 {
            tracing::info!(events = n, "Old notification events deleted");
        }
        Ok(n)
    }

    /// Write the events that come from time passing.
    async fn scan(&self, now: i64) -> Result<(), Error> {
        let wants = |e: &str| {
            self.routes
                .iter()
                .any(|r| r.events.is_empty() || r.events.iter().any(|x| x == e))
        };
        let mut found = Vec::new();
        if wants("agent_offline") {
            let after = self.config.offline_after.as_millis() as i64;
            let agents = self.store.list_agents(now, after).await?;
            found.extend(offline_events(&agents, now, after));
        }
        if wants("schedule_stale") {
            for s in self.store.list_schedules().await? {
                if s.spec.alert_after_ms.is_none() {
                    continue;
                }
                let stats = self.store.schedule_stats(s.id).await?;
                found.extend(stale_event(&s, stats.last_success_at, now));
            }
        }
        for n in found {
            if self.store.notify(&n).await? {
                tracing::info!(event = %n.event, subject = %n.subject, "Notification event recorded");
            }
        }
        Ok(())
    }

    /// Send one claimed delivery and record the attempt.
    async fn deliver(&self, c: Claimed) -> Result<(), Error> {
        let now = store::now_ms();
        let attempt = match self.clients.get(&c.webhook) {
            None => final_failure(format!("webhook `{}` is no longer configured", c.webhook)),
            Some(_) if now - c.event.at > self.config.max_age.as_millis() as i64 => {
                final_failure("gave up: the event is older than max_age".into())
            }
            Some((hook, client)) => {
                let (status, error) = post(hook, client, &c.id, &c.event).await;
                self.next(&c, status, error, now)
            }
        };
        let (counter, result) = match (&attempt.error, attempt.next) {
            (None, _) => (&self.counters.delivered, "delivered"),
            (Some(_), DeliveryState::Pending) => (&self.counters.retried, "retried"),
            (Some(_), _) => (&self.counters.failed, "failed"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::notification_delivered(result);
        match (&attempt.error, attempt.next) {
            (None, _) => {
                tracing::info!(delivery = c.id, webhook = %c.webhook, event = %c.event.event, "Notification delivered")
            }
            (Some(e), DeliveryState::Pending) => {
                tracing::info!(delivery = c.id, webhook = %c.webhook, error = %e, attempts = c.attempts + 1, "Notification not delivered; retrying")
            }
            (Some(e), _) => {
                tracing::warn!(delivery = c.id, webhook = %c.webhook, error = %e, attempts = c.attempts + 1, "Notification given up")
            }
        }
        self.store
            .record_attempt(c.id, &attempt, store::now_ms())
            .await?;
        Ok(())
    }

    /// What follows an attempt that answered `status` (or failed with `error`).
    fn next(&self, c: &Claimed, status: Option<u16>, error: Option<String>, now: i64) -> Attempt {
        let Some(error) = error else {
            return Attempt {
                status,
                error: None,
                next: DeliveryState::Delivered,
                next_at: now,
            };
        };
        let made = c.attempts + 1;
        if made >= self.config.max_attempts {
            return Attempt {
                status,
                error: Some(format!("{error} (gave up after {made} attempts)")),
                next: DeliveryState::Failed,
                next_at: now,
            };
        }
        Attempt {
            status,
            error: Some(error),
            next: DeliveryState::Pending,
            next_at: now + backoff(made).as_millis() as i64,
        }
    }
}

fn final_failure(error: String) -> Attempt {
    Attempt {
        status: None,
        error: Some(error),
        next: DeliveryState::Failed,
        next_at: 0,
    }
}

/// The HTTP client of one webhook: its pinned CA only, when it has one.
fn client(w: &Webhook) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("baton-controller/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &w.ca_file {
        // Checked at config load; a file changed since fails here.
        let pem = std::fs::read(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: holds no certificate", ca.display()));
        }
        b = b.tls_certs_only(certs);
    }
    b.build().map_err(|e| e.to_string())
}

/// POST one event; the status if an answer came, and the error unless 2xx.
async fn post(
    hook: &Webhook,
    client: &reqwest::Client,
    delivery: &i64,
    e: &StoredEvent,
) -> (Option<u16>, Option<String>) {
    let body = WebhookBody {
        id: e.id,
        event: e.event.clone(),
        subject: e.subject.clone(),
        groups: e.groups.clone(),
        labels: e.labels.clone(),
        at: store::rows_ts(e.at),
        detail: e.detail.clone(),
        webhook: hook.name.clone(),
        text: text(e),
    };
    let Ok(body) = serde_json::to_vec(&body) else {
        return (None, Some("cannot encode the body".into()));
    };
    let ts = chrono::Utc::now().timestamp();
    let sent = client
        .post(hook.url.clone())
        .header("content-type", "application/json")
        .header("x-baton-event", &e.event)
        .header("x-baton-delivery", delivery.to_string())
        .header("x-baton-timestamp", ts.to_string())
        .header("x-baton-signature", sign(hook.secret.expose(), ts, &body))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), None),
        Ok(r) => (
            Some(r.status().as_u16()),
            Some(format!("HTTP {}", r.status().as_u16())),
        ),
        Err(e) => (None, Some(describe(&e))),
    }
}

/// A send error in one line, with its cause (reqwest's top line says little).
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests;
