//! The Fleet page: agents online, draining or offline; their groups,
//! connections and kinds, slots, host metrics; drain and resume.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use baton_proto::AgentView;
use maud::{Markup, html};

use super::session::{CsrfForm, UiUser, parse_form};
use super::{Error, Nav, Page, bytes, layout, when};
use crate::api::auth::OperatorRole;
use crate::api::{AppState, NamePath};
use crate::store::now_ms;

/// Where an agent stands.
fn status(a: &AgentView) -> (&'static str, &'static str) {
    if a.revoked_at.is_some() {
        ("revoked", "st-off")
    } else if !a.online {
        ("offline", "st-off")
    } else if a.drained_at.is_some() {
        ("draining", "st-warn")
    } else {
        ("online", "st-ok")
    }
}

/// `GET /ui/fleet`.
pub async fn page(State(s): State<AppState>, user: UiUser) -> Result<Page, Error> {
    let agents = s
        .store
        .list_agents(now_ms(), s.config.agent_offline_after.as_millis() as i64)
        .await?;
    let count = |st: &str| agents.iter().filter(|a| status(a).0 == st).count();
    let mut groups: Vec<&str> = agents
        .iter()
        .flat_map(|a| a.groups.iter().map(String::as_str))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    let body = html! {
        h1 { "Fleet" }
        div id="live" data-refresh="3000" {
            ul class="counts" aria-label="Agents by state" {
                li { span class="badge st-ok" { (count("online")) } " online" }
                li { span class="badge st-warn" { (count("draining")) } " draining" }
                li { span class="badge st-off" { (count("offline") + count("revoked")) } " offline" }
                li { "groups: " (groups.join(", ")) }
            }
            @if agents.is_empty() {
                p { "No agent has enrolled yet." }
            } @else {
                div class="scroll" {
                    table class="agents cards" {
                        thead { tr {
                            th scope="col" { "Agent" } th scope="col" { "State" }
                            th scope="col" { "Groups" } th scope="col" { "Connections" }
                            th scope="col" { "Kinds" } th scope="col" { "Slots" }
                            th scope="col" { "Host" } th scope="col" { "Last seen" }
                            @if user.can_operate() { th scope="col" { "Action" } }
                        } }
                        tbody {
                            @for a in &agents { (row(a, &user)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout("Fleet", Nav::Fleet, Some(&user), body))
}

fn row(a: &AgentView, user: &UiUser) -> Markup {
    let (st, class) = status(a);
    let m = a.metrics.clone().unwrap_or_default();
    html! {
        tr id={ "agent-" (a.id) } data-state=(st) {
            th scope="row" { (a.id) br; small { (a.os) " · " (a.version) } }
            td data-label="State" { span class={ "badge " (class) } { (st) } }
            td data-label="Groups" { (a.groups.join(", ")) }
            td data-label="Connections" {
                @for c in &a.capabilities.connections {
                    span class="chip" { (c.name) " (" (c.kind) ")" } " "
                }
            }
            td data-label="Kinds" { @for k in &a.capabilities.kinds { span class="chip" { (k.as_str()) } " " } }
            td data-label="Slots" { (a.leases.len()) " in use, " (a.free_slots) " free" }
            td data-label="Host" {
                @if let Some(c) = m.cpu_percent { "CPU " (format!("{c:.0}")) " %" br; }
                @if let (Some(u), Some(t)) = (m.memory_used_bytes, m.memory_total_bytes) {
                    "RAM " (bytes(u)) " / " (bytes(t)) br;
                }
                @if let Some(f) = m.dump_dir_free_bytes { "dump dir " (bytes(f)) " free" }
            }
            td data-label="Last seen" { (when(&a.last_seen)) }
            @if user.can_operate() {
                td data-label="Action" {
                    @if a.revoked_at.is_none() {
                        @let (verb, label) = if a.drained_at.is_some() { ("resume", "Resume") } else { ("drain", "Drain") };
                        form method="post" action={ "/ui/agents/" (a.id) "/" (verb) } {
                            (user.csrf_field())
                            button type="submit" id={ (verb) "-" (a.id) } { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/agents/{id}/drain`.
pub async fn drain(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    NamePath(id): NamePath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    set_drain(&s, &op, &user, id, true, &body).await
}

/// `POST /ui/agents/{id}/resume`.
pub async fn resume(
    State(s): State<AppState>,
    op: OperatorRole,
    user: UiUser,
    NamePath(id): NamePath,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    set_drain(&s, &op, &user, id, false, &body).await
}

async fn set_drain(
    s: &AppState,
    op: &OperatorRole,
    user: &UiUser,
    id: String,
    drain: bool,
    body: &[u8],
) -> Result<Response, Error> {
    user.check(&parse_form::<CsrfForm>(body)?)?;
    s.jobs.set_drain(&id, drain, &op.who.name, now_ms()).await?;
    tracing::info!(agent_id = %id, drain, token = %op.who.name, "Agent drain changed from the dashboard");
    Ok(Redirect::to("/ui/fleet").into_response())
}
