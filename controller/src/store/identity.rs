//! Who may call: operator tokens (with roles), enrollment tokens, agent
//! secrets. Only SHA-256 hashes of secrets are stored; callers hash first.

use async_trait::async_trait;
use baton_proto::JobId;
use baton_proto::auth::{EnrollmentTokenView, OperatorTokenView, Role};

use super::Result;
use super::credentials::AuthCache;

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
}
