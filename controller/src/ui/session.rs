//! Sign-in, sessions and CSRF.
//!
//! - `POST /ui/login` takes an operator token (any role) and, when it is
//!   active, stores a new session: a 256-bit random id, kept in the store as
//!   its SHA-256 only, tied to the token and ending after [`SESSION_TTL`].
//!   The browser gets the id in a cookie: `HttpOnly`, `SameSite=Strict`,
//!   `Path=/ui/`, `Max-Age`, and `Secure` when the controller serves TLS.
//! - `api::auth` resolves the cookie on `/ui/…` to the token's operator on
//!   every request (a store read; every replica sees the same sessions,
//!   sign-out and token revocation end them at once).
//! - Every form carries the session's CSRF token: the SHA-256 of a fixed
//!   label and the session id, so it needs no storage, is unknown to
//!   whoever does not hold the cookie, and dies with the session. Each POST
//!   handler checks it ([`UiUser::check`]) after the role check.
//! - The sign-in form has its own, pre-session CSRF token (so no other site
//!   can sign a browser in under the attacker's token): `GET /ui/login`
//!   sets a random nonce in the `baton_login` cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Path=/ui/login`, an hour) and in the form's hidden
//!   `csrf` field; `POST /ui/login` wants both, equal (a double submit: a
//!   cross-site form is sent without a `SameSite=Strict` cookie, and cannot
//!   read it), and refuses a request the browser marks as sent from another
//!   site or a sibling subdomain (`Sec-Fetch-Site: cross-site | same-site`).
//!   A refusal is 403 naming `csrf`, checked before the token is looked at.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use baton_proto::auth::Role;
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Error, Nav, Page, layout};
use crate::api::audit::AuditActor;
use crate::api::auth::{AuthOutcome, SESSION_COOKIE, session_cookie};
use crate::api::{ApiError, AppState};
use crate::credentials::{OperatorPrincipal, Principal, hash_secret, new_secret};
use crate::store::now_ms;

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The signed-in operator of a dashboard request.
#[derive(Debug, Clone)]
pub struct UiUser {
    /// The operator token that signed in.
    pub who: OperatorPrincipal,
    /// The CSRF token of this session.
    pub csrf: String,
}

impl UiUser {
    /// Whether the operator may act on jobs and agents (sees the buttons).
    pub fn can_operate(&self) -> bool {
        self.who.role.allows(Role::Operator)
    }

    /// The hidden form field with the session's CSRF token.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// 403 naming `csrf` unless `form` carries this session's token.
    pub fn check(&self, form: &CsrfForm) -> Result<(), Error> {
        let sent = form.csrf.as_deref().unwrap_or_default();
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Error::Api(ApiError::new(
                baton_proto::ErrorCode::Forbidden,
                "the form's CSRF token is missing or not this session's; reload the page",
                Some("csrf".into()),
            )))
        }
    }
}

/// The CSRF token of a session id.
pub fn csrf_token(session_id: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(b"baton-ui-csrf\0")
            .chain_update(session_id.as_bytes())
            .finalize(),
    )
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _s: &AppState) -> Result<Self, Error> {
        let known = match parts.extensions.get::<AuthOutcome>() {
            Some(AuthOutcome::Known(Principal::Operator(o))) => Some(o.clone()),
            _ => None,
        };
        let id = session_cookie(&parts.headers);
        match (known, id) {
            (Some(who), Some(id)) => Ok(UiUser {
                who,
                csrf: csrf_token(id),
            }),
            // A form sent without a session is refused, not redirected.
            _ if parts.method == Method::POST => Err(Error::Api(ApiError::unauthorized(
                "not signed in: no session cookie, or the session has ended",
            ))),
            _ => Err(Error::SignIn),
        }
    }
}

/// A form with nothing but the CSRF token (every action button's form).
#[derive(Debug, Default, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

/// An `application/x-www-form-urlencoded` body parsed into `T` (400 naming
/// the field otherwise).
pub fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_urlencoded::from_bytes(body)
        .map_err(|e| Error::Api(ApiError::bad_request(format!("form: {e}"), None)))
}

/// The cookie carrying the sign-in form's CSRF nonce.
pub const LOGIN_COOKIE: &str = "baton_login";

/// How long a sign-in form stays usable.
const LOGIN_FORM_TTL: Duration = Duration::from_secs(3600);

/// `GET /ui/login`: the form, with a fresh CSRF nonce in it and in the
/// `baton_login` cookie.
pub async fn login_page(State(s): State<AppState>) -> Response {
    let nonce = new_secret("");
    let cookie = login_cookie(&nonce, s.config.tls.is_some());
    ([(header::SET_COOKIE, cookie)], login_form(None, &nonce)).into_response()
}

/// The `Set-Cookie` value of a sign-in form's nonce (empty: clear it).
fn login_cookie(nonce: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    let age = if nonce.is_empty() {
        0
    } else {
        LOGIN_FORM_TTL.as_secs()
    };
    format!(
        "{LOGIN_COOKIE}={nonce}; Path=/ui/login; HttpOnly; SameSite=Strict; Max-Age={age}{secure}"
    )
}

/// The value of cookie `name` in `headers`.
fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// The sign-in form's CSRF check: the form's `csrf` equals the
/// `baton_login` cookie, and the browser did not mark the request as sent
/// from another site; the nonce on success.
pub fn check_login_csrf<'h>(
    headers: &'h axum::http::HeaderMap,
    sent: Option<&str>,
) -> Result<&'h str, Error> {
    let refuse = |why: &str| {
        Error::Api(ApiError::new(
            baton_proto::ErrorCode::Forbidden,
            format!("sign-in refused: {why}; reload the sign-in page"),
            Some("csrf".into()),
        ))
    };
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
        return Err(refuse("the form was sent from another site"));
    }
    let Some(nonce) = cookie(headers, LOGIN_COOKIE) else {
        return Err(refuse("no sign-in form cookie"));
    };
    let sent = sent.unwrap_or_default();
    if sent.is_empty() || !bool::from(sent.as_bytes().ct_eq(nonce.as_bytes())) {
        return Err(refuse(
            "the form's CSRF token is missing or not this form's",
        ));
    }
    Ok(nonce)
}

fn login_form(error: Option<&str>, nonce: &str) -> Page {
    layout(
        "Sign in",
        Nav::None,
        None,
        html! {
            section class="signin" {
                h1 { "Sign in" }
                p { "Paste an operator token (" code { "batonctl token create" } "). Viewers see everything; operators and admins also act." }
                @if let Some(e) = error {
                    p class="error" role="alert" id="signin-error" { (e) }
                }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(nonce);
                    label for="token" { "Operator token" }
                    input id="token" name="token" type="password" autocomplete="off" required autofocus;
                    button type="submit" id="sign-in" { "Sign in" }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
    /// The form's CSRF nonce (as the `baton_login` cookie).
    csrf: Option<String>,
}

/// `POST /ui/login`: an active operator token starts a session; the form's
/// CSRF nonce must match its cookie ([`check_login_csrf`]).
pub async fn login(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    let form: LoginForm = parse_form(&body)?;
    let nonce = check_login_csrf(&headers, form.csrf.as_deref())?;
    let token = form.token.trim();
    let who = if token.starts_with(baton_proto::auth::OPERATOR_PREFIX) {
        s.store
            .operator_by_hash(&hash_secret(token), now_ms())
            .await?
    } else {
        None
    };
    let Some(who) = who else {
        let page = login_form(Some("This token is unknown or revoked."), nonce);
        return Ok((StatusCode::UNAUTHORIZED, page).into_response());
    };
    let id = new_secret("");
    let now = now_ms();
    let ttl_ms = SESSION_TTL.as_millis() as i64;
    s.store
        .create_session(&hash_secret(&id), &who.token_id, now + ttl_ms, now)
        .await?;
    tracing::info!(token = %who.name, role = %who.role, "Dashboard session started");
    let tls = s.config.tls.is_some();
    let cookies = [
        (header::SET_COOKIE, set_cookie(&id, tls)),
        (header::SET_COOKIE, login_cookie("", tls)),
    ];
    let mut resp = (
        axum::response::AppendHeaders(cookies),
        Redirect::to("/ui/fleet"),
    )
        .into_response();
    resp.extensions_mut()
        .insert(AuditActor(format!("token:{}", who.name)));
    Ok(resp)
}

/// The `Set-Cookie` value of a new session: `Secure` when the controller
/// serves TLS (a browser would not send it back over plain HTTP).
pub fn set_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{SESSION_COOKIE}={id}; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    )
}

/// `POST /ui/logout`: end the session, clear the cookie.
pub async fn logout(
    State(s): State<AppState>,
    user: UiUser,
    parts: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Error> {
    user.check(&parse_form(&body)?)?;
    if let Some(id) = session_cookie(&parts) {
        s.store.delete_session(&hash_secret(id)).await?;
    }
    let cookie = format!("{SESSION_COOKIE}=; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response())
}
