//! The writes of schedules and pipelines that give groups work: a firing,
//! the follow-up of ended jobs, a run started, retried, cancelled or timed
//! out, and an operator's cancel. Each commits through the store, then
//! wakes the groups that got work (as every write in this service does).

use std::sync::Arc;

use baton_proto::pipeline::RunView;
use baton_proto::schedule::RunId;
use baton_proto::{JobId, JobState, JobView};

use super::{Jobs, Result};
use crate::store::schedules::{Fired, Firing, FollowedUp};

impl Jobs {
    /// Notified when a job may have ended (completion, expiry, cancel):
    /// the schedule timer waits on it to act on ended jobs.
    pub fn ended(&self) -> Arc<tokio::sync::Notify> {
        self.ended.clone()
    }

    fn wake_all(&self, groups: &[String]) {
        for g in groups {
            self.wake(g, 1, super::Need::Any);
        }
    }

    /// Tell the holders of jobs asked to stop: their held polls answer at
    /// once with the cancel notice (the lease lifecycle, point 10).
    fn tell_holders(&self, agents: &[String]) {
        for a in agents {
            self.wake_agent(a);
        }
    }

    /// Apply a schedule's firing plan; wakes the groups of the jobs made.
    pub async fn fire(&self, firing: &Firing, now: i64) -> Result<Fired> {
        let fired = self.store.fire(firing, now).await?;
        self.wake_all(&fired.woken);
        self.tell_holders(&fired.told);
        if firing.cancel_active {
            self.ended.notify_one();
        }
        Ok(fired)
    }

    /// Apply the firing plans of several schedules in one transaction (each
    /// all or nothing); wakes the groups of the jobs made.
    pub async fn fire_all(&self, firings: &[Firing], now: i64) -> Result<Vec<Result<Fired>>> {
        let done = self.store.fire_all(firings, now).await?;
        let mut cancelled = false;
        for (f, r) in firings.iter().zip(&done) {
            if let Ok(fired) = r {
                self.wake_all(&fired.woken);
                self.tell_holders(&fired.told);
                cancelled |= f.cancel_active;
            }
        }
        if cancelled {
            self.ended.notify_one();
        }
        Ok(done
            .into_iter()
            .map(|r| r.map_err(super::Error::from))
            .collect())
    }

    /// Act on ended jobs that schedules and pipelines made.
    pub async fn follow_up(&self, now: i64, limit: u32, ttl: u64) -> Result<FollowedUp> {
        let done = self.store.follow_up(now, limit, ttl).await?;
        self.wake_all(&done.woken);
        if !done.woken.is_empty() {
            // Steps queued and ended at once (skips, refusals) may end more.
            self.ended.notify_one();
        }
        Ok(done)
    }

    /// Start a run of pipeline `name`.
    pub async fn start_run(
        &self,
        name: &str,
        group: Option<&str>,
        ttl: u64,
        now: i64,
    ) -> Result<RunView> {
        let change = self.store.start_run(name, group, ttl, now).await?;
        self.wake_all(&change.woken);
        tracing::info!(run_id = change.run.id, pipeline = %name, "Pipeline run started");
        Ok(change.run)
    }

    /// Retry a failed or cancelled run.
    pub async fn retry_run(&self, id: RunId, ttl: u64, now: i64) -> Result<RunView> {
        let change = self.store.retry_run(id, ttl, now).await?;
        self.wake_all(&change.woken);
        tracing::info!(
            run_id = id,
            attempt = change.run.attempt,
            "Pipeline run retried"
        );
        Ok(change.run)
    }

    /// Cancel a run.
    pub async fn cancel_run(&self, id: RunId, now: i64) -> Result<RunView> {
        let change = self.store.cancel_run(id, now).await?;
        self.ended.notify_one();
        // The holders of its running steps learn of the cancel from their
        // held polls (a step that had ended costs its agent one look).
        for step in &change.run.steps {
            if step.job_id.is_some()
                && let Some(agent) = &step.agent
            {
                self.wake_agent(agent);
            }
        }
        tracing::info!(run_id = id, "Pipeline run cancelled");
        Ok(change.run)
    }

    /// Fail the runs past their deadline.
    pub async fn expire_runs(&self, now: i64) -> Result<Vec<RunId>> {
        let ended = self.store.expire_runs(now).await?;
        for id in &ended {
            tracing::info!(run_id = id, "Pipeline run timed out");
        }
        self.ended.notify_one();
        Ok(ended)
    }

    /// Fail the queued steps pinned to an agent that is gone (revoked, or
    /// not seen since `seen_before`).
    pub async fn fail_stranded(&self, now: i64, seen_before: i64) -> Result<Vec<JobId>> {
        let failed = self.store.fail_stranded(now, seen_before).await?;
        for id in &failed {
            tracing::warn!(
                job_id = id,
                "Pipeline step failed: the agent it must run on is gone"
            );
        }
        if !failed.is_empty() {
            self.ended.notify_one();
        }
        Ok(failed)
    }

    /// An operator's cancel of a job: a queued job ends at once, a running
    /// one is asked to stop.
    ///
    /// The holder of a running one is woken: its held poll answers at once
    /// with a cancel notice (the lease lifecycle, point 10).
    pub async fn cancel(&self, id: JobId, now: i64) -> Result<JobView> {
        let job = self.store.cancel(id, now).await?;
        self.ended.notify_one();
        if job.state == JobState::Running
            && let Some(holder) = &job.lease_agent
        {
            tracing::info!(job_id = id, agent_id = %holder, "Cancel requested; the holder is told");
            self.wake_agent(holder);
        }
        Ok(job)
    }
}
