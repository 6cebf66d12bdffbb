//! The lease keeper: renews one job's lease and fences the work when it is lost.
//!
//! The deadline is measured on the agent's monotonic clock only. It starts at
//! `poll sent + held_ms + lease_ttl_ms - margin` (the lease began no earlier
//! than `poll sent + held_ms`) and becomes `heartbeat sent + lease_ttl_ms -
//! margin` after each successful renewal. The margin ([`fence_margin`]: a
//! tenth of the TTL, at most a second) makes the agent stop its work clearly
//! before the controller's own deadline, not at the same millisecond: the
//! partition tests measured the two within a millisecond of each other, in
//! either order, without it. Heartbeats go out every TTL/3 with the progress and the
//! log tail. If the deadline passes without a renewal, or the controller
//! answers `409 lease_lost`, `403` (the agent does not hold the job) or `401`
//! (the agent was revoked, which ends its leases), the keeper *fences*: it
//! cancels the work with [`CancelReason::LeaseLost`] and the job is never
//! reported. Once the work
//! has finished, the keeper goes on renewing (best effort, no fencing) until
//! the completion is delivered.
//!
//! A heartbeat answer may carry a failover-drill fault: the keeper
//! acknowledges it and simulates it (see [`crate::fault`]): `crash` fences
//! the job at once and stops renewing; `freeze`/`partition` cut the agent's
//! controller traffic, after which the deadline fences the job as above.

pub mod record;

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use baton_proto::drill::{DrillMethod, Fault, FaultAck};
use baton_proto::{FencingToken, Grant, HeartbeatRequest, HeartbeatResponse, JobId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::executor::{Cancel, CancelReason, ProgressHandle};
use crate::fault::CrashHold;
use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

/// Shortest wait between two heartbeat attempts.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// Where a leased job stands; moves once, from `Working`, to one of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The work runs; the lease deadline is enforced.
    Working,
    /// The work ended before the lease was lost; its completion will be reported.
    Finishing,
    /// The lease was lost while working; the work is stopped and never reported.
    Fenced,
}

/// The phase of one job and its lease deadline, shared by the keeper and the job task.
#[derive(Debug)]
pub struct LeaseState(Mutex<(Phase, Instant)>);

impl LeaseState {
    /// A working job whose lease runs out at `deadline`.
    pub fn new(deadline: Instant) -> Self {
        LeaseState(Mutex::new((Phase::Working, deadline)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Phase, Instant)> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lock().0
    }

    /// The lease was renewed until `deadline`.
    pub fn renew(&self, deadline: Instant) {
        self.lock().1 = deadline;
    }

    /// The work ended: report it. False when the lease is lost, including when
    /// its deadline has passed and the keeper has not noticed yet (an agent
    /// that was frozen): the job is then fenced here.
    pub fn finish(&self) -> bool {
        let mut inner = self.lock();
        match inner.0 {
            Phase::Working if Instant::now() < inner.1 => {
                inner.0 = Phase::Finishing;
                true
            }
            Phase::Working => {
                inner.0 = Phase::Fenced;
                false
            }
            Phase::Finishing | Phase::Fenced => false,
        }
    }

    /// The lease is lost: stop the work. False when the work had already ended.
    pub fn fence(&self) -> bool {
        let mut inner = self.lock();
        if inner.0 == Phase::Working {
            inner.0 = Phase::Fenced;
            true
        } else {
            false
        }
    }
}

/// How long before the controller's lease deadline the agent fences: a
/// tenth of the TTL, at most one second (200 ms at the minimum TTL of 2 s).
pub fn fence_margin(ttl: Duration) -> Duration {
    (ttl / 10).min(Duration::from_secs(1))
}

/// One lease as the agent measures it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Job id.
    pub job_id: JobId,
    /// Fencing token.
    pub token: FencingToken,
    /// Current TTL.
    pub ttl: Duration,
    /// Instant the lease was last known to start (grant or renewal sent).
    pub renewed_at: Instant,
}

impl Lease {
    /// The lease of `grant`, whose poll was sent at `poll_sent_at`.
    pub fn from_grant(grant: &Grant, poll_sent_at: Instant) -> Self {
        Lease {
            job_id: grant.job_id,
            token: grant.token,
            ttl: Duration::from_millis(grant.lease_ttl_ms),
            renewed_at: poll_sent_at + Duration::from_millis(grant.held_ms),
        }
    }

    /// When the work must stop unless renewed: before the controller's
    /// deadline by [`fence_margin`].
    pub fn deadline(&self) -> Instant {
        self.renewed_at + self.ttl - fence_margin(self.ttl)
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }

    fn interval(&self) -> Duration {
        (self.ttl / 3).max(MIN_INTERVAL)
    }

    fn retry_interval(&self) -> Duration {
        (self.ttl / 10).clamp(MIN_INTERVAL, Duration::from_secs(2))
    }

    fn call_timeout(&self) -> Duration {
        (self.ttl / 3).clamp(Duration::from_millis(100), MAX_CALL_TIMEOUT)
    }
}

/// Renews one lease until stopped, fencing the work if the lease is lost.
#[derive(Debug)]
pub struct Keeper {
    transport: Arc<Transport>,
    lease: Lease,
    progress: ProgressHandle,
    cancel: Cancel,
    state: Arc<LeaseState>,
    crash: CrashHold,
}

/// Why the keeper fences when the deadline passes.
const NO_RENEWAL: &str = "no renewal before the lease deadline";

enum Wake {
    Stop,
    Deadline,
    Ready,
}

impl Keeper {
    /// A keeper for `lease`; it cancels `cancel` and moves `state` when fencing.
    pub fn new(
        transport: Arc<Transport>,
        lease: Lease,
        progress: ProgressHandle,
        cancel: Cancel,
        state: Arc<LeaseState>,
    ) -> Self {
        Keeper {
            transport,
            lease,
            progress,
            cancel,
            state,
            crash: CrashHold::default(),
        }
    }

    /// Share `crash` with the job task: a drill's crash fault marks how long
    /// the job's slot stays taken.
    pub fn with_crash_hold(mut self, crash: CrashHold) -> Self {
        self.crash = crash;
        self
    }

    /// Simulate a drill's fault. True when the keeper must stop (crash).
    async fn inject(&self, fault: Fault) -> bool {
        let Lease { job_id, token, .. } = self.lease;
        let drill_id = fault.drill_id;
        let method = fault.method;
        if self.state.phase() != Phase::Working {
            info!(
                drill_id,
                %method,
                "Drill fault arrived after the work ended; ignored"
            );
            return false;
        }
        if method == DrillMethod::ControllerCrash {
            // The controller crashes itself; nothing for the agent to simulate.
            info!(drill_id, %method, "Drill fault is the controller's own; ignored");
            return false;
        }
        // The acknowledgement is the last call before the fault begins.
        let ack = FaultAck { token, drill_id };
        if let Err(e) = self
            .transport
            .fault_ack(job_id, &ack, self.lease.call_timeout())
            .await
        {
            warn!(drill_id, error = %e, "Cannot acknowledge the drill fault; injecting it anyway");
        }
        let duration = Duration::from_millis(fault.duration_ms);
        match method {
            DrillMethod::Crash => {
                self.crash.crash(duration);
                // A crashed process polls no more: no work for the duration.
                self.transport.gate().engage(method, duration);
                if self.state.fence() {
                    warn!(
                        drill_id,
                        hold_ms = fault.duration_ms,
                        "Drill fault injected: crash, abandoning the job as if killed"
                    );
                    self.cancel.cancel(CancelReason::LeaseLost);
                }
                true
            }
            DrillMethod::Freeze | DrillMethod::Partition | DrillMethod::ControllerCrash => {
                warn!(
                    drill_id,
                    %method,
                    duration_ms = fault.duration_ms,
                    "Drill fault injected: controller traffic cut"
                );
                self.transport.gate().engage(method, duration);
                false
            }
        }
    }

    /// Fence: stop the work, never report it. False when the work had ended already.
    fn fence(&self, reason: &str) -> bool {
        if !self.state.fence() {
            return false;
        }
        warn!(reason, "Lease lost, stopping job");
        self.cancel.cancel(CancelReason::LeaseLost);
        true
    }

    /// Wait for `until`, the lease deadline (while working) or `stop`.
    async fn wait<F: Future>(
        &self,
        stop: &CancellationToken,
        until: F,
    ) -> (Wake, Option<F::Output>) {
        let working = self.state.phase() == Phase::Working;
        tokio::select! {
            biased;
            () = stop.cancelled() => (Wake::Stop, None),
            () = tokio::time::sleep_until(self.lease.deadline()), if working => (Wake::Deadline, None),
            out = until => (Wake::Ready, Some(out)),
        }
    }

    /// The next heartbeat: progress and the log tail (left out when `no_tail`).
    fn heartbeat_request(&self, no_tail: bool) -> HeartbeatRequest {
        let (progress, mut log_tail) = self.progress.snapshot();
        if no_tail {
            log_tail.clear();
        }
        HeartbeatRequest {
            started_after_ms: self.progress.started_after_ms(),
            token: self.lease.token,
            progress,
            log_tail,
            failover_ms: None,
        }
    }

    /// Renew until `stop` fires, the lease is lost, or the controller disowns it.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut beat = Beat {
            next: self.lease.renewed_at + self.lease.interval(),
            failing: false,
            no_tail: false,
        };
        loop {
            let tick = tokio::time::sleep_until(beat.next);
            match self.wait(&stop, tick).await.0 {
                Wake::Stop => return,
                Wake::Deadline => {
                    if self.fence(NO_RENEWAL) {
                        return;
                    }
                    continue;
                }
                Wake::Ready => {}
            }
            let sent = Instant::now();
            let req = self.heartbeat_request(beat.no_tail);
            let call = self
                .transport
                .heartbeat(self.lease.job_id, &req, self.lease.call_timeout());
            let result = match self.wait(&stop, call).await {
                (Wake::Stop, _) => return,
                (Wake::Deadline, _) => {
                    if self.fence(NO_RENEWAL) {
                        return;
                    }
                    beat.next = Instant::now();
                    continue;
                }
                (Wake::Ready, result) => result,
            };
            let Some(result) = result else {
                return;
            };
            if self.answered(result, sent, &mut beat).await.is_break() {
                return;
            }
        }
    }

    /// Act on the answer to the heartbeat sent at `sent`: `Break` when the
    /// keeper must stop (the lease is lost or disowned, or a crash fault).
    async fn answered(
        &mut self,
        result: Result<HeartbeatResponse, transport::Error>,
        sent: Instant,
        beat: &mut Beat,
    ) -> ControlFlow<()> {
        match result {
            Ok(resp) => return self.renewed(resp, sent, beat).await,
            Err(transport::Error::LeaseLost(msg)) => {
                if !self.fence(&format!("controller answered lease_lost: {msg}")) {
                    debug!("Lease lost after the work ended; the completion decides");
                }
                return ControlFlow::Break(());
            }
            Err(e @ (transport::Error::Unauthorized(_) | transport::Error::Forbidden(_))) => {
                // 401: the agent was revoked, and the controller ended its leases.
                // 403: the controller says the agent does not hold this job.
                if e.is_auth() {
                    error!(error = %e, "Agent credentials refused on heartbeat; revoked or unknown — re-enroll");
                }
                if !self.fence(&format!("controller refused the heartbeat: {e}")) {
                    debug!("Heartbeat refused after the work ended; the completion decides");
                }
                return ControlFlow::Break(());
            }
            Err(e) if e.is_too_large() && !beat.no_tail => {
                warn!(error = %e, "Heartbeat refused as too large; sending heartbeats without the log tail");
                beat.no_tail = true;
                beat.next = Instant::now();
            }
            Err(e) => {
                if !beat.failing {
                    warn!(error = %e, "Heartbeat failed; retrying until the lease deadline");
                } else {
                    debug!(error = %e, "Heartbeat failed again");
                }
                beat.failing = true;
                beat.next = Instant::now() + self.lease.retry_interval();
            }
        }
        ControlFlow::Continue(())
    }

    /// The heartbeat sent at `sent` renewed the lease: move the deadline,
    /// then act on a cancel request or a drill fault it carries (`Break`
    /// after a crash fault).
    async fn renewed(
        &mut self,
        resp: HeartbeatResponse,
        sent: Instant,
        beat: &mut Beat,
    ) -> ControlFlow<()> {
        self.lease.ttl = Duration::from_millis(resp.lease_ttl_ms);
        self.lease.renewed_at = sent;
        self.state.renew(self.lease.deadline());
        beat.next = sent + self.lease.interval();
        if beat.failing {
            info!("Lease renewed again");
            beat.failing = false;
        }
        debug!(ttl_ms = resp.lease_ttl_ms, "Lease renewed");
        if resp.cancel_requested
            && self.cancel.reason().is_none()
            && self.state.phase() == Phase::Working
        {
            info!("Cancel requested, stopping job");
            self.cancel.cancel(CancelReason::Cancelled);
        }
        if let Some(fault) = resp.fault
            && self.inject(fault).await
        {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// The heartbeat schedule of [`Keeper::run`].
#[derive(Debug)]
struct Beat {
    /// When the next heartbeat goes out.
    next: Instant,
    /// The last heartbeat failed (its WARN is logged once per outage).
    failing: bool,
    /// Set when the controller refused a heartbeat for its size (a smaller
    /// log_tail bound than this agent's): later ones go without the tail.
    no_tail: bool,
}

#[cfg(test)]
mod tests;
