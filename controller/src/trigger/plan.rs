//! The firing plan: what the timer (and `trigger now`, backfill) does with a
//! schedule's occurrences. Pure: the caller passes the cursor, the time and
//! the state of the schedule's newest run; the store applies the [`Plan`] in
//! one transaction (occurrence rows unique by `(schedule, nominal)`, the jobs
//! or runs of the fired ones, the cursor advanced conditionally).
//!
//! # Rules of [`plan`]
//!
//! 1. **Due** are the nominal times `n ≥ cursor` whose firing time (`n` +
//!    jitter) is `≤ now`, oldest first. At most [`MAX_DUE`] are looked at:
//!    when more are due, those (the oldest) are recorded as skipped (outside
//!    the window) or missed ("more than 100000 occurrences were due at
//!    once") without firing any, the cursor moves past them and the timer
//!    plans again at once; so each plan is bounded and the count is exact.
//! 2. **Window.** A due occurrence outside the active window is skipped:
//!    "outside the active window 01:00-05:00".
//! 3. **On time.** The newest due occurrence is on time when `now − fire_at ≤
//!    ON_TIME_MS` (10 s); in the window it fires (trigger `schedule`),
//!    subject to overlap. Every other due occurrence in the window was
//!    missed by the timer, for a cause: "the schedule was paused" (inside
//!    the last pause span), else "the controller was not running" (before
//!    this controller started), else "the controller was late".
//! 4. **Catch-up** of the missed ones. Older than the catch-up window (`now −
//!    nominal > catchup_window`): missed, "older than the catch-up window
//!    (1h)". Within it, by policy:
//!    - `latest`: when an occurrence fires on time, every missed one is
//!      "superseded by a later occurrence (catchup = latest)"; otherwise the
//!      newest missed one fires (trigger `catchup`) and the rest are
//!      superseded.
//!    - `all`: the oldest `catchup_cap` fire as catch-ups, in order; the
//!      rest are missed, "beyond the catch-up cap (N)".
//!    - `none`: missed, "catchup = none".
//!
//!    Each reason ends with its cause ("…; the controller was not running").
//! 5. **Overlap**, in nominal order over what would fire. "Ahead" means the
//!    schedule's active job or run, pending occurrences, or one fired or
//!    pended earlier in this plan.
//!    - `allow`: each fires.
//!    - `skip`: a catch-up (or backfill) never skips: it fires when nothing
//!      is ahead and pends in order otherwise. The on-time one is skipped
//!      when the active run is running ("previous run (job N) still
//!      running"), missed when the active job is still queued ("no agent
//!      took the previous occurrence's job N (still queued)"), skipped when
//!      occurrences are pending; it pends behind catch-ups of this plan, and
//!      fires otherwise.
//!    - `buffer_one`: catch-ups as for `skip`; the on-time one fires when
//!      nothing is ahead, pends when nothing waits yet (no pending one and
//!      none pended in this plan), and is skipped otherwise ("a run is
//!      already waiting (buffer_one)").
//!    - `cancel_previous`: only the newest of this plan runs; earlier ones
//!      are skipped ("superseded by a later occurrence (overlap =
//!      cancel_previous)"). It pends behind the active job or run, which the
//!      plan cancels (`cancel_active`), or fires when nothing is active;
//!      either way pending occurrences are superseded (`supersede_pending`).
//! 6. **Ranges.** Consecutive skipped-outside-the-window occurrences become
//!    one range row (`count`, `last_nominal`); consecutive missed or skipped
//!    ones with one reason become one range row when there are more than
//!    [`COLLAPSE_AFTER`] of them (fewer stay one row each). Counts are exact.
//! 7. **Cursor**: the first occurrence after the last one looked at, or
//!    [`NextCursor::Ended`] past `end_at`.
//!
//! [`plan_manual`] (`trigger now`): one occurrence at `now` (`now + 1` ms
//! when `now` is a scheduled nominal time), trigger `manual`, overlap as
//! above (under `skip` a queued previous job skips it too); the cursor is
//! unchanged. [`plan_backfill`]: every occurrence with
//! `from ≤ n ≤ to` that does not exist yet (those that do are counted in
//! `already`), window applied; `allow` fires all, any other policy fires the
//! first when nothing is ahead and pends the rest in order.

use baton_proto::schedule::{Catchup, OccurrenceTrigger, Overlap};

use super::{Error, Trigger, invalid};

/// How late the newest due occurrence may be and still count as on time.
pub const ON_TIME_MS: i64 = 10_000;

/// Most due occurrences one plan looks at.
pub const MAX_DUE: usize = 100_000;

/// Runs of missed or skipped occurrences with one reason longer than this
/// become one range row.
pub const COLLAPSE_AFTER: u32 = 10;

/// The schedule's newest fired job or pipeline run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// None, or it has ended.
    None,
    /// Queued: no agent has taken it (the job or run id).
    Queued(i64),
    /// Running (the job or run id).
    Running(i64),
}

/// A schedule whose cursor is due, as the timer sees it.
#[derive(Debug, Clone)]
pub struct Due<'a> {
    /// Schedule name (the jitter key).
    pub key: &'a str,
    /// The next unprocessed nominal time.
    pub cursor: i64,
    /// Now (Unix ms).
    pub now: i64,
    /// Overlap policy.
    pub overlap: Overlap,
    /// Catch-up policy.
    pub catchup: Catchup,
    /// Catch-up window.
    pub catchup_window_ms: u64,
    /// Most catch-ups under `catchup = "all"`.
    pub catchup_cap: u32,
    /// The newest fired job or run.
    pub active: Active,
    /// Occurrences already pending.
    pub pending: u32,
    /// The last pause span `[paused_at, resumed_at)`.
    pub paused: Option<(i64, i64)>,
    /// When this controller started.
    pub started_at: i64,
}

/// What becomes of an occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Submit its job (or start its pipeline run) now.
    Fire,
    /// Record it pending: it starts when the runs ahead have ended.
    Pend,
    /// Skipped on purpose (window, overlap).
    Skip,
    /// Missed.
    Miss,
}

/// One occurrence, or a range of them (`count > 1`) with one fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Nominal time (the first of a range).
    pub nominal: i64,
    /// The last nominal time of a range.
    pub last_nominal: Option<i64>,
    /// Occurrences this row stands for.
    pub count: u32,
    /// How it came to be.
    pub trigger: OccurrenceTrigger,
    /// What becomes of it.
    pub fate: Fate,
    /// Why (skipped, missed, pending).
    pub reason: Option<String>,
    /// Its firing time: nominal plus jitter (`now` for a manual one).
    pub fire_at: i64,
}

/// The cursor after a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextCursor {
    /// Leave it (manual trigger, backfill).
    Unchanged,
    /// The next unprocessed nominal time.
    At(i64),
    /// No occurrence is left (past `end_at`).
    Ended,
}

/// What to record and do, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Oldest first.
    pub decisions: Vec<Decision>,
    /// The new cursor.
    pub cursor: NextCursor,
    /// Cancel the active job or run (`cancel_previous`).
    pub cancel_active: bool,
    /// Pending occurrences are superseded (`cancel_previous`): record them
    /// skipped.
    pub supersede_pending: bool,
}

impl Plan {
    /// Occurrences with this fate (ranges counted in full).
    pub fn count(&self, fate: Fate) -> u64 {
        self.decisions
            .iter()
            .filter(|d| d.fate == fate)
            .map(|d| u64::from(d.count))
            .sum()
    }
}

/// A backfill's plan and how many occurrences of the range existed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// What to record and do.
    pub plan: Plan,
    /// Left out: they exist already.
    pub already: u32,
}

/// A due occurrence on its way to a decision.
struct Draft {
    nominal: i64,
    fire_at: i64,
    trigger: OccurrenceTrigger,
    /// `None`: would fire (overlap decides).
    fixed: Option<(Fate, String)>,
    /// A window skip (always collapsed).
    window: bool,
}

impl Draft {
    fn fixed(nominal: i64, fire_at: i64, fate: Fate, reason: String) -> Draft {
        Draft {
            nominal,
            fire_at,
            trigger: OccurrenceTrigger::Schedule,
            fixed: Some((fate, reason)),
            window: false,
        }
    }
}

fn window_reason(t: &Trigger) -> String {
    let w = t.window().map(|w| w.to_string()).unwrap_or_default();
    format!("outside the active window {w}")
}

fn window_skip(t: &Trigger, nominal: i64, fire_at: i64) -> Draft {
    Draft {
        nominal,
        fire_at,
        trigger: OccurrenceTrigger::Schedule,
        fixed: Some((Fate::Skip, window_reason(t))),
        window: true,
    }
}

/// Due occurrences `(nominal, fire_at)` from `cursor`, at most [`MAX_DUE`],
/// and the first one not taken (`None`: ended).
fn collect(t: &Trigger, key: &str, cursor: i64, now: i64) -> (Vec<(i64, i64)>, Option<i64>) {
    let mut items = Vec::new();
    let mut n = t.first_at_or_after(cursor);
    while let Some(cur) = n {
        if items.len() == MAX_DUE {
            break;
        }
        let next = t.next_after(cur);
        let fire = cur + t.jitter_with_gap(key, cur, next.map(|x| x - cur));
        if fire > now {
            break;
        }
        items.push((cur, fire));
        n = next;
    }
    (items, n)
}

fn cause(due: &Due<'_>, n: i64) -> &'static str {
    match due.paused {
        Some((p, r)) if p <= n && n < r => "the schedule was paused",
        _ if n < due.started_at => "the controller was not running",
        _ => "the controller was late",
    }
}

fn human_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The plan for a schedule whose cursor is due (rules in the module docs).
pub fn plan(t: &Trigger, due: &Due<'_>) -> Plan {
    let (items, next) = collect(t, due.key, due.cursor, due.now);
    let more = next.is_some_and(|n| items.len() == MAX_DUE && t.fire_at(due.key, n) <= due.now);
    let drafts = if more {
        items
            .iter()
            .map(|&(n, f)| {
                if t.in_window(n) {
                    let why = format!(
                        "{}; more than {MAX_DUE} occurrences were due at once",
                        cause(due, n)
                    );
                    Draft::fixed(n, f, Fate::Miss, why)
                } else {
                    window_skip(t, n, f)
                }
            })
            .collect()
    } else {
        classify(t, due, &items)
    };
    let mut plan = Plan {
        decisions: Vec::new(),
        cursor: next.map_or(NextCursor::Ended, NextCursor::At),
        cancel_active: false,
        supersede_pending: false,
    };
    let mut q = Queue::new(due.active, due.pending, due.overlap, t);
    plan.decisions = q.resolve(drafts);
    plan.cancel_active = q.cancel_active;
    plan.supersede_pending = q.supersede_pending;
    plan
}

/// Window, on time and catch-up (rules 2-4) for at most [`MAX_DUE`] items.
fn classify(t: &Trigger, due: &Due<'_>, items: &[(i64, i64)]) -> Vec<Draft> {
    let on_time = items
        .last()
        .filter(|&&(n, f)| due.now - f <= ON_TIME_MS && t.in_window(n))
        .map(|&(n, _)| n);
    let in_catchup_window =
        |n: i64| i128::from(due.now) - i128::from(n) <= i128::from(due.catchup_window_ms);
    // The missed ones that catch up.
    let latest = match (due.catchup, on_time) {
        (Catchup::Latest, None) => items
            .iter()
            .rev()
            .find(|&&(n, _)| t.in_window(n) && in_catchup_window(n))
            .map(|&(n, _)| n),
        _ => None,
    };
    let mut caught = 0u32;
    let window_text = human_ms(due.catchup_window_ms);
    let mut out = Vec::with_capacity(items.len());
    for &(n, f) in items {
        if !t.in_window(n) {
            out.push(window_skip(t, n, f));
            continue;
        }
        if Some(n) == on_time {
            out.push(Draft {
                nominal: n,
                fire_at: f,
                trigger: OccurrenceTrigger::Schedule,
                fixed: None,
                window: false,
            });
            continue;
        }
        let why = cause(due, n);
        let miss = |r: String| Draft::fixed(n, f, Fate::Miss, r);
        let catch = Draft {
            nominal: n,
            fire_at: f,
            trigger: OccurrenceTrigger::Catchup,
            fixed: None,
            window: false,
        };
        out.push(if !in_catchup_window(n) {
            miss(format!(
                "older than the catch-up window ({window_text}); {why}"
            ))
        } else {
            match due.catchup {
                Catchup::Latest if Some(n) == latest => catch,
                Catchup::Latest => miss(format!(
                    "superseded by a later occurrence (catchup = latest); {why}"
                )),
                Catchup::All if caught < due.catchup_cap => {
                    caught += 1;
                    catch
                }
                Catchup::All => miss(format!(
                    "beyond the catch-up cap ({}); {why}",
                    due.catchup_cap
                )),
                Catchup::None => miss(format!("catchup = none; {why}")),
            }
        });
    }
    out
}

/// Overlap (rule 5) and ranges (rule 6).
struct Queue {
    active: Active,
    pending: u32,
    overlap: Overlap,
    what: &'static str,
    fired: bool,
    pended: u32,
    cancel_active: bool,
    supersede_pending: bool,
}

impl Queue {
    fn new(active: Active, pending: u32, overlap: Overlap, t: &Trigger) -> Queue {
        Queue {
            active,
            pending,
            overlap,
            what: if t.runs_pipeline() {
                "pipeline run"
            } else {
                "job"
            },
            fired: false,
            pended: 0,
            cancel_active: false,
            supersede_pending: false,
        }
    }

    fn ahead(&self) -> bool {
        self.active != Active::None || self.pending > 0 || self.fired || self.pended > 0
    }

    /// Fire or pend in order behind whatever is ahead.
    fn in_order(&mut self, why: &str) -> (Fate, Option<String>) {
        if self.ahead() {
            self.pended += 1;
            (
                Fate::Pend,
                Some(format!("waiting for the earlier runs ({why} in order)")),
            )
        } else {
            self.fired = true;
            (Fate::Fire, None)
        }
    }

    fn decide(&mut self, trigger: OccurrenceTrigger, last: bool) -> (Fate, Option<String>) {
        use OccurrenceTrigger as T;
        match (self.overlap, trigger) {
            (Overlap::Allow, _) => {
                self.fired = true;
                (Fate::Fire, None)
            }
            (Overlap::CancelPrevious, _) => self.cancel_previous(last),
            (_, T::Catchup) => self.in_order("catch-up"),
            (_, T::Backfill) => self.in_order("backfill"),
            (Overlap::Skip, _) => self.skip(trigger),
            (Overlap::BufferOne, _) => {
                if !self.ahead() {
                    self.fired = true;
                    (Fate::Fire, None)
                } else if self.pending == 0 && self.pended == 0 {
                    self.pended += 1;
                    let r = "waiting for the previous run to end (buffer_one)";
                    (Fate::Pend, Some(r.to_owned()))
                } else {
                    let r = "a run is already waiting (buffer_one)";
                    (Fate::Skip, Some(r.to_owned()))
                }
            }
        }
    }

    fn skip(&mut self, trigger: OccurrenceTrigger) -> (Fate, Option<String>) {
        let what = self.what;
        match self.active {
            Active::Running(id) => (
                Fate::Skip,
                Some(format!("previous run ({what} {id}) still running")),
            ),
            Active::Queued(id) => {
                let fate = if trigger == OccurrenceTrigger::Manual {
                    Fate::Skip
                } else {
                    Fate::Miss
                };
                let r =
                    format!("no agent took the previous occurrence's {what} {id} (still queued)");
                (fate, Some(r))
            }
            Active::None if self.pending > 0 => (
                Fate::Skip,
                Some(format!(
                    "{} earlier occurrence(s) still waiting",
                    self.pending
                )),
            ),
            Active::None => self.in_order("catch-up"),
        }
    }

    fn cancel_previous(&mut self, last: bool) -> (Fate, Option<String>) {
        if !last {
            let r = "superseded by a later occurrence (overlap = cancel_previous)";
            return (Fate::Skip, Some(r.to_owned()));
        }
        self.supersede_pending = self.pending > 0;
        match self.active {
            Active::Queued(id) | Active::Running(id) => {
                self.cancel_active = true;
                self.pended += 1;
                let r = format!(
                    "waiting for the cancelled {} {id} to end (cancel_previous)",
                    self.what
                );
                (Fate::Pend, Some(r))
            }
            Active::None => {
                self.fired = true;
                (Fate::Fire, None)
            }
        }
    }

    /// Decide every draft in order and collapse runs into range rows.
    fn resolve(&mut self, drafts: Vec<Draft>) -> Vec<Decision> {
        let last_fire = drafts.iter().rposition(|d| d.fixed.is_none());
        let mut rows = Rows::default();
        for (i, d) in drafts.into_iter().enumerate() {
            let (fate, reason) = match d.fixed {
                Some((fate, r)) => (fate, Some(r)),
                None => self.decide(d.trigger, Some(i) == last_fire),
            };
            rows.push(
                Decision {
                    nominal: d.nominal,
                    last_nominal: None,
                    count: 1,
                    trigger: d.trigger,
                    fate,
                    reason,
                    fire_at: d.fire_at,
                },
                d.window,
            );
        }
        rows.finish()
    }
}

/// Decisions with runs of one skipped/missed reason collapsed (rule 6).
#[derive(Default)]
struct Rows {
    out: Vec<Decision>,
    /// The run so far (at most `COLLAPSE_AFTER + 1` kept).
    run: Vec<Decision>,
    run_count: u32,
    run_last: i64,
    run_window: bool,
}

impl Rows {
    fn same_run(&self, d: &Decision) -> bool {
        self.run
            .first()
            .is_some_and(|h| h.fate == d.fate && h.trigger == d.trigger && h.reason == d.reason)
    }

    fn push(&mut self, d: Decision, window: bool) {
        if self.same_run(&d) {
            self.run_count += 1;
            self.run_last = d.nominal;
            if self.run.len() <= COLLAPSE_AFTER as usize {
                self.run.push(d);
            }
            return;
        }
        self.flush();
        if matches!(d.fate, Fate::Skip | Fate::Miss) {
            self.run_count = 1;
            self.run_last = d.nominal;
            self.run_window = window;
            self.run.push(d);
        } else {
            self.out.push(d);
        }
    }

    /// End the current run (also where an existing occurrence interrupts it).
    fn flush(&mut self) {
        if self.run_count > COLLAPSE_AFTER || (self.run_window && self.run_count > 1) {
            let mut head = self.run.swap_remove(0);
            head.count = self.run_count;
            head.last_nominal = Some(self.run_last);
            self.out.push(head);
            self.run.clear();
        } else {
            self.out.append(&mut self.run);
        }
        self.run_count = 0;
        self.run_window = false;
    }

    fn finish(mut self) -> Vec<Decision> {
        self.flush();
        self.out
    }
}

/// `trigger now`: one occurrence at `now`, trigger `manual`, overlap
/// applied; the cursor is unchanged. When `now` is itself a nominal time of
/// the schedule, the manual one is named `now + 1` ms: the key `(schedule,
/// nominal)` belongs to the scheduled occurrence (no schedule has two
/// occurrences 1 ms apart: cron times are whole seconds, intervals ≥ 1 s).
pub fn plan_manual(t: &Trigger, now: i64, active: Active, pending: u32, overlap: Overlap) -> Plan {
    let mut q = Queue::new(active, pending, overlap, t);
    let nominal = if t.first_at_or_after(now) == Some(now) {
        now + 1
    } else {
        now
    };
    let draft = Draft {
        nominal,
        fire_at: now,
        trigger: OccurrenceTrigger::Manual,
        fixed: None,
        window: false,
    };
    let decisions = q.resolve(vec![draft]);
    Plan {
        decisions,
        cursor: NextCursor::Unchanged,
        cancel_active: q.cancel_active,
        supersede_pending: q.supersede_pending,
    }
}

/// What a backfill works on.
#[derive(Clone, Copy)]
pub struct BackfillRange<'a> {
    /// Schedule name (jitter key).
    pub key: &'a str,
    /// First nominal time (inclusive).
    pub from: i64,
    /// Last nominal time (inclusive).
    pub to: i64,
    /// Whether an occurrence exists already.
    pub existing: &'a dyn Fn(i64) -> bool,
}

/// Backfill `from ≤ n ≤ to`: each occurrence that does not exist yet, once,
/// in order; errors name `from`/`to`.
pub fn plan_backfill(
    t: &Trigger,
    range: BackfillRange<'_>,
    active: Active,
    pending: u32,
    overlap: Overlap,
) -> Result<Backfill, Error> {
    if range.from > range.to {
        return Err(invalid("to", "must not be before `from`"));
    }
    let overlap = if overlap == Overlap::Allow {
        Overlap::Allow
    } else {
        // Backfill items fire first-then-in-order under every other policy.
        Overlap::Skip
    };
    let mut q = Queue::new(active, pending, overlap, t);
    let mut rows = Rows::default();
    let (mut already, mut seen) = (0u32, 0usize);
    let mut n = t.first_at_or_after(range.from);
    while let Some(cur) = n.filter(|&c| c <= range.to) {
        seen += 1;
        if seen > MAX_DUE {
            let msg = format!("the range holds more than {MAX_DUE} occurrences");
            return Err(invalid("to", msg));
        }
        let next = t.next_after(cur);
        let fire_at = cur + t.jitter_with_gap(range.key, cur, next.map(|x| x - cur));
        n = next;
        if (range.existing)(cur) {
            already += 1;
            rows.flush();
            continue;
        }
        if !t.in_window(cur) {
            let why = Some(window_reason(t));
            rows.push(
                decision(cur, fire_at, OccurrenceTrigger::Backfill, Fate::Skip, why),
                true,
            );
            continue;
        }
        let (fate, reason) = q.decide(OccurrenceTrigger::Backfill, false);
        rows.push(
            decision(cur, fire_at, OccurrenceTrigger::Backfill, fate, reason),
            false,
        );
    }
    Ok(Backfill {
        plan: Plan {
            decisions: rows.finish(),
            cursor: NextCursor::Unchanged,
            cancel_active: false,
            supersede_pending: false,
        },
        already,
    })
}

fn decision(
    nominal: i64,
    fire_at: i64,
    trigger: OccurrenceTrigger,
    fate: Fate,
    reason: Option<String>,
) -> Decision {
    Decision {
        nominal,
        last_nominal: None,
        count: 1,
        trigger,
        fate,
        reason,
        fire_at,
    }
}

#[cfg(test)]
mod tests;
