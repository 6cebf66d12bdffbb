//! The request span: every request is served inside a `request` span naming
//! its `method`, its `route` template (`/v1/jobs/{id}`; a path no route
//! matches is `unrouted`, as in the audit log), the caller once
//! authentication resolved it (`actor`: `agent:<id>` or `token:<name>`,
//! see [`identified`]) and, once answered, its `status` and `latency_ms`.
//! Every line logged while serving it carries these fields.
//!
//! One line per request, "Request answered", when the answer is made:
//! - INFO when a caller with a credential was refused or failed (status
//!   400 and up): someone the controller knows got an error;
//! - DEBUG otherwise: successes (an agent's every poll and heartbeat would
//!   flood the log at INFO), and any answer to a caller without a known
//!   credential, so that strangers cannot fill the log (the audit log, the
//!   limits and the metrics count those).

use std::cell::Cell;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::field::Empty;
use tracing::{Instrument as _, Span, debug, info};

use super::audit::UNROUTED;

/// Longest method named in the span (a stranger chooses it).
const MAX_METHOD: usize = 16;

tokio::task_local! {
    /// Whether authentication named the caller of the request being served.
    static IDENTIFIED: Cell<bool>;
}

/// Middleware: serve the request inside its span, then log its answer.
pub async fn request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNROUTED, MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        method = %super::clip(req.method().as_str(), MAX_METHOD),
        route,
        actor = Empty,
        status = Empty,
        latency_ms = Empty,
    );
    let started = Instant::now();
    let serve = async move {
        let resp = next.run(req).await;
        (resp, IDENTIFIED.with(Cell::get))
    };
    let (resp, identified) = IDENTIFIED
        .scope(Cell::new(false), serve)
        .instrument(span.clone())
        .await;
    answered(&span, &resp, identified, started);
    resp
}

/// Record the answer on `span` and log it (see the module doc for levels).
fn answered(span: &Span, resp: &Response, identified: bool, started: Instant) {
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    let _inside = span.enter();
    if identified && status >= 400 {
        info!("Request answered");
    } else {
        debug!("Request answered");
    }
}

/// Name the caller of the request being served (`agent:<id>`,
/// `token:<name>`): called by authentication once it resolved a credential.
/// Outside a request it does nothing.
pub fn identified(actor: &str) {
    Span::current().record("actor", actor);
    let _ = IDENTIFIED.try_with(|known| known.set(true));
}

#[cfg(test)]
mod tests;
