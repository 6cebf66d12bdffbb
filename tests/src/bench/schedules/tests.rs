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

#[test]
fn logged_firings_parse() {
    let log = "\
2026-12-05T12:40:55.154935Z  INFO baton_controller::schedules::timer: Schedule occurrence recorded schedule=b-1 nominal=2026-12-05T12:40:55+00:00 state=\"fired\" job_id=1 count=1
2026-12-05T12:40:55.200000Z  INFO baton_controller::schedules::timer: Schedule occurrence recorded schedule=b-2 nominal=2026-12-05T12:40:55+00:00 state=\"skipped\" count=1
2026-12-05T12:40:57.010000Z  INFO baton_controller::schedules::timer: Schedule occurrence recorded schedule=b-3 nominal=2026-12-05T12:40:57+00:00 state=\"fired\" job_id=2 count=1
2026-12-05T12:40:55.100000Z  INFO baton_controller::server: Listening";
    let t: DateTime<Utc> = "2026-12-05T12:40:55Z".parse().expect("ts");
    let t0 = t.timestamp_millis();
    let late = logged_lateness(log, t0, t0 + 2_000);
    assert_eq!(late, vec![154.935]);
    assert_eq!(logged_lateness(log, t0, t0 + 3_000).len(), 2);
}

#[test]
fn placeholders_are_numbered_for_postgres() {
    assert_eq!(
        numbered("SELECT 1 WHERE a >= ? AND a < ?"),
        "SELECT 1 WHERE a >= $1 AND a < $2"
    );
    assert_eq!(
        numbered("SELECT COUNT(*) FROM jobs"),
        "SELECT COUNT(*) FROM jobs"
    );
}
