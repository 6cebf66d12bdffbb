use super::*;

#[test]
fn retry_decisions() {
    let p = RetryPolicy {
        max_attempts: 2,
        initial_backoff_ms: 100,
        jitter: 0.0,
        retry_on: vec![RetryOn::Error],
        ..RetryPolicy::default()
    };
    assert_eq!(
        after_spent_attempt(&p, Some(RetryOn::Error), 1, false, 0, 0.5),
        Next::Queued { not_before: 100 }
    );
    assert_eq!(
        after_spent_attempt(&p, Some(RetryOn::Error), 2, false, 0, 0.5),
        Next::Failed
    );
    assert_eq!(
        after_spent_attempt(&p, Some(RetryOn::LeaseExpired), 1, false, 0, 0.5),
        Next::Failed
    );
    assert_eq!(
        after_spent_attempt(&p, None, 1, false, 0, 0.5),
        Next::Failed
    );
    assert_eq!(
        after_spent_attempt(&p, Some(RetryOn::Error), 1, true, 0, 0.5),
        Next::Cancelled
    );
}
