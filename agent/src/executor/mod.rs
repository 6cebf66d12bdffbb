//! Executors: run one job and say how it ended. They know nothing of HTTP or leases.
//!
//! An executor gets a [`Job`] (its spec, its timeout, a [`Cancel`] that carries
//! the reason to stop, and a [`ProgressHandle`] to publish progress and the log
//! tail for heartbeats) and returns an [`Outcome`].

pub mod capture;
pub mod command;
// The crate's only unsafe code (a pre_exec hook): see its SAFETY comment.
#[allow(unsafe_code)]
pub mod deathsig;
pub mod groups;
pub mod keeper;
pub mod noop;
pub mod stop;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use baton_proto::{Completion, FencingToken, JobId, JobKind, JobResult, JobSpec, Progress};
use tokio_util::sync::CancellationToken;

use capture::LogTail;

/// A module's errors (spawning and killing processes).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a job is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// An operator cancelled the job: complete it as `cancelled`.
    Cancelled,
    /// The lease is gone: stop at once, never report.
    LeaseLost,
    /// The agent is shutting down: stop, then release the job.
    Shutdown,
}

impl CancelReason {
    /// A word for logs and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Cancelled => "cancelled",
            CancelReason::LeaseLost => "lease lost",
            CancelReason::Shutdown => "agent shutdown",
        }
    }
}

/// A cancellation that carries its reason; the first reason given wins.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    reason: Arc<OnceLock<CancelReason>>,
}

impl Cancel {
    /// A cancel that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fire with `reason` (ignored when it has already fired).
    pub fn cancel(&self, reason: CancelReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// The reason, once fired.
    pub fn reason(&self) -> Option<CancelReason> {
        self.reason.get().copied()
    }

    /// Wait until fired; returns the reason.
    pub async fn cancelled(&self) -> CancelReason {
        self.token.cancelled().await;
        self.reason().unwrap_or(CancelReason::Cancelled)
    }
}

#[derive(Debug)]
struct ProgressInner {
    progress: Option<Progress>,
    tail: LogTail,
    /// Milliseconds from the grant's arrival to the work's start.
    started_after_ms: Option<u64>,
}

/// Where an executor publishes progress and output; heartbeats read it.
#[derive(Debug, Clone)]
pub struct ProgressHandle {
    inner: Arc<Mutex<ProgressInner>>,
}

impl ProgressHandle {
    /// A handle keeping the last `tail_bytes` bytes of output.
    pub fn new(tail_bytes: usize) -> Self {
        ProgressHandle {
            inner: Arc::new(Mutex::new(ProgressInner {
                progress: None,
                tail: LogTail::new(tail_bytes),
                started_after_ms: None,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProgressInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replace the progress.
    pub fn set_progress(&self, progress: Progress) {
        self.lock().progress = Some(progress);
    }

    /// Append output to the rolling tail.
    pub fn append_output(&self, bytes: &[u8]) {
        self.lock().tail.push(bytes);
    }

    /// Note that the work started `ms` after the grant arrived (reported
    /// with every heartbeat and the completion; the controller keeps the
    /// first).
    pub fn mark_started(&self, ms: u64) {
        self.lock().started_after_ms = Some(ms);
    }

    /// What [`ProgressHandle::mark_started`] noted.
    pub fn started_after_ms(&self) -> Option<u64> {
        self.lock().started_after_ms
    }

    /// The progress and the log tail (lossy UTF-8), for a heartbeat.
    pub fn snapshot(&self) -> (Option<Progress>, String) {
        let inner = self.lock();
        (inner.progress.clone(), inner.tail.to_string_lossy())
    }
}

/// One job to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Job id (for logs).
    pub job_id: JobId,
    /// Fencing token (for logs, and the run ledger's record).
    pub token: FencingToken,
    /// 1-based attempt number of the grant (the run ledger records it).
    pub attempt: u32,
    /// Database error codes that the job's retry policy retries (from the
    /// grant); other database server errors fail the job for good.
    pub retry_codes: Vec<i64>,
    /// What to run.
    pub spec: JobSpec,
    /// Execution timeout.
    pub timeout: Option<Duration>,
    /// Fires when the job must stop.
    pub cancel: Cancel,
    /// Where to publish progress and output.
    pub progress: ProgressHandle,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Outcome for the controller.
    pub completion: Completion,
    /// What it produced.
    pub result: JobResult,
    /// Error message for failures.
    pub error: Option<String>,
}

impl Outcome {
    /// Success with a result.
    pub fn succeeded(result: JobResult) -> Self {
        Outcome {
            completion: Completion::Succeeded,
            result,
            error: None,
        }
    }

    /// Failure without a result.
    pub fn failed(retryable: bool, error: impl Into<String>) -> Self {
        Outcome {
            completion: Completion::Failed { retryable },
            result: JobResult::default(),
            error: Some(error.into()),
        }
    }

    /// Stopped on a cancel.
    pub fn cancelled(reason: CancelReason, result: JobResult) -> Self {
        Outcome {
            completion: Completion::Cancelled,
            result,
            error: Some(format!("stopped: {}", reason.as_str())),
        }
    }

    /// Stopped by the execution timeout.
    pub fn timed_out(timeout: Duration, result: JobResult) -> Self {
        Outcome {
            completion: Completion::TimedOut,
            result,
            error: Some(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            )),
        }
    }

    /// A short word for logs.
    pub fn label(&self) -> &'static str {
        match self.completion {
            Completion::Succeeded => "succeeded",
            Completion::Failed { .. } => "failed",
            Completion::TimedOut => "timed_out",
            Completion::Cancelled => "cancelled",
        }
    }
}

/// A boxed future returned by executors.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs jobs of one kind.
pub trait Executor: Send + Sync {
    /// The kind it runs.
    fn kind(&self) -> JobKind;

    /// Whether the agent should advertise the kind.
    fn available(&self) -> bool {
        true
    }

    /// Whether this executor runs `spec` (several executors share a kind, one
    /// per database engine: each takes the jobs on its own connections).
    fn handles(&self, _spec: &JobSpec) -> bool {
        true
    }

    /// Run the job to its end (success, failure, timeout or cancel).
    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome>;
}

/// The executors of this agent, by kind.
pub struct Executors {
    list: Vec<Box<dyn Executor>>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|e| e.kind()))
            .finish()
    }
}

impl Executors {
    /// A set of executors.
    pub fn new(list: Vec<Box<dyn Executor>>) -> Self {
        Executors { list }
    }

    /// Kinds to advertise on poll.
    pub fn kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self
            .list
            .iter()
            .filter(|e| e.available())
            .map(|e| e.kind())
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// Run a job with the executor of its kind that handles its connection
    /// (without one, the first of its kind says why it cannot run it); an
    /// unknown kind fails for good.
    pub async fn execute(&self, job: Job) -> Outcome {
        let kind = job.spec.kind();
        let of_kind = || {
            self.list
                .iter()
                .filter(move |e| e.kind() == kind && e.available())
        };
        match of_kind()
            .find(|e| e.handles(&job.spec))
            .or_else(|| of_kind().next())
        {
            Some(e) => e.execute(job).await,
            None => Outcome::failed(
                false,
                format!("job kind {kind} is not supported by this agent"),
            ),
        }
    }
}

#[cfg(test)]
mod tests;
