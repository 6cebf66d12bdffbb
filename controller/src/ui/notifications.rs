//! The Notifications page: webhook deliveries and how they ended (viewers,
//! as `GET /v1/notifications/deliveries`), filtered by state.

use axum::extract::State;
use baton_proto::notify::{DeliveryList, DeliveryState};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::UiUser;
use super::{Error, Nav, Page, layout, when};
use crate::api::{AppState, QueryParams};

/// Query string of `GET /ui/notifications`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    state: Option<String>,
    before: Option<i64>,
}

/// `GET /ui/notifications`: newest first, 100 a page.
pub async fn page(
    State(s): State<AppState>,
    user: UiUser,
    QueryParams(q): QueryParams<DeliveryQuery>,
) -> Result<Page, Error> {
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(DeliveryState::parse);
    let list = s.store.list_deliveries(state, q.before, 100).await?;
    Ok(layout(
        "Notifications",
        Nav::Notifications,
        Some(&user),
        body(&list, state),
    ))
}

/// The page's body: the state filter and the deliveries.
pub fn body(list: &DeliveryList, state: Option<DeliveryState>) -> Markup {
    let states = [
        DeliveryState::Pending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
    ];
    html! {
        h1 { "Notifications" }
        form class="filters" method="get" action="/ui/notifications" role="search" {
            label { "State "
                select name="state" id="f-state" {
                    option value="" { "any" }
                    @for st in states {
                        option value=(st.as_str()) selected[state == Some(st)] { (st.as_str()) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if list.deliveries.is_empty() {
            p class="empty" { "No deliveries." }
        } @else {
            div class="scroll" {
                table class="deliveries" {
                    thead { tr {
                        th scope="col" { "Event" } th scope="col" { "About" } th scope="col" { "Webhook" }
                        th scope="col" { "State" } th scope="col" { "Attempts" } th scope="col" { "Last answer" }
                        th scope="col" { "Happened" } th scope="col" { "Next try" }
                    } }
                    tbody {
                        @for d in &list.deliveries {
                            tr id={ "delivery-" (d.id) } {
                                td { (d.event) }
                                td { (d.subject) }
                                td { (d.webhook) }
                                td { span class={ "st " (class_of(d.state)) } { (d.state.as_str()) } }
                                td { (d.attempts) }
                                td {
                                    @if let Some(code) = d.last_status { "HTTP " (code) " " }
                                    @if let Some(e) = &d.last_error { (crate::api::clip(e, 200)) }
                                }
                                td { (when(&d.event_at)) }
                                td { @if let Some(n) = &d.next_at { (when(n)) } }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(b) = list.next_before {
            p { a href={ "/ui/notifications?before=" (b) @if let Some(st) = state { "&state=" (st.as_str()) } } { "Older deliveries" } }
        }
    }
}

fn class_of(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "st-run",
        DeliveryState::Delivered => "st-ok",
        DeliveryState::Failed => "st-bad",
    }
}

#[cfg(test)]
mod tests;
