use super::*;

#[test]
fn due_counts_each_second_mark_in_the_window() {
    // [12:00:10, 12:03:10): second 5 falls at 12:01:05, 12:02:05, 12:03:05;
    // second 30 at 12:00:30, 12:01:30, 12:02:30.
    let t0 = 43_200_000 + 10_000;
    let t1 = t0 + 180_000;
    assert_eq!(due_in(5, t0, t1), 3);
    assert_eq!(due_in(30, t0, t1), 3);
    assert_eq!(due_in(10, t0, t1), 3, "t0 inclusive, t1 exclusive");
    assert_eq!(due_in(0, t0, t0 + 1), 0);
}
