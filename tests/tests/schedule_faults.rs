//! Schedules under the standard faults, with real processes and per-second
//! crons: the controller's wall clock stepped ±1 h (libfaketime on the
//! controller only), the controller SIGSTOPped for 5 s, its state dir on a
//! loop-mounted filesystem that fills up, and SIGHUP while it fires. After
//! each, the controller is stopped and its store is checked for the
//! exactly-once evidence (`sched_store`: one job per nominal time, every
//! nominal time one occurrence row, none absent). Tests that need
//! libfaketime or root with loop devices skip with the reason printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_proto::schedule::{OccurrenceState, OccurrenceTrigger, OccurrenceView};
use baton_tests::api::Api;
use baton_tests::cluster::Cluster;
use baton_tests::faketime::FakeClock;
use baton_tests::loopfs::LoopFs;
use baton_tests::proc::{Agent, Controller};
use baton_tests::sched_store::{self, OccRow};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const HOUR_S: i64 = 3_600;
const HOUR_MS: i64 = HOUR_S * 1_000;
const SEC: i64 = 1_000;

/// A per-second schedule of noop jobs (one attempt) to group `default`, in
/// UTC. Overlap `allow`, so that every occurrence the timer acts on in time
/// fires whatever the agents do; `extra` keys are added.
fn tick(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut s = json!({
        "name": name,
        "group": "default",
        "cron": "* * * * * *",
        "tz": "UTC",
        "overlap": "allow",
        "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}},
    });
    if let (Some(s), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    s
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn now_ms() -> i64 {
    ms(Utc::now())
}

async fn sleep_until_ms(at: i64) {
    let d = at - now_ms();
    if d > 0 {
        tokio::time::sleep(Duration::from_millis(d as u64)).await;
    }
}

/// Wait until the schedule has fired an occurrence with a nominal time
/// after `after` (Unix ms); its history.
async fn wait_fired_after(api: &Api, name: &str, after: i64) -> Vec<OccurrenceView> {
    api.wait_history(name, WAIT, &format!("fired after {after}"), |h| {
        h.iter()
            .any(|o| o.state == OccurrenceState::Fired && ms(o.nominal_at) > after)
    })
    .await
    .expect("fired")
}

/// The newest fired nominal time of a history.
fn newest_fired(h: &[OccurrenceView]) -> i64 {
    h.iter()
        .filter(|o| o.state == OccurrenceState::Fired)
        .map(|o| ms(o.nominal_at))
        .max()
        .expect("a fired occurrence")
}

/// The rows of a history whose nominal time is in `from..=to`, by nominal.
fn rows_in(h: &[OccurrenceView], from: i64, to: i64) -> BTreeMap<i64, &OccurrenceView> {
    h.iter()
        .filter(|o| (from..=to).contains(&ms(o.nominal_at)))
        .map(|o| (ms(o.nominal_at), o))
        .collect()
}

/// Between `from` and `to` the schedule fired every second, on time, one
/// row per second: no burst of catch-ups, nothing missed, no gap, no row
/// for a second twice. Returns how many fired.
fn assert_every_second_fired(h: &[OccurrenceView], from: i64, to: i64, ctx: &str) -> usize {
    let rows = rows_in(h, from, to);
    let mut expect = None;
    for (n, o) in &rows {
        assert!(
            o.state == OccurrenceState::Fired
                && o.trigger == OccurrenceTrigger::Schedule
                && o.count == 1,
            "{ctx}: second {n} not fired on time by the schedule: {o:#?}\n{h:#?}"
        );
        if let Some(e) = expect {
            assert_eq!(*n, e, "{ctx}: gap or repeat before {o:#?}\n{h:#?}");
        }
        expect = Some(n + SEC);
    }
    rows.len()
}

/// SIGTERM the controller, wait for it to exit and check its store: no
/// nominal time with two jobs, every nominal time of `name` one row (ranges
/// expanded), each fired one naming its own job. Returns the rows.
async fn stop_and_check(ctl: &mut Controller, name: &str) -> (sched_store::Evidence, Vec<OccRow>) {
    let proc = ctl.proc.as_mut().expect("running");
    proc.signal(Signal::SIGTERM).expect("sigterm");
    proc.wait_exit(WAIT).expect("exit");
    let db = sched_store::open(&sched_store::db_path(&ctl.state_dir))
        .await
        .expect("open store");
    let ev = sched_store::check_exactly_once(&db, name, SEC)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctl.log_text()));
    let id = sched_store::schedule_id(&db, name).await.expect("id");
    let rows = sched_store::occurrences(&db, id).await.expect("rows");
    db.close().await;
    println!("{name}: {ev:?}");
    (ev, rows)
}

/// Occurrences (ranges counted by their count) of `rows` with a nominal
/// time in `from..=to`, per state; a range must lie wholly inside or outside.
fn states_in(rows: &[OccRow], from: i64, to: i64) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for r in rows {
        let last = r.last_nominal.unwrap_or(r.nominal);
        if last < from || r.nominal > to {
            continue;
        }
        assert!(
            r.nominal >= from && last <= to,
            "a range row straddles {from}..={to}: {r:?}"
        );
        *m.entry(r.state.clone()).or_default() += r.count;
    }
    m
}

/// A cluster whose controller runs on a faked clock (`faketime::cluster`).
async fn faked_cluster(agents: usize) -> Option<(Cluster, FakeClock, tempfile::TempDir)> {
    baton_tests::faketime::cluster(agents, |o| o.slots = 4).await
}

/// The wall clock steps by `step_s` under the running controller: it keeps
/// firing each second of its own clock (which the step does not move), one
/// row each, no burst and no stall. Returns the newest nominal fired.
async fn step_while_running(c: &Cluster, clock: &FakeClock, name: &str, step_s: i64) -> i64 {
    c.api
        .create_schedule(tick(name, json!({})))
        .await
        .expect("create");
    let h = wait_fired_after(&c.api, name, 0).await;
    let first = newest_fired(&h);
    wait_fired_after(&c.api, name, first + 2 * SEC).await;
    let stepped = now_ms();
    clock.set_offset_s(step_s).expect("step");
    // Six seconds of firing across the step.
    sleep_until_ms(stepped + 6_000).await;
    let h = wait_fired_after(&c.api, name, stepped + 5 * SEC).await;
    let newest = newest_fired(&h);
    let ctx = format!("step {step_s} s while running");
    let n = assert_every_second_fired(&h, first, newest + 10 * SEC, &ctx);
    assert!(n >= 8, "{ctx}: {n} fired: {h:#?}");
    // Nominal times stay on the controller's clock (the real one here): a
    // timer on the wall clock would be an hour off, or silent.
    let real = now_ms();
    assert!(
        (real - 3_000..real + 1_000).contains(&newest),
        "{ctx}: newest nominal {newest}, real now {real}"
    );
    // Each job was made when its second came on the controller's clock.
    for o in rows_in(&h, stepped, newest).values() {
        let job = c.api.job(o.job_id.expect("job")).await.expect("job");
        let late = ms(job.created_at) - ms(o.nominal_at);
        assert!(
            (0..3_000).contains(&late),
            "{ctx}: job made {late} ms after {o:#?}"
        );
    }
    let log = c.controller.log_text();
    assert!(log.contains("Wall clock stepped away"), "{log}");
    println!("{ctx}: {n} fired one per second, none missed or caught up");
    newest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_wall_clock_step_neither_bursts_nor_repeats_and_a_restart_records_the_hour() {
    let Some((mut c, clock, _dir)) = faked_cluster(2).await else {
        return;
    };
    let name = "tick-forward";
    let last = step_while_running(&c, &clock, name, HOUR_S).await;
    // Restarted with the step in effect: the controller's clock is now an
    // hour ahead; the hour it jumped over is recorded, never dropped.
    let t0 = Instant::now();
    c.controller.restart().await.expect("restart");
    let restarted = now_ms() + HOUR_MS;
    wait_fired_after(&c.api, name, restarted - 12 * SEC).await;
    println!(
        "Forward step: fired again {:?} after the restart",
        t0.elapsed()
    );
    let h = wait_fired_after(&c.api, name, restarted + 2 * SEC).await;
    let newest = newest_fired(&h);
    let after = assert_every_second_fired(&h, restarted, newest, "after the restart");
    assert!(after >= 2);
    let (ev, rows) = stop_and_check(&mut c.controller, name).await;
    // What the step jumped over: the occurrences after the last one fired
    // before the restart, up to the on-time one at the restart, all missed
    // "the controller was not running" (a step at start is downtime).
    let on_time = rows
        .iter()
        .find(|r| r.nominal > last + SEC && r.state == "fired")
        .expect("fired after the restart");
    assert!(
        on_time.nominal >= restarted - 12 * SEC && on_time.trigger == "schedule",
        "{on_time:?} (restarted at {restarted})"
    );
    let gap = states_in(&rows, last + SEC, on_time.nominal - SEC);
    let jumped = (on_time.nominal - last) / SEC - 1;
    assert!(jumped >= HOUR_S - 5, "{jumped} occurrences jumped over");
    assert_eq!(gap.get("missed"), Some(&jumped), "{gap:?}");
    assert_eq!(gap.len(), 1, "only missed in the jumped hour: {gap:?}");
    for r in rows
        .iter()
        .filter(|r| r.nominal > last && r.nominal < on_time.nominal)
    {
        let why = r.reason.as_deref().unwrap_or_default();
        assert!(why.contains("the controller was not running"), "{r:?}");
    }
    // catchup = latest and one fired on time: nothing caught up, no burst.
    assert_eq!(ev.by_trigger.get("catchup"), None, "{ev:?}");
    println!(
        "Forward step and restart: {jumped} jumped occurrences recorded missed in {} rows; {ev:?}",
        rows.iter()
            .filter(|r| r.nominal > last && r.nominal < on_time.nominal)
            .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_wall_clock_step_neither_stalls_nor_repeats_and_a_restart_fires_nothing_twice() {
    let Some((mut c, clock, _dir)) = faked_cluster(2).await else {
        return;
    };
    let name = "tick-backward";
    step_while_running(&c, &clock, name, -HOUR_S).await;
    // Restarted with the step in effect: the controller's clock is an hour
    // behind the occurrences it already acted on. None is acted on again.
    c.controller.restart().await.expect("restart");
    let before = c.api.history(name).await.expect("history");
    let last = newest_fired(&before);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let h = c.api.history(name).await.expect("history");
    assert_eq!(
        h.len(),
        before.len(),
        "an hour back, nothing is due again: {h:#?}"
    );
    let v = c.api.schedule(name).await.expect("view");
    let next = ms(v.next_fire_at.expect("next fire"));
    assert!(next > last, "next fire {next} repeats {last}: {v:#?}");
    println!(
        "Backward step and restart: next firing {} s ahead on the controller's clock (it waits \
         for its own clock to reach the occurrences it has not acted on)",
        (next - (now_ms() - HOUR_MS)) / SEC
    );
    // The clock back and another restart: it fires again by itself, and
    // the seconds in between are recorded.
    clock.set_offset_s(0).expect("unstep");
    c.controller.restart().await.expect("restart");
    let restarted = now_ms();
    wait_fired_after(&c.api, name, restarted).await;
    let (ev, rows) = stop_and_check(&mut c.controller, name).await;
    let resumed = rows
        .iter()
        .find(|r| r.nominal > last && r.state == "fired")
        .expect("fired again");
    let gap = states_in(&rows, last + SEC, resumed.nominal - SEC);
    let between = (resumed.nominal - last) / SEC - 1;
    assert!(between >= 3, "{between}");
    assert_eq!(gap.get("missed"), Some(&between), "{gap:?} {rows:#?}");
    assert_eq!(gap.len(), 1, "{gap:?}");
    assert_eq!(ev.by_trigger.get("catchup"), None, "{ev:?}");
}

/// One schedule per catch-up policy on a cluster of `agents` agents.
async fn ticks(agents: usize) -> Cluster {
    let c = Cluster::start_with(agents, "", |o| o.slots = 8)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    for p in ["latest", "all", "none"] {
        let s = tick(&format!("tick-{p}"), json!({"catchup": p}));
        c.api.create_schedule(s).await.expect("create");
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_of_the_controller_misses_by_policy_and_it_recovers_by_itself() {
    let mut c = ticks(2).await;
    for p in ["latest", "all", "none"] {
        wait_fired_after(&c.api, &format!("tick-{p}"), now_ms() + SEC).await;
    }
    let proc = c.controller.proc.as_mut().expect("running");
    proc.signal(Signal::SIGSTOP).expect("stop");
    let stopped = now_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    proc.signal(Signal::SIGCONT).expect("cont");
    let resumed = now_ms();
    for p in ["latest", "all", "none"] {
        wait_fired_after(&c.api, &format!("tick-{p}"), resumed + 2 * SEC).await;
    }
    // It serves and its agents run jobs again without help.
    let job = c
        .api
        .submit(json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": 0}}))
        .await
        .expect("submit");
    let j = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    let mut found = BTreeMap::new();
    for p in ["latest", "all", "none"] {
        found.insert(p, stop_analysis(&c.api, p, stopped, resumed).await);
    }
    let proc = c.controller.proc.as_mut().expect("running");
    proc.signal(Signal::SIGTERM).expect("sigterm");
    proc.wait_exit(WAIT).expect("exit");
    let db = sched_store::open(&sched_store::db_path(&c.controller.state_dir))
        .await
        .expect("store");
    for p in ["latest", "all", "none"] {
        let ev = sched_store::check_exactly_once(&db, &format!("tick-{p}"), SEC)
            .await
            .unwrap_or_else(|e| panic!("{e:#}\n{}", c.controller.log_text()));
        println!(
            "tick-{p}: {ev:?}; during the stop (missed, caught up): {:?}",
            found[p]
        );
    }
}

/// The occurrences of `tick-{policy}` after the last one fired before the
/// stop up to the first on-time firing after SIGCONT: the ones that passed
/// while stopped follow the policy, and they add up with no gap. Returns
/// (missed, caught up).
async fn stop_analysis(api: &Api, policy: &str, stopped: i64, resumed: i64) -> (i64, i64) {
    let name = format!("tick-{policy}");
    let h = api.history(&name).await.expect("history");
    let last = h
        .iter()
        .filter(|o| o.state == OccurrenceState::Fired && ms(o.nominal_at) <= stopped)
        .map(|o| ms(o.nominal_at))
        .max()
        .unwrap_or_else(|| panic!("{name}: nothing fired before the stop: {h:#?}"));
    let on_time = h
        .iter()
        .filter(|o| {
            ms(o.nominal_at) > last
                && o.state == OccurrenceState::Fired
                && o.trigger == OccurrenceTrigger::Schedule
                && ms(o.nominal_at) > stopped + SEC
        })
        .map(|o| ms(o.nominal_at))
        .min()
        .unwrap_or_else(|| panic!("{name}: nothing fired on time after SIGCONT: {h:#?}"));
    assert!(
        on_time >= resumed - 2 * SEC,
        "{name}: fired on time at {on_time} while stopped ({stopped}..{resumed}): {h:#?}"
    );
    let rows = rows_in(&h, last + SEC, on_time - SEC);
    let passed = (on_time - last) / SEC - 1;
    assert!(passed >= 3, "{name}: only {passed} passed while stopped");
    let mut count = 0i64;
    let (mut missed, mut caught) = (0, 0);
    for o in rows.values() {
        count += i64::from(o.count);
        let why = o.reason.clone().unwrap_or_default();
        match (policy, o.state, o.trigger) {
            ("all", OccurrenceState::Fired, OccurrenceTrigger::Catchup) => caught += 1,
            (_, OccurrenceState::Missed, _) if why.contains("the controller was late") => {
                missed += i64::from(o.count);
                match policy {
                    "latest" => assert!(why.contains("superseded"), "{o:#?}"),
                    "none" => assert!(why.contains("catchup = none"), "{o:#?}"),
                    _ => panic!("{name}: catchup all misses nothing here: {o:#?}"),
                }
            }
            _ => panic!("{name}: passed while stopped: {o:#?}\n{h:#?}"),
        }
    }
    assert_eq!(
        count, passed,
        "{name}: rows for each second between: {rows:#?}"
    );
    // latest: the on-time one stands for the newest (nothing caught up).
    match policy {
        "all" => assert_eq!(caught, passed, "{name}"),
        _ => assert_eq!(missed, passed, "{name}"),
    }
    (missed, caught)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_while_schedules_fire_changes_nothing() {
    let mut c = ticks(1).await;
    let name = "tick-latest";
    let h = wait_fired_after(&c.api, name, now_ms() + SEC).await;
    let first = newest_fired(&h);
    // Ten SIGHUPs over five seconds, half just after a whole second (when
    // the timer fires), half anywhere.
    let hups = 10;
    for i in 0..hups {
        let now = now_ms();
        let at = if i % 2 == 0 {
            (now / SEC + 1) * SEC + rand::random_range(0..30)
        } else {
            now + rand::random_range(100..900)
        };
        sleep_until_ms(at).await;
        let proc = c.controller.proc.as_mut().expect("running");
        proc.signal(Signal::SIGHUP).expect("hup");
    }
    let last_hup = now_ms();
    let h = wait_fired_after(&c.api, name, last_hup + 2 * SEC).await;
    let newest = newest_fired(&h);
    let n = assert_every_second_fired(&h, first, newest, "across SIGHUPs");
    let proc = c.controller.proc.as_mut().expect("running");
    assert!(
        proc.running(),
        "the controller died on SIGHUP\n{}",
        c.logs()
    );
    let log = c.controller.log_text();
    assert_eq!(
        log.matches("Received SIGHUP; reloaded").count(),
        hups,
        "each SIGHUP reloaded:\n{log}"
    );
    let (ev, _) = stop_and_check(&mut c.controller, name).await;
    assert_eq!(ev.by_state.len(), 1, "only fired: {ev:?}");
    println!("{hups} SIGHUPs: {n} seconds fired one each, none missed");
}

/// A controller with its state dir on `fs` and one agent (8 slots).
async fn on_loop_fs(fs: &LoopFs) -> (tempfile::TempDir, Controller, Agent) {
    baton_tests::loopfs::controller_on(fs, |o| o.slots = 8).await
}

/// `/readyz`'s status.
async fn readyz(api: &Api) -> u16 {
    api.raw(reqwest::Method::GET, "/readyz", None, &[])
        .await
        .map_or(0, |r| r.status.as_u16())
}

/// Submit big jobs (48 KB of arguments each, to a group no agent serves)
/// until the store refuses one with 503: the disk is full for the store
/// too, not only for the filler (SQLite reuses its WAL's space for a while).
async fn exhaust(api: &Api) -> usize {
    let pad = "x".repeat(48 * 1024);
    for i in 0..2_000 {
        let body = json!({"group": "nobody", "allow_unplaced": true,
                          "spec": {"kind": "command", "program": "/bin/true", "args": [pad]}});
        let r = api
            .raw(
                reqwest::Method::POST,
                "/v1/jobs",
                Some(serde_json::to_vec(&body).expect("json")),
                &[],
            )
            .await
            .expect("the controller answers");
        match r.status.as_u16() {
            201 => {}
            503 => return i,
            s => panic!("unexpected answer {s}: {}", r.body),
        }
    }
    panic!("the store never ran out of space");
}

/// Wait until `/readyz` answers `want`.
async fn wait_readyz(api: &Api, want: u16, logs: impl Fn() -> String) {
    let end = Instant::now() + Duration::from_secs(30);
    while readyz(api).await != want {
        assert!(Instant::now() < end, "readyz never {want}\n{}", logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The disk faults of [`disk_fault`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Disk {
    /// The loop filesystem filled up (`SQLITE_FULL`).
    Full,
    /// `chattr +i` on the database and its WAL (`SQLITE_READONLY` or `IOERR`).
    Unwritable,
}

/// A per-second schedule fires; the disk under the controller's state dir
/// fails for six seconds (`fault`), then takes writes again. While it
/// fails, nothing fires and nothing is half written (the cursor does not
/// move); once it takes writes the controller fires again by itself and
/// records each second that passed, once.
async fn disk_fault(fault: Disk) {
    let fs = match LoopFs::create(24) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("SKIPPED: {e:#}");
            return;
        }
    };
    let (_tmp, mut ctl, _agent) = on_loop_fs(&fs).await;
    let api = ctl.api();
    let name = "tick-disk";
    api.create_schedule(tick(name, json!({})))
        .await
        .expect("create");
    let h = wait_fired_after(&api, name, now_ms() + SEC).await;
    let before = newest_fired(&h);
    let state = fs.path().join("state");
    let files = ["baton.db", "baton.db-wal"].map(|f| state.join(f));
    let accepted = match fault {
        Disk::Full => {
            fs.fill().expect("fill");
            exhaust(&api).await
        }
        Disk::Unwritable => {
            for f in &files {
                LoopFs::immutable(f, true).expect("chattr +i");
            }
            0
        }
    };
    let failing = now_ms();
    wait_readyz(&api, 503, || ctl.log_text()).await;
    // Six seconds of failing writes while the schedule is due every second.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        ctl.proc.as_mut().expect("proc").running(),
        "the controller died on a {fault:?} disk\n{}",
        ctl.log_text()
    );
    match fault {
        Disk::Full => fs.unfill().expect("unfill"),
        Disk::Unwritable => {
            for f in &files {
                LoopFs::immutable(f, false).expect("chattr -i");
            }
        }
    }
    let freed = now_ms();
    let t0 = Instant::now();
    wait_fired_after(&api, name, freed + SEC).await;
    let refired = t0.elapsed();
    wait_readyz(&api, 200, || ctl.log_text()).await;
    println!(
        "{fault:?} disk: {accepted} big jobs accepted before the store refused; firing again \
         {refired:?} after the disk took writes again, ready {:?} after",
        t0.elapsed()
    );
    // The store's health says it (once per cause), not the timer per look.
    let log = ctl.log_text();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        (1..=2).contains(&errors.len())
            && errors.iter().all(|e| e.contains("The store cannot commit")),
        "{errors:#?}"
    );
    let (_, rows) = stop_and_check(&mut ctl, name).await;
    // The seconds while failing: each recorded once after the disk came
    // back (the cursor had not moved past them): missed, "the controller
    // was late".
    let during = states_in(&rows, failing + 2 * SEC, freed - SEC);
    let missed = during.get("missed").copied().unwrap_or(0);
    assert!(missed >= 3, "{during:?}\n{rows:#?}");
    for r in rows
        .iter()
        .filter(|r| r.nominal > before && r.state == "missed")
    {
        let why = r.reason.as_deref().unwrap_or_default();
        assert!(why.contains("the controller was late"), "{r:?}");
    }
    println!("{fault:?} disk: while failing {during:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_firings_without_a_trace_and_they_are_recorded_once_it_frees() {
    disk_fault(Disk::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_database_stops_firings_without_a_trace_and_they_are_recorded_after() {
    disk_fault(Disk::Unwritable).await;
}
