use super::*;
use crate::render_schedule::render_next;
use crate::schedule::{NextArgs, ScheduleCmd, preview_spec};
use clap::Parser;

#[derive(Parser)]
struct T {
    #[command(subcommand)]
    c: ScheduleCmd,
}

/// What `batonctl schedule next ARGS` prints offline.
fn printed(argv: &[&str]) -> String {
    let mut full = vec!["schedule", "next"];
    full.extend_from_slice(argv);
    let ScheduleCmd::Next(args) = T::try_parse_from(full).expect("parse").c else {
        panic!("not next")
    };
    let args: NextArgs = args;
    let spec = preview_spec(&args).expect("args").expect("a preview");
    let list = preview(&spec, args.from.expect("--from"), args.count as usize).expect("preview");
    render_next(&list, None)
}

#[test]
fn preview_prints_utc_and_the_zone_across_spring_forward() {
    // Europe/Berlin, 2027-03-28 02:00 → 03:00: 02:30 does not exist and
    // runs once at the first valid instant after the gap, 03:00 CEST.
    let text = printed(&[
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Berlin",
        "--from",
        "2027-03-27T00:00:00Z",
        "--count",
        "3",
    ]);
    assert_eq!(
        text,
        "UTC                   LOCAL (Europe/Berlin)\n\
         2027-03-27T01:30:00Z  2027-03-27T02:30:00+01:00\n\
         2027-03-28T01:00:00Z  2027-03-28T03:00:00+02:00\n\
         2027-03-29T00:30:00Z  2027-03-29T02:30:00+02:00\n"
    );
}

#[test]
fn preview_of_an_interval_follows_absolute_time_across_fall_back() {
    // America/New_York, 2027-11-07 02:00 EDT → 01:00 EST: every 30m stays
    // 30 minutes apart in UTC while the local clock repeats 01:00-02:00.
    let text = printed(&[
        "--every",
        "30m",
        "--tz",
        "America/New_York",
        "--from",
        "2027-11-07T05:00:00Z",
        "--count",
        "4",
    ]);
    assert_eq!(
        text,
        "UTC                   LOCAL (America/New_York)\n\
         2027-11-07T05:00:00Z  2027-11-07T01:00:00-04:00\n\
         2027-11-07T05:30:00Z  2027-11-07T01:30:00-04:00\n\
         2027-11-07T06:00:00Z  2027-11-07T01:00:00-05:00\n\
         2027-11-07T06:30:00Z  2027-11-07T01:30:00-05:00\n"
    );
}

#[test]
fn preview_is_inclusive_of_from_and_marks_the_window() {
    let text = printed(&[
        "--cron",
        "0 * * * *",
        "--between",
        "01:00-03:00",
        "--from",
        "2027-01-01T00:00:00Z",
        "--count",
        "4",
    ]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "UTC                   LOCAL (UTC)                NOTE"
    );
    assert_eq!(
        lines[1],
        "2027-01-01T00:00:00Z  2027-01-01T00:00:00+00:00  outside the active window: skipped"
    );
    assert_eq!(
        lines[2],
        "2027-01-01T01:00:00Z  2027-01-01T01:00:00+00:00  -"
    );
    assert_eq!(lines.len(), 5);
}

#[test]
fn a_bad_trigger_names_its_field() {
    let from = DateTime::from_timestamp(1_800_000_000, 0).expect("t");
    let mut spec = ScheduleSpec {
        name: "preview".into(),
        group: None,
        cron: Some("61 * * * *".into()),
        tz: None,
        every_ms: None,
        anchor: None,
        between: None,
        start_at: None,
        end_at: None,
        jitter_ms: 0,
        overlap: Default::default(),
        catchup: Default::default(),
        catchup_window_ms: 3_600_000,
        catchup_cap: 100,
        alert_after_ms: None,
        job: None,
        pipeline: Some("preview".into()),
        paused: false,
    };
    let err = preview(&spec, from, 3).expect_err("bad cron");
    assert_eq!(err.field(), "cron");
    spec.cron = Some("0 3 * * *".into());
    spec.tz = Some("Mars/Olympus".into());
    let err = preview(&spec, from, 3).expect_err("bad tz");
    assert_eq!(err.field(), "tz");
    // The local writer falls back to UTC for a spec it cannot build.
    let local = local_writer(&spec, from);
    assert_eq!(local(from), "2027-01-15T08:00:00Z");
    spec.tz = Some("Europe/Berlin".into());
    let local = local_writer(&spec, from);
    assert_eq!(local(from), "2027-01-15T09:00:00+01:00");
    let with_ms = from + chrono::Duration::milliseconds(644);
    assert_eq!(local(with_ms), "2027-01-15T09:00:00+01:00", "to the second");
}
