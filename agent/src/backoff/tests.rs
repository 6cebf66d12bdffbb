use super::*;

#[test]
fn delays_grow_and_stay_under_the_cap() {
    let min = Duration::from_millis(200);
    let cap = Duration::from_secs(10);
    let all: Vec<Duration> = delays(min, cap).take(40).collect();
    assert_eq!(all.len(), 40, "never gives up");
    assert!(all[0] >= min && all[0] < min * 2, "{:?}", all[0]);
    assert!(all.iter().all(|d| *d <= cap), "{all:?}");
    assert!(all[39] >= cap / 2, "reaches the cap: {:?}", all[39]);
}
