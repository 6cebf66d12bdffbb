use super::*;

#[tokio::test]
async fn partition_refuses_and_freeze_holds_until_the_end() {
    let g = Gate::default();
    assert_eq!(
        g.before_call(CallKind::Poll, Duration::from_secs(1)).await,
        Pass::Open
    );

    g.engage(DrillMethod::Partition, Duration::from_millis(200));
    assert!(matches!(
        g.before_call(CallKind::Other, Duration::from_secs(1)).await,
        Pass::Refused(m) if m.contains("partition")
    ));
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        g.before_call(CallKind::Other, Duration::from_secs(1)).await,
        Pass::Open
    );

    g.engage(DrillMethod::Freeze, Duration::from_millis(300));
    let start = Instant::now();
    // A call whose timeout comes first fails after its timeout.
    assert!(matches!(
        g.before_call(CallKind::Other, Duration::from_millis(100))
            .await,
        Pass::Refused(_)
    ));
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A longer one waits for the end of the freeze, then goes.
    assert_eq!(
        g.before_call(CallKind::Other, Duration::from_secs(60))
            .await,
        Pass::Open
    );
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(g.current(), None);
}

#[tokio::test]
async fn calls_in_flight_learn_of_an_outage() {
    let g = Arc::new(Gate::default());
    let mut rx = g.watch();
    let g2 = g.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        g2.engage(DrillMethod::Freeze, Duration::from_secs(1));
    });
    let o = tokio::time::timeout(
        Duration::from_secs(5),
        Gate::engaged(&mut rx, CallKind::Other),
    )
    .await
    .expect("engaged");
    assert_eq!(o.method, DrillMethod::Freeze);
}

#[tokio::test]
async fn a_crash_stops_polls_only_until_it_ends() {
    let g = Arc::new(Gate::default());
    let mut poll_rx = g.watch();
    let mut other_rx = g.watch();
    g.engage(DrillMethod::Crash, Duration::from_millis(300));
    assert!(g.crashed_until().is_some());
    assert!(matches!(
        g.before_call(CallKind::Poll, Duration::from_secs(1)).await,
        Pass::Refused(m) if m.contains("crash")
    ));
    // Heartbeats and completions of the agent's other jobs go on.
    assert_eq!(
        g.before_call(CallKind::Other, Duration::from_secs(1)).await,
        Pass::Open
    );
    // A held poll is dropped; another call in flight is not.
    let o = tokio::time::timeout(
        Duration::from_secs(5),
        Gate::engaged(&mut poll_rx, CallKind::Poll),
    )
    .await
    .expect("the poll learns of the crash");
    assert_eq!(o.method, DrillMethod::Crash);
    assert!(
        tokio::time::timeout(
            Duration::from_millis(100),
            Gate::engaged(&mut other_rx, CallKind::Other)
        )
        .await
        .is_err()
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(g.crashed_until(), None);
    assert_eq!(
        g.before_call(CallKind::Poll, Duration::from_secs(1)).await,
        Pass::Open
    );
}

#[test]
fn crash_hold_is_shared() {
    let h = CrashHold::default();
    assert_eq!(h.until(), None);
    h.clone().crash(Duration::from_secs(3));
    assert!(h.until().is_some());
}
