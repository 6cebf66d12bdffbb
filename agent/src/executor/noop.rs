//! The `noop` kind: wait `sleep_ms` (cancellable, bounded by the timeout), then succeed.

use std::time::Duration;

use baton_proto::{JobKind, JobResult, JobSpec, Progress};

use super::{BoxFuture, Executor, Job, Outcome};

/// Runs `noop` jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

impl Executor for NoopExecutor {
    fn kind(&self) -> JobKind {
        JobKind::Noop
    }

    fn execute(&self, job: Job) -> BoxFuture<'_, Outcome> {
        Box::pin(run(job))
    }
}

async fn run(job: Job) -> Outcome {
    let JobSpec::Noop(spec) = &job.spec else {
        return Outcome::failed(
            false,
            format!("a noop executor got a {} job", job.spec.kind()),
        );
    };
    let sleep = Duration::from_millis(spec.sleep_ms);
    let limit = job.timeout.map_or(sleep, |t| t.min(sleep));
    job.progress.set_progress(Progress {
        percent: None,
        message: format!("sleeping {}", humantime::format_duration(sleep)),
    });
    tokio::select! {
        biased;
        reason = job.cancel.cancelled() => Outcome::cancelled(reason, JobResult::default()),
        () = tokio::time::sleep(limit) => match job.timeout {
            Some(t) if t < sleep => Outcome::timed_out(t, JobResult::default()),
            _ => Outcome::succeeded(JobResult::default()),
        },
    }
}

#[cfg(test)]
mod tests;
