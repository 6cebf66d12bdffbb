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
