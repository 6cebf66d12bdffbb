//! The Schedules page: each schedule's next runs in its own zone, the last
//! occurrence and its outcome, the missed and stale flags; pause, resume
//! and trigger for operators.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use baton_proto::schedule::ScheduleView;
use maud::{Markup, html};

use super::session::{CsrfForm, UiUser, parse_form};
use super::{Error, Nav, Page, dur, layout, when};
use crate::api::auth::OperatorRole;
use crate::api::{AppState, NamePath};
use crate::store::now_ms;

/// How many upcoming runs each schedule shows.
const NEXT: usize = 3;

/// `GET /ui/schedules`.
pub async fn page(State(s): State<AppState>, user: UiUser) -> Result<Page, Error> {
    let now = now_ms();
    let list = s.schedules.list(now).await?;
    let mut rows = Vec::with_capacity(list.schedules.len());
    for v in &list.schedules {
        let next = s.schedules.next(&v.spec.name, NEXT, now).await?;
        rows.push(row(v, &next.tz, &next.occurrences, &user));
    }
    let body = html! {
        h1 { "Schedules" }
        div id="live" data-refresh="5000" {
            @if rows.is_empty() {
                p { "No schedule yet (" code { "batonctl schedule create" } ")." }
            } @else {
                div class="scroll" {
                    table class="schedules cards" {
                        thead { tr {
                            th scope="col" { "Schedule" } th scope="col" { "State" }
                            th scope="col" { "Next runs (its zone)" } th scope="col" { "Last" }
                            th scope="col" { "Counts" }
                            @if user.can_operate() { th scope="col" { "Action" } }
                        } }
                        tbody { @for r in &rows { (r) } }
                    }
                }
            }
        }
    };
    Ok(layout("Schedules", Nav::Schedules, Some(&user), body))
}

fn row(
    v: &ScheduleView,
    tz: &str,
    next: &[baton_proto::schedule::NextOccurrence],
    user: &UiUser,
) -> Markup {
    let name = &v.spec.name;
    let pattern = match (&v.spec.cron, v.spec.every_ms) {
        (Some(c), _) => c.clone(),
        (None, Some(ms)) => format!("every {}", dur(ms as i64)),
        (None, None) => String::new(),
    };
    html! {
        tr id={ "schedule-" (name) } {
            th scope="row" { (name) br; small { code { (pattern) } " " (tz) } }
            td data-label="State" {
                @if v.paused { span class="badge st-off" data-flag="paused" { "paused" } " " }
                @else { span class="badge st-ok" { "active" } " " }
                @if v.stale { span class="badge st-bad" data-flag="stale" { "stale" } " " }
                @if v.counts.missed > 0 { span class="badge st-warn" data-flag="missed" { "missed " (v.counts.missed) } }
            }
            td data-label="Next runs" {
                @for n in next {
                    span class="nowrap" { (n.local.replacen('T', " ", 1)) }
                    @if n.outside_window { " (outside its window)" } br;
                }
            }
            td data-label="Last" {
                @if let Some(l) = &v.last {
                    (when(&l.nominal_at)) " " (l.state.as_str())
                    @if let Some(o) = &l.outcome { " → " (o) }
                    @if let Some(j) = l.job_id { " " a href={ "/ui/jobs/" (j) } { "#" (j) } }
                }
            }
            td data-label="Counts" {
                (v.counts.fired) " fired, " (v.counts.skipped) " skipped, " (v.counts.missed) " missed"
            }
            @if user.can_operate() {
                td data-label="Action" {
                    div class="actions" {
                        @let (verb, label) = if v.paused { ("resume", "Resume") } else { ("pause", "Pause") };
                        form method="post" action={ "/ui/schedules/" (name) "/" (verb) } {
                            (user.csrf_field())
                            button type="submit" id={ (verb) "-" (name) } { (label) }
                        }
                        form method="post" action={ "/ui/schedules/" (name) "/trigger" } {
                            (user.csrf_field())
                            button type="submit" id={ "trigger-" (name) } { "Run now" }
                        }
                    }
                }
            }
        }
    }
}

/// What an action does to a schedule.
#[derive(Debug, Clone, Copy)]
enum Act {
    Pause,
    Resume,
    Trigger,
}

async fn act(
    s: &AppState,
    op: &OperatorRole,
    user: &UiUser,
    name: &str,
    what: Act,
    body: &[u8],
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(body)?)?;
    let now = now_ms();
    match what {
        Act::Pause => drop(s.schedules.set_paused(name, true, now).await?),
        Act::Resume => drop(s.schedules.set_paused(name, false, now).await?),
        Act::Trigger => drop(s.schedules.trigger_now(name, now).await?),
    }
    tracing::info!(schedule = %name, action = ?what, token = %op.who.name, "Schedule changed from the dashboard");
    Ok(Redirect::to("/ui/schedules").into_response())
}

/// `POST /ui/schedules/{id}/pause`.
pub async fn pause(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    NamePath(name): NamePath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    act(&s, &op, &user, &name, Act::Pause, &body).await
}

/// `POST /ui/schedules/{id}/resume`.
pub async fn resume(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    NamePath(name): NamePath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    act(&s, &op, &user, &name, Act::Resume, &body).await
}

/// `POST /ui/schedules/{id}/trigger`.
pub async fn trigger(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    NamePath(name): NamePath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    act(&s, &op, &user, &name, Act::Trigger, &body).await
}
