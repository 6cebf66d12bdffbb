//! Identity: enrollment, agent credentials, operator tokens with roles, audit.
//!
//! Secrets (enrollment tokens, agent secrets, operator tokens) are 256-bit
//! random values shown once, at creation; the controller keeps only their
//! SHA-256. Each carries a prefix naming its kind, so a leaked one is easy to
//! recognise: [`ENROLLMENT_PREFIX`], [`AGENT_SECRET_PREFIX`], [`OPERATOR_PREFIX`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Prefix of enrollment tokens.
pub const ENROLLMENT_PREFIX: &str = "baton_enr_";
/// Prefix of agent secrets.
pub const AGENT_SECRET_PREFIX: &str = "baton_agt_";
/// Prefix of operator tokens.
pub const OPERATOR_PREFIX: &str = "baton_op_";

/// What an operator token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read only: jobs, agents.
    Viewer,
    /// Jobs, schedules, drills, drain — and everything a viewer may.
    Operator,
    /// Everything, including tokens, enrollment, agent revocation and the audit log.
    Admin,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether this role includes `needed` (admin ⊇ operator ⊇ viewer).
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /v1/agents/enroll` (no bearer token: the enrollment token is the credential).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"token": "baton_enr_…", "agent_id": "db-01", "hostname": "db-01.example", "version": "0.1.0"})))]
pub struct EnrollRequest {
    /// The single-use enrollment token.
    pub token: String,
    /// The agent id asked for (a valid name, e.g. the host name).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub agent_id: String,
    /// Host name, for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// Agent version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// Answer to an enrollment: the agent's identity. The secret is shown only here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    /// The agent id.
    pub agent_id: String,
    /// The agent secret: the bearer token of every later agent call.
    pub secret: String,
    /// Groups the agent may serve (from the enrollment token).
    pub groups: Vec<String>,
    /// The fleet (controller installation) id: database-side locks and run
    /// ledgers are namespaced by it, so two installations sharing a database
    /// server never collide on job ids.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fleet: String,
}

/// `POST /v1/enrollment-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"groups": ["nightly"], "expires_in_ms": 7200000, "note": "db hosts of rack 4"})))]
pub struct EnrollmentTokenCreate {
    /// Groups an agent enrolled with this token may serve.
    pub groups: Vec<String>,
    /// Lifetime in milliseconds (at most 30 days).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2592000000.0))]
    pub expires_in_ms: u64,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// State of an enrollment token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentTokenState {
    /// Can still be used.
    Active,
    /// Spent by an enrollment.
    Used,
    /// Past its expiry.
    Expired,
    /// Revoked by an admin.
    Revoked,
}

/// An enrollment token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenView {
    /// Token id.
    pub id: String,
    /// Groups it grants.
    pub groups: Vec<String>,
    /// Note.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// State now.
    pub state: EnrollmentTokenState,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was spent, and by which agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime<Utc>>,
    /// The agent that spent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Answer to creating an enrollment token: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenCreated {
    /// The token as listed.
    pub view: EnrollmentTokenView,
    /// The secret to give to the agent.
    pub token: String,
}

/// `GET /v1/enrollment-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenList {
    /// Newest first.
    pub tokens: Vec<EnrollmentTokenView>,
}

/// `POST /v1/tokens`: a new operator token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "ci", "role": "viewer"})))]
pub struct OperatorTokenCreate {
    /// Who or what uses it (a valid name, unique among active tokens).
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9_.\-]{1,128}$"))]
    pub name: String,
    /// What it may do.
    pub role: Role,
}

/// An operator token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorTokenView {
    /// Token id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Who created it (`init` for the bootstrap token).
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Last authenticated use (updated at most once a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Answer to creating an operator token: the only time the secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorTokenCreated {
    /// The token as listed.
    pub view: OperatorTokenView,
    /// The secret.
    pub token: String,
}

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OperatorTokenList {
    /// Oldest first.
    pub tokens: Vec<OperatorTokenView>,
}

/// `GET /v1/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    /// Token name.
    pub name: String,
    /// Token id.
    pub token_id: String,
    /// Role.
    pub role: Role,
}

/// Answer to `POST /v1/agents/{id}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentRevoked {
    /// The agent.
    pub agent_id: String,
    /// When it was revoked.
    pub revoked_at: DateTime<Utc>,
    /// Jobs whose leases it held, now back in the queue.
    pub jobs_requeued: Vec<crate::JobId>,
}

/// One audited state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: `token:<name>`, `agent:<id>`, `enroll:<address>` or `anonymous`.
    pub actor: String,
    /// Role of the actor (`agent` for agents, empty when unauthenticated).
    pub role: String,
    /// What: `METHOD /route/{template}`.
    pub action: String,
    /// On what: the concrete path.
    pub target: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Error code when refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditList {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` for the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

#[cfg(test)]
mod tests;
