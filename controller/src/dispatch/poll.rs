//! The long poll: hold an agent's poll until a job is granted, its drain
//! state changes, or the hold runs out (`POST /v1/agents/{id}/poll` is a
//! thin handler around [`long_poll`]).
//!
//! A poll waits in its groups' queues and reads their generations in one
//! step before looking: a wake-up after that either shows in them or may
//! pick the waiting poll, so nothing slips between. A woken poll settles
//! the wake after its look: taken, kept (a backoff), or handed on while
//! work it did not take is ready (`jobs::waiters`). When nothing
//! happened in the agent's groups since its last look, its answer still
//! holds (`presence::Known`): no drain read, maybe no grant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_proto::{LeaseRef, PollRequest, PollResponse};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Error;
use crate::jobs::{Group, Handed, Jobs, Need, Poller, Registration};
use crate::presence::{Known, Presence};
use crate::store::agents::AgentSeen;
use crate::store::lease::OwnedGrant;
use crate::store::{GrantRequest, now_ms};

/// Idle polls' answers are aligned to ticks of this length (process-wide),
/// so that one timer wake-up answers every poll ending in the same tick and
/// the agents' next polls arrive together: with 10,000 idle agents that
/// halved the controller's CPU, which went mostly to waking threads once
/// per poll. A work-giving wake-up still answers at once. The tick also
/// bounds the burst: a submit arriving while the runtime answers one tick's
/// polls and takes the next ones waits for them (500 ms ticks, 200 polls
/// each at 10,000 agents, put the trickle's p99 near 10 ms; 100 ms, 4.8 ms).
pub const HOLD_TICK: Duration = Duration::from_millis(100);

/// Holds shorter than this are not aligned (tests, impatient agents).
const COALESCE_FROM: Duration = Duration::from_secs(5);

/// What a long poll needs of the controller (borrowed from its state).
#[derive(Debug, Clone, Copy)]
pub struct Dispatcher<'a> {
    /// Grants (and the wake-ups of what a grant's expiry requeued).
    pub jobs: &'a Jobs,
    /// Agent presence: what the agent's last look found.
    pub presence: &'a Presence,
    /// Kicked when a lease is granted whose deadline may come before the
    /// reaper's next look ([`super::reaper::needs_kick`]).
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
    /// Cancelled: the hold ends at once (a completion the poll carried was
    /// refused, and the agent must hear of it now).
    pub cut: Option<&'a CancellationToken>,
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
        stores: req.capabilities.stores.clone(),
        drained_at_start: None,
        found: Found::default(),
    };
    // A poll naming leases also waits for their cancel notices; one with
    // no free slot waits for nothing else (no grant, no group wake-ups).
    let agent_wait = (!req.leases.is_empty()).then(|| d.jobs.agent_wait(poll.agent_id));
    let mut wake = (req.free_slots > 0).then(|| Wake {
        poller: Poller::new(
            poll.agent_id,
            &req.capabilities.kinds,
            &held.connections,
            &held.stores,
        ),
        carried: Vec::new(),
    });
    loop {
        // Wait in the groups' queues before looking, reading their
        // generations in the same step: a wake-up after this either shows
        // in them or finds the poll waiting (`jobs::waiters`).
        let (reg, gens, was_woken) = match &wake {
            Some(w) => w.poller.register(&groups),
            None => (Registration::default(), generations(&groups), false),
        };
        let mut cancel = agent_wait.as_ref().map(|w| Box::pin(w.notify.notified()));
        if let Some(c) = &mut cancel {
            c.as_mut().enable();
        }
        if let Some(w) = &mut wake {
            let handed = w.poller.take_handed();
            w.carried.extend(handed);
        }
        let look = held.look(gens).await?;
        if let Some(w) = &mut wake {
            w.poller.set_drained(held.found.drained);
            w.settle(&held.found, was_woken, d.jobs, &req.groups);
        }
        let (until, park) = match look {
            Look::Answer(a) => return Ok(a),
            Look::Wait { until, park } => (until, park),
        };
        let mut ticket = park.then(|| d.jobs.park(held.want()));
        let mut over = false;
        tokio::select! {
            () = woken(wake.as_ref()) => {}
            () = maybe(cancel) => {}
            _ = tokio::time::sleep_until(until.into()) => {
                over = Instant::now() >= held.deadline;
            }
            _ = d.shutdown.cancelled() => {}
            () = maybe(poll.cut.map(CancellationToken::cancelled)) => over = true,
            h = handed_off(&mut ticket) => {
                if let Some(answer) = held.handed_off(h) {
                    return Ok(answer);
                }
                continue;
            }
        }
        // A submit that took the parked poll meanwhile is answered first
        // (granting here too could exceed the free slots; `jobs::handoff`).
        if let Some(t) = &mut ticket
            && !t.withdraw()
            && let Some(answer) = held.handed_off(t.handed().await)
        {
            return Ok(answer);
        }
        if over {
            // The hold is over (or cut short) and nothing woke the poll:
            // answer without another look (the agent's next poll looks at once; a wake
            // handed meanwhile is handed on).
            return Ok(empty(held.found.drained));
        }
        drop(reg);
    }
}

/// What a submit handed the parked poll; never, when it is not parked.
async fn handed_off(ticket: &mut Option<crate::jobs::Ticket<'_>>) -> crate::jobs::handoff::Handed {
    match ticket {
        Some(t) => t.handed().await,
        None => std::future::pending().await,
    }
}

/// A poll's part in its groups' wake-ups: the waiting poll, and the wakes
/// it was handed and has not settled. Dropped with a wake still carried
/// (the poll ended: answered, request gone, error), it hands it on.
struct Wake {
    poller: Arc<Poller>,
    carried: Vec<Handed>,
}

impl Wake {
    /// After a look that found `found`: settle the wakes this poll was
    /// handed. Taken work settles them; a wake whose job is still ready and
    /// that this poll did not take (could not, or had no slot left) is
    /// handed on; one whose job waits for its backoff is kept until the
    /// next look (or handed on when the poll ends).
    fn settle(&mut self, found: &Found, was_woken: bool, jobs: &Jobs, groups: &[String]) {
        if was_woken && found.granted == 0 {
            crate::telemetry::metrics().wakes_wasted.inc();
        }
        let handed = std::mem::take(&mut self.carried);
        if handed.is_empty() {
            return;
        }
        if found.drained {
            handed.into_iter().for_each(Handed::pass_on);
            return;
        }
        if found.granted == 0 && found.backoff {
            self.carried = handed;
            return;
        }
        let surplus = handed.len().saturating_sub(found.granted);
        let unsure = found.full || handed.iter().any(|h| h.need == Need::Any);
        let pass = if found.granted == 0 {
            handed.len()
        } else if unsure {
            surplus.max(1)
        } else {
            surplus
        };
        if pass > 0 {
            pass_on_if_ready(jobs, groups, handed.into_iter().take(pass).collect());
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let left = std::mem::take(&mut self.carried);
        left.into_iter()
            .chain(self.poller.take_handed())
            .for_each(Handed::pass_on);
    }
}

/// Hand `pass` on if a job of `groups` is still ready (read off the poll's
/// path; on a failed read, hand on anyway: a wasted wake beats a sleeping
/// job).
fn pass_on_if_ready(jobs: &Jobs, groups: &[String], pass: Vec<Handed>) {
    let (store, groups) = (jobs.store().clone(), groups.to_vec());
    tokio::spawn(async move {
        if !matches!(store.ready_in(&groups, now_ms()).await, Ok(false)) {
            pass.into_iter().for_each(Handed::pass_on);
        }
    });
}

/// Resolves when a wake reaches the poll; never for a poll with no slot.
async fn woken(wake: Option<&Wake>) {
    match wake {
        Some(w) => w.poller.woken().await,
        None => std::future::pending().await,
    }
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

/// What a poll's last look found, for the wakes it was handed.
#[derive(Debug, Default)]
struct Found {
    /// Jobs granted.
    granted: usize,
    /// Every free slot was granted a job.
    full: bool,
    /// The agent is drained.
    drained: bool,
    /// Nothing was granted and a matching job waits for its backoff.
    backoff: bool,
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
    /// Names of the agent's object stores.
    stores: Vec<String>,
    /// Whether the agent was drained at the first look.
    drained_at_start: Option<bool>,
    /// What the last look found.
    found: Found,
}

impl Held<'_> {
    /// Look once, with the groups' generations `gens` read after
    /// registering for their wake-ups.
    async fn look(&mut self, gens: Vec<u64>) -> Result<Look, Error> {
        let id = self.poll.agent_id;
        self.found = Found::default();
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
        self.found.drained = drained;
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
                Tried::Granted(answer) => {
                    self.found.granted = answer.grants.len();
                    self.found.full = self.found.granted >= free as usize;
                    return Ok(Look::Answer(answer));
                }
                Tried::Nothing { next_ready_at: at } => next_ready_at = at,
            }
        }
        self.found.backoff = next_ready_at.is_some();
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
                    stores: &self.stores,
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
        if grants
            .iter()
            .any(|g| super::reaper::needs_kick(g.lease_ttl_ms))
        {
            self.d.reaper_kick.notify_one();
        }
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
            stores: self.stores.clone(),
            max: req.free_slots,
        }
    }

    /// The answer to a hand-off, when it granted something; else the poll
    /// looks again.
    fn handed_off(&self, h: crate::jobs::handoff::Handed) -> Option<PollResponse> {
        let granted = h.filter(|g| !g.grants.is_empty())?;
        Some(self.answer(self.poll.started.elapsed(), granted.grants))
    }

    /// Whether the hold is over: its deadline passed, or the controller is
    /// shutting down.
    fn over(&self) -> bool {
        Instant::now() >= self.deadline
            || !self.d.ready.load(Ordering::Acquire)
            || self.d.shutdown.is_cancelled()
            || self.poll.cut.is_some_and(CancellationToken::is_cancelled)
    }
}

fn empty(drain: bool) -> PollResponse {
    PollResponse {
        grants: Vec::new(),
        retry_after_ms: None,
        drain,
        cancels: Vec::new(),
        completed: Vec::new(),
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
