//! The jobs service: every write that can give a worker group work goes
//! through here — submit, batch submit, requeue by completion, release,
//! operator retry, a drill's job, agent revocation, drain and resume, a
//! restarted agent's abandoned leases, and
//! the grant and the reaper's expiry (both requeue expired leases; called
//! by `dispatch`). Each method commits through the store, *then* wakes the
//! groups that may have work ([`wakers`]), so no caller can commit such a
//! change and forget the wake-up a held poll (and the presence shortcut of
//! `presence::Known`) relies on. Waking is private to this module: nothing
//! else can wake a group, and pollers only read a group's notifier and
//! generation ([`Jobs::group`]). With several controllers on one store,
//! each wake also reaches the other replicas ([`signals`]).
//!
//! Reads (job views, lists, agents) go to the store directly; they change
//! nothing and wake nobody.

use std::sync::Arc;

use baton_proto::drill::DrillView;
use baton_proto::{
    AttemptOutcome, CompleteRequest, FencingToken, JobId, JobState, JobView, LeaseRef,
};

use crate::store::agents::DrainState;
use crate::store::drills::NewDrill;
use crate::store::identity::AgentRevocation;
use crate::store::jobs::{BatchSubmitted, NewBatch, NewJob, Submitted};
use crate::store::lease::OwnedGrant;
use crate::store::{self, Abandoned, Expired, GrantRequest, Granted, Store};
use crate::telemetry;

pub mod handoff;
mod made;
pub mod signals;
pub mod waiters;
pub mod wakers;

pub use handoff::{Handoffs, Ticket};
pub use waiters::{Group, Handed, Need, Poller, Registration};
pub use wakers::{AgentWait, Wakers};

/// Errors of the jobs service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused or failed; nothing was woken.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Results of the jobs service.
pub type Result<T> = std::result::Result<T, Error>;

/// The store and the wake-ups of its groups (cheap to clone; clones share
/// the wake-ups).
#[derive(Debug, Clone)]
pub struct Jobs {
    store: Store,
    wakers: Arc<Wakers>,
    /// Polls held here that a submit may hand its job to ([`handoff`]).
    handoffs: Arc<Handoffs>,
    /// Notified when a job may have ended: the schedule timer then acts on
    /// the ended jobs schedules and pipelines made (`store.follow_up`).
    ended: Arc<tokio::sync::Notify>,
    /// Wakes to send to the other controllers sharing the store (`None`
    /// on a store of one controller; see [`signals`]).
    outbox: Option<Arc<signals::Outbox>>,
}

impl Jobs {
    /// The service over `store`, with its own wake-ups.
    pub fn new(store: Store) -> Self {
        Jobs {
            outbox: store.shared().then(Arc::default),
            store,
            wakers: Arc::default(),
            handoffs: Arc::default(),
            ended: Arc::default(),
        }
    }

    /// The store (for reads, and for what gives no group work).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Group `name`'s notifier and generation (pollers wait on it; see
    /// `dispatch`).
    pub fn group(&self, name: &str) -> Arc<Group> {
        self.wakers.get(name)
    }

    /// Wait for agent `id`'s cancel notices while the guard lives: an
    /// operator's cancel of a job it holds wakes it (see `wakers`).
    pub fn agent_wait(&self, id: &str) -> AgentWait<'_> {
        self.wakers.agent(id)
    }

    /// Agent `id`'s cancel mark, set by a cancel of one of its leases until
    /// [`Jobs::cancels_told`] (see `wakers`).
    pub fn cancel_mark(&self, id: &str) -> Option<u64> {
        self.wakers.cancel_mark(id)
    }

    /// A poll of agent `id` taken with `mark` found no cancel notice.
    pub fn cancels_told(&self, id: &str, mark: u64) {
        self.wakers.cancels_told(id, mark);
    }

    /// Mark every agent holding a running lease whose job was asked to
    /// cancel (at start: the previous run's marks were in its memory), so
    /// their next polls carry the notices; returns how many.
    pub async fn mark_cancelled_holders(&self) -> Result<usize> {
        let holders = self.store.cancelled_holders().await?;
        for a in &holders {
            self.wakers.mark_cancel(a);
        }
        Ok(holders.len())
    }

    /// How many held polls are parked here now.
    pub fn parked(&self) -> usize {
        self.handoffs.len()
    }

    /// Park a held poll that can take `want`: a submit may hand it a job
    /// ([`handoff`]).
    pub fn park(&self, want: OwnedGrant) -> Ticket<'_> {
        self.handoffs.park(want)
    }

    /// Submit one job; wakes its group when it was created (a repeated
    /// `Idempotency-Key` returns the earlier job and wakes nobody). When a
    /// poll that can take it is parked here, the job is granted to it in
    /// the same transaction ([`handoff`]).
    pub async fn submit(&self, job: NewJob, now: i64) -> Result<Submitted> {
        let group = job.submit.group.clone();
        let spec = &job.submit.spec;
        if let Some(taken) =
            self.handoffs
                .take(&group, spec.kind(), spec.connection(), spec.store())
        {
            return self.submit_handing(job, taken, now).await;
        }
        let need = need_of(&job);
        let done = self.store.submit(job, now).await?;
        if done.created {
            tracing::info!(job_id = done.job.id, group = %group, kind = %done.job.kind, "Job submitted");
            self.wake(&group, 1, need);
        }
        Ok(done)
    }

    /// Submit `job` and grant to the parked poll `taken` in one transaction;
    /// the group is woken unless the new job went to that poll.
    async fn submit_handing(
        &self,
        job: NewJob,
        taken: handoff::Taken,
        now: i64,
    ) -> Result<Submitted> {
        let group = job.submit.group.clone();
        let need = need_of(&job);
        let (done, granted) = match self
            .store
            .submit_and_grant(job, &taken.want.as_req(), now)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                taken.hand(None);
                return Err(e.into());
            }
        };
        if !done.created {
            taken.hand(None);
            return Ok(done);
        }
        let took_new = granted.grants.iter().any(|g| g.job_id == done.job.id);
        if took_new {
            telemetry::metrics().handoffs.inc();
        }
        self.granted(&granted);
        let agent = taken.want.agent_id.clone();
        let leases: Vec<_> = granted.grants.iter().map(|g| (g.job_id, g.token)).collect();
        if !taken.hand(Some(granted)) {
            tracing::info!(job_id = done.job.id, group = %group, kind = %done.job.kind, "Job submitted");
            // The poll's request ended meanwhile: give the jobs back at once
            // rather than at the lease's expiry (each release wakes).
            for (job_id, token) in leases {
                let _ = self
                    .release(
                        job_id,
                        &agent,
                        token,
                        "hand-off undelivered",
                        store::now_ms(),
                    )
                    .await;
            }
            return Ok(done);
        }
        if !took_new {
            self.wake(&group, 1, need);
        }
        // Let the poll's task (just woken, next on this thread) answer the
        // agent before this one logs and writes the 201: the time from the
        // submit to the job's start is the figure a user feels.
        tokio::task::yield_now().await;
        tracing::info!(job_id = done.job.id, group = %group, kind = %done.job.kind, handed_to = %agent, "Job submitted");
        Ok(done)
    }

    /// Submit a batch, all or none; wakes each of its groups once when created.
    pub async fn submit_batch(&self, batch: NewBatch, now: i64) -> Result<BatchSubmitted> {
        // Per group: how many jobs, and what they need (`Any` when they
        // differ).
        let mut groups: Vec<(String, usize, Need)> = Vec::new();
        for j in &batch.jobs {
            let need = need_of(j);
            match groups.iter_mut().find(|(g, _, _)| *g == j.submit.group) {
                Some((_, n, common)) => {
                    *n += 1;
                    if *common != need {
                        *common = Need::Any;
                    }
                }
                None => groups.push((j.submit.group.clone(), 1, need)),
            }
        }
        let done = self.store.submit_batch(batch, now).await?;
        if !done.created {
            return Ok(done);
        }
        tracing::info!(
            jobs = done.jobs.len(),
            first_id = done.jobs.first().map(|j| j.id),
            last_id = done.jobs.last().map(|j| j.id),
            groups = groups.len(),
            "Jobs submitted in a batch"
        );
        for (g, n, need) in groups {
            self.wake(&g, n, need);
        }
        Ok(done)
    }

    /// An operator's retry of a failed or cancelled job: queued again, its
    /// group woken.
    pub async fn retry(&self, id: JobId, now: i64) -> Result<JobView> {
        let job = self.store.retry(id, now).await?;
        self.wake(&job.group, 1, Need::Any);
        tracing::info!(job_id = id, "Job requeued by operator");
        Ok(job)
    }

    /// Record a completion (`(state, duplicate)`); wakes the group when the
    /// job went back to the queue (a retry after a failed attempt). A
    /// stale-lease refusal is logged.
    pub async fn complete(
        &self,
        job_id: JobId,
        agent_id: &str,
        req: &CompleteRequest,
        now: i64,
    ) -> Result<(JobState, bool)> {
        let (state, duplicate, group, made) = self
            .store
            .complete(job_id, agent_id, req, now)
            .await
            .inspect_err(|e| log_refusal(job_id, req.token, agent_id, "complete", e))?;
        if state == JobState::Queued {
            self.wake(&group, 1, Need::Any);
        } else if state.is_terminal() && made {
            // Only a job a schedule or pipeline made can give the timer's
            // follow-up something to do: a plain job's end wakes nobody.
            self.ended.notify_one();
        }
        if !duplicate {
            telemetry::attempt_ended(store::lease::outcome_of(req.completion).as_str(), 1);
            tracing::info!(job_id, token = req.token, agent_id = %agent_id, %state, "Job completion recorded");
        }
        Ok((state, duplicate))
    }

    /// The holder gives a job back; its group is woken.
    pub async fn release(
        &self,
        job_id: JobId,
        agent_id: &str,
        token: FencingToken,
        reason: &str,
        now: i64,
    ) -> Result<JobState> {
        let (state, group) = self
            .store
            .release(job_id, agent_id, token, reason, now)
            .await
            .inspect_err(|e| log_refusal(job_id, token, agent_id, "release", e))?;
        self.wake(&group, 1, Need::Any);
        telemetry::attempt_ended(AttemptOutcome::Released.as_str(), 1);
        tracing::info!(job_id, token, agent_id = %agent_id, reason = %reason, "Job released");
        Ok(state)
    }

    /// Grant up to `req.max` jobs; groups whose jobs an expiry during the
    /// grant requeued are woken.
    pub async fn grant(&self, req: &GrantRequest<'_>, now: i64) -> Result<Granted> {
        let granted = self.store.grant(req, now).await?;
        self.granted(&granted);
        Ok(granted)
    }

    /// After a grant committed: its metrics, and the wake-ups of what an
    /// expiry during it requeued.
    fn granted(&self, granted: &Granted) {
        // Ready → granted, in the store's clock.
        let committed = store::now_ms();
        for ready_at in &granted.ready_at {
            telemetry::metrics()
                .dispatch_latency
                .observe(telemetry::ms_as_secs(committed - ready_at));
        }
        telemetry::leases_expired(granted.expired);
        for g in &granted.woken {
            self.wake(g, 1, Need::Any);
        }
        if !granted.woken.is_empty() {
            self.ended.notify_one();
        }
    }

    /// Expire the leases due at `now` (the reaper); the groups that got a
    /// job back are woken.
    pub async fn expire(&self, now: i64) -> Result<Expired> {
        let expired = self.store.expire_leases(now).await?;
        telemetry::leases_expired(expired.leases.len() as u64);
        for (job_id, token, agent) in &expired.leases {
            tracing::info!(job_id, token, agent_id = %agent, "Lease expired");
        }
        for g in &expired.woken {
            self.wake(g, 1, Need::Any);
        }
        if !expired.leases.is_empty() {
            self.ended.notify_one();
        }
        Ok(expired)
    }

    /// A restarted agent ends the leases its previous run held: those still
    /// its current ones end `agent_restarted` and their jobs are requeued
    /// (or failed); the groups that got a job back are woken.
    pub async fn abandon(
        &self,
        agent_id: &str,
        leases: &[LeaseRef],
        now: i64,
    ) -> Result<Abandoned> {
        let done = self.store.abandon(agent_id, leases, now).await?;
        telemetry::attempt_ended(
            AttemptOutcome::AgentRestarted.as_str(),
            done.results.iter().filter(|(_, s)| s.is_some()).count() as u64,
        );
        for g in &done.woken {
            self.wake(g, 1, Need::Any);
        }
        for (lease, state) in &done.results {
            let (job_id, token) = (lease.job_id, lease.token);
            match state {
                Some(state) => {
                    tracing::info!(job_id, token, agent_id = %agent_id, %state, "Lease ended: its agent restarted")
                }
                None => {
                    tracing::info!(job_id, token, agent_id = %agent_id, "Restarted agent's lease no longer current; nothing changed")
                }
            }
        }
        if done.results.iter().any(|(_, s)| s.is_some()) {
            self.ended.notify_one();
        }
        Ok(done)
    }

    /// Create a drill and its job; the drill's group is woken.
    pub async fn create_drill(&self, drill: &NewDrill, job: NewJob, now: i64) -> Result<DrillView> {
        let view = self.store.create_drill(drill, job, now).await?;
        self.wake(&view.group, 1, Need::Any);
        Ok(view)
    }

    /// Revoke agent `id`: its calls are refused from now on and the jobs it
    /// held are queued again; their groups are woken.
    pub async fn revoke_agent(&self, id: &str, by: &str, now: i64) -> Result<AgentRevocation> {
        let r = self.store.revoke_agent(id, now).await?;
        telemetry::attempt_ended(AttemptOutcome::Revoked.as_str(), r.jobs.len() as u64);
        for g in &r.groups {
            self.wake(g, 1, Need::Any);
        }
        tracing::warn!(agent_id = %id, by = %by, jobs = ?r.jobs, "Agent revoked");
        Ok(r)
    }

    /// Drain agent `id` (no new work) or lift its drain. Its held polls are
    /// woken either way (and its groups' generations bumped): they re-check
    /// their drain state, and on resume look for work at once.
    pub async fn set_drain(&self, id: &str, drain: bool, by: &str, now: i64) -> Result<DrainState> {
        let state = self.store.set_drain(id, drain, now).await?;
        self.wake_drain(id, &state.groups);
        if drain {
            tracing::info!(agent_id = %id, by = %by, running = state.running.len(), "Agent drained: no new work");
        } else {
            tracing::info!(agent_id = %id, by = %by, "Agent resumed");
        }
        Ok(state)
    }
}

/// What job `j` needs of a poll that would take it.
fn need_of(j: &NewJob) -> Need {
    Need::Job {
        kind: j.submit.spec.kind(),
        connection: j.submit.spec.connection().map(str::to_owned),
        store: j.submit.spec.store().map(str::to_owned),
    }
}

/// Log a refusal for a stale lease (the call came from a holder whose lease
/// was already taken over).
pub fn log_refusal(job_id: JobId, token: i64, agent: &str, call: &str, e: &store::Error) {
    if matches!(e, store::Error::LeaseLost(_)) {
        tracing::info!(job_id, token, agent_id = %agent, call, reason = %e, "Stale lease refused");
    }
}

#[cfg(test)]
mod tests;
