use super::*;
use baton_proto::{CompleteRequest, Completion, ErrorCode, JobId, JobResult, JobState};

fn pending(job_id: JobId, stdout_len: usize) -> Pending {
    let (done, _) = oneshot::channel();
    Pending {
        persisted: false,
        entry: Entry {
            job_id,
            request: CompleteRequest {
                started_after_ms: None,
                token: 1,
                completion: Completion::Succeeded,
                result: JobResult {
                    stdout: "x".repeat(stdout_len),
                    ..JobResult::default()
                },
                error: None,
            },
        },
        abandon: CancellationToken::new(),
        done,
        span: Span::none(),
    }
}

#[test]
fn chunks_hold_at_most_max_items_and_the_text_budget() {
    let mut all: Vec<Pending> = (0..300).map(|i| pending(i, 0)).collect();
    let first = take_chunk(&mut all);
    assert_eq!(first.len(), BatchCompleteRequest::MAX);
    assert_eq!(first[0].entry.job_id, 0);
    assert_eq!(all.len(), 300 - BatchCompleteRequest::MAX);
    assert_eq!(all[0].entry.job_id, 256);

    let mut big = vec![
        pending(1, BATCH_TEXT_BYTES),
        pending(2, 10),
        pending(3, BATCH_TEXT_BYTES / 2),
        pending(4, BATCH_TEXT_BYTES / 2),
    ];
    // One item over the budget still goes, alone.
    let ids = |c: &[Pending]| c.iter().map(|p| p.entry.job_id).collect::<Vec<_>>();
    assert_eq!(ids(&take_chunk(&mut big)), [1]);
    assert_eq!(ids(&take_chunk(&mut big)), [2, 3]);
    assert_eq!(ids(&take_chunk(&mut big)), [4]);
    assert!(take_chunk(&mut big).is_empty());
}

#[test]
fn item_results_map_to_the_single_call_semantics() {
    let recorded = BatchCompleteResult::Recorded {
        job_id: 1,
        state: JobState::Succeeded,
        duplicate: true,
    };
    assert_eq!(item_verdict(recorded), Some(Delivery::Delivered));
    let refused = |code| BatchCompleteResult::Refused {
        job_id: 1,
        code,
        message: "m".into(),
    };
    for (code, want) in [
        (ErrorCode::LeaseLost, Delivery::Dropped),
        (ErrorCode::Forbidden, Delivery::Dropped),
        (ErrorCode::NotFound, Delivery::Dropped),
        (ErrorCode::Unauthorized, Delivery::Kept),
        (ErrorCode::Internal, Delivery::Kept),
        (ErrorCode::NotReady, Delivery::Kept),
    ] {
        assert_eq!(item_verdict(refused(code)), Some(want), "{code:?}");
    }
    // Refused for size: never dropped, sent again cut down (delivery::fit).
    assert_eq!(item_verdict(refused(ErrorCode::PayloadTooLarge)), None);
}

#[test]
fn a_batch_answer_must_match_the_request_item_by_item() {
    let chunk = vec![pending(1, 0), pending(2, 0)];
    let ok = |job_id| BatchCompleteResult::Recorded {
        job_id,
        state: JobState::Succeeded,
        duplicate: false,
    };
    let answer = |ids: &[JobId]| BatchCompleteResponse {
        results: ids.iter().map(|&id| ok(id)).collect(),
    };
    assert_eq!(
        batch_verdicts(&chunk, answer(&[1, 2])),
        Some(vec![Some(Delivery::Delivered); 2])
    );
    assert_eq!(batch_verdicts(&chunk, answer(&[2, 1])), None);
    assert_eq!(batch_verdicts(&chunk, answer(&[1])), None);
}
