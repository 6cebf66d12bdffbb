use super::*;
use baton_proto::{DumpSpec, NoopSpec};

#[test]
fn first_cancel_reason_wins() {
    let c = Cancel::new();
    assert_eq!(c.reason(), None);
    c.cancel(CancelReason::LeaseLost);
    c.cancel(CancelReason::Cancelled);
    assert_eq!(c.reason(), Some(CancelReason::LeaseLost));
}

#[tokio::test]
async fn unsupported_kind_fails_for_good() {
    let set = Executors::new(vec![Box::new(noop::NoopExecutor)]);
    assert_eq!(set.kinds(), vec![JobKind::Noop]);
    let job = Job {
        job_id: 1,
        token: 1,
        attempt: 1,
        retry_codes: Vec::new(),
        spec: JobSpec::Dump(DumpSpec {
            connection: "main".into(),
            database: "shop".into(),
            verify: false,
        }),
        timeout: None,
        cancel: Cancel::new(),
        progress: ProgressHandle::new(16),
    };
    let out = set.execute(job.clone()).await;
    assert_eq!(out.completion, Completion::Failed { retryable: false });
    assert_eq!(
        out.error.as_deref(),
        Some("job kind dump is not supported by this agent")
    );
    let ok = set
        .execute(Job {
            spec: JobSpec::Noop(NoopSpec { sleep_ms: 0 }),
            ..job
        })
        .await;
    assert_eq!(ok.completion, Completion::Succeeded);
}
