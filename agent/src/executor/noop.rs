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
mod tests {
    use super::*;
    use crate::executor::{Cancel, CancelReason, ProgressHandle};
    use baton_proto::{Completion, NoopSpec};

    fn job(sleep_ms: u64, timeout: Option<Duration>) -> Job {
        Job {
            job_id: 1,
            token: 1,
            attempt: 1,
            retry_codes: Vec::new(),
            spec: JobSpec::Noop(NoopSpec { sleep_ms }),
            timeout,
            cancel: Cancel::new(),
            progress: ProgressHandle::new(64),
        }
    }

    #[tokio::test]
    async fn sleeps_then_succeeds() {
        let start = std::time::Instant::now();
        let out = NoopExecutor.execute(job(30, None)).await;
        assert_eq!(out.completion, Completion::Succeeded);
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn cancel_stops_the_sleep() {
        let j = job(60_000, None);
        let cancel = j.cancel.clone();
        let task = tokio::spawn(async move { NoopExecutor.execute(j).await });
        cancel.cancel(CancelReason::Cancelled);
        let out = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops quickly")
            .expect("no panic");
        assert_eq!(out.completion, Completion::Cancelled);
    }

    #[tokio::test]
    async fn timeout_cuts_the_sleep() {
        let out = NoopExecutor
            .execute(job(60_000, Some(Duration::from_millis(20))))
            .await;
        assert_eq!(out.completion, Completion::TimedOut);
    }
}
