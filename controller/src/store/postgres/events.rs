//! Signals between replicas on PostgreSQL: `NOTIFY baton_events` after a
//! commit, one listener connection per replica (`LISTEN baton_events`,
//! taken from the pool, so it follows the pool to a new primary), and the
//! periodic look (`crate::store::events`).
//!
//! The listener runs in a task of its own: a signal of another replica is
//! handed to the services ([`Inbound::Signal`]); a `revoke` also clears
//! this replica's credential cache here. When the connection is lost the
//! services hear [`Inbound::Down`] and the task connects again every
//! [`RECONNECT_PAUSE`]; once it listens again they hear [`Inbound::Up`]
//! (and the cache is cleared: revokes sent meanwhile were lost).
//! `poll_only` starts no listener at all.
//!
//! While it listens, the replica sends itself a heartbeat every
//! [`HEARTBEAT_EVERY`] through the pool. PostgreSQL delivers notifications
//! in commit order, so hearing one proves every revoke committed before it
//! was sent has been heard (and the cache cleared): the listener then
//! vouches for the credential cache ([`AuthCache::vouch`]), which trusts
//! agents' entries for the long life instead of the short one. An idle
//! poll then finds its agent cached instead of reading the credential
//! every time, and a revoke whose notification is lost is still honoured
//! within the short life (`store::postgres::identity::AUTH_CACHE_TTL`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use super::PgStore;
use crate::store::Result;
use crate::store::credentials::AuthCache;
use crate::store::events::{self, EventStore, GroupWork, Inbound, Looked, Signal};

/// The one channel of every signal.
pub const CHANNEL: &str = "baton_events";

/// How long the listener waits before connecting again after a loss.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Signals buffered for the services before the listener waits for them.
const INBOUND_BUFFER: usize = 1024;

/// How often a listening replica sends itself a heartbeat (a quarter of
/// the short credential life, so a late one or two still vouch in time).
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);

/// Heartbeats kept waiting to be heard (older ones are given up).
const BEATS_KEPT: usize = 64;

/// The heartbeats sent and not heard yet: number and send time.
#[derive(Debug, Default)]
struct Beats {
    next: u64,
    sent: VecDeque<(u64, Instant)>,
}

type SharedBeats = Arc<Mutex<Beats>>;

fn beats(b: &SharedBeats) -> std::sync::MutexGuard<'_, Beats> {
    b.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Beats {
    /// A new heartbeat sent now: its number.
    fn send(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        if self.sent.len() >= BEATS_KEPT {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, Instant::now()));
        seq
    }

    /// Heartbeat `seq` was heard: when it was sent (earlier ones not heard
    /// are dropped: they never will be, or only after it).
    fn heard(&mut self, seq: u64) -> Option<Instant> {
        while let Some(&(s, at)) = self.sent.front() {
            if s > seq {
                return None;
            }
            self.sent.pop_front();
            if s == seq {
                return Some(at);
            }
        }
        None
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[async_trait]
impl EventStore for PgStore {
    fn shared(&self) -> bool {
        true
    }

    async fn publish(&self, signals: &[Signal]) -> Result<()> {
        let payloads = events::encode(&self.tag, signals);
        if payloads.is_empty() {
            return Ok(());
        }
        // One round trip, one transaction: the payloads arrive in order.
        sqlx::query("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
            .bind(CHANNEL)
            .bind(&payloads)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn subscribe(&self) -> Option<mpsc::Receiver<Inbound>> {
        if self.opts.poll_only {
            return None;
        }
        let (tx, rx) = mpsc::channel(INBOUND_BUFFER);
        tokio::spawn(listen(
            self.pool.clone(),
            self.tag.clone(),
            self.auth_cache.clone(),
            tx,
        ));
        Some(rx)
    }

    async fn look(
        &self,
        groups: &[String],
        agents: &[String],
        drains: bool,
        now: i64,
    ) -> Result<Looked> {
        let mut looked = Looked::default();
        if !groups.is_empty() {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT grp, count(*)::text || ':' || sum(id)::text || ':' || sum(last_token)::text \
                 FROM jobs WHERE state = 'queued' AND grp = ANY($1) AND not_before <= $2 \
                 GROUP BY grp",
            )
            .bind(groups)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
            looked.work = rows
                .into_iter()
                .map(|(group, fingerprint)| GroupWork { group, fingerprint })
                .collect();
        }
        if !agents.is_empty() {
            looked.cancels = sqlx::query_as(
                "SELECT id, lease_token, lease_agent FROM jobs \
                 WHERE state = 'running' AND cancel_requested AND lease_agent = ANY($1)",
            )
            .bind(agents)
            .fetch_all(&self.pool)
            .await?;
        }
        if !drains {
            return Ok(looked);
        }
        let drained: Vec<(String, String)> =
            sqlx::query_as("SELECT id, groups FROM agents WHERE drained_at IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        looked.drained = drained
            .into_iter()
            .map(|(id, g)| (id, serde_json::from_str(&g).unwrap_or_default()))
            .collect();
        Ok(looked)
    }
}

/// The listener task: until the pool closes or the services stop
/// listening, hand every other replica's signal to `tx`, and reconnect
/// after a loss.
async fn listen(pool: PgPool, tag: Arc<str>, cache: Arc<AuthCache>, tx: mpsc::Sender<Inbound>) {
    let sent = SharedBeats::default();
    let _heartbeat = AbortOnDrop(tokio::spawn(heartbeat(
        pool.clone(),
        tag.clone(),
        sent.clone(),
    )));
    // Whether the last attempt listened (so a loss is logged once).
    let mut was_up = true;
    loop {
        if pool.is_closed() || tx.is_closed() {
            return;
        }
        match subscribed(&pool).await {
            Ok(mut listener) => {
                cache.clear();
                if tx.send(Inbound::Up).await.is_err() {
                    return;
                }
                if !was_up {
                    tracing::info!(
                        channel = CHANNEL,
                        "Listening to the other controllers again"
                    );
                }
                let why = relay(&mut listener, &tag, &cache, &sent, &tx).await;
                if tx.is_closed() || pool.is_closed() {
                    return;
                }
                tracing::warn!(error = %why, "Lost the connection that hears the other controllers; looking at the store every second until it is back");
                if tx.send(Inbound::Down).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if was_up {
                    tracing::warn!(error = %e, "Cannot listen to the other controllers; looking at the store every second meanwhile");
                    if tx.send(Inbound::Down).await.is_err() {
                        return;
                    }
                }
            }
        }
        was_up = false;
        tokio::select! {
            () = tokio::time::sleep(RECONNECT_PAUSE) => {}
            () = tx.closed() => return,
        }
    }
}

/// Send this replica's heartbeat every [`HEARTBEAT_EVERY`] until aborted
/// (with the listener task). One that cannot be sent is skipped: the cache
/// is then not vouched for, and trusts its entries for the short life.
async fn heartbeat(pool: PgPool, tag: Arc<str>, sent: SharedBeats) {
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        // The send time is taken before the statement: its commit, and so
        // its place in the order of notifications, comes after it.
        let seq = beats(&sent).send();
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(events::heartbeat(&tag, seq))
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "Cannot send the credential cache's heartbeat");
        }
    }
}

/// A listener on [`CHANNEL`], on a connection of `pool`.
async fn subscribed(pool: &PgPool) -> std::result::Result<PgListener, sqlx::Error> {
    let mut l = PgListener::connect_with(pool).await?;
    // A lost connection ends `relay`: this task reconnects (and tells the
    // services) itself.
    l.eager_reconnect(false);
    l.listen(CHANNEL).await?;
    Ok(l)
}

/// Hand the signals heard on `listener` to `tx` until the connection is
/// lost (the reason) or `tx` closes.
async fn relay(
    listener: &mut PgListener,
    tag: &str,
    cache: &AuthCache,
    sent: &SharedBeats,
    tx: &mpsc::Sender<Inbound>,
) -> String {
    loop {
        let n = match listener.try_recv().await {
            Ok(Some(n)) => n,
            Ok(None) => return "connection lost".to_owned(),
            Err(e) => return e.to_string(),
        };
        if let Some(seq) = events::heartbeat_of(tag, n.payload()) {
            let at = beats(sent).heard(seq);
            if let Some(at) = at {
                cache.vouch(at);
            }
            continue;
        }
        let Some(signal) = events::decode(tag, n.payload()) else {
            continue;
        };
        if signal == Signal::Revoke {
            cache.clear();
        }
        if tx.send(Inbound::Signal(signal)).await.is_err() {
            return "the services stopped listening".to_owned();
        }
    }
}

#[cfg(test)]
mod tests;
