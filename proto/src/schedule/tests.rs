use super::*;
use crate::job::{JobSpec, NoopSpec};
use crate::roundtrip::check;

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("ts")
}

fn spec() -> ScheduleSpec {
    ScheduleSpec {
        name: "nightly".into(),
        group: Some("db".into()),
        cron: Some("0 30 2 * * *".into()),
        tz: Some("Europe/Berlin".into()),
        every_ms: None,
        anchor: None,
        between: Some("01:00-05:00".into()),
        start_at: Some(at(1_800_000_000_000)),
        end_at: None,
        jitter_ms: 30_000,
        overlap: Overlap::BufferOne,
        catchup: Catchup::All,
        catchup_window_ms: 7_200_000,
        catchup_cap: 5,
        alert_after_ms: Some(90_000_000),
        job: Some(JobTemplate {
            spec: JobSpec::Noop(NoopSpec { sleep_ms: 5 }),
            priority: 1,
            retry: Default::default(),
            timeout_ms: Some(1000),
            lease_ttl_ms: None,
            labels: [("team".to_string(), "dba".to_string())].into(),
        }),
        pipeline: None,
        paused: true,
    }
}

fn occurrence() -> OccurrenceView {
    OccurrenceView {
        nominal_at: at(1_800_000_000_000),
        last_nominal_at: Some(at(1_800_000_060_000)),
        count: 2,
        trigger: OccurrenceTrigger::Catchup,
        state: OccurrenceState::Missed,
        reason: Some("the controller was down".into()),
        job_id: Some(4),
        run_id: None,
        outcome: Some("succeeded".into()),
        recorded_at: at(1_800_000_070_000),
    }
}

#[test]
fn schedule_messages_roundtrip() {
    check(&spec());
    check(&occurrence());
    check(&ScheduleView {
        spec: spec(),
        paused: false,
        next_at: Some(at(1_800_000_000_000)),
        next_fire_at: Some(at(1_800_000_001_000)),
        last: Some(occurrence()),
        last_success_at: Some(at(1_799_000_000_000)),
        last_success_age_ms: Some(1000),
        stale: true,
        counts: OccurrenceCounts {
            fired: 3,
            skipped: 2,
            missed: 1,
            pending: 1,
        },
        created_at: at(1_700_000_000_000),
        updated_at: at(1_700_000_000_001),
    });
    check(&ScheduleList { schedules: vec![] });
    check(&OccurrenceList {
        occurrences: vec![occurrence()],
        next_before: Some(at(5)),
    });
    check(&BackfillRequest {
        from: at(0),
        to: at(60_000),
    });
    check(&FireReport {
        occurrences: vec![occurrence()],
        already: 1,
    });
    check(&NextList {
        tz: "America/New_York".into(),
        occurrences: vec![NextOccurrence {
            nominal_at: at(0),
            local: "1969-12-31T19:00:00-05:00".into(),
            fire_at: at(0),
            outside_window: true,
        }],
    });
}

#[test]
fn a_minimal_schedule_takes_the_defaults() {
    let s: ScheduleSpec = serde_json::from_str(
        r#"{"name":"n","group":"g","every_ms":60000,"job":{"spec":{"kind":"noop"}}}"#,
    )
    .expect("parse");
    assert_eq!(s.overlap, Overlap::Skip);
    assert_eq!(s.catchup, Catchup::Latest);
    assert_eq!(s.catchup_window_ms, DEFAULT_CATCHUP_WINDOW_MS);
    assert_eq!(s.catchup_cap, DEFAULT_CATCHUP_CAP);
    assert!(!s.paused);
    let e = serde_json::from_str::<ScheduleSpec>(r#"{"name":"n","evry_ms":1}"#)
        .expect_err("unknown field");
    assert!(e.to_string().contains("evry_ms"), "{e}");
}

#[test]
fn wire_names_parse_back() {
    for o in [
        Overlap::Skip,
        Overlap::BufferOne,
        Overlap::Allow,
        Overlap::CancelPrevious,
    ] {
        assert_eq!(Overlap::parse(o.as_str()), Some(o));
        assert_eq!(serde_json::to_value(o).expect("json"), o.as_str());
    }
    for c in [Catchup::Latest, Catchup::All, Catchup::None] {
        assert_eq!(Catchup::parse(c.as_str()), Some(c));
        assert_eq!(serde_json::to_value(c).expect("json"), c.as_str());
    }
    for s in [
        OccurrenceState::Fired,
        OccurrenceState::Pending,
        OccurrenceState::Skipped,
        OccurrenceState::Missed,
    ] {
        assert_eq!(OccurrenceState::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
    }
    for t in [
        OccurrenceTrigger::Schedule,
        OccurrenceTrigger::Catchup,
        OccurrenceTrigger::Manual,
        OccurrenceTrigger::Backfill,
    ] {
        assert_eq!(OccurrenceTrigger::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).expect("json"), t.as_str());
    }
    assert_eq!(Overlap::parse("nope"), None);
}

#[test]
fn names_are_checked() {
    assert!(valid_name("nightly-dump.v2"));
    assert!(!valid_name(""));
    assert!(!valid_name("a b"));
    assert!(!valid_name(&"x".repeat(MAX_NAME_LEN + 1)));
}

#[test]
fn a_template_submits_to_a_group() {
    let t = spec().job.expect("job");
    let s = t.submit("other");
    assert_eq!(s.group, "other");
    assert_eq!(JobTemplate::from(s), t);
}
