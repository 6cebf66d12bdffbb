//! A run advancing inside its transaction: steps queued (references
//! resolved, pinned to an agent), skipped or failed, the run ended; a run
//! stopped (cancelled, timed out) once its steps' jobs have.
//!
//! Every entry point locks the run's row first ([`run_row`]): two replicas
//! following up two step ends of one run, or a cancel and a step end, take
//! turns, and the later one decides from what the earlier one committed.

use baton_proto::pipeline::{PipelineSpec, RunState, StepState};
use baton_proto::schedule::RunId;
use sqlx::postgres::PgConnection;

use super::super::made::{self, Maker};
use super::super::schedules::push_group;
use super::{run_row, step_rows};
use crate::pipeline::{self, Action, StepStatus};
use crate::store::Result;
pub(crate) use crate::store::pipelines::rows::Advanced;
use crate::store::pipelines::rows::{self, RunRow, StepRow, first_failure, statuses};

/// Queue what can run next, skip what cannot, end the run when every step
/// has ended (or, when stopping, when no step's job is still going).
pub(crate) async fn advance_in(
    c: &mut PgConnection,
    id: RunId,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<Advanced> {
    let run = run_row(c, id).await?;
    if run.state()? != RunState::Running {
        return Ok(Advanced {
            ended_now: false,
            done_schedule: run.schedule_id,
        });
    }
    let spec = run.spec()?;
    let mut rows = step_rows(c, id).await?;
    if let Some(end_as) = run.stopping.clone() {
        let going = rows
            .iter()
            .filter(|r| matches!(r.state(), Ok(StepState::Queued | StepState::Running)))
            .count();
        if going > 0 {
            return Ok(Advanced {
                ended_now: false,
                done_schedule: None,
            });
        }
        finish(c, id, &end_as, run.error.as_deref(), now).await?;
        return Ok(Advanced {
            ended_now: true,
            done_schedule: run.schedule_id,
        });
    }
    loop {
        let steps = statuses(&spec, &rows)?;
        let next = pipeline::advance(&spec, &steps);
        if next.actions.is_empty() {
            if let Some(state) = next.run {
                let error = first_failure(&spec, &rows)?;
                finish(c, id, state.as_str(), error.as_deref(), now).await?;
                return Ok(Advanced {
                    ended_now: true,
                    done_schedule: run.schedule_id,
                });
            }
            return Ok(Advanced {
                ended_now: false,
                done_schedule: None,
            });
        }
        let mut steps = steps;
        for action in next.actions {
            // A skip decided in this call is seen by the actions after it
            // (a `same_agent_as` step then says its step was skipped).
            if let Action::Skip { step, .. } = &action
                && let Some(s) = steps.get_mut(*step)
            {
                s.state = StepState::Skipped;
            }
            act(c, &run, &spec, &steps, &rows, action, ttl, now, woken).await?;
        }
        rows = step_rows(c, id).await?;
    }
}

/// Carry out one decision of `pipeline::advance`.
#[allow(clippy::too_many_arguments)]
async fn act(
    c: &mut PgConnection,
    run: &RunRow,
    spec: &PipelineSpec,
    steps: &[StepStatus],
    rows: &[StepRow],
    action: Action,
    ttl: u64,
    now: i64,
    woken: &mut Vec<String>,
) -> Result<()> {
    let (i, state, reason) = match action {
        Action::Skip { step, reason } => (step, StepState::Skipped, Some(reason)),
        Action::Queue { step } => match queue(c, run, spec, steps, rows, step, ttl, now).await? {
            Ok(group) => {
                push_group(woken, &group);
                return Ok(());
            }
            Err(reason) => (step, StepState::Failed, Some(reason)),
        },
    };
    let name = &spec.steps[i].name;
    sqlx::query(
        "INSERT INTO run_steps (run_id, step, state, reason) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_id, step) DO UPDATE SET state = $3, job_id = NULL, reason = $4",
    )
    .bind(run.id)
    .bind(name)
    .bind(state.as_str())
    .bind(reason)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Queue step `i`: its references resolved, pinned to the agent of its
/// `same_agent_as` step. The group it went to, or why it cannot run.
#[allow(clippy::too_many_arguments)]
async fn queue(
    c: &mut PgConnection,
    run: &RunRow,
    spec: &PipelineSpec,
    steps: &[StepStatus],
    rows: &[StepRow],
    i: usize,
    ttl: u64,
    now: i64,
) -> Result<std::result::Result<String, String>> {
    let step = &spec.steps[i];
    let pin = match pipeline::pin(spec, i, steps) {
        Ok(p) => p,
        Err(reason) => return Ok(Err(reason)),
    };
    if let Some(agent) = &pin
        && let Some(why) = agent_gone(c, agent).await?
    {
        return Ok(Err(format!(
            "agent `{agent}`, which ran step `{}`, {why}: this step needs its files and does not move to another host",
            step.same_agent_as.as_deref().unwrap_or_default()
        )));
    }
    let (submit, lease_ttl_ms) = match rows::step_submission(run, spec, rows, i, ttl) {
        Ok(s) => s,
        Err(reason) => return Ok(Err(reason)),
    };
    let maker = Maker {
        schedule_id: run.schedule_id,
        nominal_at: run.nominal_at,
        run_id: Some(run.id),
        step: Some(&step.name),
        pin_agent: pin.as_deref(),
    };
    let view = made::insert_made(c, &submit, lease_ttl_ms, &maker, now).await?;
    sqlx::query(
        "INSERT INTO run_steps (run_id, step, state, job_id) VALUES ($1, $2, 'queued', $3)
         ON CONFLICT (run_id, step) DO UPDATE SET state = 'queued', job_id = $3, reason = NULL",
    )
    .bind(run.id)
    .bind(&step.name)
    .bind(view.id)
    .execute(&mut *c)
    .await?;
    Ok(Ok(view.group))
}

/// Why agent `id` can no longer run a step pinned to it, if it cannot.
async fn agent_gone(c: &mut PgConnection, id: &str) -> Result<Option<String>> {
    let revoked: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revoked_at FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
    Ok(rows::agent_gone(revoked))
}

/// End run `id` in `state`.
async fn finish(
    c: &mut PgConnection,
    id: RunId,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE pipeline_runs SET state = $1, error = $2, stopping = NULL, finished_at = $3, updated_at = $3
         WHERE id = $4",
    )
    .bind(state)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Stop run `id` (cancel or time out): pending steps are cancelled, queued
/// steps end, running ones are asked to stop; the run ends as `end_as` once
/// none is going. Returns whether it was running.
pub(crate) async fn stop_in(
    c: &mut PgConnection,
    id: RunId,
    end_as: RunState,
    why: &str,
    now: i64,
) -> Result<bool> {
    let run = run_row(c, id).await?;
    if run.state()? != RunState::Running {
        return Ok(false);
    }
    let spec = run.spec()?;
    let rows = step_rows(c, id).await?;
    for s in &spec.steps {
        match rows.iter().find(|r| r.step == s.name) {
            Some(r) => {
                if let (Some(job), Ok(StepState::Queued | StepState::Running)) =
                    (r.job_id, r.state())
                {
                    made::cancel_in(c, job, why, now).await?;
                }
            }
            None => {
                sqlx::query(
                    "INSERT INTO run_steps (run_id, step, state, reason) VALUES ($1, $2, 'cancelled', $3)",
                )
                .bind(id)
                .bind(&s.name)
                .bind(why)
                .execute(&mut *c)
                .await?;
            }
        }
    }
    sqlx::query(
        "UPDATE pipeline_runs SET stopping = $1, error = $2, updated_at = $3 WHERE id = $4",
    )
    .bind(end_as.as_str())
    .bind(why)
    .bind(now)
    .bind(id)
    .execute(&mut *c)
    .await?;
    Ok(true)
}

/// Cancel run `id` (`cancel_previous`, an operator).
pub(crate) async fn cancel_in(c: &mut PgConnection, id: RunId, why: &str, now: i64) -> Result<()> {
    stop_in(c, id, RunState::Cancelled, why, now).await?;
    let mut woken = Vec::new();
    advance_in(c, id, 0, now, &mut woken).await?;
    Ok(())
}
