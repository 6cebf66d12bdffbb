//! The Jobs page (filters, search by id) and one job's page (attempts as a
//! waterfall, log tail, progress, result sets; cancel and retry).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use baton_proto::{JobKind, JobResult, JobState, JobView};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{CsrfForm, UiUser, parse_form};
use super::{Error, Nav, Page, chart, layout, when};
use crate::api::auth::OperatorRole;
use crate::api::{ApiError, AppState, JobIdPath, QueryParams};
use crate::store::jobs::JobFilter;
use crate::store::now_ms;

/// Query string of `GET /ui/jobs` (empty fields are no filter).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    group: Option<String>,
    kind: Option<String>,
    label: Option<String>,
    /// A job id to go to.
    id: Option<String>,
}

fn some(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `GET /ui/jobs`.
pub async fn list(
    State(s): State<AppState>,
    user: UiUser,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Response, Error> {
    if let Some(id) = some(&q.id) {
        let id = crate::api::parse_id(id).ok_or_else(|| {
            ApiError::bad_request("a job id is a positive number", Some("id".into()))
        })?;
        return Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response());
    }
    let state = match some(&q.state) {
        None => None,
        Some(v) => Some(JobState::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!("unknown state `{v}`"), Some("state".into()))
        })?),
    };
    if let Some(k) = some(&q.kind)
        && JobKind::parse(k).is_none()
    {
        return Err(
            ApiError::bad_request(format!("unknown kind `{k}`"), Some("kind".into())).into(),
        );
    }
    let label = match some(&q.label) {
        None => None,
        Some(l) => {
            let (k, v) = l.split_once('=').ok_or_else(|| {
                ApiError::bad_request("label filter is key=value", Some("label".into()))
            })?;
            Some((k.to_owned(), v.to_owned()))
        }
    };
    let jobs = s
        .store
        .list_jobs(&JobFilter {
            state,
            group: some(&q.group).map(str::to_owned),
            kind: some(&q.kind).map(str::to_owned),
            label,
            schedule: None,
            before: None,
            limit: 100,
        })
        .await?;
    let body = html! {
        h1 { "Jobs" }
        (filters(&q, state))
        (table(&jobs))
    };
    Ok(layout("Jobs", Nav::Jobs, Some(&user), body).into_response())
}

/// The filter and search form, showing the current filters.
fn filters(q: &ListQuery, state: Option<JobState>) -> Markup {
    html! {
    form class="filters" method="get" action="/ui/jobs" role="search" {
        label { "State "
            select name="state" id="f-state" {
                option value="" { "any" }
                @for st in JobState::ALL {
                    option value=(st.as_str()) selected[state == Some(st)] { (st.as_str()) }
                }
            }
        }
        label { "Group " input name="group" id="f-group" value=(some(&q.group).unwrap_or_default()); }
        label { "Kind "
            select name="kind" id="f-kind" {
                option value="" { "any" }
                @for k in JobKind::ALL {
                    option value=(k.as_str()) selected[some(&q.kind) == Some(k.as_str())] { (k.as_str()) }
                }
            }
        }
        label { "Label " input name="label" id="f-label" placeholder="key=value" value=(some(&q.label).unwrap_or_default()); }
        button type="submit" id="filter" { "Filter" }
        label { "Job id " input name="id" id="f-id" inputmode="numeric" size="8"; }
        button type="submit" id="go" { "Go" }
    }
    }
}

/// The live part of the list: one row per job.
fn table(jobs: &baton_proto::JobList) -> Markup {
    html! {
    div id="live" data-refresh="3000" {
        @if jobs.jobs.is_empty() {
            p { "No job matches." }
        } @else {
            div class="scroll" {
                table class="jobs cards" {
                    thead { tr {
                        th scope="col" { "Job" } th scope="col" { "State" } th scope="col" { "Group" }
                        th scope="col" { "Kind" } th scope="col" { "What" } th scope="col" { "Attempts" }
                        th scope="col" { "Agent" } th scope="col" { "Created" }
                    } }
                    tbody {
                        @for j in &jobs.jobs {
                            tr id={ "job-" (j.id) } data-state=(j.state.as_str()) {
                                th scope="row" { a href={ "/ui/jobs/" (j.id) } { "#" (j.id) } }
                                td data-label="State" { (state_badge(j.state)) }
                                td data-label="Group" { (j.group) }
                                td data-label="Kind" { (j.kind.as_str()) }
                                td class="what" data-label="What" { (j.what.as_deref().unwrap_or("")) }
                                td data-label="Attempts" { (j.attempts_spent) " / " (j.max_attempts) }
                                td data-label="Agent" { (j.lease_agent.as_deref().unwrap_or("")) }
                                td data-label="Created" { (when(&j.created_at)) }
                            }
                        }
                    }
                }
            }
        }
    }
    }
}

/// A job state as a coloured badge.
pub fn state_badge(st: JobState) -> Markup {
    let class = match st {
        JobState::Queued => "st-wait",
        JobState::Running => "st-run",
        JobState::Succeeded => "st-ok",
        JobState::Failed => "st-bad",
        JobState::Cancelled => "st-off",
    };
    html! { span class={ "badge " (class) } data-job-state=(st.as_str()) { (st.as_str()) } }
}

/// `GET /ui/jobs/{id}`.
pub async fn page(
    State(s): State<AppState>,
    user: UiUser,
    JobIdPath(id): JobIdPath,
) -> Result<Page, Error> {
    let mut job = s.store.get_job(id).await?;
    crate::api::operator::bound_data(&mut job);
    if job.state == JobState::Queued {
        job.blocked_reason = s
            .store
            .blocked_reason(
                &job,
                now_ms(),
                s.config.agent_offline_after.as_millis() as i64,
            )
            .await?;
    }
    let done = job.finished_at.is_some();
    let body = html! {
        h1 { "Job #" (job.id) " " (state_badge(job.state)) }
        div id="live" data-refresh=[(!done).then_some("2000")] {
            (summary(&job))
            (actions(&job, &user))
            h2 { "Attempts" }
            (chart::waterfall(&job, now_ms()))
            (attempts(&job))
            (live_output(&job))
            @if let Some(r) = &job.result { h2 { "Result" } (result(r)) }
        }
    };
    Ok(layout(&format!("Job #{id}"), Nav::Jobs, Some(&user), body))
}

fn summary(job: &JobView) -> Markup {
    html! {
        dl class="facts" {
            dt { "Group" } dd { (job.group) }
            dt { "Kind" } dd { (job.kind.as_str()) }
            @if let Some(c) = &job.connection { dt { "Connection" } dd { (c) } }
            dt { "Attempts spent" } dd { (job.attempts_spent) " of " (job.retry.max_attempts) }
            dt { "Created" } dd { (when(&job.created_at)) }
            @if let Some(f) = &job.finished_at { dt { "Finished" } dd { (when(f)) } }
            @if let Some(a) = &job.lease_agent { dt { "Agent" } dd { (a) } }
            @if !job.labels.is_empty() {
                dt { "Labels" }
                dd { @for (k, v) in &job.labels { span class="chip" { (k) "=" (v) } " " } }
            }
            @if let Some(s) = &job.schedule { dt { "Schedule" } dd { (s) } }
            @if let Some(r) = &job.run_id { dt { "Pipeline run" } dd { (r) " step " (job.step.as_deref().unwrap_or("")) } }
            @if job.cancel_requested { dt { "Cancel" } dd { "requested" } }
            @if let Some(b) = &job.blocked_reason { dt { "Waiting" } dd { (b) } }
            @if let Some(e) = &job.error { dt { "Error" } dd class="error" { (e) } }
        }
    }
}

fn actions(job: &JobView, user: &UiUser) -> Markup {
    let cancellable =
        matches!(job.state, JobState::Queued | JobState::Running) && !job.cancel_requested;
    let retryable = matches!(job.state, JobState::Failed | JobState::Cancelled);
    html! {
        @if user.can_operate() && (cancellable || retryable) {
            div class="actions" {
                @if cancellable {
                    form method="post" action={ "/ui/jobs/" (job.id) "/cancel" } {
                        (user.csrf_field())
                        button type="submit" id="cancel" class="danger" { "Cancel job" }
                    }
                }
                @if retryable {
                    form method="post" action={ "/ui/jobs/" (job.id) "/retry" } {
                        (user.csrf_field())
                        button type="submit" id="retry" { "Retry job" }
                    }
                }
            }
        }
    }
}

pub(crate) fn attempts(job: &JobView) -> Markup {
    html! {
        @if !job.attempts.is_empty() {
            div class="scroll" {
                table class="attempts" {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Agent" } th scope="col" { "Granted" }
                        th scope="col" { "Ended" } th scope="col" { "Outcome" } th scope="col" { "Progress" }
                    } }
                    tbody {
                        @for a in &job.attempts {
                            tr id={ "attempt-" (a.number) } data-outcome=(a.outcome.map_or("running", |o| o.as_str())) {
                                th scope="row" { (a.number) }
                                td { (a.agent_id) }
                                td { (when(&a.started_at)) }
                                td { (a.ended_at.as_ref().map(when).unwrap_or_default()) }
                                td {
                                    (a.outcome.map_or("running", |o| o.as_str()))
                                    @if let Some(e) = &a.error { br; small class="error" { (e) } }
                                }
                                td {
                                    @if let Some(p) = &a.progress {
                                        @if let Some(pc) = p.percent {
                                            progress max="100" value=(format!("{pc:.0}")) { (format!("{pc:.0}")) " %" }
                                            " " (format!("{pc:.0}")) " % "
                                        }
                                        (p.message)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The running attempt's log tail (refreshed with the page).
fn live_output(job: &JobView) -> Markup {
    let running = job.attempts.iter().rev().find(|a| a.ended_at.is_none());
    html! {
        @if let Some(a) = running {
            h2 { "Log tail (attempt " (a.number) ")" }
            pre class="log" id="log-tail" tabindex="0" {
                @if a.log_tail.is_empty() { "(no output yet)" } @else { (a.log_tail) }
            }
        }
    }
}

/// A result: exit code, result sets as tables, output.
pub(crate) fn result(r: &JobResult) -> Markup {
    let sets = r
        .data
        .as_ref()
        .and_then(|d| d.get("result_sets"))
        .and_then(|v| v.as_array());
    html! {
        @if let Some(c) = r.exit_code { p { "Exit code " (c) } }
        @if let Some(sets) = sets {
            @for (i, set) in sets.iter().enumerate() { (result_set(i, set)) }
        } @else if let Some(d) = &r.data {
            pre class="log" tabindex="0" { (serde_json::to_string_pretty(d).unwrap_or_default()) }
        }
        @if !r.stdout.is_empty() { h3 { "stdout" } pre class="log" tabindex="0" { (r.stdout) } }
        @if !r.stderr.is_empty() { h3 { "stderr" } pre class="log" tabindex="0" { (r.stderr) } }
        @if r.truncated { p { small { "Output was truncated." } } }
    }
}

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "NULL".into(),
        other => other.to_string(),
    }
}

fn result_set(i: usize, set: &serde_json::Value) -> Markup {
    let columns = set.get("columns").and_then(|c| c.as_array());
    let rows = set.get("rows").and_then(|r| r.as_array());
    html! {
        div class="scroll" {
            table class="resultset" {
                caption { "Result set " (i + 1) @if set.get("truncated") == Some(&serde_json::Value::Bool(true)) { " (truncated)" } }
                @if let Some(cols) = columns {
                    thead { tr { @for c in cols { th scope="col" { (cell(c)) } } } }
                }
                tbody {
                    @for row in rows.into_iter().flatten() {
                        tr { @for v in row.as_array().into_iter().flatten() { td { (cell(v)) } } }
                    }
                }
            }
        }
    }
}

/// `POST /ui/jobs/{id}/cancel`.
pub async fn cancel(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    JobIdPath(id): JobIdPath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(&body)?)?;
    let job = s.jobs.cancel(id, now_ms()).await?;
    tracing::info!(job_id = id, state = %job.state, token = %op.who.name, "Job cancel requested from the dashboard");
    Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
}

/// `POST /ui/jobs/{id}/retry`.
pub async fn retry(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    JobIdPath(id): JobIdPath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(&body)?)?;
    s.jobs.retry(id, now_ms()).await?;
    tracing::info!(job_id = id, token = %op.who.name, "Job retry requested from the dashboard");
    Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
}
