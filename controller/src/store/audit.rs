//! The audit log: who changed what, when, and how it ended.

use async_trait::async_trait;
use baton_proto::auth::AuditList;

use super::Result;

/// One state-changing call to record.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Who.
    pub actor: String,
    /// Their role (`agent` for agents).
    pub role: String,
    /// `METHOD /route/{template}`.
    pub action: String,
    /// The concrete path.
    pub target: String,
    /// HTTP status.
    pub status: u16,
    /// Error code when refused.
    pub error: Option<String>,
}

/// The audit log of a backend.
#[async_trait]
pub trait AuditStore {
    /// Append an entry at `now`. A backend that batches commits lets it
    /// share its batch's commit (one fsync per completion otherwise); the
    /// call returns once the row is durable.
    async fn audit_grouped(&self, r: &AuditRecord, now: i64) -> Result<()>;

    /// Entries newest first, optionally for one actor, below `before`
    /// (an entry id), at most `limit` clamped to 1–1000; `next_before` is
    /// set when there are more.
    async fn list_audit(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditList>;
}

/// A page of entries from rows `id, at, actor, role, action, target,
/// status, error` (newest first, at most `limit + 1`: the extra row says
/// there are more), from either backend.
pub(crate) fn page<R>(rows: &[R], limit: u32) -> super::Result<AuditList>
where
    R: sqlx::Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let more = rows.len() > limit as usize;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows.iter().take(limit as usize) {
        entries.push(baton_proto::auth::AuditEntry {
            id: r.try_get("id")?,
            at: super::rows_ts(r.try_get("at")?),
            actor: r.try_get("actor")?,
            role: r.try_get("role")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(0),
            error: r.try_get("error")?,
        });
    }
    let next_before = if more {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(AuditList {
        entries,
        next_before,
    })
}
