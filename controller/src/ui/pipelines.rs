//! The Pipelines pages: pipelines with their last run, a pipeline's runs,
//! and one run's DAG with the state of each step; cancel and retry a run.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use baton_proto::pipeline::{RunState, StepState};
use maud::{Markup, html};

use super::session::{CsrfForm, UiUser, parse_form};
use super::{Error, Nav, Page, chart, layout, when};
use crate::api::auth::OperatorRole;
use crate::api::{AppState, JobIdPath, NamePath};
use crate::store::now_ms;

/// A run state as a badge.
pub fn run_badge(st: RunState) -> Markup {
    let class = match st {
        RunState::Running => "st-run",
        RunState::Succeeded => "st-ok",
        RunState::Failed => "st-bad",
        RunState::Cancelled => "st-off",
    };
    html! { span class={ "badge " (class) } data-run-state=(st.as_str()) { (st.as_str()) } }
}

/// The class of a step state (the DAG's nodes and the step table).
pub fn step_class(st: StepState) -> &'static str {
    match st {
        StepState::Pending => "st-wait",
        StepState::Queued => "st-wait",
        StepState::Running => "st-run",
        StepState::Succeeded => "st-ok",
        StepState::Failed => "st-bad",
        StepState::Cancelled | StepState::Skipped => "st-off",
    }
}

/// `GET /ui/pipelines`.
pub async fn list(State(s): State<AppState>, user: UiUser) -> Result<Page, Error> {
    let list = s.schedules.pipelines().await?;
    let body = html! {
        h1 { "Pipelines" }
        div id="live" data-refresh="5000" {
            @if list.pipelines.is_empty() {
                p { "No pipeline yet (" code { "batonctl pipeline create" } ")." }
            } @else {
                div class="scroll" {
                    table class="cards" {
                        thead { tr {
                            th scope="col" { "Pipeline" } th scope="col" { "Group" }
                            th scope="col" { "Steps" } th scope="col" { "Last run" }
                        } }
                        tbody {
                            @for p in &list.pipelines {
                                tr id={ "pipeline-" (p.spec.name) } {
                                    th scope="row" { a href={ "/ui/pipelines/" (p.spec.name) } { (p.spec.name) } }
                                    td data-label="Group" { (p.spec.group) }
                                    td data-label="Steps" { (p.spec.steps.len()) }
                                    td data-label="Last run" {
                                        @if let Some(r) = &p.last_run {
                                            a href={ "/ui/runs/" (r.id) } { "#" (r.id) } " " (run_badge(r.state)) " " (when(&r.created_at))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Pipelines", Nav::Pipelines, Some(&user), body))
}

/// `GET /ui/pipelines/{id}`: the pipeline's DAG and its runs.
pub async fn pipeline(
    State(s): State<AppState>,
    user: UiUser,
    NamePath(name): NamePath,
) -> Result<Page, Error> {
    let p = s.schedules.pipeline(&name).await?;
    let runs = s.schedules.runs(&name, None, 50).await?;
    let body = html! {
        h1 { "Pipeline " (name) }
        (chart::dag(&p.spec, |_| None))
        h2 { "Runs" }
        div id="live" data-refresh="5000" {
            div class="scroll" {
                table class="cards" {
                    thead { tr {
                        th scope="col" { "Run" } th scope="col" { "State" } th scope="col" { "Started" }
                        th scope="col" { "Finished" } th scope="col" { "Schedule" }
                    } }
                    tbody {
                        @for r in &runs.runs {
                            tr id={ "run-" (r.id) } {
                                th scope="row" { a href={ "/ui/runs/" (r.id) } { "#" (r.id) } }
                                td data-label="State" { (run_badge(r.state)) }
                                td data-label="Started" { (when(&r.created_at)) }
                                td data-label="Finished" { (r.finished_at.as_ref().map(when).unwrap_or_default()) }
                                td data-label="Schedule" { (r.schedule.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(
        &format!("Pipeline {name}"),
        Nav::Pipelines,
        Some(&user),
        body,
    ))
}

/// `GET /ui/runs/{id}`: the run's DAG with each step's state.
pub async fn run(
    State(s): State<AppState>,
    user: UiUser,
    JobIdPath(id): JobIdPath,
) -> Result<Page, Error> {
    let run = s.schedules.get_run(id).await?;
    let spec = s
        .schedules
        .pipeline(&run.pipeline)
        .await
        .ok()
        .map(|p| p.spec);
    let done = run.finished_at.is_some();
    let state_of = |name: &str| {
        run.steps
            .iter()
            .find(|st| st.name == name)
            .map(|st| st.state)
    };
    let body = html! {
        h1 { "Run #" (run.id) " " (run_badge(run.state)) }
        div id="live" data-refresh=[(!done).then_some("2000")] {
            dl class="facts" {
                dt { "Pipeline" } dd { a href={ "/ui/pipelines/" (run.pipeline) } { (run.pipeline) } }
                dt { "Started" } dd { (when(&run.created_at)) }
                @if let Some(f) = &run.finished_at { dt { "Finished" } dd { (when(f)) } }
                @if let Some(sch) = &run.schedule { dt { "Schedule" } dd { (sch) } }
                @if let Some(e) = &run.error { dt { "Error" } dd class="error" { (e) } }
            }
            @if user.can_operate() {
                div class="actions" {
                    @if !done {
                        form method="post" action={ "/ui/runs/" (run.id) "/cancel" } {
                            (user.csrf_field())
                            button type="submit" id="cancel-run" class="danger" { "Cancel run" }
                        }
                    } @else if run.state != RunState::Succeeded {
                        form method="post" action={ "/ui/runs/" (run.id) "/retry" } {
                            (user.csrf_field())
                            button type="submit" id="retry-run" { "Retry run" }
                        }
                    }
                }
            }
            @if let Some(spec) = &spec { (chart::dag(spec, state_of)) }
            div class="scroll" {
                table class="cards" {
                    thead { tr {
                        th scope="col" { "Step" } th scope="col" { "State" } th scope="col" { "Job" }
                        th scope="col" { "Agent" } th scope="col" { "Attempts" } th scope="col" { "Why" }
                    } }
                    tbody {
                        @for st in &run.steps {
                            tr id={ "step-" (st.name) } data-state=(st.state.as_str()) {
                                th scope="row" { (st.name) }
                                td data-label="State" { span class={ "badge " (step_class(st.state)) } { (st.state.as_str()) } }
                                td data-label="Job" { @if let Some(j) = st.job_id { a href={ "/ui/jobs/" (j) } { "#" (j) } } }
                                td data-label="Agent" { (st.agent.as_deref().unwrap_or("")) }
                                td data-label="Attempts" { (st.attempts) }
                                td data-label="Why" { (st.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout(
        &format!("Run #{id}"),
        Nav::Pipelines,
        Some(&user),
        body,
    ))
}

/// `POST /ui/runs/{id}/cancel`.
pub async fn cancel(
    State(s): State<AppState>,
    _op: OperatorRole,
    user: UiUser,
    JobIdPath(id): JobIdPath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(&body)?)?;
    s.schedules.cancel_run(id, now_ms()).await?;
    Ok(Redirect::to(&format!("/ui/runs/{id}")).into_response())
}

/// `POST /ui/runs/{id}/retry`.
pub async fn retry(
    State(s): State<AppState>,
    _op: OperatorRole,
    user: UiUser,
    JobIdPath(id): JobIdPath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(&body)?)?;
    s.schedules.retry_run(id, now_ms()).await?;
    Ok(Redirect::to(&format!("/ui/runs/{id}")).into_response())
}
