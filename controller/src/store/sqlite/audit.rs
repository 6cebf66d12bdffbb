//! The audit log in SQLite. Rows are appended through the group commit
//! ([`super::writer`]).

use async_trait::async_trait;
use baton_proto::auth::AuditList;

use super::SqliteStore;
use super::writer::rows;
use crate::store::Result;
use crate::store::audit::{AuditRecord, AuditStore};

/// The INSERT of one audit row (7 anonymous parameters, bound by
/// [`audit_in`]).
const AUDIT_INSERT: &str = "INSERT INTO audit (at, actor, role, action, target, status, error) VALUES (?, ?, ?, ?, ?, ?, ?)";

/// Append `r` inside a write transaction (the writer's connection).
pub(super) fn audit_in(c: &rusqlite::Connection, r: &AuditRecord, now: i64) -> Result<()> {
    rows::run(
        c,
        AUDIT_INSERT,
        rusqlite::params![
            now,
            r.actor,
            r.role,
            r.action,
            r.target,
            i64::from(r.status),
            r.error
        ],
    )?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqliteStore {
    /// Through the group-commit writer: the row shares its batch's commit.
    async fn audit_grouped(&self, r: &AuditRecord, now: i64) -> Result<()> {
        let r = r.clone();
        self.grouped(move |c| audit_in(c, &r, now)).await
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
