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

use std::sync::Arc;
use std::time::Duration;

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
                let why = relay(&mut listener, &tag, &cache, &tx).await;
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
    tx: &mpsc::Sender<Inbound>,
) -> String {
    loop {
        let n = match listener.try_recv().await {
            Ok(Some(n)) => n,
            Ok(None) => return "connection lost".to_owned(),
            Err(e) => return e.to_string(),
        };
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
