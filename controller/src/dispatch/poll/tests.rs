use super::*;

#[test]
fn idle_holds_end_on_shared_ticks_never_later_than_asked() {
    let hold = Duration::from_secs(25);
    let first = Instant::now();
    let ends: Vec<Instant> = (0..40)
        .map(|i| {
            let started = first + Duration::from_millis(37 * i);
            let end = coalesced(started, hold);
            assert!(end <= started + hold, "never longer than asked");
            assert!(end > started + hold - HOLD_TICK, "at most a tick shorter");
            end
        })
        .collect();
    // 40 polls 37 ms apart end on the ticks their span covers, HOLD_TICK
    // apart: fewer wake-ups than polls.
    let mut distinct = ends.clone();
    distinct.dedup();
    let span = Duration::from_millis(37 * 39);
    let ticks = span.as_nanos() / HOLD_TICK.as_nanos() + 2;
    assert!(distinct.len() as u128 <= ticks, "{distinct:?}");
    assert!(distinct.len() < ends.len(), "{distinct:?}");
    for w in distinct.windows(2) {
        assert_eq!(w[1] - w[0], HOLD_TICK);
    }
    // Short holds are kept as asked.
    let short = Duration::from_millis(1_500);
    assert_eq!(coalesced(first, short), first + short);
}
