//! The agent's delivery task: completions of finished jobs (and those an
//! earlier run left) are written to the outbox together and sent in batches
//! (`POST /v1/agents/{id}/complete`), each item's result mapped like a single
//! call's; a controller without the batch route gets one call per job.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::lease::{
    BatchCompleteItem, BatchCompleteRequest, BatchCompleteResponse, BatchCompleteResult,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, Span, debug, error, info, warn};

use super::ride::{Riders, Rides};
use super::{Delivery, RETRY_CAP, RETRY_MIN, blocking, deliver_until, fit, persist, verdict_of};
use crate::outbox::{self, Entry, Outbox};
use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

/// Text (output, error, `data` as JSON) sent in one batch at most (but at
/// least one completion); the controller's body
/// limit is 4 MiB by default.
const BATCH_TEXT_BYTES: usize = 1 << 20;

/// What the delivery task is handed.
#[derive(Debug)]
pub(super) enum Msg {
    /// A completion to write and deliver.
    Handoff(Handoff),
    /// Completions a poll carried ([`super::ride`]), with the poll's
    /// results for them (`None`: not delivered; sent on their own).
    Ridden(Vec<Pending>, Option<Vec<BatchCompleteResult>>),
}

/// A finished job's completion on its way to the delivery task.
#[derive(Debug)]
pub(super) struct Handoff {
    entry: Entry,
    /// Already in the outbox (left by an earlier run).
    persisted: bool,
    /// Counted in [`Rides::handed_off`].
    counted: bool,
    abandon: CancellationToken,
    done: oneshot::Sender<Delivery>,
    /// The job's span: what is logged about this completion is in it.
    span: Span,
}

/// A completion in the outbox, waiting for the controller's answer.
#[derive(Debug)]
pub(super) struct Pending {
    /// In the outbox (false: it could not be written, sent from memory).
    persisted: bool,
    pub(super) entry: Entry,
    abandon: CancellationToken,
    done: oneshot::Sender<Delivery>,
    /// The job's span (from its [`Handoff`]).
    span: Span,
}

impl Pending {
    /// A written completion, for tests; its answer on the receiver.
    #[cfg(test)]
    pub(super) fn for_test(
        entry: Entry,
        abandon: CancellationToken,
    ) -> (Self, oneshot::Receiver<Delivery>) {
        let (done, answer) = oneshot::channel();
        let p = Pending {
            persisted: true,
            entry,
            abandon,
            done,
            span: Span::none(),
        };
        (p, answer)
    }

    pub(super) fn text_bytes(&self) -> usize {
        let r = &self.entry.request;
        let data = r.result.data.as_ref().map_or(0, |d| {
            serde_json::to_vec(d).map_or(BATCH_TEXT_BYTES, |v| v.len())
        });
        256 + r.result.stdout.len()
            + r.result.stderr.len()
            + r.error.as_ref().map_or(0, String::len)
            + data
    }
}

/// Hands finished jobs' completions to the agent's delivery task.
#[derive(Debug, Clone)]
pub struct Deliverer {
    tx: mpsc::UnboundedSender<Msg>,
    rides: Arc<Rides>,
}

/// The receiving end, for [`run_queue`].
#[derive(Debug)]
pub struct DeliveryQueue {
    rx: mpsc::UnboundedReceiver<Msg>,
    rides: Arc<Rides>,
}

impl Deliverer {
    /// A deliverer and the queue its delivery task reads.
    pub fn channel() -> (Deliverer, DeliveryQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rides = Arc::new(Rides::default());
        (
            Deliverer {
                tx,
                rides: rides.clone(),
            },
            DeliveryQueue { rx, rides },
        )
    }

    /// For the poll loop about to ask for work: the completions to carry
    /// in that poll ([`super::ride`]), after waiting at most `wait` for
    /// those being written. Answer them with [`Self::ridden`].
    pub async fn riders(&self, wait: Duration) -> Riders {
        self.rides.take(wait, &self.tx).await
    }

    /// The poll that carried `riders` was answered with `results` (`None`:
    /// it failed; they are sent on their own).
    pub fn ridden(&self, riders: Riders, results: Option<Vec<BatchCompleteResult>>) {
        riders.answer(results);
    }

    /// The controller refused a poll carrying completions: they go on
    /// their own from now on (this run).
    pub fn refused_riders(&self, riders: Riders) {
        self.rides.refused(&self.tx);
        drop(riders);
    }

    /// Persist `entry` and deliver it (batched with others), retrying until the
    /// controller answers for good, or `abandon` fires (then `Kept`: it
    /// stays in the outbox). Without a delivery task it does both itself.
    pub async fn deliver(
        &self,
        transport: &Transport,
        outbox: &Outbox,
        entry: Entry,
        abandon: &CancellationToken,
    ) -> Delivery {
        let (done, answer) = oneshot::channel();
        let handoff = Handoff {
            entry,
            persisted: false,
            counted: true,
            abandon: abandon.clone(),
            done,
            span: Span::current(),
        };
        self.rides.handed_off();
        if let Err(mpsc::error::SendError(Msg::Handoff(h))) = self.tx.send(Msg::Handoff(handoff)) {
            self.rides.arrived(Vec::new(), 1, false);
            return deliver_alone(transport, outbox, h.entry, abandon).await;
        }
        tokio::select! {
            biased;
            () = abandon.cancelled() => Delivery::Kept,
            v = answer => v.unwrap_or(Delivery::Kept),
        }
    }
    /// Deliver a completion already in the outbox, batched with the others;
    /// `None` when the delivery task is gone. Its answer comes on the
    /// receiver (an error: the task stopped first; the completion stays).
    pub fn redeliver(
        &self,
        entry: Entry,
        abandon: &CancellationToken,
    ) -> Option<oneshot::Receiver<Delivery>> {
        let (done, answer) = oneshot::channel();
        let handoff = Handoff {
            span: crate::logging::completion_span(entry.job_id, entry.token()),
            entry,
            persisted: true,
            counted: false,
            abandon: abandon.clone(),
            done,
        };
        self.tx.send(Msg::Handoff(handoff)).ok().map(|()| answer)
    }
}

/// Persist and deliver one completion on its own.
async fn deliver_alone(
    transport: &Transport,
    outbox: &Outbox,
    entry: Entry,
    abandon: &CancellationToken,
) -> Delivery {
    let persisted = match persist(outbox, &entry).await {
        Ok(()) => true,
        Err(e) => {
            error!(error = %e, "Cannot write the completion to the outbox; sending it from memory");
            false
        }
    };
    deliver_until(transport, outbox, persisted, &entry, abandon).await
}

/// The agent's delivery task: runs until `stop` fires (after the job tasks
/// ended). Completions that arrive are always written to the outbox first;
/// while a poll waits for company they ride it ([`super::ride`]), otherwise
/// they are sent here; those not delivered when it stops stay in the outbox
/// for the next start.
pub async fn run_queue(
    mut queue: DeliveryQueue,
    transport: Arc<Transport>,
    outbox: Outbox,
    stop: CancellationToken,
) {
    let mut state = QueueState {
        transport,
        outbox,
        per_job: false,
    };
    let mut pending: Vec<Pending> = Vec::new();
    let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
    let mut warned = false;
    loop {
        let mut msgs = Vec::new();
        if pending.is_empty() {
            match queue.next(&stop).await {
                Some(m) => msgs.push(m),
                None => break,
            }
        }
        while let Ok(m) = queue.rx.try_recv() {
            msgs.push(m);
        }
        pending.extend(queue.take_in(&state, msgs, true).await);
        pending.retain(|p| !p.abandon.is_cancelled());
        if pending.is_empty() {
            continue;
        }
        let Some(kept) = state.send_all(&mut pending, &stop).await else {
            break;
        };
        if !kept {
            delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
            warned = false;
            continue;
        }
        if !warned {
            warn!(
                waiting = pending.len(),
                "Controller unreachable; completions kept in the outbox, retrying"
            );
            warned = true;
        }
        // Back off; completions that arrive meanwhile go to the outbox at once.
        let until = tokio::time::Instant::now() + delays.next().unwrap_or(RETRY_CAP);
        if !queue.back_off(&state, &mut pending, until, &stop).await {
            break;
        }
    }
    queue.close(&state).await;
}

impl DeliveryQueue {
    /// The next message; `None` when `stop` fires or every deliverer is gone.
    async fn next(&mut self, stop: &CancellationToken) -> Option<Msg> {
        tokio::select! {
            biased;
            () = stop.cancelled() => None,
            m = self.rx.recv() => m,
        }
    }

    /// Take in `msgs`: new completions are written to the outbox (and,
    /// with `offer`, kept for a poll that waits for company); completions
    /// a poll carried are settled with its results. What is left to send
    /// here is returned.
    async fn take_in(&self, state: &QueueState, msgs: Vec<Msg>, offer: bool) -> Vec<Pending> {
        let mut arrived = Vec::new();
        let mut out = Vec::new();
        let mut ridden = Vec::new();
        for m in msgs {
            match m {
                Msg::Handoff(h) => arrived.push(h),
                Msg::Ridden(p, results) => ridden.push((p, results)),
            }
        }
        if !arrived.is_empty() {
            let counted = arrived.iter().filter(|h| h.counted).count();
            let written = state.persist(arrived).await;
            out.extend(self.rides.arrived(written, counted, offer));
        }
        for (chunk, results) in ridden {
            out.extend(state.settle_ridden(chunk, results).await);
        }
        out
    }

    /// Wait until `until`, writing completions that arrive meanwhile to the
    /// outbox at once (into `pending`). False when the task must stop.
    async fn back_off(
        &mut self,
        state: &QueueState,
        pending: &mut Vec<Pending>,
        until: tokio::time::Instant,
        stop: &CancellationToken,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return false,
                () = tokio::time::sleep_until(until) => return true,
                m = self.rx.recv() => match m {
                    Some(m) => pending.extend(self.take_in(state, vec![m], false).await),
                    None => return false,
                },
            }
        }
    }

    /// Stopping: whatever is still queued is written to the outbox for the
    /// next start (completions a poll carried are there already).
    async fn close(mut self, state: &QueueState) {
        self.rx.close();
        let mut arrived = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            if let Msg::Handoff(h) = m {
                arrived.push(h);
            }
        }
        if !arrived.is_empty() {
            drop(state.persist(arrived).await);
        }
    }
}

/// The first completions of `pending` that fit one request.
pub(super) fn take_chunk(pending: &mut Vec<Pending>) -> Vec<Pending> {
    let mut n = 0;
    let mut bytes = 0;
    for p in pending.iter() {
        if n == BatchCompleteRequest::MAX || (n > 0 && bytes + p.text_bytes() > BATCH_TEXT_BYTES) {
            break;
        }
        bytes += p.text_bytes();
        n += 1;
    }
    pending.drain(..n).collect()
}

/// What the delivery task keeps between batches.
struct QueueState {
    transport: Arc<Transport>,
    outbox: Outbox,
    /// The controller has no batch route: one call per job.
    per_job: bool,
}

impl QueueState {
    /// Write the completions that arrived to the outbox, together.
    async fn persist(&self, arrived: Vec<Handoff>) -> Vec<Pending> {
        let (mut pending, arrived): (Vec<Handoff>, Vec<Handoff>) =
            arrived.into_iter().partition(|h| h.persisted);
        let mut pending: Vec<Pending> = pending
            .drain(..)
            .map(|h| Pending {
                persisted: true,
                entry: h.entry,
                abandon: h.abandon,
                done: h.done,
                span: h.span,
            })
            .collect();
        pending.extend(self.write(arrived).await);
        pending
    }

    /// Write new completions to the outbox, together.
    async fn write(&self, arrived: Vec<Handoff>) -> Vec<Pending> {
        if arrived.is_empty() {
            return Vec::new();
        }
        let entries: Vec<Entry> = arrived.iter().map(|h| h.entry.clone()).collect();
        let ob = self.outbox.clone();
        let written = blocking(move || ob.write_many(&entries)).await;
        arrived
            .into_iter()
            .map(|h| {
                if let Err(e) = &written {
                    h.span.in_scope(|| error!(error = %e, "Cannot write the completion to the outbox; sending it from memory"));
                }
                Pending {
                    persisted: written.is_ok(),
                    entry: h.entry,
                    abandon: h.abandon,
                    done: h.done,
                    span: h.span,
                }
            })
            .collect()
    }

    /// Mark answered completions done in the outbox, together.
    async fn remove(&self, answered: &[(Pending, Delivery)]) {
        let keys: Vec<outbox::Key> = answered
            .iter()
            .filter(|(p, _)| p.persisted)
            .map(|(p, _)| p.entry.key())
            .collect();
        if keys.is_empty() {
            return;
        }
        let ob = self.outbox.clone();
        if let Err(e) = blocking(move || ob.remove_many(&keys)).await {
            error!(error = %e, "Cannot remove delivered completions from the outbox");
        }
    }

    /// Send `pending` chunk by chunk until done or one chunk is kept (true;
    /// the kept ones go back to the front of `pending`); answered ones are
    /// removed from the outbox and told. `None` when `stop` fires.
    async fn send_all(
        &mut self,
        pending: &mut Vec<Pending>,
        stop: &CancellationToken,
    ) -> Option<bool> {
        let mut kept = false;
        while !pending.is_empty() && !kept {
            let chunk = take_chunk(pending);
            let verdicts = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    pending.extend(chunk);
                    return None;
                }
                v = self.send(&chunk) => v,
            };
            let (mut again, any_kept) = self.settle(chunk, verdicts).await;
            kept = any_kept;
            again.append(pending);
            *pending = again;
        }
        Some(kept)
    }

    /// Apply `verdicts` to `chunk`: remove and tell the answered ones; the
    /// kept ones are returned, with true when there is any.
    async fn settle(&self, chunk: Vec<Pending>, verdicts: Vec<Delivery>) -> (Vec<Pending>, bool) {
        let mut kept = false;
        let mut answered = Vec::new();
        let mut again = Vec::new();
        for (p, v) in chunk.into_iter().zip(verdicts) {
            if v == Delivery::Kept {
                kept = true;
                again.push(p);
            } else {
                answered.push((p, v));
            }
        }
        self.remove(&answered).await;
        for (p, v) in answered {
            let _ = p.done.send(v);
        }
        (again, kept)
    }

    /// Completions a poll carried: apply the poll's `results` as a batch
    /// answer; without results (the poll failed) or with ones that do not
    /// match, they are returned, to be sent here.
    async fn settle_ridden(
        &self,
        chunk: Vec<Pending>,
        results: Option<Vec<BatchCompleteResult>>,
    ) -> Vec<Pending> {
        let Some(results) = results else {
            return chunk;
        };
        match batch_verdicts(&chunk, BatchCompleteResponse { results }) {
            Some(verdicts) => {
                let verdicts = self.resend_too_large(&chunk, verdicts).await;
                self.settle(chunk, verdicts).await.0
            }
            None => {
                warn!(
                    items = chunk.len(),
                    "The poll's completion results do not match what it carried; sending them again"
                );
                chunk
            }
        }
    }

    /// One attempt for `chunk`: a verdict per completion, in order.
    async fn send(&mut self, chunk: &[Pending]) -> Vec<Delivery> {
        if self.per_job {
            return self.send_each(chunk).await;
        }
        let req = BatchCompleteRequest {
            completions: chunk
                .iter()
                .map(|p| BatchCompleteItem::new(p.entry.job_id, p.entry.request.clone()))
                .collect(),
        };
        match self.transport.complete_batch(&req, MAX_CALL_TIMEOUT).await {
            Ok(resp) => match batch_verdicts(chunk, resp) {
                Some(verdicts) => self.resend_too_large(chunk, verdicts).await,
                None => {
                    warn!(
                        items = chunk.len(),
                        "Batch completion answer does not match the request; delivering one by one"
                    );
                    self.send_each(chunk).await
                }
            },
            Err(transport::Error::Rejected {
                status: 404 | 405, ..
            }) => {
                info!(
                    "Controller has no batch completion route; delivering completions one by one"
                );
                self.per_job = true;
                self.send_each(chunk).await
            }
            Err(
                e @ (transport::Error::Rejected { .. }
                | transport::Error::Forbidden(_)
                | transport::Error::Protocol(_)),
            ) => {
                // Each completion gets the single call's answer (a redelivery
                // of one the batch recorded is answered `duplicate`).
                warn!(items = chunk.len(), error = %e, "Batch completion refused; delivering one by one");
                self.send_each(chunk).await
            }
            Err(e) => {
                if e.is_auth() {
                    error!(items = chunk.len(), error = %e, "Controller refused the agent's credentials; completions kept");
                } else {
                    debug!(items = chunk.len(), error = %e, "Completions not delivered yet");
                }
                vec![Delivery::Kept; chunk.len()]
            }
        }
    }

    /// One `POST /v1/jobs/{id}/complete` per completion, concurrently.
    /// Items the batch refused for size (`None`) go again one by one, cut
    /// down until they fit ([`fit`]).
    async fn resend_too_large(
        &self,
        chunk: &[Pending],
        verdicts: Vec<Option<Delivery>>,
    ) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(verdicts.len());
        for (p, v) in chunk.iter().zip(verdicts) {
            out.push(match v {
                Some(v) => v,
                None => self.send_each(std::slice::from_ref(p)).await[0],
            });
        }
        out
    }

    async fn send_each(&self, chunk: &[Pending]) -> Vec<Delivery> {
        futures_util::future::join_all(chunk.iter().map(|p| {
            async {
                let answer =
                    fit::complete_fitting(&self.transport, p.entry.job_id, &p.entry.request).await;
                verdict_of(answer)
            }
            .instrument(p.span.clone())
        }))
        .await
    }
}

/// Map a batch answer to verdicts (logged as the single calls are); None when
/// it does not answer the request item by item.
fn batch_verdicts(chunk: &[Pending], resp: BatchCompleteResponse) -> Option<Vec<Option<Delivery>>> {
    if resp.results.len() != chunk.len()
        || chunk
            .iter()
            .zip(&resp.results)
            .any(|(p, r)| p.entry.job_id != r.job_id())
    {
        return None;
    }
    Some(
        chunk
            .iter()
            .zip(resp.results)
            .map(|(p, r)| p.span.in_scope(|| item_verdict(r)))
            .collect(),
    )
}

/// What one item's result means for its completion (logged, in the item's job
/// span): the same verdict as for a single completion call with that answer;
/// `None` when it was refused for its size (to be cut down and sent again).
fn item_verdict(result: BatchCompleteResult) -> Option<Delivery> {
    if let BatchCompleteResult::Refused {
        code: baton_proto::ErrorCode::PayloadTooLarge,
        ..
    } = result
    {
        return None;
    }
    Some(match result {
        BatchCompleteResult::Recorded {
            state, duplicate, ..
        } => verdict_of(Ok(baton_proto::CompleteResponse { state, duplicate })),
        BatchCompleteResult::Refused { code, message, .. } => {
            verdict_of(Err(transport::Error::refused(code, message)))
        }
    })
}

#[cfg(test)]
mod tests;
