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
