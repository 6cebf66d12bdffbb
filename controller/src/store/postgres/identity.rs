//! IdentityStore on PostgreSQL (NOT YET PORTED: every method answers
//! `Error::Unported`; a helper replaces this file).

#![allow(unused_variables, unused_imports)]

use super::PgStore;
use crate::store::credentials::AuthCache;
use crate::store::identity::*;
use crate::store::{Error, Result};
use async_trait::async_trait;
use baton_proto::auth::*;
use baton_proto::drill::*;
use baton_proto::pipeline::*;
use baton_proto::schedule::*;
use baton_proto::*;

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
        Err(Error::Unported("create_operator_token"))
    }

    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenView>> {
        Err(Error::Unported("list_operator_tokens"))
    }

    async fn revoke_operator_token(&self, id: &str, now: i64) -> Result<OperatorTokenView> {
        Err(Error::Unported("revoke_operator_token"))
    }

    async fn operator_by_hash(&self, hash: &str, now: i64) -> Result<Option<OperatorPrincipal>> {
        Err(Error::Unported("operator_by_hash"))
    }

    async fn has_active_admin(&self) -> Result<bool> {
        Err(Error::Unported("has_active_admin"))
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
        Err(Error::Unported("create_enrollment_token"))
    }

    async fn list_enrollment_tokens(&self, now: i64) -> Result<Vec<EnrollmentTokenView>> {
        Err(Error::Unported("list_enrollment_tokens"))
    }

    async fn revoke_enrollment_token(&self, id: &str, now: i64) -> Result<EnrollmentTokenView> {
        Err(Error::Unported("revoke_enrollment_token"))
    }

    async fn enroll(
        &self,
        token_hash: &str,
        agent_id: &str,
        secret_hash: &str,
        version: &str,
        now: i64,
    ) -> Result<Vec<String>> {
        Err(Error::Unported("enroll"))
    }

    async fn agent_by_hash(&self, hash: &str) -> Result<Option<AgentPrincipal>> {
        Err(Error::Unported("agent_by_hash"))
    }

    async fn revoke_agent(&self, id: &str, now: i64) -> Result<AgentRevocation> {
        Err(Error::Unported("revoke_agent"))
    }
}
