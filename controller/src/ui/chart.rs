//! Charts drawn on the server as SVG (no script, styled by the stylesheet's
//! classes, so the CSP needs no inline style):
//!
//! - [`waterfall`]: a job's attempts, one bar per attempt on one time axis:
//!   waiting (from the job's creation or the previous attempt's end to the
//!   grant) then held (the grant to the attempt's end, or now), coloured by
//!   the outcome. The store records the grant and the end of an attempt,
//!   not when the agent's executor started, so granted and running are one
//!   segment.
//! - [`drill_timeline`]: a drill's events on one time axis, one row each,
//!   with the detection and takeover spans shaded.

use baton_proto::drill::{DrillEventKind, DrillView};
use baton_proto::{AttemptOutcome, JobView};
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
                    @let y = ROW * i as f64 + 4.0;
                    @let granted = a.started_at.timestamp_millis();
                    @let ended = a.ended_at.map_or(now, |e| e.timestamp_millis());
                    @let prev_end = waits_from[i];
                    @let (wx, gx, ex) = (x(prev_end, t0, span), x(granted, t0, span), x(ended, t0, span));
                    @let outcome = a.outcome.map_or("running", |o| o.as_str());
                    g class="attempt" data-attempt=(a.number) data-outcome=(outcome) {
                        text x="4" y=(y + 15.0) class="label" { "#" (a.number) " " (a.agent_id) }
                        rect class="seg-wait" x=(wx) y=(y) width=((gx - wx).max(1.0)) height="18" {
                            title { "waiting " (dur(granted - prev_end)) }
                        }
                        rect class=(outcome_class(a.outcome)) x=(gx) y=(y) width=((ex - gx).max(2.0)) height="18" {
                            title { (outcome) " " (dur(ended - granted)) }
                        }
                    }
                }
                text x=(LABEL) y=(h - 4.0) class="axis" { "0" }
                text x=(W - 10.0) y=(h - 4.0) class="axis" text-anchor="end" { (dur(span)) }
            }
            figcaption {
                span class="key seg-wait" {} " waiting "
                span class="key seg-run" {} " running "
                span class="key seg-ok" {} " succeeded "
                span class="key seg-bad" {} " failed, timed out, lease expired "
                span class="key seg-off" {} " cancelled, released"
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
            "takeover",
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
                span class="key span-takeover" {} " takeover (lease expired → granted again)"
            }
        }
    }
}
