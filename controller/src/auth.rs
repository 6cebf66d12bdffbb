//! Who is calling: bearer tokens checked against SHA-256 hashes in constant time.
//!
//! Today the accepted tokens come from the config (one set for operators, one
//! for agents; an agent names itself with the `X-Baton-Agent` header). The
//! enrollment/roles issue replaces [`Authenticator`]'s sources; handlers only
//! see [`Operator`] and [`AgentCaller`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{ApiError, AppState};

/// Hash a secret for storage or comparison.
pub fn hash_token(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(token.as_bytes()));
    out
}

/// Turn a configured token (`sha256:<hex>` or plain) into its hash.
fn configured_hash(t: &str) -> Option<[u8; 32]> {
    match t.strip_prefix("sha256:") {
        Some(h) => {
            let bytes = hex::decode(h).ok()?;
            <[u8; 32]>::try_from(bytes.as_slice()).ok()
        }
        None => Some(hash_token(t)),
    }
}

/// What a bearer token turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An operator (all operator endpoints, for now).
    Operator,
    /// An agent.
    Agent,
}

/// Checks bearer tokens.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    operators: Vec<[u8; 32]>,
    agents: Vec<[u8; 32]>,
}

impl Authenticator {
    /// Build from configured tokens (already validated by the config).
    pub fn new(operator_tokens: &[String], agent_tokens: &[String]) -> Self {
        Authenticator {
            operators: operator_tokens
                .iter()
                .filter_map(|t| configured_hash(t))
                .collect(),
            agents: agent_tokens
                .iter()
                .filter_map(|t| configured_hash(t))
                .collect(),
        }
    }

    /// The role of a presented token, if any. Compares every hash in constant time.
    pub fn role_of(&self, token: &str) -> Option<Role> {
        let h = hash_token(token);
        let mut role = None;
        for known in &self.operators {
            if bool::from(known.ct_eq(&h)) {
                role = Some(Role::Operator);
            }
        }
        for known in &self.agents {
            if bool::from(known.ct_eq(&h)) && role.is_none() {
                role = Some(Role::Agent);
            }
        }
        role
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.role_of(bearer(parts)?) {
            Some(Role::Operator) => Ok(Operator),
            Some(Role::Agent) => Err(ApiError::forbidden(
                "agent credentials cannot call operator endpoints",
            )),
            None => Err(ApiError::unauthorized("unknown token")),
        }
    }
}

/// An authenticated agent and the id it claims.
#[derive(Debug, Clone)]
pub struct AgentCaller {
    /// Agent id.
    pub id: String,
}

impl FromRequestParts<AppState> for AgentCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match state.auth.role_of(bearer(parts)?) {
            Some(Role::Agent) => {}
            Some(Role::Operator) => {
                return Err(ApiError::forbidden(
                    "operator credentials cannot call agent endpoints",
                ));
            }
            None => return Err(ApiError::unauthorized("unknown token")),
        }
        let id = parts
            .headers
            .get(baton_proto::AGENT_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| baton_proto::valid_name(v))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!(
                        "header {} must name the agent",
                        baton_proto::AGENT_ID_HEADER
                    ),
                    Some(baton_proto::AGENT_ID_HEADER.to_owned()),
                )
            })?;
        Ok(AgentCaller { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_from_plain_and_hashed_tokens() {
        let op = "operator-secret-0001";
        let ag = "agent-secret-000001";
        let hashed = format!("sha256:{}", hex::encode(hash_token(ag)));
        let a = Authenticator::new(&[op.into()], &[hashed]);
        assert_eq!(a.role_of(op), Some(Role::Operator));
        assert_eq!(a.role_of(ag), Some(Role::Agent));
        assert_eq!(a.role_of("nope-nope-nope-nope"), None);
    }
}
