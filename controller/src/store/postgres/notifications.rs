//! Notifications on PostgreSQL: several replicas fan out and send at once;
//! `FOR UPDATE SKIP LOCKED` gives each event's fan-out and each claim to
//! one of them.

use async_trait::async_trait;
use baton_proto::notify::{DeliveryList, DeliveryState};

use super::PgStore;
use crate::store::Result;
use crate::store::notifications::{
    self as n, Attempt, CLAIM_COLUMNS, Claimed, NewNotification, NotificationStore, Route,
    VIEW_COLUMNS,
};
use crate::store::rows::enc;

#[async_trait]
impl NotificationStore for PgStore {
    async fn notify(&self, e: &NewNotification) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO notifications (event, dedup, subject, groups, labels, detail, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dedup) DO NOTHING",
        )
        .bind(&e.event)
        .bind(&e.dedup)
        .bind(&e.subject)
        .bind(enc(&e.groups)?)
        .bind(enc(&e.labels)?)
        .bind(enc(&e.detail)?)
        .bind(e.at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fan_out(&self, routes: &[Route], now: i64, limit: u32) -> Result<u32> {
        let routes = routes.to_vec();
        self.tx(|c| {
            let routes = routes.clone();
            Box::pin(async move {
                let events: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT id, event, groups, labels FROM notifications WHERE fanned = 0
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut *c)
                .await?;
                for (id, event, groups, labels) in &events {
                    for webhook in n::targets(&routes, event, groups, labels)? {
                        sqlx::query(
                            "INSERT INTO notification_deliveries
                             (notification_id, webhook, state, next_at, created_at, updated_at)
                             VALUES ($1, $2, 'pending', $3, $3, $3)
                             ON CONFLICT (notification_id, webhook) DO NOTHING",
                        )
                        .bind(id)
                        .bind(webhook)
                        .bind(now)
                        .execute(&mut *c)
                        .await?;
                    }
                    sqlx::query("UPDATE notifications SET fanned = 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *c)
                        .await?;
                }
                Ok(events.len() as u32)
            })
        })
        .await
    }

    async fn claim_deliveries(&self, now: i64, claim_ms: i64, limit: u32) -> Result<Vec<Claimed>> {
        let sql = format!(
            "WITH c AS (
               UPDATE notification_deliveries SET claimed_until = $1 + $2
               WHERE id IN (SELECT id FROM notification_deliveries
                            WHERE state = 'pending' AND next_at <= $1
                              AND (claimed_until IS NULL OR claimed_until <= $1)
                            ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
               RETURNING *)
             SELECT {CLAIM_COLUMNS} FROM c d JOIN notifications n ON n.id = d.notification_id
             ORDER BY d.next_at, d.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(claim_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(n::claimed).collect()
    }

    async fn record_attempt(&self, delivery: i64, a: &Attempt, now: i64) -> Result<()> {
        self.tx(|c| {
            let a = a.clone();
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, number, at, status, error, ok)
                     SELECT id, attempts + 1, $2, $3, $4, $5 FROM notification_deliveries
                     WHERE id = $1 FOR UPDATE",
                )
                .bind(delivery)
                .bind(now)
                .bind(a.status.map(i64::from))
                .bind(a.error.as_deref())
                .bind(i64::from(a.error.is_none()))
                .execute(&mut *c)
                .await?;
                sqlx::query(
                    "UPDATE notification_deliveries SET attempts = attempts + 1, state = $2,
                       next_at = $3, claimed_until = NULL, last_status = $4, last_error = $5,
                       updated_at = $6
                     WHERE id = $1",
                )
                .bind(delivery)
                .bind(a.next.as_str())
                .bind(a.next_at)
                .bind(a.status.map(i64::from))
                .bind(a.error.as_deref())
                .bind(now)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn prune_notifications(&self, before: i64, limit: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM notifications WHERE id IN (
               SELECT n.id FROM notifications n
               WHERE n.at < $1 AND n.fanned = 1 AND NOT EXISTS (
                 SELECT 1 FROM notification_deliveries d
                 WHERE d.notification_id = n.id AND d.state = 'pending')
               ORDER BY n.id LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn list_deliveries(
        &self,
        state: Option<DeliveryState>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<DeliveryList> {
        let limit = limit.clamp(1, 1000);
        let sql = format!(
            "SELECT {VIEW_COLUMNS} FROM notification_deliveries d
             JOIN notifications n ON n.id = d.notification_id
             WHERE ($1::text IS NULL OR d.state = $1) AND ($2::bigint IS NULL OR d.id < $2)
             ORDER BY d.id DESC LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(DeliveryState::as_str))
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let views = rows.iter().map(n::view).collect::<Result<Vec<_>>>()?;
        Ok(n::page(views, limit))
    }
}

#[cfg(test)]
mod tests;
