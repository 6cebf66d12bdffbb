//! Notifications in SQLite: every write on the writer connection (one
//! writer: a claim can never be taken twice); the idle look (nothing new,
//! nothing due) is a read on a reader.

use async_trait::async_trait;
use baton_proto::notify::{DeliveryList, DeliveryState};

use super::SqliteStore;
use crate::store::Result;
use crate::store::notifications::{
    self as n, Attempt, CLAIM_COLUMNS, Claimed, NewNotification, NotificationStore, Route,
    VIEW_COLUMNS,
};
use crate::store::rows::enc;

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn notify(&self, e: &NewNotification) -> Result<bool> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, labels, detail, at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.event)
        .bind(&e.dedup)
        .bind(&e.subject)
        .bind(enc(&e.groups)?)
        .bind(enc(&e.labels)?)
        .bind(enc(&e.detail)?)
        .bind(e.at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn fan_out(&self, routes: &[Route], now: i64, limit: u32) -> Result<u32> {
        // The common answer (nothing new) from a reader: the writer is the
        // hot paths' one connection.
        let any: Option<i64> =
            sqlx::query_scalar("SELECT id FROM notifications WHERE fanned = 0 LIMIT 1")
                .fetch_optional(&self.reader)
                .await?;
        if any.is_none() {
            return Ok(0);
        }
        let mut tx = self.writer.begin().await?;
        let events: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, event, groups, labels FROM notifications WHERE fanned = 0 ORDER BY id LIMIT +?",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        for (id, event, groups, labels) in &events {
            for webhook in n::targets(routes, event, groups, labels)? {
                sqlx::query(
                    "INSERT OR IGNORE INTO notification_deliveries
                     (notification_id, webhook, state, next_at, created_at, updated_at)
                     VALUES (?1, ?2, 'pending', ?3, ?3, ?3)",
                )
                .bind(id)
                .bind(webhook)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE notifications SET fanned = 1 WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(events.len() as u32)
    }

    async fn claim_deliveries(&self, now: i64, claim_ms: i64, limit: u32) -> Result<Vec<Claimed>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM notification_deliveries WHERE state = 'pending' AND next_at <= ? LIMIT 1",
        )
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE notification_deliveries SET claimed_until = ?1 + ?2
             WHERE id IN (SELECT id FROM notification_deliveries
                          WHERE state = 'pending' AND next_at <= ?1
                            AND (claimed_until IS NULL OR claimed_until <= ?1)
                          ORDER BY next_at, id LIMIT +?3)
             RETURNING id",
        )
        .bind(now)
        .bind(claim_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        let sql = format!(
            "SELECT {CLAIM_COLUMNS} FROM notification_deliveries d
             JOIN notifications n ON n.id = d.notification_id WHERE d.id = ?"
        );
        for id in ids {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(n::claimed(&row)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn record_attempt(&self, delivery: i64, a: &Attempt, now: i64) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO delivery_attempts (delivery_id, number, at, status, error, ok)
             SELECT id, attempts + 1, ?2, ?3, ?4, ?5 FROM notification_deliveries WHERE id = ?1",
        )
        .bind(delivery)
        .bind(now)
        .bind(a.status.map(i64::from))
        .bind(a.error.as_deref())
        .bind(i64::from(a.error.is_none()))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE notification_deliveries SET attempts = attempts + 1, state = ?2, next_at = ?3,
               claimed_until = NULL, last_status = ?4, last_error = ?5, updated_at = ?6
             WHERE id = ?1",
        )
        .bind(delivery)
        .bind(a.next.as_str())
        .bind(a.next_at)
        .bind(a.status.map(i64::from))
        .bind(a.error.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn prune_notifications(&self, before: i64, limit: u32) -> Result<u64> {
        let done = sqlx::query(
            "DELETE FROM notifications WHERE id IN (
               SELECT n.id FROM notifications n
               WHERE n.at < ?1 AND n.fanned = 1 AND NOT EXISTS (
                 SELECT 1 FROM notification_deliveries d
                 WHERE d.notification_id = n.id AND d.state = 'pending')
               ORDER BY n.id LIMIT +?2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.writer)
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
             WHERE (?1 IS NULL OR d.state = ?1) AND (?2 IS NULL OR d.id < ?2)
             ORDER BY d.id DESC LIMIT +?3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.map(DeliveryState::as_str))
            .bind(before)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.reader)
            .await?;
        let views = rows.iter().map(n::view).collect::<Result<Vec<_>>>()?;
        Ok(n::page(views, limit))
    }
}
