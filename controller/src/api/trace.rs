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
//!   credential, so that strangers cannot fill the log (the audit log
//!   records their refused calls within its rate and counts the rest).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument as _, Span, debug, info};

use super::audit::UNROUTED;

/// Longest method named in the span (a stranger chooses it).
const MAX_METHOD: usize = 16;

tokio::task_local! {
    /// Whether authentication named the caller of the request being served.
    static IDENTIFIED: Cell<bool>;
}

/// The layer serving every request inside its span. A plain layer, not a
/// `from_fn` middleware: a held long-poll keeps only [`Answer`] (the span,
/// the start and a flag) around its handler's future, no boxed middleware
/// future and no clone of the route.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestSpan;

impl<S> Layer<S> for RequestSpan {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// A route served inside request spans (made by [`RequestSpan`]).
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S> Service<Request> for Traced<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Answer<S::Future> {
        let span = request_span(&req);
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(req));
        Answer {
            inner: IDENTIFIED.scope(Cell::new(false), future).instrument(span),
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being served: its handler's future inside the request span;
    /// the answer is logged when it is ready.
    pub struct Answer<F> {
        #[pin]
        inner: Instrumented<TaskLocalFuture<Cell<bool>, F>>,
        started: Instant,
    }
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let result = ready!(this.inner.as_mut().poll(cx));
        let identified = this
            .inner
            .as_mut()
            .inner_pin_mut()
            .take_value()
            .is_some_and(Cell::into_inner);
        if let Ok(resp) = &result {
            answered(this.inner.span(), resp, identified, *this.started);
        }
        Poll::Ready(result)
    }
}

/// The span of `req`: method and route template; the rest is recorded later.
fn request_span(req: &Request) -> Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNROUTED, MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %super::clip(req.method().as_str(), MAX_METHOD),
        route,
        actor = Empty,
        status = Empty,
        latency_ms = Empty,
    )
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
