//! The audit log: who changed what, when, and how it ended. Rows are
//! appended through the group commit (`Store::audit_grouped`, store::writer).

use baton_proto::auth::{AuditEntry, AuditList};
use sqlx::Row;

use super::rows::ts;
use super::{Result, Store};

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

impl Store {
    /// Entries newest first, optionally for one actor, below `before`.
    pub async fn list_audit(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditList> {
        let limit = limit.clamp(1, 1000);
        let rows = sqlx::query(
            "SELECT id, at, actor, role, action, target, status, error FROM audit
             WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(actor)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await?;
        let more = rows.len() > limit as usize;
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows.iter().take(limit as usize) {
            entries.push(AuditEntry {
                id: r.try_get("id")?,
                at: ts(r.try_get("at")?),
                actor: r.try_get("actor")?,
                role: r.try_get("role")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                status: r.try_get::<i64, _>("status")? as u16,
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
}

#[cfg(test)]
mod tests;
