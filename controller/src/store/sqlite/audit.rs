//! The audit log in SQLite. Rows are appended through the group commit
//! ([`super::writer`]).

use std::sync::Arc;

use async_trait::async_trait;
use baton_proto::auth::AuditList;
use sqlx::sqlite::SqliteConnection;

use super::SqliteStore;
use crate::store::Result;
use crate::store::audit::{AuditRecord, AuditStore};

/// Append `r` inside a write transaction.
pub(super) async fn audit_in(c: &mut SqliteConnection, r: &AuditRecord, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, role, action, target, status, error) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now)
    .bind(&r.actor)
    .bind(&r.role)
    .bind(&r.action)
    .bind(&r.target)
    .bind(i64::from(r.status))
    .bind(&r.error)
    .execute(&mut *c)
    .await?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteStore {
    /// Through the group-commit writer: the row shares its batch's commit.
    async fn audit_grouped(&self, r: &AuditRecord, now: i64) -> Result<()> {
        let r = Arc::new(r.clone());
        self.grouped(move |c| {
            let r = r.clone();
            Box::pin(async move { audit_in(c, &r, now).await })
        })
        .await
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
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT +?3",
        )
        .bind(actor)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        crate::store::audit::page(&rows, limit)
    }
}
