//! Stopping a database job: why it stopped (cancel or execution timeout),
//! waiting for either, and the outcomes a stop ends with.
//!
//! Shared by the MySQL and SQL Server `procedure`/`sql` executors and by the
//! two `dump` flows (mysqldump and native SQL Server backups).

use std::future::Future;

use baton_proto::{Completion, JobResult, Progress};
use serde_json::Value as Json;
use tokio::time::Instant;

use super::{Cancel, CancelReason, Job, Outcome};

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A cancel fired (operator, lease loss, shutdown).
    Cancel(CancelReason),
    /// The execution timeout passed.
    Timeout,
}

impl Stop {
    /// A word for logs and error messages.
    pub fn word(self) -> &'static str {
        match self {
            Stop::Cancel(r) => r.as_str(),
            Stop::Timeout => "timeout",
        }
    }
}

/// Sleep until `deadline`, or forever without one.
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Fires on cancel or timeout.
#[derive(Debug, Clone)]
pub struct Stopper {
    cancel: Cancel,
    deadline: Option<Instant>,
}

impl Stopper {
    /// Fires when `cancel` does or at `deadline`.
    pub fn new(cancel: Cancel, deadline: Option<Instant>) -> Self {
        Stopper { cancel, deadline }
    }

    /// Wait for the stop; a cancel wins over a deadline passed at once.
    pub async fn stopped(&self) -> Stop {
        tokio::select! {
            biased;
            reason = self.cancel.cancelled() => Stop::Cancel(reason),
            () = sleep_until_opt(self.deadline) => Stop::Timeout,
        }
    }

    /// Run `f` to its end, or until a stop (then `f` is dropped, releasing
    /// what it borrowed, and killing the children it owns).
    pub async fn until<T>(&self, f: impl Future<Output = T>) -> Result<T, Stop> {
        tokio::select! {
            biased;
            stop = self.stopped() => Err(stop),
            r = f => Ok(r),
        }
    }

    /// Run `f` unless a stop comes first; the stop becomes `f`'s error.
    pub async fn run<T, E: From<Stop>>(
        &self,
        f: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        match self.until(f).await {
            Ok(r) => r,
            Err(stop) => Err(E::from(stop)),
        }
    }
}

/// Say `connecting to <connection>` and wait for `open`, unless the job is
/// stopped first: then the outcome of that stop (nothing ran on the server).
pub async fn open_unless_stopped<T>(
    job: &Job,
    connection: &str,
    deadline: Option<Instant>,
    open: impl Future<Output = T>,
) -> Result<T, Outcome> {
    job.progress.set_progress(Progress {
        percent: None,
        message: format!("connecting to {connection}"),
    });
    tokio::select! {
        biased;
        reason = job.cancel.cancelled() => Err(stopped_early(Stop::Cancel(reason), job)),
        () = sleep_until_opt(deadline) => Err(stopped_early(Stop::Timeout, job)),
        opened = open => Ok(opened),
    }
}

/// Run `work` until it ends or the job is stopped (cancel, `deadline`);
/// work that is ready wins over a stop. Pass `&mut` a pinned future to
/// keep it after a stop.
pub async fn work_or_stop<T>(
    job: &Job,
    deadline: Option<Instant>,
    work: impl Future<Output = T>,
) -> Result<T, Stop> {
    tokio::select! {
        biased;
        r = work => Ok(r),
        reason = job.cancel.cancelled() => Err(Stop::Cancel(reason)),
        () = sleep_until_opt(deadline) => Err(Stop::Timeout),
    }
}

/// A result with `data`, truncated or not.
pub fn result_with(data: Json, truncated: bool) -> JobResult {
    JobResult {
        truncated,
        data: Some(data),
        ..JobResult::default()
    }
}

/// A failed outcome.
pub fn failed(retryable: bool, message: String, result: JobResult) -> Outcome {
    Outcome {
        completion: Completion::Failed { retryable },
        result,
        error: Some(message),
    }
}

/// Stopped before a session existed: nothing ran on the server.
pub fn stopped_early(stop: Stop, job: &Job) -> Outcome {
    stopped(stop, job, JobResult::default())
}

/// The outcome of a stop (`cancelled` or `timed_out`) with `result`.
pub fn stopped(stop: Stop, job: &Job, result: JobResult) -> Outcome {
    match stop {
        Stop::Cancel(reason) => Outcome::cancelled(reason, result),
        Stop::Timeout => Outcome::timed_out(job.timeout.unwrap_or_default(), result),
    }
}

/// The outcome of a stop, its error text followed by `text` (what was done
/// on the server about it).
pub fn stopped_with(stop: Stop, job: &Job, result: JobResult, text: String) -> Outcome {
    let mut outcome = stopped(stop, job, result);
    outcome.error = Some(match outcome.error.take() {
        Some(e) => format!("{e}; {text}"),
        None => text,
    });
    outcome
}

#[cfg(test)]
mod tests;
