//! The audit log on PostgreSQL: one INSERT per entry (its own commit).

use async_trait::async_trait;
use baton_proto::auth::AuditList;

use super::PgStore;
use crate::store::Result;
use crate::store::audit::{AuditRecord, AuditStore};

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_grouped(&self, r: &AuditRecord, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, actor, role, action, target, status, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now)
        .bind(&r.actor)
        .bind(&r.role)
        .bind(&r.action)
        .bind(&r.target)
        .bind(i64::from(r.status))
        .bind(&r.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditList> {
        let limit = limit.clamp(1, 1000);
        let rows = sqlx::query(
            "SELECT id, at, actor, role, action, target, status, error FROM audit
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(actor)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        crate::store::audit::page(&rows, limit)
    }
}
