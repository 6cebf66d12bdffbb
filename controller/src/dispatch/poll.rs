//! The long poll: hold an agent's poll until a job is granted, its drain
//! state changes, or the hold runs out (`POST /v1/agents/{id}/poll` is a
//! thin handler around [`long_poll`]).
//!
//! A poll registers on its groups' notifiers before looking, then reads the
//! groups' generations: a wake-up after that read either shows in them or
//! fires a registered waiter, so nothing slips between. When nothing
//! happened in the agent's groups since its last look, its answer still
//! holds (`presence::Known`): no drain read, maybe no grant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_proto::{LeaseRef, PollRequest, PollResponse};
use futures_util::future::select_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::jobs::{Group, Jobs};
use crate::presence::{Known, Presence};
use crate::store::agents::AgentSeen;
use crate::store::lease::OwnedGrant;
use crate::store::{GrantRequest, now_ms};

/// Idle polls' answers are aligned to ticks of this length (process-wide),
/// so that one timer wake-up answers every poll ending in the same tick and
/// the agents' next polls arrive together: with 10,000 idle agents that
/// halved the controller's CPU, which went mostly to waking threads once
/// per poll. A work-giving wake-up still answers at once.
pub const HOLD_TICK: Duration = Duration::from_millis(500);

/// Holds shorter than this are not aligned (tests, impatient agents).
const COALESCE_FROM: Duration = Duration::from_secs(5);

/// What a long poll needs of the controller (borrowed from its state).
#[derive(Debug, Clone, Copy)]
pub struct Dispatcher<'a> {
    /// Grants (and the wake-ups of what a grant's expiry requeued).
    pub jobs: &'a Jobs,
    /// Agent presence: what the agent's last look found.
    pub presence: &'a Presence,
    /// Kicked when a lease is granted (the reaper's next deadline).
    pub reaper_kick: &'a Notify,
    /// Cleared on shutdown: held polls answer empty.
    pub ready: &'a AtomicBool,
    /// The process's shutdown: held polls answer at once.
    pub shutdown: &'a CancellationToken,
}

/// One poll of agent `agent_id`.
#[derive(Debug, Clone, Copy)]
pub struct Poll<'a> {
    /// The (authenticated) agent.
    pub agent_id: &'a str,
    /// What it asked (groups and free slots already checked by the caller).
    pub req: &'a PollRequest,
    /// The longest hold (`poll_hold`); the agent's `wait_ms` may ask less.
    pub max_hold: Duration,
    /// When the request arrived (monotonic).
    pub started: Instant,
    /// When the request arrived (the controller's clock, Unix ms).
    pub received: i64,
}

/// What one look at the store concluded.
enum Look {
    /// Answer the poll now.
    Answer(PollResponse),
    /// Wait for a wake-up, the shutdown, or `until`; then look again.
    /// `park`: the poll can take work, so a submit may hand it a job
    /// meanwhile (`jobs::handoff`).
    Wait { until: Instant, park: bool },
}

/// Hold `poll` until a job is granted, a drain arrives, or the hold runs
/// out (the answer is then empty). A poll that began drained is held as a
/// presence heartbeat and answers `drain: true`.
pub async fn long_poll(d: Dispatcher<'_>, poll: Poll<'_>) -> Result<PollResponse, Error> {
    if !d.ready.load(Ordering::Acquire) {
        return Err(Error::NotReady);
    }
    let req = poll.req;
    let groups: Vec<_> = req.groups.iter().map(|g| d.jobs.group(g)).collect();
    // Presence lives in memory (`presence`): the row is written only when
    // something durable changed.
    let epoch = d
        .presence
        .polled(
            d.jobs.store(),
            &AgentSeen {
                id: poll.agent_id,
                groups: &req.groups,
                capabilities: &req.capabilities,
                version: &req.version,
                os: &req.os,
                free_slots: req.free_slots,
                metrics: req.metrics.as_ref(),
            },
            &generations(&groups),
            poll.received,
        )
        .await?
        .epoch;
    let hold = req
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(poll.max_hold)
        .min(poll.max_hold);
    let mut held = Held {
        d,
        poll,
        epoch,
        deadline: coalesced(poll.started, hold),
        connections: req
            .capabilities
            .connections
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        drained_at_start: None,
    };
    // A poll naming leases also waits for their cancel notices; one with
    // no free slot waits for nothing else (no grant, no group wake-ups).
    let agent_wait = (!req.leases.is_empty()).then(|| d.jobs.agent_wait(poll.agent_id));
    let groups_wake = if req.free_slots == 0 {
        &[][..]
    } else {
        &groups[..]
    };
    loop {
        // Register for wake-ups before looking, so nothing slips between;
        // then read the generations: a wake-up after this read either shows
        // in them or fires a registered waiter.
        let mut waits: Vec<_> = groups_wake
            .iter()
            .map(|g| Box::pin(g.notify.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let mut cancel = agent_wait.as_ref().map(|w| Box::pin(w.notify.notified()));
        if let Some(c) = &mut cancel {
            c.as_mut().enable();
        }
        let (until, park) = match held.look(generations(&groups)).await? {
            Look::Answer(a) => return Ok(a),
            Look::Wait { until, park } => (until, park),
        };
        let mut ticket = park.then(|| d.jobs.park(held.want()));
        tokio::select! {
            _ = any(waits) => {}
            () = maybe(cancel) => {}
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = d.shutdown.cancelled() => {}
            h = handed(&mut ticket) => {
                if let Some(answer) = held.handed(h) {
                    return Ok(answer);
                }
                continue;
            }
        }
        // Woken otherwise: a submit that took the ticket meanwhile is
        // answered first (granting here too could exceed the free slots).
        if let Some(t) = &mut ticket
            && !t.withdraw()
            && let Some(answer) = held.handed(t.handed().await)
        {
            return Ok(answer);
        }
    }
}

/// What a submit handed the parked poll; never, when it is not parked.
async fn handed(ticket: &mut Option<crate::jobs::Ticket<'_>>) -> crate::jobs::handoff::Handed {
    match ticket {
        Some(t) => t.handed().await,
        None => std::future::pending().await,
    }
}

/// The first of `waits` to resolve; never, when there are none.
async fn any<F: Future + Unpin>(waits: Vec<F>) {
    if waits.is_empty() {
        std::future::pending::<()>().await;
    }
    select_all(waits).await;
}

/// `f` when there is one; never otherwise.
async fn maybe<F: Future<Output = ()>>(f: Option<F>) {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn generations(groups: &[Arc<Group>]) -> Vec<u64> {
    groups.iter().map(|g| g.generation()).collect()
}

/// What a grant attempt found.
enum Tried {
    /// Jobs were granted: the answer.
    Granted(PollResponse),
    /// Nothing to run; a matching job's backoff ends at `next_ready_at`.
    Nothing { next_ready_at: Option<i64> },
}

/// A poll being held.
struct Held<'a> {
    d: Dispatcher<'a>,
    poll: Poll<'a>,
    /// The epoch of the agent's durable part this poll belongs to.
    epoch: u64,
    /// When the hold ends if nothing comes.
    deadline: Instant,
    /// Names of the agent's connections.
    connections: Vec<String>,
    /// Whether the agent was drained at the first look.
    drained_at_start: Option<bool>,
}

impl Held<'_> {
    /// Look once, with the groups' generations `gens` read after
    /// registering for their wake-ups.
    async fn look(&mut self, gens: Vec<u64>) -> Result<Look, Error> {
        let id = self.poll.agent_id;
        if let Some(answer) = self.cancel_notices().await? {
            return Ok(Look::Answer(answer));
        }
        // Nothing happened in the agent's groups since its last look: its
        // answer still holds (no drain read, maybe no grant).
        let known = self.d.presence.known(id, self.epoch, &gens);
        let drained = match &known {
            Some(k) => k.drained,
            None => self.d.jobs.store().agent_drained(id).await?,
        };
        let drained_at_start = *self.drained_at_start.get_or_insert(drained);
        if drained {
            return Ok(self.drained(known.is_none(), gens, drained_at_start));
        }
        // `held` is read before `now`: the hold handed to the agent is never
        // longer than the controller's own (monotonic, so no wall-clock step
        // can lengthen it), and the agent's first deadline never later
        // than the lease's (lease lifecycle point 4).
        let held = self.poll.started.elapsed();
        let now = now_ms();
        let free = self.poll.req.free_slots;
        let mut next_ready_at = known.as_ref().and_then(|k| k.idle.flatten());
        let skip = free == 0 || known.is_some_and(|k| k.nothing_to_grant(now));
        if !skip {
            match self.grant(held, now, gens).await? {
                Tried::Granted(answer) => return Ok(Look::Answer(answer)),
                Tried::Nothing { next_ready_at: at } => next_ready_at = at,
            }
        }
        // No free slot: held for cancel notices only, if it names leases.
        if (free == 0 && self.poll.req.leases.is_empty()) || self.over() {
            return Ok(Look::Answer(empty(false)));
        }
        let mut until = self.deadline;
        if let Some(ready_at) = next_ready_at.filter(|_| free > 0) {
            let wait = Duration::from_millis((ready_at - now_ms()).max(0) as u64);
            until = until.min(Instant::now() + wait);
        }
        Ok(Look::Wait {
            until,
            park: free > 0,
        })
    }

    /// The answer with the cancel notices of the leases the poll names,
    /// when an operator cancelled some of them.
    async fn cancel_notices(&self) -> Result<Option<PollResponse>, Error> {
        let (id, leases) = (self.poll.agent_id, &self.poll.req.leases);
        // Only an agent a cancel marked has anything to be told (no read
        // on the polls of busy agents otherwise).
        let Some(mark) = self.d.jobs.cancel_mark(id).filter(|_| !leases.is_empty()) else {
            return Ok(None);
        };
        let cancelled = self.d.jobs.store().cancelled_leases(id).await?;
        if cancelled.is_empty() {
            // Nothing of the agent is being cancelled any more.
            self.d.jobs.cancels_told(id, mark);
            return Ok(None);
        }
        let cancels: Vec<LeaseRef> = leases
            .iter()
            .filter(|l| cancelled.contains(l))
            .copied()
            .collect();
        if cancels.is_empty() {
            return Ok(None);
        }
        for c in &cancels {
            tracing::info!(job_id = c.job_id, token = c.token, agent_id = %id, "Cancel notice sent to the holder");
        }
        Ok(Some(PollResponse {
            cancels,
            ..empty(false)
        }))
    }

    /// Drained: no new work. A poll that began drained is held (a presence
    /// heartbeat) until its deadline or a wake-up — a resume wakes the
    /// agent's groups; one that saw the drain arrive answers at once, so
    /// the agent learns of it.
    fn drained(&self, unknown: bool, gens: Vec<u64>, drained_at_start: bool) -> Look {
        if unknown {
            let known = Known {
                generations: gens,
                drained: true,
                idle: None,
            };
            self.d
                .presence
                .remember(self.poll.agent_id, self.epoch, known);
        }
        if !drained_at_start || self.over() {
            return Look::Answer(empty(true));
        }
        Look::Wait {
            until: self.deadline,
            park: false,
        }
    }

    /// Try to grant: the answer when something was granted, else the
    /// earliest end of a matching job's backoff (and that is remembered).
    async fn grant(&self, held: Duration, now: i64, gens: Vec<u64>) -> Result<Tried, Error> {
        let (id, req) = (self.poll.agent_id, self.poll.req);
        let granted = self
            .d
            .jobs
            .grant(
                &GrantRequest {
                    agent_id: id,
                    groups: &req.groups,
                    kinds: &req.capabilities.kinds,
                    connections: &self.connections,
                    max: req.free_slots,
                },
                now,
            )
            .await?;
        if !granted.grants.is_empty() {
            return Ok(Tried::Granted(self.answer(held, granted.grants)));
        }
        // Found nothing: until a wake-up in its groups (or the backoff of a
        // matching job ends), the agent's next looks would too.
        let known = Known {
            generations: gens,
            drained: false,
            idle: Some(granted.next_ready_at),
        };
        self.d.presence.remember(id, self.epoch, known);
        Ok(Tried::Nothing {
            next_ready_at: granted.next_ready_at,
        })
    }

    /// The answer carrying `grants`, made after `held` of holding.
    fn answer(&self, held: Duration, grants: Vec<baton_proto::Grant>) -> PollResponse {
        let id = self.poll.agent_id;
        self.d.reaper_kick.notify_one();
        crate::telemetry::metrics()
            .poll_held
            .observe(held.as_secs_f64());
        let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX);
        let grants = grants
            .into_iter()
            .map(|mut g| {
                g.held_ms = held_ms;
                tracing::info!(job_id = g.job_id, token = g.token, attempt = g.attempt, agent_id = %id, "Lease granted");
                g
            })
            .collect();
        PollResponse {
            grants,
            ..empty(false)
        }
    }

    /// What a parked poll can take: its grant request.
    fn want(&self) -> OwnedGrant {
        let req = self.poll.req;
        OwnedGrant {
            agent_id: self.poll.agent_id.to_owned(),
            groups: req.groups.clone(),
            kinds: req.capabilities.kinds.clone(),
            connections: self.connections.clone(),
            max: req.free_slots,
        }
    }

    /// The answer to a hand-off, when it granted something; else the poll
    /// looks again.
    fn handed(&self, h: crate::jobs::handoff::Handed) -> Option<PollResponse> {
        let granted = h.filter(|g| !g.grants.is_empty())?;
        Some(self.answer(self.poll.started.elapsed(), granted.grants))
    }

    /// Whether the hold is over: its deadline passed, or the controller is
    /// shutting down.
    fn over(&self) -> bool {
        Instant::now() >= self.deadline
            || !self.d.ready.load(Ordering::Acquire)
            || self.d.shutdown.is_cancelled()
    }
}

fn empty(drain: bool) -> PollResponse {
    PollResponse {
        grants: Vec::new(),
        retry_after_ms: None,
        drain,
        cancels: Vec::new(),
    }
}

/// When a poll that began at `started` and may be held `hold` ends if
/// nothing comes: `started + hold` rounded down to a [`HOLD_TICK`] boundary
/// (never longer than asked, at most one tick shorter).
pub fn coalesced(started: Instant, hold: Duration) -> Instant {
    static ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
    let deadline = started + hold;
    if hold < COALESCE_FROM {
        return deadline;
    }
    let since = deadline.saturating_duration_since(*ORIGIN);
    let tick = HOLD_TICK.as_nanos();
    let floored = since.as_nanos() / tick * tick;
    let aligned = *ORIGIN + Duration::from_nanos(u64::try_from(floored).unwrap_or(u64::MAX));
    aligned.max(deadline - HOLD_TICK)
}

#[cfg(test)]
mod tests;
