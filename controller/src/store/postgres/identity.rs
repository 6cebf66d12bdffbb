//! Identity on PostgreSQL: operator tokens (with roles), enrollment tokens,
//! agent secrets. Only SHA-256 hashes of secrets are stored; callers hash
//! first.
//!
//! Several replicas share these rows:
//!
//! - An enrollment token is spent once: `enroll` locks its row (`FOR
//!   UPDATE`), so a second replica spending it at the same time waits, then
//!   reads it used.
//! - A revoke (operator token, agent) sends `NOTIFY baton_events, 'r'`
//!   ([`REVOKE_EVENT`]) in its own transaction: the other replicas' listeners
//!   clear their [`AuthCache`] on it. Without the notification (listener
//!   down, `poll_only`) a replica trusts a cached credential for
//!   [`AUTH_CACHE_TTL`] at most: that is the bound on how long a revoked
//!   credential may still be accepted by another replica. While its
//!   listener proves it hears every notification (its own heartbeats,
//!   `store::postgres::events`), agents' entries are trusted longer
//!   (`credentials::CACHE_TTL`) within that same bound.
//! - Enrollment attempts are counted per source and minute in
//!   `enroll_attempts` (the rate limit holds across replicas).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use baton_proto::auth::{EnrollmentTokenView, OperatorTokenView, Role};
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::store::credentials::AuthCache;
use crate::store::identity::{
    AgentPrincipal, AgentRevocation, ENR_COLUMNS, EnrollmentTokenRow, IdentityStore, OP_COLUMNS,
    OperatorPrincipal, OperatorTokenRow,
};
use crate::store::rows::json;
use crate::store::{Error, Result};

mod secrets;

/// How long a replica trusts a cached credential on PostgreSQL: a revoke
/// made on another replica whose notification was lost is honoured here
/// within this (plus one store round trip).
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// The channel of cross-replica signals.
pub(crate) const EVENTS_CHANNEL: &str = "baton_events";
/// The payload that says "a credential changed: forget cached ones".
pub(crate) const REVOKE_EVENT: &str = "r";

/// Tell the other replicas, when this transaction commits, that a
/// credential changed.
async fn notify_revoke(c: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(REVOKE_EVENT)
        .execute(c)
        .await?;
    Ok(())
}

impl PgStore {
    async fn operator_token(&self, id: &str) -> Result<OperatorTokenView> {
        let sql = format!("SELECT {OP_COLUMNS} FROM operator_tokens WHERE id = $1");
        let row: OperatorTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::Missing(format!("operator token {id}")))?;
        row.view()
    }
}

#[async_trait]
impl IdentityStore for PgStore {
    fn auth_cache(&self) -> &AuthCache {
        &self.auth_cache
    }

    async fn create_operator_token(
        &self,
        id: &str,
        name: &str,
        role: Role,
        hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<OperatorTokenView> {
        let r = sqlx::query(
            "INSERT INTO operator_tokens (id, name, role, token_hash, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(created_by)
        .bind(now)
        .execute(&self.pool)
        .await;
        if let Err(sqlx::Error::Database(e)) = &r
            && e.is_unique_violation()
        {
            return Err(Error::Conflict(format!(
                "an active token is already named `{name}`"
            )));
        }
        r?;
        self.operator_token(id).await
    }

    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenView>> {
        let sql = format!("SELECT {OP_COLUMNS} FROM operator_tokens ORDER BY created_at, id");
        let rows: Vec<OperatorTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(OperatorTokenRow::view).collect()
    }

    async fn revoke_operator_token(&self, id: &str, now: i64) -> Result<OperatorTokenView> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2
             RETURNING {OP_COLUMNS}"
        );
        let row: OperatorTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::Missing(format!("operator token {id}")))?;
        notify_revoke(&mut tx).await?;
        tx.commit().await?;
        self.auth_cache.forget_operator_token(id);
        row.view()
    }

    async fn operator_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>> {
        let row = sqlx::query(
            "SELECT id, name, role, last_used_at FROM operator_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|l| now - l >= 60_000) {
            // Conditional: replicas noting the same use write it once.
            sqlx::query(
                "UPDATE operator_tokens SET last_used_at = $1
                 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $1 - 60000)",
            )
            .bind(now)
            .bind(&id)
            .execute(&self.pool)
            .await?;
        }
        let role: String = row.try_get("role")?;
        Ok(Some(OperatorPrincipal {
            token_id: id,
            name: row.try_get("name")?,
            role: Role::parse(&role)
                .ok_or_else(|| Error::Corrupt("operator_tokens.role".into()))?,
        }))
    }

    async fn create_session(
        &self,
        hash: &str,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(token_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.role FROM ui_sessions s JOIN operator_tokens t ON t.id = s.token_id
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND t.revoked_at IS NULL",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role")?;
        Ok(Some(OperatorPrincipal {
            token_id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: Role::parse(&role)
                .ok_or_else(|| Error::Corrupt("operator_tokens.role".into()))?,
        }))
    }

    async fn delete_session(&self, hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn has_active_admin(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM operator_tokens WHERE role = 'admin' AND revoked_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    async fn create_enrollment_token(
        &self,
        id: &str,
        hash: &str,
        groups: &[String],
        note: &str,
        created_by: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<EnrollmentTokenView> {
        let sql = format!(
            "INSERT INTO enrollment_tokens (id, token_hash, groups, note, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENR_COLUMNS}"
        );
        let row: EnrollmentTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(hash)
            .bind(serde_json::to_string(groups).unwrap_or_default())
            .bind(note)
            .bind(created_by)
            .bind(now)
            .bind(expires_at)
            .fetch_one(&self.pool)
            .await?;
        row.view(now)
    }

    async fn list_enrollment_tokens(&self, now: i64) -> Result<Vec<EnrollmentTokenView>> {
        let sql =
            format!("SELECT {ENR_COLUMNS} FROM enrollment_tokens ORDER BY created_at DESC, id");
        let rows: Vec<EnrollmentTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|r| r.view(now)).collect()
    }

    async fn revoke_enrollment_token(&self, id: &str, now: i64) -> Result<EnrollmentTokenView> {
        let sql = format!(
            "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2
             RETURNING {ENR_COLUMNS}"
        );
        let row: EnrollmentTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| Error::Missing(format!("enrollment token {id}")))?;
        row.view(now)
    }

    async fn enroll(
        &self,
        token_hash: &str,
        agent_id: &str,
        secret_hash: &str,
        version: &str,
        now: i64,
    ) -> Result<Vec<String>> {
        let e = Arc::new(secrets::Enrollment {
            token_hash: token_hash.to_owned(),
            agent_id: agent_id.to_owned(),
            secret_hash: secret_hash.to_owned(),
            version: version.to_owned(),
            now,
        });
        let groups_json = self
            .tx(move |c| {
                let e = e.clone();
                Box::pin(async move { e.spend(c).await })
            })
            .await?;
        // A re-enrollment replaced the secret and the groups.
        self.auth_cache.forget_agent(agent_id);
        json("enrollment_tokens.groups", &groups_json)
    }

    async fn agent_by_hash(&self, hash: &str) -> Result<Option<AgentPrincipal>> {
        let row = sqlx::query(
            "SELECT id, allowed_groups FROM agents WHERE secret_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AgentPrincipal {
            id: row.try_get("id")?,
            allowed_groups: json(
                "agents.allowed_groups",
                &row.try_get::<String, _>("allowed_groups")?,
            )?,
        }))
    }

    async fn revoke_agent(&self, id: &str, now: i64) -> Result<AgentRevocation> {
        let owned = id.to_owned();
        let out = self
            .tx(move |c| {
                let id = owned.clone();
                Box::pin(async move {
                    let out = secrets::revoke(&mut *c, &id, now).await?;
                    notify_revoke(c).await?;
                    Ok(out)
                })
            })
            .await?;
        self.auth_cache.forget_agent(id);
        Ok(out)
    }

    async fn enroll_attempt(&self, source: &str, minute: i64) -> Result<Option<u32>> {
        secrets::enroll_attempt(self, source, minute)
            .await
            .map(Some)
    }
}

#[cfg(test)]
mod tests;
