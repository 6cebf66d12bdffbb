//! Charts drawn on the server as SVG (no script, styled by the stylesheet's
//! classes, so the CSP needs no inline style):
//!
//! - [`waterfall`]: a job's attempts, one bar per attempt on one time axis,
//!   in three segments: waiting (from the job's creation or the previous
//!   attempt's end to the grant), granted (the grant to the agent's executor
//!   starting: `running_at`, reported by the agent as a delay after the
//!   grant) and running (from there to the attempt's end, or now), coloured
//!   by the outcome. An attempt with no reported start (an older agent, or a
//!   lease lost before the agent reported) is granted until now while live,
//!   and held in the outcome's colour once ended.
//! - [`drill_timeline`]: a drill's events on one time axis, one row each,
//!   with the detection (fault → lease expired) and re-grant (lease expired
//!   → granted again) spans shaded: together they are the takeover.

use baton_proto::drill::{DrillEventKind, DrillView};
use baton_proto::{AttemptOutcome, AttemptView, JobView};
use maud::{Markup, html};

use super::dur;

/// Chart width in SVG units (the SVG scales to its box).
const W: f64 = 1000.0;
/// Left margin for the row labels.
const LABEL: f64 = 170.0;
/// Row height.
const ROW: f64 = 26.0;

/// The class of an attempt's held segment.
fn outcome_class(o: Option<AttemptOutcome>) -> &'static str {
    match o {
        None => "seg-run",
        Some(AttemptOutcome::Succeeded) => "seg-ok",
        Some(AttemptOutcome::Cancelled | AttemptOutcome::Released) => "seg-off",
        Some(_) => "seg-bad",
    }
}

/// x of time `t` (ms) on an axis from `t0` spanning `span` ms.
fn x(t: i64, t0: i64, span: i64) -> f64 {
    LABEL + (W - LABEL - 10.0) * ((t - t0).max(0) as f64 / span.max(1) as f64)
}

/// The waterfall of `job`'s attempts at `now` (Unix ms).
pub fn waterfall(job: &JobView, now: i64) -> Markup {
    let t0 = job.created_at.timestamp_millis();
    let end = job
        .finished_at
        .map(|f| f.timestamp_millis())
        .into_iter()
        .chain(
            job.attempts
                .iter()
                .map(|a| a.ended_at.map_or(now, |e| e.timestamp_millis())),
        )
        .max()
        .unwrap_or(now)
        .max(t0 + 1);
    let span = end - t0;
    let h = ROW * (job.attempts.len().max(1) as f64) + 24.0;
    // Each attempt waits from the previous one's end (the first from the
    // job's creation).
    let waits_from: Vec<i64> = std::iter::once(t0)
        .chain(
            job.attempts
                .iter()
                .map(|a| a.ended_at.map_or(now, |e| e.timestamp_millis())),
        )
        .collect();
    html! {
        figure class="chart" {
            svg class="waterfall" viewBox={ "0 0 " (W) " " (h) } role="img"
                aria-label={ "Attempts of job " (job.id) " over " (dur(span)) } {
                @if job.attempts.is_empty() {
                    text x="10" y="18" class="axis" { "No attempt yet: queued for " (dur(now - t0)) }
                }
                @for (i, a) in job.attempts.iter().enumerate() {
                    (attempt_bar(a, ROW * i as f64 + 4.0, waits_from[i], (t0, span, now)))
                }
                text x=(LABEL) y=(h - 4.0) class="axis" { "0" }
                text x=(W - 10.0) y=(h - 4.0) class="axis" text-anchor="end" { (dur(span)) }
            }
            figcaption {
                span class="key seg-wait" {} " waiting "
                span class="key seg-granted" {} " granted "
                span class="key seg-run" {} " running "
                span class="key seg-ok" {} " succeeded "
                span class="key seg-bad" {} " failed, timed out, lease expired "
                span class="key seg-off" {} " cancelled, released"
            }
        }
    }
}

/// One attempt's bar at height `y`: waiting from `prev_end`, granted, then
/// running; `axis` is the chart's start, span and now (Unix ms).
fn attempt_bar(a: &AttemptView, y: f64, prev_end: i64, (t0, span, now): (i64, i64, i64)) -> Markup {
    let granted = a.started_at.timestamp_millis();
    let ended = a.ended_at.map_or(now, |e| e.timestamp_millis());
    let running = a
        .running_at
        .map(|r| r.timestamp_millis().clamp(granted, ended.max(granted)));
    // Without a reported start, a live attempt is granted until now and an
    // ended one is drawn held, in its outcome's colour.
    let (granted_to, run_from) = match (running, a.ended_at) {
        (Some(r), _) => (r, Some(r)),
        (None, None) => (ended, None),
        (None, Some(_)) => (granted, Some(granted)),
    };
    let (wx, gx) = (x(prev_end, t0, span), x(granted, t0, span));
    let (rx, ex) = (x(granted_to, t0, span), x(ended, t0, span));
    let outcome = a.outcome.map_or("running", |o| o.as_str());
    html! {
        g class="attempt" data-attempt=(a.number) data-outcome=(outcome) {
            text x="4" y=(y + 15.0) class="label" { "#" (a.number) " " (a.agent_id) }
            rect class="seg-wait" x=(wx) y=(y) width=((gx - wx).max(1.0)) height="18" {
                title { "waiting " (dur(granted - prev_end)) }
            }
            @if run_from.is_none() || running.is_some() {
                rect class="seg-granted" x=(gx) y=(y) width=((rx - gx).max(1.0)) height="18" {
                    title { "granted " (dur(granted_to - granted)) }
                }
            }
            @if let Some(r) = run_from {
                rect class=(outcome_class(a.outcome)) x=(x(r, t0, span)) y=(y)
                    width=((ex - x(r, t0, span)).max(2.0)) height="18" {
                    title {
                        @if running.is_some() { "running " } @else { "held (start not reported) " }
                        (outcome) " " (dur(ended - r))
                    }
                }
            }
        }
    }
}

/// The timeline chart of a drill's events.
pub fn drill_timeline(d: &DrillView) -> Markup {
    let Some(first) = d.events.first() else {
        return html! { p { "No event recorded yet." } };
    };
    let t0 = first.at.timestamp_millis();
    let end = d
        .events
        .iter()
        .map(|e| e.at.timestamp_millis())
        .max()
        .unwrap_or(t0)
        .max(t0 + 1);
    let span = end - t0;
    let at = |k: DrillEventKind| {
        d.events
            .iter()
            .find(|e| e.kind == k)
            .map(|e| e.at.timestamp_millis())
    };
    let spans = [
        (
            "detection",
            at(DrillEventKind::FaultInjected).or(at(DrillEventKind::FaultSent)),
            at(DrillEventKind::LeaseExpired),
        ),
        (
            "regrant",
            at(DrillEventKind::LeaseExpired),
            at(DrillEventKind::JobRegranted),
        ),
    ];
    let h = ROW * d.events.len() as f64 + 24.0;
    html! {
        figure class="chart" {
            svg class="drill-timeline" viewBox={ "0 0 " (W) " " (h) } role="img"
                aria-label={ "Timeline of drill " (d.id) " over " (dur(span)) } {
                @for (name, from, to) in spans {
                    @if let (Some(a), Some(b)) = (from, to) {
                        rect class={ "span-" (name) } x=(x(a, t0, span)) y="0"
                            width=((x(b, t0, span) - x(a, t0, span)).max(1.0)) height=(h - 20.0) {
                            title { (name) " " (dur(b - a)) }
                        }
                    }
                }
                @for (i, e) in d.events.iter().enumerate() {
                    @let y = ROW * i as f64 + 13.0;
                    @let ex = x(e.at.timestamp_millis(), t0, span);
                    g class="event" data-kind=(e.kind.as_str()) {
                        text x="4" y=(y + 4.0) class="label" { (e.kind.as_str()) }
                        line x1=(LABEL) x2=(ex) y1=(y) y2=(y) class="rule" {}
                        circle cx=(ex) cy=(y) r="6" class={ "ev ev-" (e.kind.as_str()) } {
                            title {
                                (e.kind.as_str()) " +" (dur(e.at.timestamp_millis() - t0))
                                @if let Some(a) = &e.agent { " agent " (a) }
                                @if let Some(n) = e.attempt { " attempt " (n) }
                                @if let Some(dt) = &e.detail { " — " (dt) }
                            }
                        }
                        text x=((ex + 10.0).min(W - 80.0)) y=(y + 4.0) class="axis" { "+" (dur(e.at.timestamp_millis() - t0)) }
                    }
                }
                text x=(LABEL) y=(h - 4.0) class="axis" { "0" }
                text x=(W - 10.0) y=(h - 4.0) class="axis" text-anchor="end" { (dur(span)) }
            }
            figcaption {
                span class="key span-detection" {} " detection (fault → lease expired) "
                span class="key span-regrant" {} " re-grant (lease expired → granted again); takeover is both"
            }
        }
    }
}

/// Node box width and height, and the gaps between columns and rows.
const NODE_W: f64 = 170.0;
const NODE_H: f64 = 36.0;
const COL_GAP: f64 = 60.0;
const ROW_GAP: f64 = 16.0;

/// A pipeline's steps as a DAG: a step's column is the longest chain of
/// dependencies before it; an arrow goes from each dependency to the step.
/// `state` gives a step's state in a run (`None`: the definition only).
pub fn dag(
    spec: &baton_proto::pipeline::PipelineSpec,
    state: impl Fn(&str) -> Option<baton_proto::pipeline::StepState>,
) -> Markup {
    let steps = &spec.steps;
    let index = |n: &str| steps.iter().position(|s| s.name == n);
    // Longest-path depth; definitions are acyclic (checked when stored), and
    // the bound on the passes keeps a corrupt one from looping.
    let mut depth = vec![0usize; steps.len()];
    for _ in 0..steps.len() {
        let mut changed = false;
        for (i, s) in steps.iter().enumerate() {
            for d in s.depends_on.iter().filter_map(|d| index(d)) {
                if depth[i] < depth[d] + 1 {
                    depth[i] = depth[d] + 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut row_in_col = vec![0usize; steps.len()];
    let mut used: Vec<usize> = Vec::new();
    for (i, d) in depth.iter().enumerate() {
        if used.len() <= *d {
            used.resize(d + 1, 0);
        }
        row_in_col[i] = used[*d];
        used[*d] += 1;
    }
    let pos = |i: usize| {
        (
            10.0 + depth[i] as f64 * (NODE_W + COL_GAP),
            10.0 + row_in_col[i] as f64 * (NODE_H + ROW_GAP),
        )
    };
    let w = 20.0 + used.len() as f64 * (NODE_W + COL_GAP) - COL_GAP;
    let h = 20.0 + used.iter().max().copied().unwrap_or(1) as f64 * (NODE_H + ROW_GAP) - ROW_GAP;
    html! {
        figure class="chart" {
            svg class="dag" viewBox={ "0 0 " (w) " " (h) } width=(w) height=(h) role="img"
                aria-label={ "Steps of pipeline " (spec.name) } {
                defs {
                    marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto" {
                        path d="M0,0 L10,5 L0,10 z" class="arrowhead" {}
                    }
                }
                @for (i, s) in steps.iter().enumerate() {
                    @for d in s.depends_on.iter().filter_map(|d| index(d)) {
                        @let ((x1, y1), (x2, y2)) = (pos(d), pos(i));
                        line class="edge" x1=(x1 + NODE_W) y1=(y1 + NODE_H / 2.0) x2=(x2) y2=(y2 + NODE_H / 2.0) marker-end="url(#arrow)" {}
                    }
                }
                @for (i, s) in steps.iter().enumerate() {
                    @let (x0, y0) = pos(i);
                    @let st = state(&s.name);
                    g class="step" data-step=(s.name) data-state=(st.map_or("", |st| st.as_str())) {
                        rect class={ "node " (st.map_or("st-def", super::pipelines::step_class)) }
                            x=(x0) y=(y0) width=(NODE_W) height=(NODE_H) rx="6" {}
                        text x=(x0 + 10.0) y=(y0 + 15.0) class="node-name" { (s.name) }
                        text x=(x0 + 10.0) y=(y0 + 30.0) class="node-state" { (st.map_or("", |st| st.as_str())) }
                    }
                }
            }
        }
    }
}
