use super::*;
use baton_proto::schedule::{
    Catchup, NextOccurrence, OccurrenceCounts, OccurrenceTrigger, Overlap,
};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn spec() -> ScheduleSpec {
    ScheduleSpec {
        name: "nightly".into(),
        group: None,
        cron: Some("30 2 * * *".into()),
        tz: Some("Europe/Berlin".into()),
        every_ms: None,
        anchor: None,
        between: None,
        start_at: None,
        end_at: None,
        jitter_ms: 0,
        overlap: Overlap::Skip,
        catchup: Catchup::Latest,
        catchup_window_ms: 3_600_000,
        catchup_cap: 100,
        alert_after_ms: Some(26 * 3_600_000),
        job: None,
        pipeline: Some("nightly-dump".into()),
        paused: false,
    }
}

fn occ(nominal: &str, state: OccurrenceState, reason: Option<&str>) -> OccurrenceView {
    OccurrenceView {
        nominal_at: t(nominal),
        last_nominal_at: None,
        count: 1,
        trigger: OccurrenceTrigger::Schedule,
        state,
        reason: reason.map(str::to_owned),
        job_id: None,
        run_id: None,
        outcome: None,
        recorded_at: t(nominal),
    }
}

/// A fixed "zone" for tests: UTC+1 written by hand.
fn plus_one(at: DateTime<Utc>) -> String {
    (at + chrono::Duration::hours(1))
        .format("%Y-%m-%dT%H:%M:%S+01:00")
        .to_string()
}

fn view(now: DateTime<Utc>) -> ScheduleView {
    let mut last = occ("2027-01-09T01:30:00Z", OccurrenceState::Fired, None);
    last.run_id = Some(41);
    last.outcome = Some("failed".into());
    ScheduleView {
        spec: spec(),
        paused: false,
        next_at: Some(t("2027-01-10T01:30:00Z")),
        next_fire_at: Some(t("2027-01-10T01:30:00Z")),
        last: Some(last),
        last_success_at: Some(t("2027-01-07T01:31:00Z")),
        last_success_age_ms: Some(2 * 86_400_000 + 3_600_000),
        stale: true,
        counts: OccurrenceCounts {
            fired: 9,
            skipped: 1,
            missed: 2,
            pending: 0,
        },
        created_at: t("2027-01-01T00:00:00Z"),
        updated_at: now,
    }
}

#[test]
fn show_has_definition_state_next_and_what_did_not_run() {
    let now = t("2027-01-09T10:00:00Z");
    let v = view(now);
    let next = NextList {
        tz: "Europe/Berlin".into(),
        occurrences: vec![NextOccurrence {
            nominal_at: t("2027-01-10T01:30:00Z"),
            local: "2027-01-10T02:30:00+01:00".into(),
            fire_at: t("2027-01-10T01:30:00Z"),
            outside_window: false,
        }],
    };
    let mut range = occ(
        "2027-01-05T01:30:00Z",
        OccurrenceState::Missed,
        Some("the controller was not running"),
    );
    range.last_nominal_at = Some(t("2027-01-06T01:30:00Z"));
    range.count = 2;
    let history = OccurrenceList {
        occurrences: vec![
            v.last.clone().expect("last"),
            occ(
                "2027-01-08T01:30:00Z",
                OccurrenceState::Skipped,
                Some("previous run (run 40) still running"),
            ),
            range,
        ],
        next_before: None,
    };
    let text = render_show(&v, Some(&next), &not_run(&history, 10), now, &plus_one);
    for want in [
        "Schedule:        nightly\n",
        "State:           stale\n",
        "Trigger:         cron 30 2 * * * (Europe/Berlin)\n",
        "Runs:            pipeline nightly-dump\n",
        "Catch-up:        latest within 1h (at most 100)\n",
        "Last occurrence: 2027-01-09T01:30:00Z fired (run 41, failed)\n",
        "Last success:    2027-01-07T01:31:00Z (age 2d1h)\n",
        "Stale:           YES: no success for more than 1d2h\n",
        "Occurrences:     fired 9, skipped 1, missed 2, pending 0\n",
        "Next runs:\n  UTC                   LOCAL (Europe/Berlin)      IN\n  2027-01-10T01:30:00Z  2027-01-10T02:30:00+01:00  in 15h30m\n",
        "  NOMINAL (UTC)                                    LOCAL (Europe/Berlin)                                  STATE    REASON\n",
        "  2027-01-08T01:30:00Z                             2027-01-08T02:30:00+01:00                              skipped  previous run (run 40) still running\n",
        "  2027-01-05T01:30:00Z … 2027-01-06T01:30:00Z (2)  2027-01-05T02:30:00+01:00 … 2027-01-06T02:30:00+01:00  missed   the controller was not running\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("run 41, failed)  "), "{text}");

    let mut paused = view(now);
    paused.paused = true;
    paused.stale = false;
    let text = render_show(&paused, None, &[], now, &plus_one);
    assert!(text.contains("State:           paused\n"), "{text}");
    assert!(text.contains("Next runs: none while paused\n"), "{text}");
    assert!(!text.contains("did not run"), "{text}");
}

#[test]
fn history_shows_utc_zone_trigger_state_reason_and_outcome() {
    let mut fired = occ("2027-01-09T01:30:00Z", OccurrenceState::Fired, None);
    fired.job_id = Some(12);
    fired.outcome = Some("succeeded".into());
    fired.trigger = OccurrenceTrigger::Catchup;
    let list = OccurrenceList {
        occurrences: vec![
            fired,
            occ(
                "2027-01-08T01:30:00Z",
                OccurrenceState::Skipped,
                Some("outside the active window 01:00-05:00"),
            ),
        ],
        next_before: None,
    };
    let text = render_history(&list, "Europe/Berlin", &plus_one);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "NOMINAL (UTC)         LOCAL (Europe/Berlin)      TRIGGER   STATE    REASON                                 JOB/RUN  OUTCOME",
            "2027-01-09T01:30:00Z  2027-01-09T02:30:00+01:00  catchup   fired    -                                      job 12   succeeded",
            "2027-01-08T01:30:00Z  2027-01-08T02:30:00+01:00  schedule  skipped  outside the active window 01:00-05:00  -        -",
        ],
        "{text}"
    );
    let empty = OccurrenceList {
        occurrences: vec![],
        next_before: None,
    };
    assert_eq!(render_history(&empty, "UTC", &utc), "No occurrences.\n");
}

#[test]
fn next_shows_jitter_and_window_only_when_present() {
    let o = |n: &str, local: &str, fire: &str, outside| NextOccurrence {
        nominal_at: t(n),
        local: local.into(),
        fire_at: t(fire),
        outside_window: outside,
    };
    let list = NextList {
        tz: "America/New_York".into(),
        occurrences: vec![
            o(
                "2027-03-14T06:00:00Z",
                "2027-03-14T01:00:00-05:00",
                "2027-03-14T06:00:07Z",
                true,
            ),
            o(
                "2027-03-14T07:00:00Z",
                "2027-03-14T03:00:00-04:00",
                "2027-03-14T07:00:41Z",
                false,
            ),
        ],
    };
    let text = render_next(&list, Some(t("2027-03-14T05:00:00Z")));
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "UTC                   LOCAL (America/New_York)   FIRES AT (UTC)        IN     NOTE",
            "2027-03-14T06:00:00Z  2027-03-14T01:00:00-05:00  2027-03-14T06:00:07Z  in 1h  outside the active window: skipped",
            "2027-03-14T07:00:00Z  2027-03-14T03:00:00-04:00  2027-03-14T07:00:41Z  in 2h  -",
        ],
        "{text}"
    );
}

#[test]
fn list_and_one_liners() {
    let now = t("2027-01-09T10:00:00Z");
    let mut every = view(now);
    every.spec.name = "ping".into();
    every.spec.cron = None;
    every.spec.every_ms = Some(900_000);
    every.spec.pipeline = None;
    every.spec.group = Some("ops".into());
    every.spec.job = Some(baton_proto::schedule::JobTemplate {
        spec: baton_proto::JobSpec::Command(baton_proto::CommandSpec {
            program: "/bin/echo".into(),
            args: vec!["hello world".into()],
            env: Default::default(),
            working_dir: None,
        }),
        priority: 0,
        retry: Default::default(),
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    });
    every.paused = true;
    every.stale = false;
    every.last_success_at = None;
    let list = ScheduleList {
        schedules: vec![view(now), every],
    };
    let text = render_list(&list, now);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME     STATE   TRIGGER"), "{text}");
    assert!(
        lines[1]
            .starts_with("nightly  stale   cron 30 2 * * * (Europe/Berlin)  pipeline nightly-dump"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("in 15h30m  fired 8h30m ago  2d8h ago      2"),
        "{text}"
    );
    assert!(
        lines[2].starts_with(
            "ping     paused  every 15m                        /bin/echo 'hello world'"
        ),
        "{text}"
    );
    assert!(lines[2].contains("never"), "{text}");

    let mut v = view(now);
    assert_eq!(
        render_state_line("created", &v, now),
        "Schedule nightly created; next run 2027-01-10T01:30:00Z (in 15h30m)\n"
    );
    v.next_fire_at = Some(now);
    assert_eq!(
        render_state_line("resumed", &v, now),
        "Schedule nightly resumed; next run 2027-01-09T10:00:00Z (due)\n"
    );
    v.paused = true;
    assert_eq!(
        render_state_line("paused", &v, now),
        "Schedule nightly paused\n"
    );
    assert_eq!(
        render_state_line("created", &v, now),
        "Schedule nightly created (paused)\n"
    );
    let report = FireReport {
        occurrences: vec![occ(
            "2027-01-09T10:00:00Z",
            OccurrenceState::Skipped,
            Some("previous run (run 40) still running"),
        )],
        already: 2,
    };
    assert_eq!(
        render_fire_report("nightly", &report),
        "Schedule nightly: 2027-01-09T10:00:00Z skipped (previous run (run 40) still running)\n\
         (2 occurrences in the range existed already and were left as they were)\n"
    );
}
