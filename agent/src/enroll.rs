//! Enrollment: trade a single-use enrollment token for the agent's identity.
//!
//! `baton-agent enroll` and the start of `run` (when no identity exists yet and
//! a token is configured) post the token to `POST /v1/agents/enroll` and keep
//! the answer in `<state_dir>/identity.json` ([`crate::identity`]). The token
//! and the secret never appear in a message. A controller that asks to slow
//! down (429) is waited for (`Retry-After`); one that cannot be reached is
//! retried with backoff for a while. Refusals (token expired, used, revoked or
//! unknown; agent id taken) end the attempt with the controller's message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_proto::auth::{AGENT_SECRET_PREFIX, EnrollRequest, EnrollResponse};
use baton_proto::config::{ConfigError, EX_CONFIG, Source};
use baton_proto::{ErrorCode, valid_name};
use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Config, EnrollmentToken, Secret};
use crate::identity::{self, Identity, check_secret};
use crate::transport::{self, Transport};

/// How long enrollment goes on trying while the controller cannot be reached.
pub const PATIENCE: Duration = Duration::from_secs(120);
/// Longest `Retry-After` honoured in one wait.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_CAP: Duration = Duration::from_secs(10);

/// Why the agent has no identity.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `identity.json` exists: enrolling again would leave a second agent behind.
    #[error("already enrolled as {agent_id}; delete {} to enroll again", path.display())]
    AlreadyEnrolled {
        /// The enrolled id.
        agent_id: String,
        /// The identity file.
        path: PathBuf,
    },
    /// No identity and no enrollment token (`run`).
    #[error(
        "not enrolled: run `baton-agent enroll --token-file FILE` or set enrollment_token_file"
    )]
    NotEnrolled,
    /// `baton-agent enroll` without a token.
    #[error(
        "no enrollment token: give --token-file FILE (`-` reads standard input), or set \
         enrollment_token_file, BATON_AGENT_ENROLLMENT_TOKEN_FILE or BATON_AGENT_ENROLLMENT_TOKEN"
    )]
    NoToken,
    /// The token cannot be read or is not an enrollment token.
    #[error(transparent)]
    Token(#[from] ConfigError),
    /// The controller refused the enrollment.
    #[error("the controller refused the enrollment: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The controller's message (with a hint).
        message: String,
    },
    /// The controller could not be reached (or kept asking to wait) for too long.
    #[error("cannot enroll: {0}")]
    Unavailable(String),
    /// The controller's answer is not an identity.
    #[error("unexpected enrollment answer from the controller: {0}")]
    Protocol(String),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Transport(transport::Error),
    /// `identity.json` cannot be read or written.
    #[error(transparent)]
    Identity(#[from] identity::Error),
    /// Shutdown was requested while enrolling.
    #[error("enrollment stopped by a shutdown request")]
    Stopped,
}

impl Error {
    /// The exit code: 78 (`EX_CONFIG`) for local setup problems, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NotEnrolled | Error::NoToken | Error::Token(_) => EX_CONFIG,
            Error::Identity(identity::Error::Insecure { .. } | identity::Error::Invalid { .. }) => {
                EX_CONFIG
            }
            _ => 1,
        }
    }
}

/// Refuse when `identity.json` exists (whatever its state).
pub fn ensure_not_enrolled(state_dir: &Path) -> Result<(), Error> {
    let path = identity::path(state_dir);
    match Identity::load(state_dir) {
        Ok(None) => Ok(()),
        Ok(Some(id)) => Err(Error::AlreadyEnrolled {
            agent_id: id.agent_id,
            path,
        }),
        Err(e) => Err(e.into()),
    }
}

/// The token for `baton-agent enroll`: from `--token-file` (`-`: standard
/// input), else the configured one. Checks first that the agent is not enrolled.
pub fn token_for_command(config: &Config, token_file: Option<&Path>) -> Result<Secret, Error> {
    ensure_not_enrolled(&config.state_dir)?;
    let source = match token_file {
        Some(path) => EnrollmentToken::File {
            path: path.to_path_buf(),
            origin: Source::Flag("token-file".into()),
            key: "enrollment_token_file".into(),
            line: None,
        },
        None => config.enrollment_token.clone().ok_or(Error::NoToken)?,
    };
    Ok(source.read()?)
}

/// `baton-agent enroll`: enroll with the token and write the identity file.
pub async fn command(
    config: &Config,
    transport: &Transport,
    token_file: Option<&Path>,
    patience: Duration,
) -> Result<Identity, Error> {
    let token = token_for_command(config, token_file)?;
    enroll(
        config,
        transport,
        &token,
        patience,
        &CancellationToken::new(),
    )
    .await
}

/// The identity `run` uses: `identity.json`, or a fresh enrollment when it is
/// missing and a token is configured. Warns when the identity disagrees with
/// the config (the identity wins).
pub async fn identity_for_run(
    config: &Config,
    transport: &Transport,
    patience: Duration,
    stop: &CancellationToken,
) -> Result<Identity, Error> {
    let identity = match Identity::load(&config.state_dir)? {
        Some(id) => id,
        None => {
            let source = config.enrollment_token.as_ref().ok_or(Error::NotEnrolled)?;
            let token = source.read()?;
            enroll(config, transport, &token, patience, stop).await?
        }
    };
    if identity.agent_id != config.agent_id {
        warn!(
            configured = %config.agent_id,
            enrolled = %identity.agent_id,
            "The configured agent_id differs from the enrolled identity; using the enrolled one"
        );
    }
    if !identity.enrolled_with_any(&config.controller_urls) {
        let enrolled = if identity.controller_urls.is_empty() {
            identity.controller_url.clone()
        } else {
            identity.controller_urls.join(",")
        };
        warn!(
            configured = %config.controller_urls.join(","),
            %enrolled,
            "None of the configured controllers is one the agent enrolled with"
        );
    }
    Ok(identity)
}

/// Enroll with `token` and write `identity.json` (mode 0600).
pub async fn enroll(
    config: &Config,
    transport: &Transport,
    token: &Secret,
    patience: Duration,
    stop: &CancellationToken,
) -> Result<Identity, Error> {
    ensure_not_enrolled(&config.state_dir)?;
    let req = EnrollRequest {
        token: token.expose().to_owned(),
        agent_id: config.agent_id.clone(),
        hostname: config.hostname.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    info!(agent_id = %req.agent_id, controller = %transport.base_url(), "Enrolling");
    let resp = request(transport, &req, patience, stop).await?;
    if !valid_name(&resp.agent_id) {
        return Err(Error::Protocol(format!(
            "agent_id {:?} is not a valid name",
            resp.agent_id
        )));
    }
    check_secret(&resp.secret).map_err(Error::Protocol)?;
    if !resp.secret.starts_with(AGENT_SECRET_PREFIX) {
        warn!(
            agent_id = %resp.agent_id,
            "The agent secret has an unexpected form (no {AGENT_SECRET_PREFIX} prefix)"
        );
    }
    let identity = Identity {
        agent_id: resp.agent_id,
        secret: Secret::new(resp.secret),
        groups: resp.groups,
        controller_url: transport.base_url().to_owned(),
        controller_urls: if config.controller_urls.len() > 1 {
            config.controller_urls.clone()
        } else {
            Vec::new()
        },
        enrolled_at: Utc::now(),
        fleet: resp.fleet,
    };
    crate::config::create_private_dir(&config.state_dir).map_err(|source| identity::Error::Io {
        path: config.state_dir.clone(),
        source,
    })?;
    let path = identity.save(&config.state_dir)?;
    info!(
        agent_id = %identity.agent_id,
        groups = %identity.groups.join(","),
        file = %path.display(),
        "Enrolled"
    );
    Ok(identity)
}

/// Post the request until the controller answers for good, `patience` runs
/// out, or `stop` fires.
async fn request(
    transport: &Transport,
    req: &EnrollRequest,
    patience: Duration,
    stop: &CancellationToken,
) -> Result<EnrollResponse, Error> {
    let deadline = Instant::now() + patience;
    let mut delays = crate::backoff::delays(RETRY_MIN, RETRY_CAP);
    let mut warned = false;
    loop {
        let answer = tokio::select! {
            biased;
            () = stop.cancelled() => return Err(Error::Stopped),
            r = transport.enroll(req) => r,
        };
        let (wait, why) = match answer {
            Ok(resp) => return Ok(resp),
            Err(transport::Error::RateLimited {
                retry_after,
                message,
            }) => {
                let wait = retry_after
                    .unwrap_or_else(|| delays.next().unwrap_or(RETRY_CAP))
                    .min(MAX_RETRY_AFTER);
                warn!(
                    retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "Enrollment rate limited by the controller; waiting"
                );
                (wait, format!("rate limited: {message}"))
            }
            Err(transport::Error::Unavailable(m)) => {
                if !warned {
                    warn!(error = %m, "Controller unavailable for enrollment; retrying");
                    warned = true;
                }
                (delays.next().unwrap_or(RETRY_CAP), m)
            }
            Err(transport::Error::Unauthorized(message)) => {
                return Err(Error::Refused {
                    status: 401,
                    message,
                });
            }
            Err(transport::Error::Forbidden(message)) => {
                return Err(Error::Refused {
                    status: 403,
                    message,
                });
            }
            Err(transport::Error::Rejected { status, code, body }) => {
                let message = if code == Some(ErrorCode::Conflict) {
                    format!(
                        "{body} (an active agent has the id {:?}: set another agent_id, or \
                         revoke the old agent first)",
                        req.agent_id
                    )
                } else {
                    body
                };
                return Err(Error::Refused { status, message });
            }
            Err(transport::Error::Protocol(m) | transport::Error::LeaseLost(m)) => {
                return Err(Error::Protocol(m));
            }
            Err(e @ transport::Error::Setup(_)) => return Err(Error::Transport(e)),
        };
        if Instant::now() + wait > deadline {
            return Err(Error::Unavailable(format!(
                "gave up after {}: {why}",
                humantime::format_duration(patience)
            )));
        }
        tokio::select! {
            () = stop.cancelled() => return Err(Error::Stopped),
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(all(test, unix))]
mod tests;
