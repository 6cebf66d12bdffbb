use super::*;
use crate::trigger::tests::{ms, trigger};
use serde_json::json;

const MIN: i64 = 60_000;

fn t0() -> i64 {
    ms("2027-01-01T00:00:00Z")
}

/// Every minute from T0, running a pipeline.
fn minutely() -> Trigger {
    trigger(json!({"every_ms": MIN, "anchor": "2027-01-01T00:00:00Z"}))
}

/// Every minute from T0, running a job.
fn minutely_job() -> Trigger {
    trigger(json!({
        "every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "pipeline": null,
        "group": "g", "job": {"spec": {"kind": "noop"}}
    }))
}

/// Cursor at minute `cursor`, now at minute `now` plus `plus_ms`.
fn due(cursor: i64, now: i64, plus_ms: i64) -> Due<'static> {
    Due {
        key: "s1",
        cursor: t0() + cursor * MIN,
        now: t0() + now * MIN + plus_ms,
        overlap: Overlap::Skip,
        catchup: Catchup::Latest,
        catchup_window_ms: 3_600_000,
        catchup_cap: 100,
        active: Active::None,
        pending: 0,
        paused: None,
        started_at: 0,
    }
}

/// Each row as `minute[..last]xcount trigger fate: reason`.
fn rows(p: &Plan) -> Vec<String> {
    p.decisions
        .iter()
        .map(|d| {
            let m = (d.nominal - t0()) / MIN;
            let last = d
                .last_nominal
                .map(|l| format!("..{}", (l - t0()) / MIN))
                .unwrap_or_default();
            let reason = d
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!(
                "{m}{last}x{} {} {:?}{reason}",
                d.count,
                d.trigger.as_str(),
                d.fate
            )
        })
        .collect()
}

fn at(minute: i64) -> NextCursor {
    NextCursor::At(t0() + minute * MIN)
}

#[test]
fn an_on_time_occurrence_fires_and_the_cursor_moves_on() {
    let p = plan(&minutely(), &due(10, 10, 2_000));
    assert_eq!(rows(&p), ["10x1 schedule Fire"]);
    assert_eq!(p.cursor, at(11));
    assert!(!p.cancel_active && !p.supersede_pending);
    assert_eq!(p.decisions[0].fire_at, t0() + 10 * MIN);
    // Not due yet: nothing, the cursor stays.
    let p = plan(&minutely(), &due(10, 10, -1));
    assert!(p.decisions.is_empty());
    assert_eq!(p.cursor, at(10));
}

#[test]
fn jitter_delays_the_firing_and_decides_what_is_due() {
    let t =
        trigger(json!({"every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "jitter_ms": 50_000}));
    let j = t.jitter_ms("s1", t0() + 10 * MIN);
    assert!(j > 0, "this nominal has a delay ({j})");
    let p = plan(&t, &due(10, 10, j - 1));
    assert!(p.decisions.is_empty(), "{:?}", rows(&p));
    let p = plan(&t, &due(10, 10, j));
    assert_eq!(rows(&p), ["10x1 schedule Fire"]);
    assert_eq!(p.decisions[0].fire_at, t0() + 10 * MIN + j);
}

#[test]
fn catchup_latest_after_the_controller_was_down_for_five_occurrences() {
    // Down from minute 10 to 15:30: 10..=15 passed unfired, none on time.
    let mut d = due(10, 15, 30_000);
    d.started_at = d.now;
    let p = plan(&minutely(), &d);
    let superseded = |m| {
        format!(
            "{m}x1 schedule Miss: superseded by a later occurrence (catchup = latest); the controller was not running"
        )
    };
    let mut want: Vec<String> = (10..15).map(superseded).collect();
    want.push("15x1 catchup Fire".into());
    assert_eq!(rows(&p), want);
    assert_eq!(p.cursor, at(16));
    // Back just in time for minute 16: it fires on time, 10..=15 are missed.
    let mut d = due(10, 16, 1_000);
    d.started_at = t0() + 15 * MIN + 30_000;
    let p = plan(&minutely(), &d);
    let mut want: Vec<String> = (10..16).map(superseded).collect();
    want.push("16x1 schedule Fire".into());
    assert_eq!(rows(&p), want);
}

#[test]
fn catchup_all_runs_each_in_order_up_to_the_cap() {
    let mut d = due(10, 15, 30_000);
    d.catchup = Catchup::All;
    d.started_at = d.now;
    let p = plan(&minutely(), &d);
    let pend = |m| format!("{m}x1 catchup Pend: waiting for the earlier runs (catch-up in order)");
    let mut want = vec!["10x1 catchup Fire".to_owned()];
    want.extend((11..=15).map(pend));
    assert_eq!(rows(&p), want);
    // allow: each fires.
    d.overlap = Overlap::Allow;
    let p = plan(&minutely(), &d);
    assert_eq!(p.count(Fate::Fire), 6);
    // The cap takes the oldest; the rest are missed.
    d.catchup_cap = 3;
    let p = plan(&minutely(), &d);
    let r = rows(&p);
    assert_eq!(
        r[..3],
        [
            "10x1 catchup Fire",
            "11x1 catchup Fire",
            "12x1 catchup Fire"
        ]
    );
    assert_eq!(
        r[3],
        "13x1 schedule Miss: beyond the catch-up cap (3); the controller was not running"
    );
    assert_eq!(r.len(), 6);
    // With an on-time one, it runs after the catch-ups (skip: in order).
    let mut d = due(10, 16, 0);
    d.catchup = Catchup::All;
    d.started_at = t0() + 15 * MIN + 30_000;
    let r = rows(&plan(&minutely(), &d));
    assert_eq!(r[0], "10x1 catchup Fire");
    assert_eq!(
        r[6],
        "16x1 schedule Pend: waiting for the earlier runs (catch-up in order)"
    );
}

#[test]
fn catchup_none_misses_all_with_the_cause() {
    let mut d = due(10, 15, 30_000);
    d.catchup = Catchup::None;
    d.started_at = d.now;
    let p = plan(&minutely(), &d);
    let want: Vec<String> = (10..=15)
        .map(|m| format!("{m}x1 schedule Miss: catchup = none; the controller was not running"))
        .collect();
    assert_eq!(rows(&p), want);
    assert_eq!(p.count(Fate::Fire), 0);
    assert_eq!(p.cursor, at(16));
}

#[test]
fn causes_pause_span_and_lateness() {
    let mut d = due(10, 15, 1_000);
    d.paused = Some((t0() + 10 * MIN - 5, t0() + 14 * MIN + 30_000));
    let r = rows(&plan(&minutely(), &d));
    assert_eq!(
        r[0],
        "10x1 schedule Miss: superseded by a later occurrence (catchup = latest); the schedule was paused"
    );
    assert_eq!(r[5], "15x1 schedule Fire");
    // Neither down nor paused: the controller was late.
    let d = due(10, 11, 20_000);
    assert_eq!(
        rows(&plan(&minutely(), &d)),
        [
            "10x1 schedule Miss: superseded by a later occurrence (catchup = latest); the controller was late",
            "11x1 catchup Fire"
        ]
    );
}

#[test]
fn older_than_the_catchup_window_is_missed_whatever_the_policy() {
    for policy in [Catchup::Latest, Catchup::All, Catchup::None] {
        let mut d = due(0, 10, 30_000);
        d.catchup = policy;
        d.catchup_window_ms = 5 * MIN as u64;
        d.started_at = d.now;
        let p = plan(&minutely(), &d);
        let r = rows(&p);
        // Minutes 0..=5 are more than 5 minutes old at 10:30.
        for (m, row) in r.iter().enumerate().take(5) {
            assert_eq!(
                row,
                &format!(
                    "{m}x1 schedule Miss: older than the catch-up window (5m); the controller was not running"
                ),
                "{policy:?}"
            );
        }
        assert_eq!(
            p.count(Fate::Miss) + p.count(Fate::Fire) + p.count(Fate::Pend),
            11
        );
        let fired = p.count(Fate::Fire) + p.count(Fate::Pend);
        assert_eq!(
            fired,
            match policy {
                Catchup::Latest => 1,
                Catchup::All => 5,
                Catchup::None => 0,
            }
        );
    }
}

#[test]
fn long_runs_of_one_reason_collapse_into_a_range_with_an_exact_count() {
    let mut d = due(0, 29, 30_000);
    d.catchup = Catchup::None;
    d.started_at = d.now;
    let p = plan(&minutely(), &d);
    assert_eq!(
        rows(&p),
        ["0..29x30 schedule Miss: catchup = none; the controller was not running"]
    );
    // Ten or fewer stay one row each.
    let mut d = due(0, 9, 30_000);
    d.catchup = Catchup::None;
    d.started_at = d.now;
    let p = plan(&minutely(), &d);
    assert_eq!(p.decisions.len(), 10);
    assert!(
        p.decisions
            .iter()
            .all(|x| x.count == 1 && x.last_nominal.is_none())
    );
}

#[test]
fn occurrences_outside_the_window_are_skipped_as_one_range() {
    let t = trigger(json!({
        "every_ms": 15 * MIN, "anchor": "2027-01-01T00:00:00Z", "between": "01:00-02:00"
    }));
    let mut d = due(0, 60, 1_000);
    d.started_at = d.now;
    let p = plan(&t, &d);
    assert_eq!(
        rows(&p),
        [
            "0..45x4 schedule Skip: outside the active window 01:00-02:00",
            "60x1 schedule Fire"
        ]
    );
    // The on-time one outside the window: one skipped row.
    let p = plan(&t, &due(120, 120, 1_000));
    assert_eq!(
        rows(&p),
        ["120x1 schedule Skip: outside the active window 01:00-02:00"]
    );
    assert_eq!(p.cursor, at(135));
    // Wrapping past midnight.
    let w = trigger(json!({
        "every_ms": 15 * MIN, "anchor": "2027-01-01T00:00:00Z", "between": "23:30-00:30"
    }));
    let mut d = due(0, 60, 0);
    d.catchup = Catchup::None;
    let r = rows(&plan(&w, &d));
    assert_eq!(
        r[0],
        "0x1 schedule Miss: catchup = none; the controller was late"
    );
    assert_eq!(
        r[2],
        "30..60x3 schedule Skip: outside the active window 23:30-00:30"
    );
}

#[test]
fn overlap_skip() {
    let mut d = due(10, 10, 0);
    d.active = Active::Running(7);
    assert_eq!(
        rows(&plan(&minutely_job(), &d)),
        ["10x1 schedule Skip: previous run (job 7) still running"]
    );
    assert_eq!(
        rows(&plan(&minutely(), &d)),
        ["10x1 schedule Skip: previous run (pipeline run 7) still running"]
    );
    d.active = Active::Queued(7);
    assert_eq!(
        rows(&plan(&minutely_job(), &d)),
        ["10x1 schedule Miss: no agent took the previous occurrence's job 7 (still queued)"]
    );
    d.active = Active::None;
    d.pending = 1;
    assert_eq!(
        rows(&plan(&minutely_job(), &d)),
        ["10x1 schedule Skip: 1 earlier occurrence(s) still waiting"]
    );
    // Catch-ups are never skipped: they wait behind the running one.
    let mut d = due(10, 15, 30_000);
    d.catchup = Catchup::All;
    d.active = Active::Running(7);
    let p = plan(&minutely_job(), &d);
    assert_eq!(p.count(Fate::Pend), 6);
    let mut d = due(10, 16, 0);
    d.catchup = Catchup::All;
    d.active = Active::Running(7);
    let r = rows(&plan(&minutely_job(), &d));
    assert_eq!(
        r[6],
        "16x1 schedule Skip: previous run (job 7) still running"
    );
}

#[test]
fn overlap_buffer_one() {
    let mut d = due(10, 10, 0);
    d.overlap = Overlap::BufferOne;
    assert_eq!(rows(&plan(&minutely_job(), &d)), ["10x1 schedule Fire"]);
    d.active = Active::Running(7);
    assert_eq!(
        rows(&plan(&minutely_job(), &d)),
        ["10x1 schedule Pend: waiting for the previous run to end (buffer_one)"]
    );
    d.pending = 1;
    assert_eq!(
        rows(&plan(&minutely_job(), &d)),
        ["10x1 schedule Skip: a run is already waiting (buffer_one)"]
    );
}

#[test]
fn overlap_allow() {
    let mut d = due(10, 10, 0);
    d.overlap = Overlap::Allow;
    d.active = Active::Running(7);
    d.pending = 2;
    let p = plan(&minutely_job(), &d);
    assert_eq!(rows(&p), ["10x1 schedule Fire"]);
    assert!(!p.cancel_active && !p.supersede_pending);
}

#[test]
fn overlap_cancel_previous() {
    let mut d = due(10, 10, 0);
    d.overlap = Overlap::CancelPrevious;
    d.active = Active::Running(7);
    d.pending = 1;
    let p = plan(&minutely_job(), &d);
    assert_eq!(
        rows(&p),
        ["10x1 schedule Pend: waiting for the cancelled job 7 to end (cancel_previous)"]
    );
    assert!(p.cancel_active && p.supersede_pending);
    d.active = Active::None;
    d.pending = 0;
    let p = plan(&minutely_job(), &d);
    assert_eq!(rows(&p), ["10x1 schedule Fire"]);
    assert!(!p.cancel_active && !p.supersede_pending);
    // Several in one plan: only the newest runs.
    let mut d = due(10, 13, 0);
    d.overlap = Overlap::CancelPrevious;
    d.catchup = Catchup::All;
    let r = rows(&plan(&minutely_job(), &d));
    let sup = |m| {
        format!("{m}x1 catchup Skip: superseded by a later occurrence (overlap = cancel_previous)")
    };
    assert_eq!(r, [sup(10), sup(11), sup(12), "13x1 schedule Fire".into()]);
}

#[test]
fn the_end_of_the_schedule_ends_the_cursor() {
    let t = trigger(json!({
        "every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "end_at": "2027-01-01T00:10:00Z"
    }));
    let p = plan(&t, &due(10, 10, 0));
    assert_eq!(rows(&p), ["10x1 schedule Fire"]);
    assert_eq!(p.cursor, NextCursor::Ended);
}

#[test]
fn at_most_max_due_per_plan_and_the_counts_stay_exact() {
    // Per second, 150,001 due: the oldest 100,000 first, then the rest.
    let t = trigger(json!({"every_ms": 1000, "anchor": "2027-01-01T00:00:00Z"}));
    let mut d = due(0, 0, 150_000_000);
    d.started_at = d.now;
    let p = plan(&t, &d);
    assert_eq!(p.decisions.len(), 1);
    let row = &p.decisions[0];
    assert_eq!((row.count, row.fate), (100_000, Fate::Miss));
    assert_eq!(row.last_nominal, Some(t0() + 99_999_000));
    assert_eq!(
        row.reason.as_deref(),
        Some("the controller was not running; more than 100000 occurrences were due at once")
    );
    assert_eq!(p.cursor, NextCursor::At(t0() + 100_000_000));
    d.cursor = t0() + 100_000_000;
    let p = plan(&t, &d);
    assert_eq!(p.count(Fate::Fire), 1);
    assert_eq!(p.count(Fate::Miss), 50_000);
    assert_eq!(
        p.decisions.last().map(|x| x.nominal),
        Some(t0() + 150_000_000)
    );
    assert_eq!(p.cursor, NextCursor::At(t0() + 150_001_000));
}

#[test]
fn manual_trigger() {
    let now = t0() + 5 * MIN + 123;
    let p = plan_manual(&minutely_job(), now, Active::None, 0, Overlap::Skip);
    assert_eq!(p.cursor, NextCursor::Unchanged);
    assert_eq!(p.decisions.len(), 1);
    let m = &p.decisions[0];
    assert_eq!(
        (m.nominal, m.fire_at, m.trigger, m.fate),
        (now, now, OccurrenceTrigger::Manual, Fate::Fire)
    );
    // Exactly on a scheduled nominal time: named 1 ms later.
    let on = t0() + 5 * MIN;
    let p = plan_manual(&minutely_job(), on, Active::None, 0, Overlap::Skip);
    assert_eq!(
        (p.decisions[0].nominal, p.decisions[0].fire_at),
        (on + 1, on)
    );
    let p = plan_manual(&minutely_job(), now, Active::Queued(3), 0, Overlap::Skip);
    assert_eq!(p.decisions[0].fate, Fate::Skip);
    assert_eq!(
        p.decisions[0].reason.as_deref(),
        Some("no agent took the previous occurrence's job 3 (still queued)")
    );
    let p = plan_manual(&minutely_job(), now, Active::Running(3), 0, Overlap::Skip);
    assert_eq!(p.decisions[0].fate, Fate::Skip);
    let p = plan_manual(
        &minutely_job(),
        now,
        Active::Running(3),
        1,
        Overlap::CancelPrevious,
    );
    assert_eq!(p.decisions[0].fate, Fate::Pend);
    assert!(p.cancel_active && p.supersede_pending);
    let p = plan_manual(
        &minutely_job(),
        now,
        Active::Running(3),
        0,
        Overlap::BufferOne,
    );
    assert_eq!(p.decisions[0].fate, Fate::Pend);
    let p = plan_manual(&minutely_job(), now, Active::Running(3), 0, Overlap::Allow);
    assert_eq!(p.decisions[0].fate, Fate::Fire);
}

fn backfill(
    t: &Trigger,
    from: i64,
    to: i64,
    existing: &dyn Fn(i64) -> bool,
    active: Active,
    overlap: Overlap,
) -> Result<Backfill, Error> {
    let range = BackfillRange {
        key: "s1",
        from: t0() + from * MIN,
        to: t0() + to * MIN,
        existing,
    };
    plan_backfill(t, range, active, 0, overlap)
}

#[test]
fn backfill_each_occurrence_once_in_order() {
    let t = minutely_job();
    let exists = |n: i64| n == t0() + 12 * MIN || n == t0() + 13 * MIN;
    let b = backfill(&t, 10, 20, &exists, Active::None, Overlap::Allow).expect("backfill");
    assert_eq!(b.already, 2);
    assert_eq!(b.plan.count(Fate::Fire), 9);
    assert_eq!(b.plan.cursor, NextCursor::Unchanged);
    assert!(
        b.plan
            .decisions
            .iter()
            .all(|d| d.trigger == OccurrenceTrigger::Backfill)
    );
    let minutes: Vec<i64> = b
        .plan
        .decisions
        .iter()
        .map(|d| (d.nominal - t0()) / MIN)
        .collect();
    assert_eq!(minutes, [10, 11, 14, 15, 16, 17, 18, 19, 20]);
    // Any other policy: the first fires, the rest wait in order.
    for overlap in [Overlap::Skip, Overlap::BufferOne, Overlap::CancelPrevious] {
        let b = backfill(&t, 10, 20, &exists, Active::None, overlap).expect("backfill");
        let fates: Vec<Fate> = b.plan.decisions.iter().map(|d| d.fate).collect();
        assert_eq!(fates[0], Fate::Fire, "{overlap:?}");
        assert!(fates[1..].iter().all(|&f| f == Fate::Pend), "{overlap:?}");
        assert!(!b.plan.cancel_active);
        // Behind a running job, all wait.
        let b = backfill(&t, 10, 20, &exists, Active::Running(4), overlap).expect("backfill");
        assert_eq!(b.plan.count(Fate::Pend), 9, "{overlap:?}");
    }
    // The window applies; existing ones break a skipped range.
    let w = trigger(
        json!({"every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "between": "00:05-00:08"}),
    );
    let exists = |n: i64| n == t0() + 2 * MIN;
    let b = backfill(&w, 0, 9, &exists, Active::None, Overlap::Skip).expect("backfill");
    let r = rows(&b.plan);
    assert_eq!(
        r,
        [
            "0..1x2 backfill Skip: outside the active window 00:05-00:08",
            "3..4x2 backfill Skip: outside the active window 00:05-00:08",
            "5x1 backfill Fire",
            "6x1 backfill Pend: waiting for the earlier runs (backfill in order)",
            "7x1 backfill Pend: waiting for the earlier runs (backfill in order)",
            "8..9x2 backfill Skip: outside the active window 00:05-00:08",
        ]
    );
    assert_eq!(b.already, 1);
    // A reversed or huge range names the field.
    let e = backfill(&t, 20, 10, &|_| false, Active::None, Overlap::Skip).expect_err("reversed");
    assert_eq!(e.field(), "to");
    let per_sec = trigger(json!({"every_ms": 1000, "anchor": "2027-01-01T00:00:00Z"}));
    let e = backfill(&per_sec, 0, 2000, &|_| false, Active::None, Overlap::Skip).expect_err("huge");
    assert_eq!(e.field(), "to");
    assert!(e.to_string().contains("100000"), "{e}");
}

/// Every combination of policies, states, windows and downtimes: counts
/// exact, rows in order, at most one start under a non-`allow` policy, the
/// cursor right after the last row.
#[test]
fn invariants_over_every_combination() {
    let plain =
        trigger(json!({"every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "jitter_ms": 20_000}));
    let windowed = trigger(json!({
        "every_ms": MIN, "anchor": "2027-01-01T00:00:00Z", "between": "00:20-00:40"
    }));
    let overlaps = [
        Overlap::Skip,
        Overlap::BufferOne,
        Overlap::Allow,
        Overlap::CancelPrevious,
    ];
    let catchups = [Catchup::Latest, Catchup::All, Catchup::None];
    let actives = [Active::None, Active::Queued(1), Active::Running(1)];
    let mut plans = 0;
    for t in [&plain, &windowed] {
        let mut combos = Vec::new();
        for o in overlaps {
            for c in catchups {
                combos.extend(actives.map(|a| (o, c, a)));
            }
        }
        for (overlap, catchup, active) in combos {
            for (cursor, now_min, plus, pending) in [
                (10, 10, 30_000, 0),
                (0, 55, 1_000, 0),
                (15, 45, 0, 1),
                (30, 31, 25_000, 2),
            ] {
                let mut d = due(cursor, now_min, plus);
                (d.overlap, d.catchup, d.active, d.pending) = (overlap, catchup, active, pending);
                d.catchup_window_ms = 20 * MIN as u64;
                d.catchup_cap = 5;
                let p = plan(t, &d);
                plans += 1;
                let ctx = format!(
                    "{overlap:?} {catchup:?} {active:?} {cursor}..{now_min} pending {pending}"
                );
                // Exactly the due occurrences, each once, in order.
                let mut want = Vec::new();
                let mut n = t.first_at_or_after(d.cursor);
                while let Some(x) = n.filter(|&x| t.fire_at("s1", x) <= d.now) {
                    want.push(x);
                    n = t.next_after(x);
                }
                let total: u64 = p.decisions.iter().map(|x| u64::from(x.count)).sum();
                assert_eq!(total, want.len() as u64, "{ctx}");
                let mut covered = Vec::new();
                for row in &p.decisions {
                    let last = row.last_nominal.unwrap_or(row.nominal);
                    let inside: Vec<i64> = want
                        .iter()
                        .copied()
                        .filter(|&x| x >= row.nominal && x <= last)
                        .collect();
                    assert_eq!(inside.len() as u32, row.count, "{ctx}: {row:?}");
                    assert_eq!(inside.first(), Some(&row.nominal), "{ctx}");
                    covered.extend(inside);
                    assert!(row.fire_at >= row.nominal, "{ctx}");
                    if !matches!(row.fate, Fate::Skip | Fate::Miss) {
                        assert!(row.reason.is_some() || row.fate == Fate::Fire, "{ctx}");
                    } else {
                        assert!(row.reason.is_some(), "{ctx}: {row:?}");
                    }
                }
                assert_eq!(covered, want, "{ctx}");
                assert_eq!(
                    p.cursor,
                    n.map_or(NextCursor::Ended, NextCursor::At),
                    "{ctx}"
                );
                if overlap != Overlap::Allow {
                    assert!(p.count(Fate::Fire) <= 1, "{ctx}: {:?}", rows(&p));
                }
                if active != Active::None && overlap != Overlap::Allow {
                    assert_eq!(p.count(Fate::Fire), 0, "{ctx}: {:?}", rows(&p));
                }
                assert_eq!(
                    p.cancel_active,
                    overlap == Overlap::CancelPrevious
                        && active != Active::None
                        && p.count(Fate::Pend) > 0,
                    "{ctx}"
                );
                let started = p.count(Fate::Fire) + p.count(Fate::Pend);
                if catchup != Catchup::All {
                    assert!(started <= 1, "{ctx}: {:?}", rows(&p));
                }
                if t.window().is_some() {
                    for row in p.decisions.iter().filter(|r| r.fate != Fate::Skip) {
                        assert!(t.in_window(row.nominal), "{ctx}: {row:?}");
                    }
                }
            }
        }
    }
    assert_eq!(plans, 2 * 4 * 3 * 3 * 4);
}

#[test]
fn a_plan_across_the_spring_forward_night_sees_each_occurrence_once() {
    // Berlin, 02:30 daily; the controller was down from the evening of
    // 2027-03-26 to 03:00:05 (CEST) on the 28th: the 27th was missed, the
    // 28th's occurrence (moved to 03:00 by the gap) is on time.
    let t = trigger(json!({"cron": "30 2 * * *", "tz": "Europe/Berlin"}));
    let mut d = due(0, 0, 0);
    d.cursor = ms("2027-03-26T20:00:00Z");
    d.now = ms("2027-03-28T03:00:05+02:00");
    d.started_at = d.now - 1_000;
    d.catchup = Catchup::All;
    d.catchup_window_ms = 2 * 86_400_000;
    let p = plan(&t, &d);
    let got: Vec<(String, OccurrenceTrigger, Fate)> = p
        .decisions
        .iter()
        .map(|x| (t.local(x.nominal), x.trigger, x.fate))
        .collect();
    assert_eq!(
        got,
        [
            (
                "2027-03-27T02:30:00+01:00".to_owned(),
                OccurrenceTrigger::Catchup,
                Fate::Fire
            ),
            (
                "2027-03-28T03:00:00+02:00".to_owned(),
                OccurrenceTrigger::Schedule,
                Fate::Pend
            ),
        ]
    );
    assert_eq!(p.cursor, NextCursor::At(ms("2027-03-29T02:30:00+02:00")));
}
