//! Audit middleware: every state-changing call — who, role, action, target,
//! result, time — goes to the audit log. Polls and heartbeats are not
//! recorded (they are the agents' routine traffic and are visible as
//! attempts; their routes are outside this middleware, see `api::router`),
//! nor accepted completions ([`ROUTINE_WRITES`]: the attempt row records
//! them; refused ones are recorded); everything else that is not a GET is.
//!
//! What a row holds is bounded: the target path is cut at [`MAX_TARGET`]
//! bytes, a path no route matches is recorded as [`UNROUTED`] (action
//! `POST unrouted`), and refused calls without a credential are written
//! within the rate of `api::limits` (the rest are only counted).
//!
//! The row goes through the group-commit writer (`Store::audit_grouped`): it
//! shares a batch's commit with the other hot writes (completions, releases,
//! grants) instead of paying an fsync of its own per call. The response still
//! waits until the row is on disk, so a 2xx call is always in the log.
//!
//! A handler may write the row in its own transaction instead: the call's
//! row, still without status, is in the request's extensions
//! ([`AuditPending`]); a response marked [`AuditWritten`] is not recorded
//! again. A submit does this (`store::jobs::NewJob::audit`), so its answer
//! waits for one commit, not two.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use baton_proto::ErrorCode;

use super::AppState;
use super::auth::AuthOutcome;
use crate::listener::PeerAddr;
use crate::store::audit::AuditRecord;
use crate::store::now_ms;

/// Set by a handler to name the actor when the caller had no credential
/// (an enrollment names the agent it created).
#[derive(Debug, Clone)]
pub struct AuditActor(pub String);

/// The call's audit row before its outcome is known (who, role, action,
/// target), for a handler that writes it with its own change.
#[derive(Debug, Clone)]
pub struct AuditPending(AuditRecord);

impl AuditPending {
    /// The row for an outcome of `status` without an error code.
    pub fn with_status(&self, status: u16) -> AuditRecord {
        AuditRecord {
            status,
            ..self.0.clone()
        }
    }
}

/// Set on a response whose audit row the handler already wrote.
#[derive(Debug, Clone, Copy)]
pub struct AuditWritten;

/// Record state-changing calls after they ran; reads pass straight through
/// (keeping only a pointer to the recording future in this one).
pub async fn record(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        drop(s);
        return next.run(req).await;
    }
    Box::pin(record_call(s, req, next)).await
}

/// Longest concrete target path kept in a row (longer ones are cut, `…`).
pub const MAX_TARGET: usize = 256;
/// Longest method kept in a row's action.
const MAX_METHOD: usize = 16;

async fn record_call(s: AppState, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    // An unrouted path is a stranger's choice: only its absence is kept.
    let target = match &route {
        Some(_) => super::clip(req.uri().path(), MAX_TARGET),
        None => UNROUTED.to_owned(),
    };
    let (mut actor, role) = match req.extensions().get::<AuthOutcome>() {
        Some(AuthOutcome::Known(p)) => (p.actor(), p.role_name().to_owned()),
        _ => ("anonymous".to_owned(), String::new()),
    };
    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
    let action = format!(
        "{} {}",
        super::clip(method.as_str(), MAX_METHOD),
        route.as_deref().unwrap_or(UNROUTED)
    );
    let mut req = req;
    req.extensions_mut().insert(AuditPending(AuditRecord {
        actor: actor.clone(),
        role: role.clone(),
        action: action.clone(),
        target: target.clone(),
        status: 0,
        error: None,
    }));
    let resp = next.run(req).await;
    if resp.extensions().get::<AuditWritten>().is_some() {
        return resp;
    }
    if resp.status().is_success()
        && route
            .as_deref()
            .is_some_and(|r| ROUTINE_WRITES.contains(&r))
    {
        return resp;
    }
    if let Some(a) = resp.extensions().get::<AuditActor>() {
        actor = a.0.clone();
    } else if actor == "anonymous" {
        // Refused calls without a credential are rate-limited in the log.
        if resp.status().as_u16() >= 400 && !s.limits.audit_refused_anonymous(peer) {
            return resp;
        }
        if let Some(ip) = peer {
            actor = format!("anonymous@{ip}");
        }
    }
    let entry = AuditRecord {
        actor,
        role,
        action,
        target,
        status: resp.status().as_u16(),
        error: resp
            .extensions()
            .get::<ErrorCode>()
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
    };
    match s.store.audit_grouped(&entry, now_ms()).await {
        Ok(()) => {}
        // The store's health logged it once, as an ERROR.
        Err(e @ crate::store::Error::Unavailable { .. }) => {
            tracing::warn!(error = %e, action = %entry.action, actor = %entry.actor, "Audit entry not written: the store cannot commit");
        }
        Err(e) => {
            tracing::error!(error = %e, action = %entry.action, actor = %entry.actor, "Cannot write the audit log")
        }
    }
    resp
}

/// Agents' completions: recorded only when refused (a stale token, a
/// foreign job). An accepted one is the attempt's end, which the attempt
/// row keeps (agent, token, outcome, time); a row per job in the audit log
/// would bury the operators' calls and cost a write per completion.
pub const ROUTINE_WRITES: [&str; 2] = ["/v1/agents/{id}/complete", "/v1/jobs/{id}/complete"];

/// Action route and target of a call to a path no route matches.
pub const UNROUTED: &str = "unrouted";
