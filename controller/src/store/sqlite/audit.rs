//! The audit log in SQLite. Rows are appended through the group commit
//! ([`super::writer`]).

use std::sync::Arc;

use async_trait::async_trait;
use baton_proto::auth::AuditList;
use sqlx::Sqlite;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};

use super::SqliteStore;
use crate::store::Result;
use crate::store::audit::{AuditRecord, AuditStore};

/// The INSERT of one audit row (7 anonymous parameters, bound by
/// [`bind_audit`]); ends with `;` so another statement may follow it in
/// the same call.
pub(super) const AUDIT_INSERT: &str = "INSERT INTO audit (at, actor, role, action, target, status, error) VALUES (?, ?, ?, ?, ?, ?, ?);\n";

/// Bind the parameters of [`AUDIT_INSERT`].
pub(super) fn bind_audit<'q>(
    q: Query<'q, Sqlite, SqliteArguments>,
    r: &AuditRecord,
    now: i64,
) -> Query<'q, Sqlite, SqliteArguments> {
    q.bind(now)
        .bind(r.actor.clone())
        .bind(r.role.clone())
        .bind(r.action.clone())
        .bind(r.target.clone())
        .bind(i64::from(r.status))
        .bind(r.error.clone())
}

/// Append `r` inside a write transaction.
pub(super) async fn audit_in(c: &mut SqliteConnection, r: &AuditRecord, now: i64) -> Result<()> {
    bind_audit(sqlx::query(AUDIT_INSERT), r, now)
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
