//! Delivering completions from the outbox to the controller.
//!
//! A file is removed when the controller has answered for good: accepted
//! (2xx), lease lost (409 `lease_lost`, WARN "Dropped completion: lease lost"),
//! not the agent's job (403, ERROR "Dropped completion: forbidden") or refused
//! (other 4xx, ERROR). While the controller cannot be reached, or
//! refuses the agent's credentials, the file stays and delivery is retried
//! with jittered backoff (capped near 5 s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::outbox::{self, Entry, Outbox};
use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Delivery failures that are not about the controller's answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The outbox could not be used.
    #[error(transparent)]
    Outbox(#[from] outbox::Error),
    /// A blocking file task failed.
    #[error("outbox task failed: {0}")]
    Task(String),
}

/// What became of a completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The controller accepted it.
    Delivered,
    /// The controller will never take it (lease lost, refused); it was dropped.
    Dropped,
    /// Not delivered yet; it stays in the outbox.
    Kept,
}

/// Run a blocking outbox call off the async thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, outbox::Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
        .map_err(Error::from)
}

/// Write `entry` durably to the outbox.
pub async fn persist(outbox: &Outbox, entry: &Entry) -> Result<PathBuf, Error> {
    let (outbox, entry) = (outbox.clone(), entry.clone());
    blocking(move || outbox.write(&entry)).await
}

/// One attempt. `path` is the outbox file (None when it could not be written).
pub async fn deliver_once(
    transport: &Transport,
    outbox: &Outbox,
    path: Option<&Path>,
    entry: &Entry,
) -> Delivery {
    let (job_id, token) = (entry.job_id, entry.token());
    let verdict = match transport
        .complete(job_id, &entry.request, MAX_CALL_TIMEOUT)
        .await
    {
        Ok(resp) => {
            info!(job_id, token, state = %resp.state, duplicate = resp.duplicate, "Completion delivered");
            Delivery::Delivered
        }
        Err(transport::Error::Protocol(e)) => {
            warn!(job_id, token, error = %e, "Completion accepted with an unexpected answer");
            Delivery::Delivered
        }
        Err(transport::Error::LeaseLost(msg)) => {
            warn!(job_id, token, reason = %msg, "Dropped completion: lease lost");
            Delivery::Dropped
        }
        Err(transport::Error::Forbidden(msg)) => {
            error!(job_id, token, reason = %msg, "Dropped completion: forbidden");
            Delivery::Dropped
        }
        Err(e) if e.is_auth() => {
            error!(job_id, token, error = %e, "Controller refused the agent's credentials; completion kept");
            Delivery::Kept
        }
        Err(e @ transport::Error::Rejected { .. }) => {
            error!(job_id, token, error = %e, "Dropped completion: rejected by the controller");
            Delivery::Dropped
        }
        Err(e) => {
            debug!(job_id, token, error = %e, "Completion not delivered yet");
            Delivery::Kept
        }
    };
    if verdict != Delivery::Kept
        && let Some(path) = path
    {
        let (outbox, path) = (outbox.clone(), path.to_path_buf());
        if let Err(e) = blocking(move || outbox.remove(&path)).await {
            error!(job_id, token, error = %e, "Cannot remove a delivered completion from the outbox");
        }
    }
    verdict
}

/// Retry until the controller answers for good, or `stop` fires (then `Kept`).
pub async fn deliver_until(
    transport: &Transport,
    outbox: &Outbox,
    path: Option<&Path>,
    entry: &Entry,
    stop: &CancellationToken,
) -> Delivery {
    let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
    let mut warned = false;
    loop {
        let verdict = tokio::select! {
            biased;
            () = stop.cancelled() => return Delivery::Kept,
            v = deliver_once(transport, outbox, path, entry) => v,
        };
        if verdict != Delivery::Kept {
            return verdict;
        }
        if !warned {
            warn!(
                job_id = entry.job_id,
                token = entry.token(),
                "Controller unreachable; completion kept in the outbox, retrying"
            );
            warned = true;
        }
        let delay = delays.next().unwrap_or(RETRY_CAP);
        tokio::select! {
            () = stop.cancelled() => return Delivery::Kept,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Read one outbox file; a file that cannot be parsed is quarantined (ERROR).
async fn load(outbox: &Outbox, path: &Path) -> Option<Entry> {
    let (ob, p) = (outbox.clone(), path.to_path_buf());
    match blocking(move || ob.read(&p)).await {
        Ok(entry) => Some(entry),
        Err(Error::Outbox(outbox::Error::Corrupt { .. })) => {
            let (ob, p) = (outbox.clone(), path.to_path_buf());
            match blocking(move || ob.quarantine(&p)).await {
                Ok(bad) => error!(file = %bad.display(), "Unreadable completion moved aside"),
                Err(e) => error!(error = %e, "Unreadable completion cannot be moved aside"),
            }
            None
        }
        Err(e) => {
            error!(error = %e, "Cannot read a completion from the outbox");
            None
        }
    }
}

/// Deliver every file now in the outbox, retrying until all are gone or `stop` fires.
/// Used at start for completions left by an earlier run.
pub async fn drain(transport: Arc<Transport>, outbox: Outbox, stop: CancellationToken) {
    let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
    let mut first = true;
    loop {
        let kept = match flush_pending(&transport, &outbox, &stop).await {
            Ok(kept) => kept,
            Err(e) => {
                error!(error = %e, "Cannot list the outbox");
                return;
            }
        };
        if first && kept > 0 {
            warn!(
                kept,
                "Completions from an earlier run are waiting for the controller"
            );
        }
        first = false;
        if kept == 0 || stop.is_cancelled() {
            return;
        }
        let delay = delays.next().unwrap_or(RETRY_CAP);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One attempt for the files in the outbox, stopping at the first that cannot be
/// delivered; returns how many are still there.
pub async fn flush_once(transport: &Transport, outbox: &Outbox) -> Result<usize, Error> {
    flush_pending(transport, outbox, &CancellationToken::new()).await
}

async fn flush_pending(
    transport: &Transport,
    outbox: &Outbox,
    stop: &CancellationToken,
) -> Result<usize, Error> {
    let ob = outbox.clone();
    let paths = blocking(move || ob.pending()).await?;
    let total = paths.len();
    for (i, path) in paths.into_iter().enumerate() {
        if stop.is_cancelled() {
            return Ok(total - i);
        }
        let Some(entry) = load(outbox, &path).await else {
            continue;
        };
        let verdict = tokio::select! {
            biased;
            () = stop.cancelled() => Delivery::Kept,
            v = deliver_once(transport, outbox, Some(&path), &entry) => v,
        };
        if verdict == Delivery::Kept {
            // The controller is out of reach: the others would wait in vain.
            return Ok(total - i);
        }
    }
    Ok(0)
}
