//! Logging: tracing to stderr (or, for the Windows service, a file),
//! filtered by the config (`log_level`, `BATON_AGENT_LOG`) unless `RUST_LOG` is
//! set, which then wins. The filter can be replaced while running
//! ([`fn@reload`], on SIGHUP).
//!
//! Lines are text or, with `log_format = "json"`, one JSON object per line
//! carrying the fields of the spans it was logged in (`span`: the innermost,
//! `spans`: all of them, outermost first). Every run of a job is inside a
//! [`job_span`], so each of its lines names `job_id`, `token`, `attempt`,
//! `kind` and `connection` without repeating them by hand: one grep of the
//! job id finds the job's lines.

use std::io::IsTerminal;
use std::sync::OnceLock;

use baton_proto::config::LogFormat;
use baton_proto::{FencingToken, Grant, JobId};
use tracing::Subscriber;
use tracing::field::Empty;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, reload};

type Reloader = Box<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

/// Replaces the installed subscriber's filter (set by [`init`]).
static RELOAD: OnceLock<Reloader> = OnceLock::new();

/// Logging set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The filter does not parse.
    #[error("bad log filter {filter:?}: {reason}")]
    Filter {
        /// The filter.
        filter: String,
        /// Why.
        reason: String,
    },
    /// A global subscriber was already set.
    #[error("logging is already initialised: {0}")]
    Init(String),
}

/// The filter: `RUST_LOG` when set and not blank, else `level` (the
/// configured one).
pub fn env_filter(level: &str) -> Result<EnvFilter, Error> {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| level.to_owned());
    EnvFilter::try_new(&filter).map_err(|e| Error::Filter {
        filter: filter.clone(),
        reason: e.to_string(),
    })
}

/// Install the global subscriber writing to stderr. `level` is the
/// configured filter.
pub fn init(level: &str, format: LogFormat) -> Result<(), Error> {
    install(
        level,
        format,
        std::io::stderr,
        std::io::stderr().is_terminal(),
    )
}

/// Install the global subscriber writing `format` lines to `writer`
/// (colours only when `ansi`), its filter reloadable by [`fn@reload`].
pub fn install<W>(level: &str, format: LogFormat, writer: W, ansi: bool) -> Result<(), Error>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (filter, handle) = reload::Layer::new(env_filter(level)?);
    tracing_subscriber::registry()
        .with(filter)
        .with(lines(format, writer, ansi))
        .try_init()
        .map_err(|e| Error::Init(e.to_string()))?;
    let _ = RELOAD.set(Box::new(move |f| {
        handle.reload(f).map_err(|e| e.to_string())
    }));
    Ok(())
}

/// The layer writing `format` lines to `writer`.
pub fn lines<S, W>(format: LogFormat, writer: W, ansi: bool) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    }
}

/// Apply `level` (or `RUST_LOG` when set) to the running subscriber. Returns
/// whether a reloadable subscriber was installed.
pub fn reload(level: &str) -> Result<bool, Error> {
    let filter = env_filter(level)?;
    let Some(apply) = RELOAD.get() else {
        return Ok(false);
    };
    apply(filter).map_err(Error::Init)?;
    Ok(true)
}

/// The span of one run of a granted job: its task, lease keeper, executor
/// and the delivery of its completion all log inside it.
pub fn job_span(grant: &Grant) -> tracing::Span {
    let span = completion_span(grant.job_id, grant.token);
    span.record("attempt", grant.attempt);
    span.record("kind", tracing::field::display(grant.spec.kind()));
    if let Some(connection) = grant.spec.connection() {
        span.record("connection", connection);
    }
    span
}

/// The same span for a job known only by its id and token (a completion an
/// earlier run left in the outbox, a grant released at once).
pub fn completion_span(job_id: JobId, token: FencingToken) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id,
        token,
        attempt = Empty,
        kind = Empty,
        connection = Empty
    )
}

#[cfg(test)]
pub(crate) mod capture;
#[cfg(test)]
mod tests;
