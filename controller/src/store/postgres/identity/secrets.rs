//! The transactions of enrollment and revocation (run by [`PgStore::tx`]:
//! a deadlock runs them again), and the shared count of enrollment
//! attempts.

use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::super::PgStore;
use super::notify_revoke;
use crate::store::identity::{
    AgentRevocation, END_ATTEMPT_SQL, HeldJob, NEW_AGENT_SQL, REENROLL_SQL, RELEASE_JOB_SQL,
    agent_id_taken, usable,
};
use crate::store::{Error, Result};

/// One enrollment, as the handler asked for it.
pub(super) struct Enrollment {
    pub token_hash: String,
    pub agent_id: String,
    pub secret_hash: String,
    pub version: String,
    pub now: i64,
}

impl Enrollment {
    /// Spend the token and create (or re-enroll) the agent; returns the
    /// token's groups (JSON). The token's row is locked: a second replica
    /// spending it at the same time waits here, then reads it used.
    pub async fn spend(&self, c: &mut PgConnection) -> Result<String> {
        let row = sqlx::query(
            "SELECT id, groups, expires_at, used_at, revoked_at FROM enrollment_tokens
             WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(&self.token_hash)
        .fetch_optional(&mut *c)
        .await?
        .ok_or_else(|| Error::Unauthorized("unknown enrollment token".into()))?;
        usable(
            row.try_get("revoked_at")?,
            row.try_get("used_at")?,
            row.try_get("expires_at")?,
            self.now,
        )?;
        let token_id: String = row.try_get("id")?;
        let groups_json: String = row.try_get("groups")?;
        let reenrolled = self.store_agent(c, &groups_json).await?;
        sqlx::query("UPDATE enrollment_tokens SET used_at = $1, used_by = $2 WHERE id = $3")
            .bind(self.now)
            .bind(&self.agent_id)
            .bind(&token_id)
            .execute(&mut *c)
            .await?;
        if reenrolled {
            // Other replicas may still hold the old secret's groups.
            notify_revoke(c).await?;
        }
        Ok(groups_json)
    }

    /// Create the agent, or re-enroll a revoked one (its row locked); an
    /// active agent of that id is a conflict. Returns whether it was a
    /// re-enrollment.
    async fn store_agent(&self, c: &mut PgConnection, groups_json: &str) -> Result<bool> {
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM agents WHERE id = $1 FOR UPDATE")
                .bind(&self.agent_id)
                .fetch_optional(&mut *c)
                .await?;
        match existing {
            Some(None) => Err(agent_id_taken(&self.agent_id)),
            Some(Some(_)) => {
                sqlx::query(REENROLL_SQL)
                    .bind(&self.secret_hash)
                    .bind(groups_json)
                    .bind(self.now)
                    .bind(&self.version)
                    .bind(&self.agent_id)
                    .execute(&mut *c)
                    .await?;
                Ok(true)
            }
            None => {
                let r = sqlx::query(NEW_AGENT_SQL)
                    .bind(&self.agent_id)
                    .bind(groups_json)
                    .bind(&self.version)
                    .bind(self.now)
                    .bind(&self.secret_hash)
                    .execute(&mut *c)
                    .await;
                match r {
                    // Another replica enrolled this id (with another
                    // token) at the same moment and committed first.
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Err(agent_id_taken(&self.agent_id))
                    }
                    r => r.map(|_| false).map_err(Error::from),
                }
            }
        }
    }
}

/// Revoke agent `id` and end its leases (attempts end `revoked`, nothing
/// spent, jobs queued again or cancelled if a cancel was pending). The
/// jobs are locked: a completion racing on another replica either commits
/// first (the job is no longer running here) or finds its lease gone.
pub(super) async fn revoke(c: &mut PgConnection, id: &str, now: i64) -> Result<AgentRevocation> {
    let revoked_at: i64 = sqlx::query_scalar(
        "UPDATE agents SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 RETURNING revoked_at",
    )
    .bind(now)
    .bind(id)
    .fetch_optional(&mut *c)
    .await?
    .ok_or_else(|| Error::Missing(format!("agent {id}")))?;
    let held: Vec<HeldJob> = sqlx::query_as(
        "SELECT id, grp, lease_token, cancel_requested FROM jobs
         WHERE state = 'running' AND lease_agent = $1 ORDER BY id FOR UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *c)
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
            .execute(&mut *c)
            .await?;
        let (state, finished) = j.released(now);
        sqlx::query(RELEASE_JOB_SQL)
            .bind(state)
            .bind(now)
            .bind(finished)
            .bind(j.id)
            .execute(&mut *c)
            .await?;
        out.released(j.id, j.grp);
    }
    Ok(out)
}

/// Count one enrollment attempt from `source` in `minute` (Unix minutes)
/// and return the count of that minute so far, every replica's attempts
/// included; minutes before the previous one are pruned.
pub(super) async fn enroll_attempt(s: &PgStore, source: &str, minute: i64) -> Result<u32> {
    let source = source.to_owned();
    let n: i64 = s
        .tx(move |c| {
            let source = source.clone();
            Box::pin(async move {
                let n: i64 = sqlx::query_scalar(
                    "INSERT INTO enroll_attempts (source, minute, count) VALUES ($1, $2, 1)
                     ON CONFLICT (source, minute) DO UPDATE SET count = enroll_attempts.count + 1
                     RETURNING count",
                )
                .bind(&source)
                .bind(minute)
                .fetch_one(&mut *c)
                .await?;
                Ok(n)
            })
        })
        .await?;
    if n == 1 {
        // The first attempt of a minute from this source prunes the old
        // minutes (of every source): the table stays a few minutes long.
        sqlx::query("DELETE FROM enroll_attempts WHERE minute < $1")
            .bind(minute - 1)
            .execute(&s.pool)
            .await?;
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}
