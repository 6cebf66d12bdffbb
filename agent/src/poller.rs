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

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

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
                delays = crate::backoff::delays(BACKOFF_MIN, BACKOFF_CAP);
                debug!(grants = resp.grants.len(), "Poll answered");
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
                if e.is_auth() {
                    error!(error = %e, "Controller refused the agent's credentials; check the agent token");
                } else if let crate::transport::Error::Rejected { .. } = e {
                    error!(error = %e, "Controller refused the poll; check the agent config");
                } else if !failing {
                    warn!(error = %e, "Poll failed; retrying with backoff");
                } else {
                    debug!(error = %e, "Poll failed again");
                }
                failing = true;
                Some(delays.next().unwrap_or(BACKOFF_CAP))
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
