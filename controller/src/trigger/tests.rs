use super::*;
use serde_json::{Value, json};

/// RFC 3339 to Unix ms.
pub(crate) fn ms(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .timestamp_millis()
}

/// A schedule spec: `extra` over a pipeline schedule named `s1`.
pub(crate) fn spec(extra: Value) -> ScheduleSpec {
    let mut v = json!({"name": "s1", "pipeline": "p"});
    for (k, x) in extra.as_object().expect("object") {
        if x.is_null() {
            v.as_object_mut().expect("object").remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    serde_json::from_value(v).expect("spec")
}

pub(crate) fn trigger(extra: Value) -> Trigger {
    Trigger::new(&spec(extra), 0).expect("valid trigger")
}

fn err(extra: Value) -> Error {
    Trigger::new(&spec(extra), 0).expect_err("refused")
}

/// Local times of the occurrences in `[from, to)`.
fn locals(t: &Trigger, from: &str, to: &str) -> Vec<String> {
    all(t, ms(from), ms(to))
        .iter()
        .map(|&n| t.local(n))
        .collect()
}

/// Occurrences in `[from, to)`.
fn all(t: &Trigger, from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut n = t.first_at_or_after(from);
    while let Some(x) = n.filter(|&x| x < to) {
        out.push(x);
        n = t.next_after(x);
    }
    out
}

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";

#[test]
fn fixed_time_in_the_spring_gap_runs_once_at_the_first_instant_after_it() {
    let b = trigger(json!({"cron": "30 2 * * *", "tz": BERLIN}));
    assert_eq!(
        locals(&b, "2027-03-27T00:00:00Z", "2027-03-30T00:00:00Z"),
        [
            "2027-03-27T02:30:00+01:00",
            "2027-03-28T03:00:00+02:00",
            "2027-03-29T02:30:00+02:00"
        ]
    );
    let ny = trigger(json!({"cron": "30 2 * * *", "tz": NEW_YORK}));
    assert_eq!(
        locals(&ny, "2027-03-13T00:00:00Z", "2027-03-16T00:00:00Z"),
        [
            "2027-03-13T02:30:00-05:00",
            "2027-03-14T03:00:00-04:00",
            "2027-03-15T02:30:00-04:00"
        ]
    );
    // A 6-field pattern with seconds is fixed-time too.
    let s = trigger(json!({"cron": "15 30 2 * * *", "tz": BERLIN}));
    assert_eq!(
        locals(&s, "2027-03-28T00:00:00Z", "2027-03-29T00:00:00Z"),
        ["2027-03-28T03:00:00+02:00"]
    );
}

#[test]
fn fixed_time_in_the_repeated_hour_runs_once_at_the_first() {
    let b = trigger(json!({"cron": "30 2 * * *", "tz": BERLIN}));
    assert_eq!(
        locals(&b, "2027-10-30T00:00:00Z", "2027-11-02T00:00:00Z"),
        [
            "2027-10-30T02:30:00+02:00",
            "2027-10-31T02:30:00+02:00",
            "2027-11-01T02:30:00+01:00"
        ]
    );
    let ny = trigger(json!({"cron": "30 1 * * *", "tz": NEW_YORK}));
    assert_eq!(
        locals(&ny, "2027-11-06T00:00:00Z", "2027-11-09T00:00:00Z"),
        [
            "2027-11-06T01:30:00-04:00",
            "2027-11-07T01:30:00-04:00",
            "2027-11-08T01:30:00-05:00"
        ]
    );
    // Searching from inside the second pass of the hour does not find the
    // second 02:30 either; from the first pass it finds the first one.
    let second_pass = ms("2027-10-31T02:10:00+01:00");
    assert_eq!(
        b.next_after(second_pass).map(|n| b.local(n)).as_deref(),
        Some("2027-11-01T02:30:00+01:00")
    );
    let first_pass = ms("2027-10-31T02:10:00+02:00");
    assert_eq!(
        b.next_after(first_pass).map(|n| b.local(n)).as_deref(),
        Some("2027-10-31T02:30:00+02:00")
    );
}

/// Local days across the transitions, as UTC ranges, with their hours.
const DAYS: [(&str, &str, &str, usize); 4] = [
    (BERLIN, "2027-03-27T23:00:00Z", "2027-03-28T22:00:00Z", 23),
    (BERLIN, "2027-10-30T22:00:00Z", "2027-10-31T23:00:00Z", 25),
    (NEW_YORK, "2027-03-14T05:00:00Z", "2027-03-15T04:00:00Z", 23),
    (NEW_YORK, "2027-11-07T04:00:00Z", "2027-11-08T05:00:00Z", 25),
];

#[test]
fn wildcard_patterns_follow_absolute_time() {
    for (tz, from, to, hours) in DAYS {
        let hourly = trigger(json!({"cron": "0 * * * *", "tz": tz}));
        let h = all(&hourly, ms(from), ms(to));
        assert_eq!(h.len(), hours, "hourly in {tz} from {from}");
        assert!(
            h.windows(2).all(|w| w[1] - w[0] == 3_600_000),
            "{tz} {from}"
        );
        let quarter = trigger(json!({"cron": "*/15 * * * *", "tz": tz}));
        let q = all(&quarter, ms(from), ms(to));
        assert_eq!(q.len(), hours * 4, "*/15 in {tz} from {from}");
        assert!(q.windows(2).all(|w| w[1] - w[0] == 900_000), "{tz} {from}");
    }
    // Per second across the Berlin fall-back: every second of the 25 hours.
    let secs = trigger(json!({"cron": "* * * * * *", "tz": BERLIN}));
    let from = ms("2027-10-31T00:00:00Z");
    assert_eq!(all(&secs, from, from + 7_200_000).len(), 7200);
}

#[test]
fn a_list_of_hours_is_a_wildcard_pattern() {
    // Documented: a list is not fixed-time; 02:30 does not exist on the
    // spring-forward day and exists twice on the fall-back day.
    let t = trigger(json!({"cron": "30 2,14 * * *", "tz": BERLIN}));
    assert_eq!(
        locals(&t, "2027-03-27T22:00:00Z", "2027-03-28T22:00:00Z"),
        ["2027-03-28T14:30:00+02:00"]
    );
    assert_eq!(
        locals(&t, "2027-10-30T22:00:00Z", "2027-10-31T23:00:00Z"),
        [
            "2027-10-31T02:30:00+02:00",
            "2027-10-31T02:30:00+01:00",
            "2027-10-31T14:30:00+01:00"
        ]
    );
}

#[test]
fn intervals_stay_apart_in_utc_across_the_transitions() {
    for (tz, from, to, hours) in DAYS {
        let t = trigger(json!({"every_ms": 900_000, "tz": tz, "anchor": from}));
        let q = all(&t, ms(from), ms(to));
        assert_eq!(q.len(), hours * 4, "{tz} {from}");
        assert!(q.windows(2).all(|w| w[1] - w[0] == 900_000));
    }
}

#[test]
fn interval_anchoring() {
    let every = 60_000;
    let anchor = ms("2027-01-01T00:00:30Z");
    // Anchor in the past: the grid continues from it.
    let t = trigger(json!({"every_ms": every, "anchor": "2027-01-01T00:00:30Z"}));
    assert_eq!(
        t.next_after(anchor + 10 * every + 5),
        Some(anchor + 11 * every)
    );
    assert_eq!(t.next_after(anchor + 10 * every), Some(anchor + 11 * every));
    assert_eq!(
        t.first_at_or_after(anchor + 10 * every),
        Some(anchor + 10 * every)
    );
    // Before the anchor (in the future): the anchor is the first.
    assert_eq!(t.next_after(anchor - 3 * every - 7), Some(anchor));
    assert_eq!(t.next_after(i64::MIN), Some(anchor));
    // No anchor: start_at, else the creation time.
    let s = trigger(json!({"every_ms": every, "start_at": "2027-01-01T00:00:10Z"}));
    assert_eq!(s.next_after(0), Some(ms("2027-01-01T00:00:10Z")));
    let c = Trigger::new(&spec(json!({"every_ms": every})), 5_000).expect("trigger");
    assert_eq!(c.next_after(0), Some(5_000));
    assert_eq!(c.next_after(5_000), Some(65_000));
    // Anchor and start_at: the anchor's grid, from start_at on.
    let a = trigger(json!({
        "every_ms": every, "anchor": "2027-01-01T00:00:30Z", "start_at": "2027-01-01T01:00:00Z"
    }));
    assert_eq!(a.next_after(0), Some(ms("2027-01-01T01:00:30Z")));
    // end_at is inclusive; past it there is none.
    let e = trigger(json!({
        "every_ms": every, "anchor": "2027-01-01T00:00:00Z", "end_at": "2027-01-01T00:02:00Z"
    }));
    let end = ms("2027-01-01T00:02:00Z");
    assert_eq!(e.next_after(end - 1), Some(end));
    assert_eq!(e.next_after(end), None);
    // start_at applies to cron too.
    let cs = trigger(json!({"cron": "0 * * * *", "start_at": "2027-01-01T05:00:00Z"}));
    assert_eq!(cs.next_after(0), Some(ms("2027-01-01T05:00:00Z")));
}

#[test]
fn cron_times_are_whole_seconds_and_strictly_after() {
    let t = trigger(json!({"cron": "* * * * * *"}));
    let at = ms("2027-01-01T00:00:00Z");
    assert_eq!(t.next_after(at), Some(at + 1000));
    assert_eq!(t.next_after(at + 500), Some(at + 1000));
    assert_eq!(t.first_at_or_after(at), Some(at));
    assert_eq!(t.first_at_or_after(at + 1), Some(at + 1000));
}

#[test]
fn jitter_is_bounded_deterministic_and_spread() {
    let t =
        trigger(json!({"every_ms": 60_000, "jitter_ms": 30_000, "anchor": "2027-01-01T00:00:00Z"}));
    let again =
        trigger(json!({"every_ms": 60_000, "jitter_ms": 30_000, "anchor": "2027-01-01T00:00:00Z"}));
    let base = ms("2027-01-01T00:00:00Z");
    let js: Vec<i64> = (0..1000)
        .map(|k| t.jitter_ms("s1", base + k * 60_000))
        .collect();
    assert!(js.iter().all(|&j| (0..30_000).contains(&j)));
    let js2: Vec<i64> = (0..1000)
        .map(|k| again.jitter_ms("s1", base + k * 60_000))
        .collect();
    assert_eq!(js, js2, "same name and time, same jitter");
    let other: Vec<i64> = (0..1000)
        .map(|k| t.jitter_ms("s2", base + k * 60_000))
        .collect();
    assert_ne!(js, other, "another name, other delays");
    let distinct: std::collections::BTreeSet<_> = js.iter().collect();
    assert!(distinct.len() > 900, "spread: {} distinct", distinct.len());
    assert!(js.iter().any(|&j| j < 3_000) && js.iter().any(|&j| j > 27_000));
    assert_eq!(t.fire_at("s1", base), base + js[0]);

    // Capped below the gap to the next occurrence: per second, jitter 10 s.
    let s = trigger(json!({"cron": "* * * * * *", "jitter_ms": 10_000}));
    assert!((0..500).all(|k| (0..1000).contains(&s.jitter_ms("k", base + k * 1000))));
    // Uneven gaps (second 0 and 1 of each minute): 1 s, then 59 s.
    let u = trigger(json!({"cron": "0,1 * * * * *", "jitter_ms": 30_000}));
    let mut late = Vec::new();
    for m in 0..200 {
        let at0 = base + m * 60_000;
        assert!((0..1000).contains(&u.jitter_ms("k", at0)));
        late.push(u.jitter_ms("k", at0 + 1000));
    }
    assert!(late.iter().all(|&j| (0..30_000).contains(&j)));
    assert!(late.iter().any(|&j| j >= 1000), "the 59 s gap allows more");
    // Without jitter, none.
    let z = trigger(json!({"every_ms": 60_000}));
    assert_eq!(z.jitter_ms("s1", base), 0);
}

#[test]
fn windows_parse_and_wrap() {
    assert_eq!(
        parse_window("01:00-05:00"),
        Ok(Window {
            start: 60,
            end: 300
        })
    );
    assert_eq!(
        parse_window("22:30-2:00").map(|w| w.to_string()).as_deref(),
        Ok("22:30-02:00")
    );
    for bad in [
        "01:00-01:00",
        "25:00-01:00",
        "0100-0500",
        "01:00",
        "01:60-02:00",
        "a-b",
        "",
    ] {
        let e = parse_window(bad).expect_err(bad);
        assert_eq!(e.field(), "between", "{bad}");
        assert!(e.to_string().starts_with("between: "), "{e}");
    }
    let t = trigger(json!({"cron": "* * * * *", "tz": BERLIN, "between": "01:00-05:00"}));
    assert!(!t.in_window(ms("2027-06-01T00:59:59+02:00")));
    assert!(t.in_window(ms("2027-06-01T01:00:00+02:00")));
    assert!(t.in_window(ms("2027-06-01T04:59:59+02:00")));
    assert!(!t.in_window(ms("2027-06-01T05:00:00+02:00")));
    // 01:00 UTC is 03:00 in Berlin: inside.
    assert!(t.in_window(ms("2027-06-01T01:00:00Z")));
    let w = trigger(json!({"cron": "* * * * *", "between": "22:00-02:00"}));
    assert!(w.in_window(ms("2027-06-01T23:00:00Z")));
    assert!(w.in_window(ms("2027-06-01T00:00:00Z")));
    assert!(w.in_window(ms("2027-06-01T01:59:59Z")));
    assert!(!w.in_window(ms("2027-06-01T02:00:00Z")));
    assert!(!w.in_window(ms("2027-06-01T12:00:00Z")));
    assert!(trigger(json!({"cron": "* * * * *"})).in_window(0));
}

#[test]
fn validation_names_the_field() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "cron", "every_ms"),
        (
            json!({"cron": "* * * * *", "every_ms": 60000}),
            "cron",
            "every_ms",
        ),
        (json!({"cron": "* * * *"}), "cron", "4 fields"),
        (json!({"cron": "* * * * * * *"}), "cron", "7 fields"),
        (json!({"cron": "61 * * * *"}), "cron", "61 * * * *"),
        (json!({"cron": "x * * * *"}), "cron", "illegal"),
        (json!({"cron": "0 0 31 2 *"}), "cron", "matches no date"),
        (
            json!({"cron": "* * * * *", "tz": "Mars/Olympus"}),
            "tz",
            "Mars/Olympus",
        ),
        (json!({"every_ms": 999}), "every_ms", "1000"),
        (
            json!({"every_ms": 60000, "jitter_ms": 60000}),
            "jitter_ms",
            "every_ms",
        ),
        (
            json!({"every_ms": 60000, "between": "5-6"}),
            "between",
            "HH:MM",
        ),
        (
            json!({"every_ms": 60000, "start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}),
            "end_at",
            "start_at",
        ),
        (
            json!({"every_ms": 60000, "catchup_cap": 0}),
            "catchup_cap",
            "1..=100",
        ),
        (
            json!({"every_ms": 60000, "catchup_cap": 101}),
            "catchup_cap",
            "1..=100",
        ),
        (json!({"every_ms": 60000, "name": "a b"}), "name", "A-Z"),
        (
            json!({"every_ms": 60000, "pipeline": null}),
            "job",
            "pipeline",
        ),
        (
            json!({"every_ms": 60000, "group": "g", "job": {"spec": {"kind": "noop"}}}),
            "job",
            "pipeline",
        ),
        (
            json!({"every_ms": 60000, "pipeline": null, "job": {"spec": {"kind": "noop"}}}),
            "group",
            "required",
        ),
    ];
    for (extra, field, text) in cases {
        let e = err(extra.clone());
        assert_eq!(e.field(), field, "{extra}: {e}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{field}: ")), "{shown}");
        assert!(shown.contains(text), "{extra}: {shown} lacks {text}");
    }
    // A job with its group, 6 fields, nicknames and a zone are fine.
    let ok = spec(json!({
        "cron": "0 30 2 * * MON-FRI", "tz": NEW_YORK, "pipeline": null, "group": "g",
        "job": {"spec": {"kind": "noop"}}
    }));
    assert!(Trigger::new(&ok, 0).is_ok());
    assert!(Trigger::new(&spec(json!({"cron": "@daily"})), 0).is_ok());
    // For cron, jitter above the gap is allowed (capped per occurrence).
    assert!(Trigger::new(&spec(json!({"cron": "* * * * *", "jitter_ms": 600000})), 0).is_ok());
}

#[test]
fn local_times_zone_names_and_preview() {
    let t = trigger(json!({"cron": "30 3 * * *", "tz": BERLIN, "between": "03:00-03:45"}));
    assert_eq!(t.tz_name(), BERLIN);
    assert_eq!(trigger(json!({"every_ms": 60000})).tz_name(), "UTC");
    assert_eq!(
        t.local(ms("2027-03-28T01:30:00Z")),
        "2027-03-28T03:30:00+02:00"
    );
    assert_eq!(
        trigger(json!({"every_ms": 60000})).local(ms("2027-03-28T01:30:00.250Z")),
        "2027-03-28T01:30:00.250+00:00"
    );
    let p = t.preview("s1", ms("2027-03-27T00:00:00Z"), 3);
    let got: Vec<(String, String)> = p
        .iter()
        .map(|o| (o.nominal_at.to_rfc3339(), o.local.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "2027-03-27T02:30:00+00:00".to_owned(),
                "2027-03-27T03:30:00+01:00".to_owned()
            ),
            (
                "2027-03-28T01:30:00+00:00".to_owned(),
                "2027-03-28T03:30:00+02:00".to_owned()
            ),
            (
                "2027-03-29T01:30:00+00:00".to_owned(),
                "2027-03-29T03:30:00+02:00".to_owned()
            ),
        ]
    );
    assert!(
        p.iter()
            .all(|o| o.fire_at == o.nominal_at && !o.outside_window)
    );
    let w = trigger(
        json!({"every_ms": 1_800_000, "anchor": "2027-01-01T00:00:00Z", "between": "01:00-02:00", "jitter_ms": 60000}),
    );
    let p = w.preview("s1", ms("2027-01-01T00:00:00Z"), 4);
    let outside: Vec<bool> = p.iter().map(|o| o.outside_window).collect();
    assert_eq!(outside, [true, false, false, true]);
    assert!(p.iter().all(|o| o.fire_at >= o.nominal_at));
    assert!(p.iter().any(|o| o.fire_at > o.nominal_at), "jitter applied");
    // Ends at end_at.
    let e = trigger(
        json!({"every_ms": 60000, "anchor": "2027-01-01T00:00:00Z", "end_at": "2027-01-01T00:02:00Z"}),
    );
    assert_eq!(e.preview("s1", 0, 10).len(), 3);
}

#[test]
fn triggers_built_through_the_cron_cache_share_one_parse_and_answer_alike() {
    let mut crons = Crons::default();
    let berlin = spec(json!({"cron": "30 2 * * *", "tz": BERLIN}));
    let utc = spec(json!({"cron": "30 2 * * *", "name": "s2"}));
    let a = Trigger::new_with(&berlin, 0, &mut crons).expect("berlin");
    let b = Trigger::new_with(&utc, 0, &mut crons).expect("utc");
    assert_eq!(crons.len(), 1, "one pattern, parsed once");
    // The zone stays each trigger's own.
    let (from, to) = ("2027-03-27T00:00:00Z", "2027-03-30T00:00:00Z");
    assert_eq!(
        locals(&a, from, to),
        locals(&Trigger::new(&berlin, 0).expect("fresh"), from, to)
    );
    assert_eq!(
        all(&b, ms(from), ms(to)),
        all(&trigger(json!({"cron": "30 2 * * *"})), ms(from), ms(to))
    );
    assert_ne!(all(&a, ms(from), ms(to)), all(&b, ms(from), ms(to)));
    // Refusals are the same through the cache, and nothing refused is kept.
    for bad in ["61 * * * *", "0 0 30 2 *"] {
        let e = Trigger::new_with(&spec(json!({"cron": bad})), 0, &mut crons).expect_err("refused");
        assert_eq!(e, err(json!({"cron": bad})));
    }
    assert_eq!(crons.len(), 1);
}
