//! Delivering completions from the outbox to the controller.
//!
//! A completion is marked done in the outbox when the controller has answered for good: accepted
//! (2xx), lease lost (409 `lease_lost`, WARN "Dropped completion: lease lost"),
//! not the agent's job (403, ERROR "Dropped completion: forbidden") or refused
//! (other 4xx, ERROR). A completion refused for its size (413) is cut down and
//! sent again ([`fit`]), never dropped for that. While the controller cannot be reached, or
//! refuses the agent's credentials, the completion stays and delivery is retried
//! with jittered backoff (capped near 5 s).
//!
//! Finished jobs hand their completion to one delivery task per agent
//! ([`Deliverer`], [`run_queue`]): it writes whatever has arrived to the
//! outbox together (one append, one fdatasync), sends it in one
//! `POST /v1/agents/{id}/complete` (no waiting for company: while a batch is
//! in flight the next ones queue up), maps each item's result as above, and
//! marks the answered ones done together. A controller without that route
//! (404/405) gets one `POST /v1/jobs/{id}/complete` per job from then on.
//! Completions an earlier run left in the outbox go through the same task
//! ([`drain`], already written: not written again); the last flush at
//! shutdown goes one by one.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, error, info, warn};

use crate::outbox::{self, Entry, Outbox};
use crate::transport::{self, Transport};

pub mod fit;
mod queue;
mod ride;

pub use queue::{Deliverer, DeliveryQueue, run_queue};
pub use ride::Riders;

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
pub async fn persist(outbox: &Outbox, entry: &Entry) -> Result<(), Error> {
    let (outbox, entry) = (outbox.clone(), entry.clone());
    blocking(move || outbox.write(&entry)).await
}

/// What a single completion call's answer means for it (logged in the
/// caller's job span, which names the job).
fn verdict_of(answer: Result<baton_proto::CompleteResponse, transport::Error>) -> Delivery {
    match answer {
        Ok(resp) => {
            info!(state = %resp.state, duplicate = resp.duplicate, "Completion delivered");
            Delivery::Delivered
        }
        Err(transport::Error::Protocol(e)) => {
            warn!(error = %e, "Completion accepted with an unexpected answer");
            Delivery::Delivered
        }
        Err(transport::Error::LeaseLost(msg)) => {
            warn!(reason = %msg, "Dropped completion: lease lost");
            Delivery::Dropped
        }
        Err(transport::Error::Forbidden(msg)) => {
            error!(reason = %msg, "Dropped completion: forbidden");
            Delivery::Dropped
        }
        Err(e) if e.is_auth() => {
            error!(error = %e, "Controller refused the agent's credentials; completion kept");
            Delivery::Kept
        }
        Err(e @ transport::Error::Rejected { .. }) => {
            error!(error = %e, "Dropped completion: rejected by the controller");
            Delivery::Dropped
        }
        Err(e) => {
            debug!(error = %e, "Completion not delivered yet");
            Delivery::Kept
        }
    }
}

/// One attempt. `persisted`: the entry is in the outbox (false when it
/// could not be written). Logged in the caller's job span.
pub async fn deliver_once(
    transport: &Transport,
    outbox: &Outbox,
    persisted: bool,
    entry: &Entry,
) -> Delivery {
    let answer = fit::complete_fitting(transport, entry.job_id, &entry.request).await;
    let verdict = verdict_of(answer);
    if verdict != Delivery::Kept && persisted {
        let (outbox, key) = (outbox.clone(), entry.key());
        if let Err(e) = blocking(move || outbox.remove(key)).await {
            error!(error = %e, "Cannot remove a delivered completion from the outbox");
        }
    }
    verdict
}

/// Retry until the controller answers for good, or `stop` fires (then
/// `Kept`). Logged in the caller's job span.
pub async fn deliver_until(
    transport: &Transport,
    outbox: &Outbox,
    persisted: bool,
    entry: &Entry,
    stop: &CancellationToken,
) -> Delivery {
    let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
    let mut warned = false;
    loop {
        let verdict = tokio::select! {
            biased;
            () = stop.cancelled() => return Delivery::Kept,
            v = deliver_once(transport, outbox, persisted, entry) => v,
        };
        if verdict != Delivery::Kept {
            return verdict;
        }
        if !warned {
            warn!("Controller unreachable; completion kept in the outbox, retrying");
            warned = true;
        }
        let delay = delays.next().unwrap_or(RETRY_CAP);
        tokio::select! {
            () = stop.cancelled() => return Delivery::Kept,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Deliver the completions an earlier run left in the outbox: each goes to
/// the delivery task (`deliverer`), which sends them in batches with the new
/// ones and retries while the controller is out of reach. Returns once each
/// was answered, the delivery task stopped, or `stop` fired (the rest stay
/// for the next start).
pub async fn drain(outbox: Outbox, deliverer: Deliverer, stop: CancellationToken) {
    let ob = outbox.clone();
    let entries = match blocking(move || ob.pending()).await {
        Ok(entries) => entries,
        Err(e) => {
            error!(error = %e, "Cannot read the outbox");
            return;
        }
    };
    if entries.is_empty() {
        return;
    }
    let mut answers = Vec::new();
    for entry in entries {
        match deliverer.redeliver(entry, &stop) {
            Some(answer) => answers.push(answer),
            None => return,
        }
    }
    info!(
        completions = answers.len(),
        "Delivering completions left by an earlier run"
    );
    let total = answers.len();
    for answer in answers {
        let verdict = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            v = answer => v.unwrap_or(Delivery::Kept),
        };
        if verdict == Delivery::Kept {
            return;
        }
    }
    info!(
        completions = total,
        "Completions left by an earlier run answered"
    );
}

/// One attempt for the completions in the outbox (at shutdown), one call
/// per completion, stopping at the first that cannot be delivered; returns
/// how many are still there.
pub async fn flush_once(transport: &Transport, outbox: &Outbox) -> Result<usize, Error> {
    let ob = outbox.clone();
    let entries = blocking(move || ob.pending()).await?;
    let total = entries.len();
    for (i, entry) in entries.iter().enumerate() {
        let span = crate::logging::completion_span(entry.job_id, entry.token());
        let verdict = deliver_once(transport, outbox, true, entry)
            .instrument(span)
            .await;
        if verdict == Delivery::Kept {
            // The controller is out of reach: the others would wait in vain.
            return Ok(total - i);
        }
    }
    Ok(0)
}
