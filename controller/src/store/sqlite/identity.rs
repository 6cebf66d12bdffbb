//! Identity in SQLite: operator tokens (with roles), enrollment tokens, agent
//! secrets. Only SHA-256 hashes of secrets are stored; callers hash first.

use baton_proto::auth::{EnrollmentTokenView, OperatorTokenView, Role};
use sqlx::Row;

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::credentials::AuthCache;
use crate::store::identity::{
    AgentPrincipal, AgentRevocation, END_ATTEMPT_SQL, ENR_COLUMNS, EnrollmentTokenRow, HeldJob,
    IdentityStore, NEW_AGENT_SQL, OP_COLUMNS, OperatorPrincipal, OperatorTokenRow, REENROLL_SQL,
    RELEASE_JOB_SQL, agent_id_taken, usable,
};
use crate::store::rows::json;
use crate::store::{Error, Result};

impl SqliteStore {
    async fn operator_token(&self, id: &str) -> Result<OperatorTokenView> {
        let sql = format!("SELECT {OP_COLUMNS} FROM operator_tokens WHERE id = ?");
        let row: OperatorTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or_else(|| Error::Missing(format!("operator token {id}")))?;
        row.view()
    }

    async fn enrollment_token(&self, id: &str, now: i64) -> Result<EnrollmentTokenView> {
        let sql = format!("SELECT {ENR_COLUMNS} FROM enrollment_tokens WHERE id = ?");
        let row: EnrollmentTokenRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or_else(|| Error::Missing(format!("enrollment token {id}")))?;
        row.view(now)
    }
}

#[async_trait]
impl IdentityStore for SqliteStore {
    fn auth_cache(&self) -> &AuthCache {
        &self.auth_cache
    }

    /// Store a new operator token (its hash). Names are unique among active tokens.
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
            "INSERT INTO operator_tokens (id, name, role, token_hash, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(name)
        .bind(role.as_str())
        .bind(hash)
        .bind(created_by)
        .bind(now)
        .execute(&self.writer)
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

    /// Every operator token, oldest first (no secrets).
    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenView>> {
        let sql = format!("SELECT {OP_COLUMNS} FROM operator_tokens ORDER BY created_at, id");
        let rows: Vec<OperatorTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(OperatorTokenRow::view).collect()
    }

    /// Revoke an operator token; its next call is refused.
    async fn revoke_operator_token(&self, id: &str, now: i64) -> Result<OperatorTokenView> {
        let done = sqlx::query(
            "UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Missing(format!("operator token {id}")));
        }
        self.auth_cache.forget_operator_token(id);
        self.operator_token(id).await
    }

    /// The active operator token with this hash; notes its use (at most once a minute).
    async fn operator_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>> {
        let row = sqlx::query(
            "SELECT id, name, role, last_used_at FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let last: Option<i64> = row.try_get("last_used_at")?;
        if last.is_none_or(|l| now - l >= 60_000) {
            sqlx::query("UPDATE operator_tokens SET last_used_at = ? WHERE id = ?")
                .bind(now)
                .bind(&id)
                .execute(&self.writer)
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
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.writer)
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(hash)
        .bind(token_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.role FROM ui_sessions s JOIN operator_tokens t ON t.id = s.token_id
             WHERE s.id_hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.reader)
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
        sqlx::query("DELETE FROM ui_sessions WHERE id_hash = ?")
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Whether any active admin token exists.
    async fn has_active_admin(&self) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM operator_tokens WHERE role = 'admin' AND revoked_at IS NULL",
        )
        .fetch_one(&self.writer)
        .await?;
        Ok(n > 0)
    }

    /// Store a new enrollment token (its hash).
    #[allow(clippy::too_many_arguments)]
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
        sqlx::query(
            "INSERT INTO enrollment_tokens (id, token_hash, groups, note, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(hash)
        .bind(serde_json::to_string(groups).unwrap_or_default())
        .bind(note)
        .bind(created_by)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        self.enrollment_token(id, now).await
    }

    /// Every enrollment token, newest first (no secrets).
    async fn list_enrollment_tokens(&self, now: i64) -> Result<Vec<EnrollmentTokenView>> {
        let sql =
            format!("SELECT {ENR_COLUMNS} FROM enrollment_tokens ORDER BY created_at DESC, id");
        let rows: Vec<EnrollmentTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter().map(|r| r.view(now)).collect()
    }

    /// Revoke an unused enrollment token.
    async fn revoke_enrollment_token(&self, id: &str, now: i64) -> Result<EnrollmentTokenView> {
        let done = sqlx::query(
            "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Missing(format!("enrollment token {id}")));
        }
        self.enrollment_token(id, now).await
    }

    /// Spend an enrollment token and create the agent with `secret_hash`.
    /// Returns the groups the agent may serve.
    async fn enroll(
        &self,
        token_hash: &str,
        agent_id: &str,
        secret_hash: &str,
        version: &str,
        now: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "SELECT id, groups, expires_at, used_at, revoked_at FROM enrollment_tokens WHERE token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::Unauthorized("unknown enrollment token".into()))?;
        usable(
            row.try_get("revoked_at")?,
            row.try_get("used_at")?,
            row.try_get("expires_at")?,
            now,
        )?;
        let token_id: String = row.try_get("id")?;
        let groups_json: String = row.try_get("groups")?;
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM agents WHERE id = ?")
                .bind(agent_id)
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            Some(None) => return Err(agent_id_taken(agent_id)),
            Some(Some(_)) => {
                sqlx::query(REENROLL_SQL)
                    .bind(secret_hash)
                    .bind(&groups_json)
                    .bind(now)
                    .bind(version)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(NEW_AGENT_SQL)
                    .bind(agent_id)
                    .bind(&groups_json)
                    .bind(version)
                    .bind(now)
                    .bind(secret_hash)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("UPDATE enrollment_tokens SET used_at = ?, used_by = ? WHERE id = ?")
            .bind(now)
            .bind(agent_id)
            .bind(&token_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // A re-enrollment replaced the secret and the groups.
        self.auth_cache.forget_agent(agent_id);
        json("enrollment_tokens.groups", &groups_json)
    }

    /// The active agent with this secret hash.
    async fn agent_by_hash(&self, hash: &str) -> Result<Option<AgentPrincipal>> {
        let row = sqlx::query(
            "SELECT id, allowed_groups FROM agents WHERE secret_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
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

    /// Revoke an agent: its calls are refused from now on and its leases end
    /// at once (attempts end `revoked`, no attempt spent, jobs requeued).
    async fn revoke_agent(&self, id: &str, now: i64) -> Result<AgentRevocation> {
        let mut tx = self.writer.begin().await?;
        let done =
            sqlx::query("UPDATE agents SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(Error::Missing(format!("agent {id}")));
        }
        let revoked_at: i64 = sqlx::query_scalar("SELECT revoked_at FROM agents WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let held: Vec<HeldJob> = sqlx::query_as(
            "SELECT id, grp, lease_token, cancel_requested FROM jobs WHERE state = 'running' AND lease_agent = ?",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = AgentRevocation {
            revoked_at,
            jobs: Vec::new(),
            groups: Vec::new(),
        };
        for j in held {
            sqlx::query(END_ATTEMPT_SQL)
                .bind(now)
                .bind(j.id)
                .bind(j.lease_token)
                .execute(&mut *tx)
                .await?;
            let (state, finished) = j.released(now);
            sqlx::query(RELEASE_JOB_SQL)
                .bind(state)
                .bind(now)
                .bind(finished)
                .bind(j.id)
                .execute(&mut *tx)
                .await?;
            out.released(j.id, j.grp);
        }
        tx.commit().await?;
        self.auth_cache.forget_agent(id);
        Ok(out)
    }

    /// One controller owns a SQLite store: the in-memory limiter counts.
    async fn enroll_attempt(&self, _source: &str, _minute: i64) -> Result<Option<u32>> {
        Ok(None)
    }
}
