//! A stalled request seen as such: the store's `read_timeout` is the
//! longest time a request may make no progress, not a deadline for the
//! whole transfer (a multi-GiB object takes as long as its bytes flow).
//!
//! - **Sending**: the body is handed to the HTTP stack [`CHUNK`] bytes at a
//!   time ([`Progress::body`]); each chunk taken is progress. A server that
//!   stops reading fills the socket buffers, the next chunk is not taken,
//!   and the request is stalled `read_timeout` later. reqwest's own
//!   `read_timeout` is not used: until the answer's head arrives it is one
//!   deadline from the request's start (reqwest 0.13.5, `PendingRequest`),
//!   which would cut a large part sent at a slow but steady rate.
//! - **Waiting for the answer**: counted from the last chunk taken (or the
//!   start, without a body). The bytes still in the socket buffers then (a
//!   few MiB at most) must reach the server, and its answer come, within
//!   `read_timeout`: the default 30 s allows for links down to ~200 kB/s.
//! - **Reading the answer**: each chunk of it within `read_timeout` of the
//!   previous one ([`Client::read_all`](super::Client), `Body::chunk`).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

/// Bytes of a request body handed over at a time.
pub const CHUNK: usize = 64 * 1024;

/// When a request last moved: its start, or a chunk of its body taken.
#[derive(Debug, Clone)]
pub struct Progress {
    start: Instant,
    /// Milliseconds from `start` to the last move.
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    /// A request starting now.
    pub fn new() -> Self {
        Progress {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The request moved now.
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the request last moved.
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    /// Resolves once the request has not moved for `limit`.
    pub async fn stalled(&self, limit: Duration) {
        loop {
            let idle = self.idle();
            if idle >= limit {
                return;
            }
            tokio::time::sleep(limit - idle).await;
        }
    }

    /// `data` as a request body that marks progress as each chunk is taken
    /// (its exact length is known: the request has a Content-Length).
    pub fn body(&self, data: Bytes) -> reqwest::Body {
        if data.is_empty() {
            return reqwest::Body::from(data);
        }
        reqwest::Body::wrap(Chunked {
            data,
            progress: self.clone(),
        })
    }
}

/// The rest of a request body, handed over [`CHUNK`] bytes at a time.
#[derive(Debug)]
pub struct Chunked {
    data: Bytes,
    progress: Progress,
}

impl http_body::Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.data.len().min(CHUNK);
        let chunk = self.data.split_to(n);
        self.progress.touch();
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests;
