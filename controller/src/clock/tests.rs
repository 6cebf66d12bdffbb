use std::time::{Duration, Instant};

use super::*;

#[test]
fn reads_the_anchor_plus_monotonic_time_elapsed() {
    let origin = Instant::now();
    let c = Clock::anchored(1_000_000, origin);
    assert_eq!(c.at_ms(origin), 1_000_000);
    assert_eq!(c.at_ms(origin + Duration::from_millis(1_500)), 1_001_500);
    assert_eq!(c.at_ms(origin + Duration::from_secs(3_600)), 4_600_000);
    // An instant before the origin reads as the origin: never backwards.
    if let Some(before) = origin.checked_sub(Duration::from_secs(5)) {
        assert_eq!(c.at_ms(before), 1_000_000);
    }
}

#[test]
fn never_goes_backwards_and_starts_at_the_wall_clock() {
    let c = Clock::start();
    let mut last = c.now_ms();
    for _ in 0..10_000 {
        let t = c.now_ms();
        assert!(t >= last, "{t} < {last}");
        last = t;
    }
    // Anchored to the wall clock: nothing stepped in between here.
    assert!(c.skew_ms().abs() < 1_000, "skew {}", c.skew_ms());
    assert!((now_ms() - chrono::Utc::now().timestamp_millis()).abs() < 1_000);
}

#[test]
fn skew_is_the_wall_clock_minus_the_clock() {
    // A clock anchored an hour behind the wall clock (as after a forward
    // step of an hour) sees the wall clock an hour ahead.
    let c = Clock::anchored(wall_now_ms() - 3_600_000, Instant::now());
    let skew = c.skew_ms();
    assert!((3_599_000..3_601_000).contains(&skew), "{skew}");
}

#[test]
fn skew_is_reported_once_per_change_of_more_than_a_second() {
    let mut w = SkewWatch::default();
    assert_eq!(w.check(3), None);
    assert_eq!(w.check(-900), None);
    assert_eq!(w.check(3_600_000), Some(3_600_000));
    assert_eq!(w.check(3_600_700), None);
    assert_eq!(w.check(3_599_500), None);
    // Stepped back: reported again (the clocks agree once more).
    assert_eq!(w.check(12), Some(12));
    assert_eq!(w.check(-3_600_000), Some(-3_600_000));
}
