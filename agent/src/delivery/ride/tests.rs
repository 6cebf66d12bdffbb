use std::sync::Arc;
use std::time::Duration;

use baton_proto::lease::BatchCompleteResult;
use baton_proto::{CompleteRequest, Completion, JobResult, JobState};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::delivery::Delivery;
use crate::outbox::Entry;

fn pending(job_id: i64) -> (Pending, tokio::sync::oneshot::Receiver<Delivery>) {
    let entry = Entry {
        job_id,
        request: CompleteRequest {
            started_after_ms: None,
            token: 1,
            completion: Completion::Succeeded,
            result: JobResult::default(),
            error: None,
        },
    };
    Pending::for_test(entry, CancellationToken::new())
}

/// Start a poll's wait for company in a task; returns once it waits.
async fn waiting_poll(
    rides: &Arc<Rides>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> tokio::task::JoinHandle<Riders> {
    let waiter = {
        let (rides, tx) = (rides.clone(), tx.clone());
        tokio::spawn(async move { rides.take(Duration::from_secs(5), &tx).await })
    };
    while !rides.lock().waiting {
        tokio::task::yield_now().await;
    }
    waiter
}

/// A poll waits for company and `written` (one handed-off completion's
/// write) arrives meanwhile: kept for it; what the poll took.
async fn one_ride(
    rides: &Arc<Rides>,
    tx: &mpsc::UnboundedSender<Msg>,
    written: Vec<Pending>,
) -> Riders {
    rides.handed_off();
    let waiter = waiting_poll(rides, tx).await;
    assert!(
        rides.arrived(written, 1, true).is_empty(),
        "kept for the poll"
    );
    waiter.await.expect("task")
}

/// Written while a poll waits: kept for it (nothing returned to send
/// here); the poll takes it, and its answer goes to the delivery task.
#[tokio::test]
async fn a_completion_written_while_a_poll_waits_rides_it() {
    let rides = Arc::new(Rides::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (p, _done) = pending(7);
    let riders = one_ride(&rides, &tx, vec![p]).await;
    let items = riders.items();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].job_id, 7);
    riders.answer(Some(vec![BatchCompleteResult::Recorded {
        job_id: 7,
        state: JobState::Succeeded,
        duplicate: false,
    }]));
    match rx.try_recv() {
        Ok(Msg::Ridden(p, Some(r))) => assert_eq!((p.len(), r.len()), (1, 1)),
        other => panic!("expected the ridden completion, got {other:?}"),
    }
}

/// With no poll waiting, the delivery task keeps what it wrote and sends
/// it; a poll with nothing being written goes at once, with nothing.
#[tokio::test]
async fn without_a_waiting_poll_the_delivery_task_sends_it() {
    let rides = Rides::default();
    rides.handed_off();
    let (p, _done) = pending(8);
    assert_eq!(rides.arrived(vec![p], 1, true).len(), 1);
    let (tx, _rx) = mpsc::unbounded_channel();
    let riders = tokio::time::timeout(
        Duration::from_secs(5),
        rides.take(Duration::from_secs(60), &tx),
    )
    .await
    .expect("no wait when nothing is being written");
    assert!(riders.is_empty());
}

/// A poll that waits too long goes without; a completion written after
/// that is sent by the delivery task, not kept for a poll gone.
#[tokio::test]
async fn the_wait_is_bounded_and_nothing_is_stranded() {
    let rides = Rides::default();
    let (tx, _rx) = mpsc::unbounded_channel();
    rides.handed_off();
    let riders = rides.take(Duration::from_millis(30), &tx).await;
    assert!(riders.is_empty());
    let (p, _done) = pending(9);
    assert_eq!(rides.arrived(vec![p], 1, true).len(), 1, "sent here");
}

/// A poll that fails (dropped riders) hands its completions back; a
/// refusal of the field ends riding for the run.
#[tokio::test]
async fn failed_polls_hand_completions_back_and_a_refusal_ends_riding() {
    let rides = Arc::new(Rides::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (p, _done) = pending(10);
    drop(one_ride(&rides, &tx, vec![p]).await);
    match rx.try_recv() {
        Ok(Msg::Ridden(p, None)) => assert_eq!(p[0].entry.job_id, 10),
        other => panic!("expected the completion back, got {other:?}"),
    }
    rides.refused(&tx);
    rides.handed_off();
    let riders = rides.take(Duration::from_secs(5), &tx).await;
    assert!(riders.is_empty(), "no riding after a refusal");
    let (p, _done) = pending(11);
    assert_eq!(rides.arrived(vec![p], 1, true).len(), 1, "sent on its own");
}

/// A poll's wait dropped (shutdown) leaves no poll waiting, and what was
/// kept for it goes back.
#[tokio::test]
async fn a_dropped_wait_gives_back_what_was_kept() {
    let rides = Arc::new(Rides::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    rides.handed_off();
    rides.handed_off();
    let waiter = waiting_poll(&rides, &tx).await;
    let (p, _done) = pending(12);
    assert!(rides.arrived(vec![p], 1, true).is_empty());
    waiter.abort();
    let _ = waiter.await;
    assert!(!rides.lock().waiting);
    match rx.try_recv() {
        Ok(Msg::Ridden(p, None)) => assert_eq!(p[0].entry.job_id, 12),
        other => panic!("expected the completion back, got {other:?}"),
    }
}

/// A completion with much output goes on its own (the completion route
/// cuts one down that is too large); the small one rides.
#[tokio::test]
async fn a_large_completion_goes_on_its_own() {
    let rides = Arc::new(Rides::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (mut big, _big_done) = pending(13);
    big.entry.request.result.stdout = "x".repeat(RIDE_MAX_BYTES + 1);
    let (small, _small_done) = pending(14);
    let riders = one_ride(&rides, &tx, vec![big, small]).await;
    let ids: Vec<_> = riders.items().iter().map(|i| i.job_id).collect();
    assert_eq!(ids, [14]);
    match rx.try_recv() {
        Ok(Msg::Ridden(p, None)) => assert_eq!(p[0].entry.job_id, 13),
        other => panic!("expected the large one back, got {other:?}"),
    }
}
