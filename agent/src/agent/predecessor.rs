//! The leases the previous run of this agent held when it died.
//!
//! At start, after the commands the dead run left behind were killed, the
//! lease records it left under the state dir ([`LeaseRecords`]) are split:
//! those whose completion waits in the outbox are delivered with it (their
//! records go), the others are reported to the controller in
//! `POST /v1/agents/{id}/leases/abandon`. The controller ends each one still
//! current (same agent and token, deadline not passed) as `agent_restarted`
//! and requeues its job at once; any other (expired, re-granted, completed)
//! is answered `not_current` and left alone. The agent never resumes the old
//! work. A record goes once the controller answered it; while the
//! controller is out of reach the report is retried in the background
//! (jittered backoff, capped near 5 s) while the agent polls.
//!
//! Polling meanwhile cannot break fencing: until the report lands, the old
//! lease is still live on the controller, so its job is `running` and is
//! granted to nobody, this agent included. Once it lands the job may come
//! back to this agent, under a new, larger token; the old record names the
//! old token, which the controller answers `not_current` if it is ever sent
//! again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::{AbandonOutcome, AbandonRequest, LeaseRef};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::lease::record::LeaseRecords;
use crate::outbox::Outbox;
use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// The recorded leases of the previous run that must be reported: those
/// without a completion in the outbox. The records of the others are
/// removed (the outbox delivers their completion).
pub fn to_report(records: &LeaseRecords, outbox: &Outbox) -> Vec<LeaseRef> {
    let previous = match records.previous() {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "Cannot read the lease records of the previous run; its leases run out at their TTL");
            return Vec::new();
        }
    };
    if previous.is_empty() {
        return previous;
    }
    let mut completed = HashSet::new();
    for entry in outbox.pending().unwrap_or_default() {
        completed.insert(entry.key());
    }
    let (done, open): (Vec<LeaseRef>, Vec<LeaseRef>) = previous
        .into_iter()
        .partition(|l| completed.contains(&(l.job_id, l.token)));
    for l in &done {
        records.remove(l.job_id, l.token);
    }
    open
}

/// Report `leases` (of the previous run) until the controller answered
/// them, removing each record once answered; gives up on `stop`.
pub async fn report(
    transport: Arc<Transport>,
    records: LeaseRecords,
    leases: Vec<LeaseRef>,
    stop: CancellationToken,
) {
    if leases.is_empty() {
        return;
    }
    warn!(
        leases = leases.len(),
        "The previous run of this agent died holding leases; reporting them so their jobs are requeued now"
    );
    for chunk in leases.chunks(AbandonRequest::MAX) {
        let req = AbandonRequest {
            leases: chunk.to_vec(),
        };
        let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
        loop {
            let delay = match transport.abandon(&req, MAX_CALL_TIMEOUT).await {
                Ok(resp) => {
                    answered(&records, &resp.results);
                    break;
                }
                Err(e) if keeps_trying(&e) => {
                    let next = delays.next().unwrap_or(RETRY_CAP);
                    let wait = match &e {
                        transport::Error::RateLimited {
                            retry_after: Some(d),
                            ..
                        } => *d,
                        _ => next,
                    };
                    info!(error = %e, retry_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "Cannot report the previous run's leases yet; retrying");
                    wait
                }
                Err(e) => {
                    warn!(error = %e, leases = chunk.len(), "The controller refused the report of the previous run's leases; they run out at their TTL");
                    for l in chunk {
                        records.remove(l.job_id, l.token);
                    }
                    break;
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Whether a failed report is worth sending again: the controller was out
/// of reach or busy, or refused the credentials (an operator may fix them).
fn keeps_trying(e: &transport::Error) -> bool {
    matches!(
        e,
        transport::Error::Unavailable(_)
            | transport::Error::RateLimited { .. }
            | transport::Error::Unauthorized(_)
    )
}

/// Log each answer and remove its record.
fn answered(records: &LeaseRecords, results: &[baton_proto::AbandonResult]) {
    for r in results {
        match r.outcome {
            AbandonOutcome::Ended => info!(
                job_id = r.job_id,
                token = r.token,
                state = r.state.map(|s| s.as_str()).unwrap_or("-"),
                "Lease of the previous run ended at the controller (agent_restarted)"
            ),
            AbandonOutcome::NotCurrent => info!(
                job_id = r.job_id,
                token = r.token,
                "Lease of the previous run had already ended; nothing changed"
            ),
        }
        records.remove(r.job_id, r.token);
    }
}

#[cfg(test)]
mod tests;
