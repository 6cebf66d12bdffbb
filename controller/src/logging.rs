//! Logging: tracing to stderr (journald), filtered by the config
//! (`log_level`, `BATON_CONTROLLER_LOG`) unless `RUST_LOG` is set, which then wins. The
//! filter can be replaced while running (SIGHUP).
//!
//! Lines are text or, with `log_format = "json"`, one JSON object per line
//! carrying the fields of the spans it was logged in (`span`: the innermost,
//! `spans`: all of them, outermost first). Every request is served inside a
//! `request` span (`api::trace`); lines about a job name its `job_id`.

use std::io::IsTerminal;

use baton_proto::config::LogFormat;
use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, reload};

/// Replaces the log filter of the running subscriber (SIGHUP).
pub type Reloader = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Logging set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A global subscriber was already set.
    #[error("logging is already initialised: {0}")]
    Init(String),
}

/// The filter: `RUST_LOG` when set, else the configured level.
pub fn env_filter(level: &str) -> EnvFilter {
    EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level))
}

/// Install the global subscriber writing `format` lines to stderr; returns
/// what replaces its filter.
pub fn init(level: &str, format: LogFormat) -> Result<Reloader, Error> {
    let (filter, handle) = reload::Layer::new(env_filter(level));
    let ansi = std::io::stderr().is_terminal();
    tracing_subscriber::registry()
        .with(filter)
        .with(lines(format, std::io::stderr, ansi))
        .try_init()
        .map_err(|e| Error::Init(e.to_string()))?;
    Ok(Box::new(move |level| {
        handle.reload(env_filter(level)).map_err(|e| e.to_string())
    }))
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
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
