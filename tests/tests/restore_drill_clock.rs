//! A wall-clock step of ±1 h while a scheduled restore drill is in flight
//! (issue 19 point 6 under the brief's clock fault): real controller and
//! agent processes, the real MariaDB, moto behind a fault proxy that paces
//! the download, libfaketime.
//!
//! The controller and the agent share one [`FakeClock`]: they stand for one
//! host whose clock NTP (or an operator) steps, which steps every process on
//! it at the same instant (`clock.rs` steps a controller alone; `ha_clock.rs`
//! replicas on hosts an hour apart). The step lands while the drill's
//! `restore` step downloads its object, fired by the drill's schedule (an
//! hourly cron, `M:S` of each hour, its first slot seconds away). Then:
//! - the run completes once and passes: each step one attempt, succeeded,
//!   no lease expired (controller) or lost (agent), times and durations
//!   shown for the run, its jobs and the restore sane;
//! - the scratch database is dropped, no download left behind;
//! - the schedule, as ARCHITECTURE.md "Schedules and pipelines" documents:
//!   a step under a running controller changes nothing (one occurrence, the
//!   next slot still a real hour after the first: +1 h fires the slot it
//!   jumped over no sooner, −1 h does not fire the first slot again); across
//!   a controller restart the step is adopted: +1 h makes the jumped-over
//!   slot missed ("the controller was not running") and `catchup = latest`
//!   (the template's) fires it once as a catch-up; after −1 h the cursor
//!   lies ahead of the clock and nothing fires.
//!
//! Skips with the reason without moto, MariaDB or libfaketime.

use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_proto::pipeline::{RunState, RunView, StepState};
use baton_proto::schedule::{OccurrenceState, OccurrenceTrigger, OccurrenceView};
use baton_tests::faketime::{FakeClock, assert_sane_run, assert_sane_times};
use baton_tests::restore_fixture::{BLOBS, Fixture, Setup, WAIT, data, downloading, step};
use chrono::{DateTime, DurationRound, TimeDelta, Timelike, Utc};
use serde_json::json;

const HOUR_S: i64 = 3_600;
/// Rows of the restored table ([`BLOBS`]).
const ROWS: u64 = 24_576;

/// A fixture on a faked clock with a scheduled drill whose run is in the
/// middle of its download.
struct InFlight {
    f: Fixture,
    clock: FakeClock,
    _clock_dir: tempfile::TempDir,
    /// The pipeline and schedule.
    name: String,
    scratch: String,
    /// The schedule's first nominal time.
    at: DateTime<Utc>,
    /// The run it fired.
    run: i64,
}

/// Start the fixture on a faked clock (offset 0), create the drill with an
/// hourly schedule whose first slot is ~10 s away, wait until that slot's
/// run downloads its object (paced by the proxy: ~3 MB/s, so seconds).
async fn drill_in_flight() -> Option<InFlight> {
    if let Some(why) = FakeClock::unavailable() {
        println!("SKIPPED: {why}");
        return None;
    }
    let clock_dir = tempfile::tempdir().expect("dir");
    let clock = FakeClock::new(&clock_dir.path().join("faketime.rc")).expect("clock");
    let setup = Setup {
        controller_extra: "",
        tables: BLOBS,
        verify: false,
        proxy: true,
        store: "",
    };
    let f = Fixture::start_env(setup, clock.env()).await;
    f.proxy
        .as_ref()
        .expect("proxy")
        .delay(Duration::from_millis(5));
    let name = format!("drill-{}", f.db);
    let scratch = format!("baton_drill_{}", name.replace('-', "_"));
    let at = (Utc::now() + TimeDelta::seconds(10))
        .duration_trunc(TimeDelta::seconds(1))
        .expect("whole second");
    let cron = format!("{} {} * * * *", at.second(), at.minute());
    create_drill(&f, &name, &cron);
    // Fail now, not after WAIT, if the machine was too slow for the slot.
    let s = f.c.api.schedule(&name).await.expect("schedule");
    assert_eq!(s.next_at, Some(at), "the first slot is {at}: {s:#?}");
    let h =
        f.c.api
            .wait_history(&name, WAIT, "fired", |h| {
                h.iter().any(|o| o.state == OccurrenceState::Fired)
            })
            .await
            .expect("fired");
    let run = h[0].run_id.expect("a run");
    let end = Instant::now() + WAIT;
    while downloading(&f.dumps) == 0 {
        assert!(
            Instant::now() < end,
            "the download never began\n{}",
            f.c.logs()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Some(InFlight {
        f,
        clock,
        _clock_dir: clock_dir,
        name,
        scratch,
        at,
        run,
    })
}

/// `batonctl pipeline create --template restore-drill` with `--schedule CRON`.
fn create_drill(f: &Fixture, name: &str, cron: &str) {
    let out = f.create_drill(name, cron);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Step the shared clock by `step_s` in the middle of the download; the
/// run, once ended, as [`assert_passed_once`] checks it.
async fn step_mid_download(d: &InFlight, step_s: i64) -> RunView {
    d.clock.set_offset_s(step_s).expect("step");
    assert!(
        downloading(&d.f.dumps) > 0,
        "the step landed during the download"
    );
    let r = d.f.c.api.wait_run_ended(d.run, WAIT).await.expect("ended");
    assert_passed_once(d, &r).await;
    assert_sane_run(&r);
    let log = d.f.c.controller.log_text();
    assert!(log.contains("Wall clock stepped away"), "{log}");
    assert!(!log.contains("Lease expired"), "{log}");
    let agent = d.f.c.agents[0].log_text();
    assert!(!agent.contains("Lease lost"), "{agent}");
    // The step reached both processes: each logged lines stamped by the
    // stepped wall clock.
    for (who, text) in [("controller", &log), ("agent", &agent)] {
        assert!(stamped_off_by(text, step_s), "{who}:\n{text}");
    }
    r
}

/// Whether a line of `log` is stamped (its leading RFC 3339 time) at least
/// 50 minutes away from now in the direction of `step_s`.
fn stamped_off_by(log: &str, step_s: i64) -> bool {
    let now = Utc::now();
    log.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
        .any(|t| (t.with_timezone(&Utc) - now).num_minutes() * step_s.signum() >= 50)
}

/// The run passed with one attempt per step, its restore compared the
/// table, the scratch database is gone and so is the download.
async fn assert_passed_once(d: &InFlight, r: &RunView) {
    let f = &d.f;
    assert_eq!(r.state, RunState::Succeeded, "{r:#?}\n{}", f.c.logs());
    assert_eq!(r.attempt, 1, "{r:#?}");
    for s in &r.steps {
        assert_eq!(s.state, StepState::Succeeded, "{r:#?}");
        assert_eq!(s.attempts, 1, "step {} ran twice: {r:#?}", s.name);
        let j = f.c.api.job(s.job_id.expect("job")).await.expect("job");
        assert_eq!(j.state, JobState::Succeeded, "{j:#?}");
        assert_eq!(j.attempts.len(), 1, "{j:#?}\n{}", f.c.logs());
        if r.nominal_at == Some(d.at) {
            // Written by the controller the step ran under (one after a
            // restart across the step is off by it: ARCHITECTURE.md "The
            // controller's clock").
            assert_sane_times(&j);
        }
    }
    let rj =
        f.c.api
            .job(step(r, "restore").job_id.expect("job"))
            .await
            .expect("job");
    let v = data(&rj);
    assert_eq!(v["database"], d.scratch.as_str(), "{v:#}");
    assert_eq!(v["source"]["key"], f.key.as_str(), "{v:#}");
    assert_eq!(v["source"]["sha256"], f.sha256.as_str(), "{v:#}");
    assert_eq!(v["mismatches"], json!([]), "{v:#}");
    assert_eq!(v["tables"][0]["rows"], ROWS, "{v:#}");
    // On the agent's monotonic clock: seconds, not an hour or less than 0.
    let ms = v["duration_ms"].as_u64().expect("duration_ms");
    assert!((1..120_000).contains(&ms), "restore took {ms} ms: {v:#}");
    assert!(!f.database_exists(&d.scratch), "scratch dropped");
    assert!(f.leftovers().is_empty(), "{:?}", f.leftovers());
}

/// The schedule's history: exactly the first slot, fired on time by the
/// schedule, the run `d.run`; its next slot still `at + 1 h`.
async fn assert_fired_once(d: &InFlight) -> Vec<OccurrenceView> {
    let h = d.f.c.api.history(&d.name).await.expect("history");
    assert_eq!(h.len(), 1, "{h:#?}");
    let o = &h[0];
    assert_eq!(o.nominal_at, d.at, "{h:#?}");
    assert_eq!(
        (o.state, o.trigger, o.count),
        (OccurrenceState::Fired, OccurrenceTrigger::Schedule, 1),
        "{h:#?}"
    );
    assert_eq!(o.run_id, Some(d.run), "{h:#?}");
    let s = d.f.c.api.schedule(&d.name).await.expect("schedule");
    assert_eq!(s.next_at, Some(d.at + TimeDelta::hours(1)), "{s:#?}");
    h
}

/// +1 h mid-download: the run passes once, the slot the step jumped over
/// (`at + 1 h`, now behind the stepped wall clock) does not fire under the
/// running controller. Restarted (the step adopted), the controller finds
/// that slot passed while it "was not running", more than 10 s late, and
/// `catchup = latest` fires it once as a catch-up, a second drill that
/// also passes; then the next slot is `at + 2 h`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_step_mid_drill_neither_reruns_nor_expires_and_catches_up_once_after_a_restart() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let Some(mut d) = drill_in_flight().await else {
        return;
    };
    step_mid_download(&d, HOUR_S).await;
    assert_fired_once(&d).await;

    d.f.proxy.as_ref().expect("proxy").pass();
    // More than the plan's 10 s on-time allowance past `at + 1 h` on the
    // stepped clock when the controller is back.
    let back = d.at + TimeDelta::seconds(15);
    if let Ok(wait) = (back - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    d.f.c.controller.restart().await.expect("restart");
    d.f.c.wait_agents_online().await.expect("online");
    let caught_up = d.at + TimeDelta::hours(1);
    let h =
        d.f.c
            .api
            .wait_history(&d.name, WAIT, "caught up", |h| {
                h.iter()
                    .any(|o| o.nominal_at == caught_up && o.run_id.is_some())
            })
            .await
            .expect("catch-up");
    assert_eq!(h.len(), 2, "{h:#?}");
    let o = &h[0];
    assert_eq!(o.nominal_at, caught_up, "{h:#?}");
    assert_eq!(
        (o.state, o.trigger, o.count),
        (OccurrenceState::Fired, OccurrenceTrigger::Catchup, 1),
        "{h:#?}"
    );
    let second = o.run_id.expect("run");
    let r = d.f.c.api.wait_run_ended(second, WAIT).await.expect("ended");
    assert_passed_once(&d, &r).await;
    // Written after the restart, an hour ahead of the real clock (the step
    // adopted), but no duration below 0.
    let ended = r.finished_at.expect("finished");
    assert!(ended >= r.created_at, "negative duration: {r:#?}");
    let h = d.f.c.api.history(&d.name).await.expect("history");
    assert_eq!(h.len(), 2, "nothing else fired: {h:#?}");
    let s = d.f.c.api.schedule(&d.name).await.expect("schedule");
    assert_eq!(s.next_at, Some(d.at + TimeDelta::hours(2)), "{s:#?}");
    // The first run is as it was.
    let first = d.f.c.api.run(d.run).await.expect("run");
    assert_passed_once(&d, &first).await;
}

/// −1 h mid-download: the run passes once and the first slot, an hour
/// ahead of the stepped wall clock again, does not fire twice, neither
/// under the running controller nor after a restart adopts the step (the
/// cursor lies ahead of the clock: the next slot stays `at + 1 h`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_step_mid_drill_neither_reruns_nor_expires_nor_refires_the_slot() {
    baton_tests::require_s3!();
    baton_tests::require_mariadb!();
    let Some(mut d) = drill_in_flight().await else {
        return;
    };
    step_mid_download(&d, -HOUR_S).await;
    assert_fired_once(&d).await;

    d.f.c.controller.restart().await.expect("restart");
    d.f.c.wait_agents_online().await.expect("online");
    // The timer looks at start and at least every 10 s after.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_fired_once(&d).await;
    let first = d.f.c.api.run(d.run).await.expect("run");
    assert_passed_once(&d, &first).await;
}
