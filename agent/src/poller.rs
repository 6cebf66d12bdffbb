//! The poll loop: ask for work while a slot is free, start a task per grant.

use std::sync::Arc;
use std::time::Duration;

use baton_proto::{Capabilities, PollRequest};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::runner::{self, Shared};
use crate::transport::Error;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Longest `Retry-After` honoured in one wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// While refused, the ERROR line is repeated every this many polls (every ~5 min).
const REFUSED_REPEAT: u32 = 30;

/// What the poll loop asks for.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// Worker groups.
    pub groups: Vec<String>,
    /// Long-poll hold.
    pub wait: Duration,
    /// What the agent runs.
    pub capabilities: Capabilities,
}

/// Poll until `shutdown` fires (an in-flight poll is dropped then), spawning
/// one task per grant into `jobs`. `slots` holds one permit per free slot.
pub async fn run(
    shared: &Arc<Shared>,
    settings: &PollSettings,
    slots: &Arc<Semaphore>,
    jobs: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let mut delays = crate::backoff::delays(BACKOFF_MIN, BACKOFF_CAP);
    let mut failing = false;
    let mut refused: u32 = 0;
    let mut drained = false;
    loop {
        reap(jobs);
        // Only poll while a slot is free.
        let first = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let free = 1 + slots.available_permits();
        let req = PollRequest {
            groups: settings.groups.clone(),
            free_slots: u32::try_from(free).unwrap_or(u32::MAX),
            capabilities: settings.capabilities.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            os: std::env::consts::OS.to_owned(),
            metrics: None,
            wait_ms: Some(u64::try_from(settings.wait.as_millis()).unwrap_or(u64::MAX)),
        };
        let sent_at = Instant::now();
        let answer = tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            r = shared.transport.poll(&req, settings.wait) => r,
        };
        let pause = match answer {
            Ok(resp) => {
                if failing {
                    info!("Controller reachable again");
                    failing = false;
                }
                refused = 0;
                delays = crate::backoff::delays(BACKOFF_MIN, BACKOFF_CAP);
                debug!(grants = resp.grants.len(), "Poll answered");
                if resp.drain != drained {
                    drained = resp.drain;
                    if drained {
                        info!(
                            running = jobs.len(),
                            "Drained by an operator: taking no new work; running jobs go on"
                        );
                    } else {
                        info!("Drain lifted: taking new work again");
                    }
                }
                let mut first = Some(first);
                for grant in resp.grants {
                    let permit = first
                        .take()
                        .or_else(|| slots.clone().try_acquire_owned().ok());
                    match permit {
                        Some(permit) => {
                            let sh = shared.clone();
                            jobs.spawn(runner::run(sh, grant, sent_at, permit));
                        }
                        None => {
                            warn!(
                                job_id = grant.job_id,
                                token = grant.token,
                                "Granted more jobs than free slots; releasing"
                            );
                            let transport = shared.transport.clone();
                            jobs.spawn(async move {
                                runner::release(
                                    &transport,
                                    grant.job_id,
                                    grant.token,
                                    "no free slot",
                                )
                                .await;
                            });
                        }
                    }
                }
                resp.retry_after_ms.map(Duration::from_millis)
            }
            Err(e) => {
                drop(first);
                let was_failing = std::mem::replace(&mut failing, true);
                Some(match e {
                    // Refusals: an operator must act. Stay alive, but do not spin.
                    Error::Unauthorized(_) | Error::Forbidden(_) | Error::Rejected { .. } => {
                        if refused.is_multiple_of(REFUSED_REPEAT) {
                            if e.is_auth() {
                                error!(error = %e, "Agent credentials refused; revoked or unknown — re-enroll");
                            } else {
                                error!(error = %e, "Controller refused the poll; check the agent config");
                            }
                        }
                        refused = refused.wrapping_add(1);
                        BACKOFF_CAP
                    }
                    Error::RateLimited { retry_after, .. } => {
                        let pause = retry_after
                            .unwrap_or_else(|| delays.next().unwrap_or(BACKOFF_CAP))
                            .min(MAX_RETRY_AFTER);
                        warn!(
                            retry_after_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                            "Poll rate limited by the controller; waiting"
                        );
                        pause
                    }
                    e => {
                        if !was_failing {
                            warn!(error = %e, "Poll failed; retrying with backoff");
                        } else {
                            debug!(error = %e, "Poll failed again");
                        }
                        delays.next().unwrap_or(BACKOFF_CAP)
                    }
                })
            }
        };
        if let Some(pause) = pause {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Collect finished job tasks; a panic in one is a bug worth an ERROR line.
pub fn reap(jobs: &mut JoinSet<()>) {
    while let Some(done) = jobs.try_join_next() {
        if let Err(e) = done
            && e.is_panic()
        {
            error!(error = %e, "A job task panicked");
        }
    }
}
