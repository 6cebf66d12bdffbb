use super::*;
use std::time::Duration;

fn job(timeout: Option<Duration>) -> Job {
    Job {
        job_id: 1,
        token: 1,
        attempt: 1,
        retry_codes: Vec::new(),
        spec: baton_proto::JobSpec::Noop(baton_proto::NoopSpec { sleep_ms: 0 }),
        timeout,
        cancel: Cancel::new(),
        progress: crate::executor::ProgressHandle::new(16),
    }
}

#[test]
fn words_name_the_reason() {
    assert_eq!(Stop::Timeout.word(), "timeout");
    assert_eq!(Stop::Cancel(CancelReason::LeaseLost).word(), "lease lost");
}

#[test]
fn stopped_with_appends_the_server_side_text() {
    let j = job(Some(Duration::from_secs(3)));
    let o = stopped_with(Stop::Timeout, &j, JobResult::default(), "killed".into());
    assert_eq!(o.completion, Completion::TimedOut);
    let err = o.error.unwrap_or_default();
    assert!(err.ends_with("; killed"), "{err}");
    let o = stopped_with(
        Stop::Cancel(CancelReason::Cancelled),
        &j,
        JobResult::default(),
        "killed".into(),
    );
    assert_eq!(o.completion, Completion::Cancelled);
    assert!(o.error.unwrap_or_default().contains("killed"));
}

#[tokio::test]
async fn stopper_prefers_the_cancel_and_drops_the_work() {
    let cancel = Cancel::new();
    let s = Stopper::new(cancel.clone(), Some(Instant::now()));
    assert_eq!(s.stopped().await, Stop::Timeout);
    cancel.cancel(CancelReason::Shutdown);
    assert_eq!(
        s.until(std::future::pending::<()>()).await,
        Err(Stop::Cancel(CancelReason::Shutdown))
    );
    let none = Stopper::new(Cancel::new(), None);
    assert_eq!(none.until(async { 7 }).await, Ok(7));
}
