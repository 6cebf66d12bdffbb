//! The dashboard at `/ui`: server-rendered HTML pages over the same store
//! and services as the API handlers (never over HTTP to itself).
//!
//! - [`session`]: sign-in with an operator token → a session cookie
//!   (HttpOnly, SameSite=Strict, Secure under TLS, an expiry) whose hashed id
//!   is kept in the store, so every controller sharing the database knows
//!   it; the per-session CSRF token every form carries; sign-out.
//! - [`fleet`]: agents (online, draining, offline), groups, connections,
//!   slots, host metrics; drain and resume.
//! - [`jobs`]: the job list (filters, search by id) and one job (attempts as
//!   a waterfall, log tail, result sets, progress; cancel and retry).
//! - [`schedules`]: next runs in each schedule's zone, last outcome, missed
//!   and stale flags; pause, resume, run now.
//! - [`pipelines`]: pipelines, their runs, a run's DAG with step states;
//!   cancel and retry a run.
//! - [`drills`]: failover drills and a report's timeline chart; the audit log.
//! - [`notifications`]: webhook deliveries and how they ended.
//! - [`chart`]: the server-drawn SVG of the waterfall, the drill timeline
//!   and a pipeline's DAG.
//!
//! Requests to `/ui/…` pass the API's own middlewares: `api::auth`
//! resolves the session cookie there (and only there) to the operator
//! token that signed in, so role checks are the API's ([`Viewer`],
//! [`OperatorRole`]), and `api::audit` records every POST like an API call.
//! Pages are HTML, not part of the OpenAPI contract. Every answer carries a
//! strict Content-Security-Policy (`default-src 'self'`, no inline script
//! or style) and refuses framing; the one script and one stylesheet are
//! compiled into the binary and served with long cache lifetimes under a
//! content-hashed URL.
//!
//! [`Viewer`]: crate::api::auth::Viewer
//! [`OperatorRole`]: crate::api::auth::OperatorRole

pub mod chart;
pub mod drills;
pub mod fleet;
pub mod jobs;
pub mod notifications;
pub mod pipelines;
pub mod schedules;
pub mod session;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use baton_proto::auth::Role;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use sha2::{Digest, Sha256};

use crate::api::{self, AppState};

/// Errors of a page: the API's (a JSON body naming the field), or "sign in".
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused or failed as the API would refuse it.
    #[error("{}", .0.0.error.message)]
    Api(api::ApiError),
    /// No session (or an ended one): the browser goes to the sign-in page.
    #[error("not signed in")]
    SignIn,
}

macro_rules! via_api {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Api(e.into())
            }
        }
    )*};
}
via_api!(
    api::ApiError,
    crate::store::Error,
    crate::jobs::Error,
    crate::drills::Error,
    crate::schedules::Error
);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        match self {
            Error::Api(e) => e.into_response(),
            Error::SignIn => Redirect::to("/ui/login").into_response(),
        }
    }
}

/// The stylesheet, compiled in.
const CSS: &str = include_str!("ui/assets/ui.css");
/// The script (refresh of the live part of a page), compiled in.
const JS: &str = include_str!("ui/assets/ui.js");

/// A short content hash of both assets: their URLs change with them.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let d = Sha256::new()
        .chain_update(CSS.as_bytes())
        .chain_update(JS.as_bytes())
        .finalize();
    hex::encode(&d[..6])
});

/// The Content-Security-Policy of every `/ui` answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The dashboard's routes; `api::router` supplies the middlewares
/// (authentication, audit, request span) when the server merges them.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/fleet") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/fleet", get(fleet::page))
        .route("/ui/agents/{id}/drain", post(fleet::drain))
        .route("/ui/agents/{id}/resume", post(fleet::resume))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/{id}", get(jobs::page))
        .route("/ui/jobs/{id}/cancel", post(jobs::cancel))
        .route("/ui/jobs/{id}/retry", post(jobs::retry))
        .route("/ui/schedules", get(schedules::page))
        .route("/ui/schedules/{id}/pause", post(schedules::pause))
        .route("/ui/schedules/{id}/resume", post(schedules::resume))
        .route("/ui/schedules/{id}/trigger", post(schedules::trigger))
        .route("/ui/pipelines", get(pipelines::list))
        .route("/ui/pipelines/{id}", get(pipelines::pipeline))
        .route("/ui/runs/{id}", get(pipelines::run))
        .route("/ui/runs/{id}/cancel", post(pipelines::cancel))
        .route("/ui/runs/{id}/retry", post(pipelines::retry))
        .route("/ui/drills", get(drills::list))
        .route("/ui/drills/{id}", get(drills::page))
        .route("/ui/audit", get(drills::audit))
        .route("/ui/notifications", get(notifications::page))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// CSP, no framing, no sniffing, no referrer; pages are not cached.
async fn secure_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// `GET /ui/assets/{name}`: `ui-<hash>.css` or `ui-<hash>.js`, cached for
/// a year (a new build has a new hash); anything else is 404.
async fn asset(Path(name): Path<String>) -> Response {
    let v = ASSET_VERSION.as_str();
    let (body, ctype) = if name == format!("ui-{v}.css") {
        (CSS, "text/css; charset=utf-8")
    } else if name == format!("ui-{v}.js") {
        (JS, "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}

/// Which entry of the navigation a page is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Agents.
    Fleet,
    /// Jobs and one job.
    Jobs,
    /// Schedules.
    Schedules,
    /// Pipelines and their runs.
    Pipelines,
    /// Drills and one drill.
    Drills,
    /// The audit log.
    Audit,
    /// Webhook deliveries.
    Notifications,
    /// The sign-in page (no navigation).
    None,
}

/// The page around `body`: head with the assets, navigation, the signed-in
/// operator and the sign-out button. `live` is the part the script refreshes.
pub fn layout(title: &str, nav: Nav, user: Option<&session::UiUser>, body: Markup) -> Page {
    let v = ASSET_VERSION.as_str();
    let items = [
        (Nav::Fleet, "/ui/fleet", "Fleet"),
        (Nav::Jobs, "/ui/jobs", "Jobs"),
        (Nav::Schedules, "/ui/schedules", "Schedules"),
        (Nav::Pipelines, "/ui/pipelines", "Pipelines"),
        (Nav::Drills, "/ui/drills", "Drills"),
        (Nav::Notifications, "/ui/notifications", "Notifications"),
        (Nav::Audit, "/ui/audit", "Audit"),
    ];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Baton" }
                link rel="stylesheet" href={ "/ui/assets/ui-" (v) ".css" };
                script src={ "/ui/assets/ui-" (v) ".js" } defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    span class="brand" { "Baton" }
                    @if let Some(u) = user {
                        nav aria-label="Main" {
                            ul {
                                @for (n, href, label) in items.into_iter().filter(|i| i.0 != Nav::Audit || u.who.role.allows(Role::Admin)) {
                                    li {
                                        @if n == nav {
                                            a href=(href) aria-current="page" { (label) }
                                        } @else {
                                            a href=(href) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        form class="who" method="post" action="/ui/logout" {
                            span { (u.who.name) " (" (u.who.role) ")" }
                            (u.csrf_field())
                            button type="submit" id="sign-out" { "Sign out" }
                        }
                    }
                }
                main id="main" { (body) }
            }
        }
    };
    Html(page.into_string())
}

/// A rendered page.
pub type Page = Html<String>;

/// A UTC time as the pages show it.
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in milliseconds, short (`850 ms`, `12.4 s`, `3 m 05 s`).
pub fn dur(ms: i64) -> String {
    match ms {
        i64::MIN..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} m {:02} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// A byte count, short (`512 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests;
