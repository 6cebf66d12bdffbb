//! Text rendering of schedules, their occurrences and previews. Pure:
//! every function takes `now`, and the schedule's zone as a function
//! (`local`) that writes an instant in it.

use std::fmt::Write as _;

use baton_proto::schedule::{
    FireReport, NextList, OccurrenceList, OccurrenceState, OccurrenceView, ScheduleList,
    ScheduleSpec, ScheduleView,
};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::render::{
    Fields, dash, finish, fmt_ago, fmt_ms, fmt_time, one_line, spec_summary, table, truncate,
};

/// Longest target summary in `schedule list`.
const TARGET_WIDTH: usize = 40;
/// Longest reason in tables.
const REASON_WIDTH: usize = 70;

/// Writes an instant in the schedule's zone (RFC 3339 with its offset).
pub type Local<'a> = &'a dyn Fn(DateTime<Utc>) -> String;

/// An instant in UTC, to the second.
pub fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The zone of a spec (`UTC` when it names none).
pub fn zone(spec: &ScheduleSpec) -> &str {
    spec.tz.as_deref().unwrap_or("UTC")
}

/// The trigger in one line: `cron 30 2 * * * (Europe/Berlin)` or `every 15m`.
pub fn trigger_summary(spec: &ScheduleSpec) -> String {
    match (&spec.cron, spec.every_ms) {
        (Some(c), _) => format!("cron {c} ({})", zone(spec)),
        (None, Some(ms)) => format!("every {}", fmt_ms(ms)),
        (None, None) => "-".to_owned(),
    }
}

/// What each occurrence runs, in one line.
pub fn target_summary(spec: &ScheduleSpec) -> String {
    match (&spec.pipeline, &spec.job) {
        (Some(p), _) => format!("pipeline {p}"),
        (None, Some(j)) => spec_summary(&j.spec),
        (None, None) => "-".to_owned(),
    }
}

/// `paused`, `stale`, both, or `active`.
pub fn state_word(v: &ScheduleView) -> String {
    match (v.paused, v.stale) {
        (true, true) => "paused,stale".to_owned(),
        (true, false) => "paused".to_owned(),
        (false, true) => "stale".to_owned(),
        (false, false) => "active".to_owned(),
    }
}

/// The job or run an occurrence made: `job 12`, `run 3`, `-`.
pub fn made(o: &OccurrenceView) -> String {
    match (o.job_id, o.run_id) {
        (Some(j), _) => format!("job {j}"),
        (None, Some(r)) => format!("run {r}"),
        (None, None) => "-".to_owned(),
    }
}

/// An occurrence's nominal time (UTC), or its range.
fn nominal(o: &OccurrenceView) -> String {
    match o.last_nominal_at {
        Some(last) if o.count > 1 => format!("{} … {} ({})", utc(o.nominal_at), utc(last), o.count),
        _ => utc(o.nominal_at),
    }
}

/// An occurrence's nominal time in the zone, or its range.
fn nominal_local(o: &OccurrenceView, local: Local<'_>) -> String {
    match o.last_nominal_at {
        Some(last) if o.count > 1 => format!("{} … {}", local(o.nominal_at), local(last)),
        _ => local(o.nominal_at),
    }
}

/// An occurrence in one line: `2027-01-01T02:30:00Z fired (job 12, succeeded)`.
pub fn occurrence_line(o: &OccurrenceView) -> String {
    let mut s = format!("{} {}", nominal(o), o.state.as_str());
    let mut detail = Vec::new();
    if o.job_id.is_some() || o.run_id.is_some() {
        detail.push(made(o));
    }
    if let Some(out) = &o.outcome {
        detail.push(out.clone());
    }
    if let Some(r) = &o.reason {
        detail.push(one_line(r));
    }
    if !detail.is_empty() {
        let _ = write!(s, " ({})", detail.join(", "));
    }
    if o.trigger.as_str() != "schedule" {
        let _ = write!(s, " [{}]", o.trigger.as_str());
    }
    s
}

/// `schedule list`.
pub fn render_list(list: &ScheduleList, now: DateTime<Utc>) -> String {
    if list.schedules.is_empty() {
        return "No schedules.\n".to_owned();
    }
    let mut t = table(&[
        "NAME",
        "STATE",
        "TRIGGER",
        "RUNS",
        "NEXT",
        "LAST",
        "LAST SUCCESS",
        "MISSED",
    ]);
    for v in &list.schedules {
        t.add_row(vec![
            v.spec.name.clone(),
            state_word(v),
            trigger_summary(&v.spec),
            truncate(&target_summary(&v.spec), TARGET_WIDTH),
            v.next_fire_at
                .or(v.next_at)
                .map_or("-".to_owned(), |t| fires_in(t, now)),
            v.last.as_ref().map_or("-".to_owned(), |o| {
                format!("{} {}", o.state.as_str(), fmt_ago(o.nominal_at, now))
            }),
            v.last_success_at
                .map_or("never".to_owned(), |t| fmt_ago(t, now)),
            v.counts.missed.to_string(),
        ]);
    }
    finish(t)
}

/// The definition's lines of `schedule show`.
fn definition(f: &mut Fields, s: &ScheduleSpec) {
    f.add("Trigger", trigger_summary(s));
    if let Some(a) = s.anchor {
        f.add("Anchor", utc(a));
    }
    match (&s.pipeline, &s.job) {
        (Some(p), _) => f.add("Runs", format!("pipeline {p}")),
        (None, Some(j)) => {
            f.add("Runs", spec_summary(&j.spec));
            f.add("Group", dash(s.group.as_deref()));
        }
        (None, None) => {}
    }
    if let (Some(_), Some(g)) = (&s.pipeline, &s.group) {
        f.add("Group", g.clone());
    }
    if let Some(w) = &s.between {
        f.add("Active window", format!("{w} ({})", zone(s)));
    }
    if let Some(t) = s.start_at {
        f.add("Start at", utc(t));
    }
    if let Some(t) = s.end_at {
        f.add("End at", utc(t));
    }
    if s.jitter_ms > 0 {
        f.add("Jitter", format!("up to {}", fmt_ms(s.jitter_ms)));
    }
    f.add("Overlap", s.overlap.as_str());
    f.add(
        "Catch-up",
        format!(
            "{} within {} (at most {})",
            s.catchup.as_str(),
            fmt_ms(s.catchup_window_ms),
            s.catchup_cap
        ),
    );
    if let Some(a) = s.alert_after_ms {
        f.add("Alert after", fmt_ms(a));
    }
}

/// `schedule show`: the definition, its state, the next runs (UTC and
/// local) and the recent occurrences that did not run, with their reasons.
pub fn render_show(
    v: &ScheduleView,
    next: Option<&NextList>,
    not_run: &[OccurrenceView],
    now: DateTime<Utc>,
    local: Local<'_>,
) -> String {
    let mut out = String::new();
    let mut f = Fields::default();
    f.add("Schedule", v.spec.name.clone());
    f.add("State", state_word(v));
    definition(&mut f, &v.spec);
    match &v.last {
        Some(o) => f.add("Last occurrence", occurrence_line(o)),
        None => f.add("Last occurrence", "none yet"),
    }
    f.add(
        "Last success",
        v.last_success_at.map_or("never".to_owned(), |t| {
            let age = v.last_success_age_ms.map(fmt_ms);
            format!(
                "{} (age {})",
                utc(t),
                age.unwrap_or_else(|| fmt_ago(t, now))
            )
        }),
    );
    f.add(
        "Stale",
        match (v.stale, v.spec.alert_after_ms) {
            (true, Some(a)) => format!("YES: no success for more than {}", fmt_ms(a)),
            (true, None) => "YES".to_owned(),
            (false, Some(_)) => "no".to_owned(),
            (false, None) => "no (no alert_after set)".to_owned(),
        },
    );
    let c = &v.counts;
    f.add(
        "Occurrences",
        format!(
            "fired {}, skipped {}, missed {}, pending {}",
            c.fired, c.skipped, c.missed, c.pending
        ),
    );
    f.add("Created", fmt_time(v.created_at, now));
    f.add("Updated", fmt_time(v.updated_at, now));
    f.render(&mut out);
    out.push('\n');
    match next {
        Some(n) if !n.occurrences.is_empty() => {
            out.push_str("Next runs:\n");
            crate::render::indented(&mut out, &render_next(n, Some(now)), "  ");
        }
        _ if v.paused => out.push_str("Next runs: none while paused\n"),
        _ => out.push_str("Next runs: none\n"),
    }
    if !not_run.is_empty() {
        out.push_str("\nRecent occurrences that did not run:\n");
        let local_head = format!("LOCAL ({})", zone(&v.spec));
        let mut t = table(&["NOMINAL (UTC)", &local_head, "STATE", "REASON"]);
        for o in not_run {
            t.add_row(vec![
                nominal(o),
                nominal_local(o, local),
                o.state.as_str().to_owned(),
                truncate(&one_line(o.reason.as_deref().unwrap_or("-")), REASON_WIDTH),
            ]);
        }
        crate::render::indented(&mut out, &finish(t), "  ");
    }
    out
}

/// The occurrences `schedule show` lists as not run: missed and skipped.
pub fn not_run(list: &OccurrenceList, max: usize) -> Vec<OccurrenceView> {
    list.occurrences
        .iter()
        .filter(|o| matches!(o.state, OccurrenceState::Missed | OccurrenceState::Skipped))
        .take(max)
        .cloned()
        .collect()
}

/// `schedule history`: newest first.
pub fn render_history(list: &OccurrenceList, tz: &str, local: Local<'_>) -> String {
    if list.occurrences.is_empty() {
        return "No occurrences.\n".to_owned();
    }
    let local_head = format!("LOCAL ({tz})");
    let mut t = table(&[
        "NOMINAL (UTC)",
        &local_head,
        "TRIGGER",
        "STATE",
        "REASON",
        "JOB/RUN",
        "OUTCOME",
    ]);
    for o in &list.occurrences {
        t.add_row(vec![
            nominal(o),
            nominal_local(o, local),
            o.trigger.as_str().to_owned(),
            o.state.as_str().to_owned(),
            truncate(&one_line(o.reason.as_deref().unwrap_or("-")), REASON_WIDTH),
            made(o),
            dash(o.outcome.as_deref()),
        ]);
    }
    finish(t)
}

/// Upcoming occurrences, in UTC and in the zone; with `now`, how far away.
pub fn render_next(list: &NextList, now: Option<DateTime<Utc>>) -> String {
    if list.occurrences.is_empty() {
        return "No upcoming occurrences.\n".to_owned();
    }
    let jittered = list.occurrences.iter().any(|o| o.fire_at != o.nominal_at);
    let windowed = list.occurrences.iter().any(|o| o.outside_window);
    let local_head = format!("LOCAL ({})", list.tz);
    let mut header = vec!["UTC", local_head.as_str()];
    if jittered {
        header.push("FIRES AT (UTC)");
    }
    if now.is_some() {
        header.push("IN");
    }
    if windowed {
        header.push("NOTE");
    }
    let mut t = table(&header);
    for o in &list.occurrences {
        let mut row = vec![utc(o.nominal_at), o.local.clone()];
        if jittered {
            row.push(utc(o.fire_at));
        }
        if let Some(now) = now {
            row.push(fires_in(o.fire_at, now));
        }
        if windowed {
            row.push(if o.outside_window {
                "outside the active window: skipped".to_owned()
            } else {
                "-".to_owned()
            });
        }
        t.add_row(row);
    }
    finish(t)
}

/// What `trigger` or `backfill` did.
pub fn render_fire_report(name: &str, r: &FireReport) -> String {
    let mut out = String::new();
    if r.occurrences.is_empty() {
        let _ = writeln!(out, "Schedule {name}: no new occurrence");
    }
    for o in &r.occurrences {
        let _ = writeln!(out, "Schedule {name}: {}", occurrence_line(o));
    }
    if r.already > 0 {
        let _ = writeln!(
            out,
            "({} occurrence{} in the range existed already and {} left as they were)",
            r.already,
            if r.already == 1 { "" } else { "s" },
            if r.already == 1 { "was" } else { "were" }
        );
    }
    out
}

/// When an occurrence fires, relative to `now`: `in 4s`, or `due` once its time has come.
fn fires_in(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t <= now {
        "due".to_owned()
    } else {
        fmt_ago(t, now)
    }
}

/// `create`, `pause`, `resume`: one line with the next run.
pub fn render_state_line(verb: &str, v: &ScheduleView, now: DateTime<Utc>) -> String {
    let name = &v.spec.name;
    match (v.paused, v.next_fire_at.or(v.next_at)) {
        (true, _) if verb == "paused" => format!("Schedule {name} paused\n"),
        (true, _) => format!("Schedule {name} {verb} (paused)\n"),
        (false, Some(t)) => format!(
            "Schedule {name} {verb}; next run {} ({})\n",
            utc(t),
            fires_in(t, now)
        ),
        (false, None) => format!("Schedule {name} {verb}; no next run\n"),
    }
}

#[cfg(test)]
mod tests;
