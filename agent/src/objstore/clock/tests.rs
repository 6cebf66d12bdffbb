use chrono::TimeZone;

use super::*;

fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, h, m, s)
        .single()
        .expect("t")
}

#[test]
fn http_dates_and_s3_times_are_read() {
    assert_eq!(
        parse_http_date("Sun, 06 Dec 2026 10:25:41 GMT"),
        Some(t(10, 25, 41))
    );
    assert_eq!(parse_http_date("yesterday"), None);
    assert_eq!(
        parse_s3_time("2026-12-06T10:25:41.500Z"),
        Some(t(10, 25, 41) + TimeDelta::milliseconds(500))
    );
    assert_eq!(parse_s3_time("2026-12-06"), None);
}

#[test]
fn a_small_offset_is_noise_and_not_used_for_signing() {
    let c = StoreClock::default();
    assert_eq!(c.offset(), None);
    assert_eq!(c.signing_time(t(10, 0, 0)), t(10, 0, 0));
    assert_eq!(c.store_time(t(10, 0, 0)), t(10, 0, 0));
    assert_eq!(c.observe(t(10, 0, 2), t(10, 0, 0)), None);
    assert_eq!(c.offset(), Some(TimeDelta::seconds(2)));
    assert_eq!(c.signing_time(t(10, 0, 0)), t(10, 0, 0));
    // The store's time has it all the same.
    assert_eq!(c.store_time(t(10, 0, 0)), t(10, 0, 2));
}

#[test]
fn a_host_an_hour_ahead_signs_with_the_stores_time_and_warns_once() {
    let c = StoreClock::default();
    // Host 11:00, store 10:00.
    assert_eq!(
        c.observe(t(10, 0, 0), t(11, 0, 0)),
        Some(TimeDelta::hours(-1))
    );
    assert_eq!(c.signing_time(t(11, 30, 0)), t(10, 30, 0));
    assert_eq!(c.observe(t(10, 1, 0), t(11, 1, 0)), None, "warned once");
    // The host is set right: no offset; a later step is logged again.
    assert_eq!(c.observe(t(10, 2, 0), t(10, 2, 0)), None);
    assert_eq!(c.signing_time(t(10, 3, 0)), t(10, 3, 0));
    assert_eq!(
        c.observe(t(10, 4, 0), t(9, 4, 0)),
        Some(TimeDelta::hours(1))
    );
    assert_eq!(c.signing_time(t(9, 5, 0)), t(10, 5, 0));
}

#[test]
fn clocks_are_kept_per_store_name() {
    let a = StoreClock::for_store("clock-test-a");
    a.observe(t(10, 0, 0), t(11, 0, 0));
    assert_eq!(
        StoreClock::for_store("clock-test-a").offset(),
        Some(TimeDelta::hours(-1))
    );
    assert_eq!(StoreClock::for_store("clock-test-b").offset(), None);
}

#[test]
fn timestamps_for_signing_keep_the_time() {
    let ts = timestamp(t(10, 25, 41));
    assert_eq!(ts.as_second(), t(10, 25, 41).timestamp());
}
