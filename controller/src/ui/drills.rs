//! The Drills pages (the list, one drill's report and timeline chart) and
//! the Audit page (admins, as `GET /v1/audit`).

use axum::extract::State;
use baton_proto::drill::{DrillState, DrillView};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::UiUser;
use super::{Error, Nav, Page, chart, dur, layout, when};
use crate::api::auth::Admin;
use crate::api::{AppState, JobIdPath, QueryParams};
use crate::store::now_ms;

fn verdict(d: &DrillView) -> Markup {
    let (text, class) = match (&d.state, &d.report) {
        (_, Some(r)) if r.passed => ("passed", "st-ok"),
        (_, Some(_)) => ("failed", "st-bad"),
        (DrillState::Running, None) => ("running", "st-run"),
        _ => ("no report", "st-off"),
    };
    html! { span class={ "badge " (class) } data-verdict=(text) { (text) } }
}

/// `GET /ui/drills`.
pub async fn list(State(s): State<AppState>, user: UiUser) -> Result<Page, Error> {
    crate::drills::refresh_running(&s.store).await?;
    let drills = s.store.list_drills(100).await?;
    let body = html! {
        h1 { "Drills" }
        div id="live" data-refresh="5000" {
            @if drills.drills.is_empty() {
                p { "No drill yet (" code { "batonctl drill start" } ")." }
            } @else {
                div class="scroll" {
                    table {
                        thead { tr {
                            th scope="col" { "Drill" } th scope="col" { "Verdict" } th scope="col" { "Group" }
                            th scope="col" { "Method" } th scope="col" { "Takeover" } th scope="col" { "RTO" }
                            th scope="col" { "Started" }
                        } }
                        tbody {
                            @for d in &drills.drills {
                                tr id={ "drill-" (d.id) } {
                                    th scope="row" { a href={ "/ui/drills/" (d.id) } { "#" (d.id) } }
                                    td { (verdict(d)) }
                                    td { (d.group) }
                                    td { (format!("{:?}", d.method).to_lowercase()) }
                                    td { (d.report.as_ref().and_then(|r| r.takeover_ms).map(dur).unwrap_or_default()) }
                                    td { (dur(d.rto_ms as i64)) }
                                    td { (when(&d.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Drills", Nav::Drills, Some(&user), body))
}

/// `GET /ui/drills/{id}`.
pub async fn page(
    State(s): State<AppState>,
    user: UiUser,
    JobIdPath(id): JobIdPath,
) -> Result<Page, Error> {
    let d = s.store.refresh_drill(id, now_ms()).await?;
    let running = d.finished_at.is_none();
    let body = html! {
        h1 { "Drill #" (d.id) " " (verdict(&d)) }
        div id="live" data-refresh=[running.then_some("2000")] {
            dl class="facts" {
                dt { "Group" } dd { (d.group) }
                dt { "Started" } dd { (when(&d.created_at)) " by " (d.created_by) }
                @if let Some(j) = d.job_id { dt { "Job" } dd { a href={ "/ui/jobs/" (j) } { "#" (j) } } }
                dt { "RTO" } dd { (dur(d.rto_ms as i64)) }
                @if let Some(r) = &d.report {
                    @if let Some(h) = &r.holder { dt { "Holder" } dd { (h) } }
                    @if let Some(h) = &r.new_holder { dt { "New holder" } dd { (h) } }
                    @if let Some(v) = r.detection_ms { dt { "Detection" } dd { (dur(v)) } }
                    @if let Some(v) = r.takeover_ms { dt { "Takeover" } dd { (dur(v)) } }
                    @if let Some(v) = r.total_ms { dt { "Total" } dd { (dur(v)) } }
                    dt { "Exactly once" } dd { (format!("{:?}", r.exactly_once)) ": " (r.exactly_once_evidence) }
                    @if !r.reasons.is_empty() {
                        dt { "Reasons" } dd { ul { @for why in &r.reasons { li { (why) } } } }
                    }
                }
            }
            h2 { "Timeline" }
            (chart::drill_timeline(&d))
        }
    };
    Ok(layout(
        &format!("Drill #{id}"),
        Nav::Drills,
        Some(&user),
        body,
    ))
}

/// Query string of `GET /ui/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    actor: Option<String>,
    before: Option<i64>,
}

/// `GET /ui/audit`: admins only, like `GET /v1/audit`.
pub async fn audit(
    State(s): State<AppState>,
    user: UiUser,
    _admin: Admin,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Page, Error> {
    let actor = q.actor.as_deref().filter(|a| !a.is_empty());
    let list = s.store.list_audit(actor, q.before, 100).await?;
    let clip = |t: &str| crate::api::clip(t, crate::api::audit::MAX_TARGET);
    let body = html! {
        h1 { "Audit" }
        form class="filters" method="get" action="/ui/audit" role="search" {
            label { "Actor " input name="actor" id="f-actor" placeholder="token:name" value=(actor.unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        div class="scroll" {
            table class="audit" {
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Role" }
                    th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Status" }
                } }
                tbody {
                    @for e in &list.entries {
                        tr {
                            td { (when(&e.at)) }
                            td { (e.actor) }
                            td { (e.role) }
                            td { (clip(&e.action)) }
                            td { (clip(&e.target)) }
                            td { (e.status) @if let Some(c) = &e.error { " " (c) } }
                        }
                    }
                }
            }
        }
        @if let Some(b) = list.next_before {
            p { a href={ "/ui/audit?before=" (b) @if let Some(a) = actor { "&actor=" (form_urlencoded::byte_serialize(a.as_bytes()).collect::<String>()) } } { "Older entries" } }
        }
    };
    Ok(layout("Audit", Nav::Audit, Some(&user), body))
}
