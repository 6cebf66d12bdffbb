//! Who may call: operator tokens (with roles), enrollment tokens, agent
//! secrets. Only SHA-256 hashes of secrets are stored; callers hash first.

use async_trait::async_trait;
use baton_proto::JobId;
use baton_proto::auth::{EnrollmentTokenState, EnrollmentTokenView, OperatorTokenView, Role};

use super::credentials::AuthCache;
use super::rows::{json, ts};
use super::{Error, Result};

pub use crate::credentials::{AgentPrincipal, OperatorPrincipal};

/// What revoking an agent did.
#[derive(Debug, Clone)]
pub struct AgentRevocation {
    /// When.
    pub revoked_at: i64,
    /// Jobs it held, now queued again (or cancelled if a cancel was pending).
    pub jobs: Vec<JobId>,
    /// Groups to wake.
    pub groups: Vec<String>,
}

/// Credentials of a backend.
#[async_trait]
pub trait IdentityStore {
    /// The cache of credentials resolved so far; the identity paths that
    /// change a credential invalidate it after their commit.
    fn auth_cache(&self) -> &AuthCache;

    /// Store a new operator token (its hash). Names are unique among active tokens.
    async fn create_operator_token(
        &self,
        id: &str,
        name: &str,
        role: Role,
        hash: &str,
        created_by: &str,
        now: i64,
    ) -> Result<OperatorTokenView>;

    /// Every operator token, oldest first (no secrets).
    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenView>>;

    /// Revoke an operator token; its next call is refused.
    async fn revoke_operator_token(&self, id: &str, now: i64) -> Result<OperatorTokenView>;

    /// The active operator token with this hash; notes its use (at most once a minute).
    async fn operator_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>>;

    /// Whether any active admin token exists.
    async fn has_active_admin(&self) -> Result<bool>;

    /// Store a dashboard session: the SHA-256 of its id (`hash`), the
    /// operator token it signed in with, and when it ends. Sessions that
    /// ended by `now` are deleted on the way.
    async fn create_session(
        &self,
        hash: &str,
        token_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<()>;

    /// The operator behind an unexpired session whose token is still active
    /// (revoking the token ends its sessions).
    async fn session_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>>;

    /// End a session (sign-out); an unknown one is not an error.
    async fn delete_session(&self, hash: &str) -> Result<()>;

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
    ) -> Result<EnrollmentTokenView>;

    /// Every enrollment token, newest first (no secrets).
    async fn list_enrollment_tokens(&self, now: i64) -> Result<Vec<EnrollmentTokenView>>;

    /// Revoke an unused enrollment token.
    async fn revoke_enrollment_token(&self, id: &str, now: i64) -> Result<EnrollmentTokenView>;

    /// Spend an enrollment token and create the agent with `secret_hash`.
    /// Returns the groups the agent may serve.
    async fn enroll(
        &self,
        token_hash: &str,
        agent_id: &str,
        secret_hash: &str,
        version: &str,
        now: i64,
    ) -> Result<Vec<String>>;

    /// The active agent with this secret hash.
    async fn agent_by_hash(&self, hash: &str) -> Result<Option<AgentPrincipal>>;

    /// Revoke an agent: its calls are refused from now on and its leases end
    /// at once (attempts end `revoked`, no attempt spent, jobs requeued).
    async fn revoke_agent(&self, id: &str, now: i64) -> Result<AgentRevocation>;

    /// Count one enrollment attempt from `source` (an address key) in
    /// `minute` (Unix ms / 60,000) where several controllers share this
    /// store, and return that minute's count so far across all of them.
    /// `None` where one controller owns the store (SQLite): its in-memory
    /// limiter already sees every attempt.
    async fn enroll_attempt(&self, source: &str, minute: i64) -> Result<Option<u32>>;
}

/// The columns of [`OperatorTokenRow`].
pub(crate) const OP_COLUMNS: &str =
    "id, name, role, created_by, created_at, last_used_at, revoked_at";
/// The columns of [`EnrollmentTokenRow`].
pub(crate) const ENR_COLUMNS: &str =
    "id, groups, note, created_by, created_at, expires_at, used_at, used_by, revoked_at";

/// An operator token as every backend stores it (without its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct OperatorTokenRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl OperatorTokenRow {
    /// The API's view.
    pub fn view(self) -> Result<OperatorTokenView> {
        Ok(OperatorTokenView {
            role: Role::parse(&self.role)
                .ok_or_else(|| Error::Corrupt("operator_tokens.role".into()))?,
            id: self.id,
            name: self.name,
            created_by: self.created_by,
            created_at: ts(self.created_at),
            last_used_at: self.last_used_at.map(ts),
            revoked_at: self.revoked_at.map(ts),
        })
    }
}

/// An enrollment token as every backend stores it (without its hash).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct EnrollmentTokenRow {
    pub id: String,
    pub groups: String,
    pub note: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub used_by: Option<String>,
    pub revoked_at: Option<i64>,
}

impl EnrollmentTokenRow {
    /// The API's view; `now` decides `expired`.
    pub fn view(self, now: i64) -> Result<EnrollmentTokenView> {
        let state = if self.revoked_at.is_some() {
            EnrollmentTokenState::Revoked
        } else if self.used_at.is_some() {
            EnrollmentTokenState::Used
        } else if self.expires_at <= now {
            EnrollmentTokenState::Expired
        } else {
            EnrollmentTokenState::Active
        };
        Ok(EnrollmentTokenView {
            groups: json("enrollment_tokens.groups", &self.groups)?,
            id: self.id,
            note: self.note,
            state,
            created_by: self.created_by,
            created_at: ts(self.created_at),
            expires_at: ts(self.expires_at),
            used_at: self.used_at.map(ts),
            used_by: self.used_by,
            revoked_at: self.revoked_at.map(ts),
        })
    }
}

/// Whether an enrollment token (its `revoked_at`, `used_at` and
/// `expires_at`) may enroll an agent at `now`.
pub(crate) fn usable(
    revoked_at: Option<i64>,
    used_at: Option<i64>,
    expires_at: i64,
    now: i64,
) -> Result<()> {
    if revoked_at.is_some() {
        return Err(Error::Unauthorized("enrollment token revoked".into()));
    }
    if used_at.is_some() {
        return Err(Error::Unauthorized("enrollment token already used".into()));
    }
    if expires_at <= now {
        return Err(Error::Unauthorized("enrollment token expired".into()));
    }
    Ok(())
}

/// The refusal of an agent id that an active agent holds.
pub(crate) fn agent_id_taken(agent_id: &str) -> Error {
    Error::Conflict(format!(
        "an active agent is already enrolled as `{agent_id}`; revoke it first"
    ))
}

/// Re-enroll a revoked agent: `$1` secret hash, `$2` allowed groups (JSON),
/// `$3` now, `$4` version, `$5` id (`$N` binds on every sqlx backend).
pub(crate) const REENROLL_SQL: &str =
    "UPDATE agents SET secret_hash = $1, allowed_groups = $2, enrolled_at = $3, revoked_at = NULL,
     version = $4, last_seen = $3 WHERE id = $5";

/// Create an enrolled agent: `$1` id, `$2` groups (JSON), `$3` version,
/// `$4` now, `$5` secret hash.
pub(crate) const NEW_AGENT_SQL: &str = "INSERT INTO agents (id, groups, capabilities, version, os, free_slots, first_seen, last_seen,
     secret_hash, allowed_groups, enrolled_at) VALUES ($1, $2, '{}', $3, '', 0, $4, $4, $5, $2, $4)";

/// End a revoked agent's attempt: `$1` now, `$2` job, `$3` token.
pub(crate) const END_ATTEMPT_SQL: &str = "UPDATE attempts SET ended_at = $1, outcome = 'revoked', error = 'agent revoked' WHERE job_id = $2 AND token = $3";

/// Release a revoked agent's job: `$1` state, `$2` now, `$3` finished_at,
/// `$4` job.
pub(crate) const RELEASE_JOB_SQL: &str =
    "UPDATE jobs SET state = $1, not_before = $2, finished_at = $3, updated_at = $2,
     lease_agent = NULL, lease_token = NULL, lease_expires_at = NULL WHERE id = $4";

/// A job a revoked agent held.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct HeldJob {
    pub id: i64,
    pub grp: String,
    pub lease_token: Option<i64>,
    pub cancel_requested: bool,
}

impl HeldJob {
    /// The job's state and finished_at once its agent is revoked: queued
    /// again, or cancelled if a cancel was pending.
    pub fn released(&self, now: i64) -> (&'static str, Option<i64>) {
        if self.cancel_requested {
            ("cancelled", Some(now))
        } else {
            ("queued", None)
        }
    }
}

impl AgentRevocation {
    /// Note that `job` (of group `grp`) was released.
    pub(crate) fn released(&mut self, job: JobId, grp: String) {
        self.jobs.push(job);
        if !self.groups.contains(&grp) {
            self.groups.push(grp);
        }
    }
}
