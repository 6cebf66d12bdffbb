//! The audit log on PostgreSQL: entries arriving together share one
//! INSERT and one commit ([`super::group`]).

use std::sync::Arc;

use async_trait::async_trait;
use baton_proto::auth::AuditList;
use futures_util::future::BoxFuture;
use sqlx::postgres::PgConnection;

use super::PgStore;
use super::group::Answer;
use crate::store::audit::{AuditRecord, AuditStore};
use crate::store::{Error, Result};

/// An entry to write in a group: the record and its time.
pub(super) type Entry = (Arc<AuditRecord>, i64);

#[async_trait]
impl AuditStore for PgStore {
    /// Written in a batch with the entries arriving meanwhile; alone when
    /// that batch failed before its commit. A batch whose commit was lost
    /// answers an error (the entry may or may not be in the log).
    async fn audit_grouped(&self, r: &AuditRecord, now: i64) -> Result<()> {
        let entry: Entry = (Arc::new(r.clone()), now);
        match self.groups.audit.run(entry.clone()).await {
            Answer::Done(()) => Ok(()),
            Answer::Unknown(why) => Err(Error::Commit(why)),
            Answer::Alone => {
                let mut c = self.pool.acquire().await?;
                audit_batch(&mut c, std::slice::from_ref(&entry)).await?;
                Ok(())
            }
        }
    }

    async fn list_audit(
        &self,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditList> {
        let limit = limit.clamp(1, 1000);
        let mut browse = self.browse().await?;
        let rows = sqlx::query(
            "SELECT id, at, actor, role, action, target, status, error FROM audit
             WHERE ($1::text IS NULL OR actor = $1) AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(actor)
        .bind(before)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *browse)
        .await?;
        browse.commit().await?;
        crate::store::audit::page(&rows, limit)
    }
}

/// Insert the entries of a batch in one statement.
pub(super) fn audit_batch<'c>(
    c: &'c mut PgConnection,
    entries: &'c [Entry],
) -> BoxFuture<'c, std::result::Result<Vec<()>, sqlx::Error>> {
    Box::pin(async move {
        let col = |f: fn(&AuditRecord) -> &str| -> Vec<&str> {
            entries.iter().map(|(r, _)| f(r)).collect()
        };
        let at: Vec<i64> = entries.iter().map(|(_, now)| *now).collect();
        let status: Vec<i64> = entries.iter().map(|(r, _)| i64::from(r.status)).collect();
        let error: Vec<Option<&str>> = entries.iter().map(|(r, _)| r.error.as_deref()).collect();
        sqlx::query(
            "INSERT INTO audit (at, actor, role, action, target, status, error)
             SELECT at, actor, role, action, target, status, error
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::bigint[], $7::text[]) WITH ORDINALITY AS e(at, actor, role, action, target, status, error, ord)
             ORDER BY ord",
        )
        .bind(at)
        .bind(col(|r| &r.actor))
        .bind(col(|r| &r.role))
        .bind(col(|r| &r.action))
        .bind(col(|r| &r.target))
        .bind(status)
        .bind(error)
        .execute(&mut *c)
        .await?;
        Ok(vec![(); entries.len()])
    })
}
