//! Schedule triggers: when a schedule's occurrences are, and what the timer
//! does with those that are due ([`plan`]). Pure code: no clock reads, no
//! I/O; times are Unix milliseconds (UTC) passed in by the caller.
//!
//! A [`Trigger`] is built from a [`ScheduleSpec`] once (validated, every
//! refusal naming its field, see [`Error`]) and answers "the next nominal
//! time after t", the deterministic jitter of an occurrence, whether it lies
//! in the active window, and its local time.
//!
//! # Occurrences
//!
//! - **cron**: a 5-field pattern, or 6 with seconds first (`croner` 4, also
//!   `L`, `W`, `#` and `@daily`-style nicknames), evaluated in the schedule's
//!   IANA zone (`tz`, default `UTC`; `chrono-tz`, compiled in).
//! - **interval**: `anchor + k·every_ms` for `k ≥ 0`; the anchor is `anchor`,
//!   else `start_at`, else the schedule's creation time.
//! - Both only within `start_at..=end_at`. The active window (`between =
//!   "HH:MM-HH:MM"`, the schedule's zone, start inclusive, end exclusive, may
//!   wrap past midnight) does not remove occurrences: those outside it are
//!   recorded as skipped.
//! - **Jitter**: occurrence `n` fires at `n + j`, where `j` is the first 8
//!   bytes of SHA-256(`name`, 0, `n` big-endian) modulo `min(jitter_ms, gap)`,
//!   `gap` the distance to the next occurrence (so `0 ≤ j < gap`: an
//!   occurrence always fires before the next one's nominal time). The same
//!   schedule name and nominal time always give the same delay, on every
//!   controller.
//!
//! # The DST rule
//!
//! A cron pattern is *fixed-time* when its second, minute and hour fields
//! are each one single value (`30 2 * * *`, `0 30 2 * * 1-5`); anything else
//! there — `*`, a step (`*/15`), a list (`2,14`) or a range (`1-3`) — makes
//! it a *wildcard* pattern. This is croner's classification
//! (`Cron::determine_job_type`), verified across the 2027 transitions of
//! Europe/Berlin and America/New_York (`trigger/tests.rs`):
//!
//! - A fixed-time occurrence in the spring-forward gap runs once, at the
//!   first valid instant after the gap (`30 2 * * *` in Berlin on
//!   2027-03-28 runs at 03:00+02:00).
//! - In the repeated fall-back hour a fixed-time occurrence runs once, at the
//!   first of the two instants (`30 2 * * *` in Berlin on 2027-10-31 runs at
//!   02:30+02:00, not again at 02:30+01:00).
//! - Wildcard patterns follow absolute time: a local time inside the gap
//!   does not exist and has no occurrence, and a local time in the repeated
//!   hour exists twice and has two occurrences. `0 * * * *` has 23
//!   occurrences on the spring-forward day and 25 on the fall-back day; a
//!   list such as `30 2,14 * * *` therefore has no 02:30 on the
//!   spring-forward day and two on the fall-back day (use a single-value
//!   pattern per time of day when that matters).
//! - Intervals are absolute: `every = "15m"` stays 15 minutes apart in UTC
//!   whatever the zone does.
//!
//! # The firing plan
//!
//! See [`plan`]: the rules that turn due occurrences into fired, pending,
//! skipped and missed records.

use std::sync::Arc;

use baton_proto::schedule::{DEFAULT_CATCHUP_CAP, NextOccurrence, ScheduleSpec, valid_name};
use chrono::{DateTime, SecondsFormat, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Year};
use sha2::{Digest, Sha256};

pub mod plan;

/// Shortest interval: one second.
pub const MIN_EVERY_MS: u64 = 1_000;

/// A refused schedule definition or request; [`Error::field`] names the
/// field at fault (the API answers 422 with it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A field's value is wrong.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// The field at fault (`cron`, `tz`, `every_ms`, `between`, ...).
    pub fn field(&self) -> &'static str {
        match self {
            Error::Invalid { field, .. } => field,
        }
    }

    /// What is wrong, without the field.
    pub fn message(&self) -> &str {
        match self {
            Error::Invalid { message, .. } => message,
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> Error {
    Error::Invalid {
        field,
        message: message.into(),
    }
}

/// An active window: local minutes of the day, `start` inclusive, `end`
/// exclusive; `start > end` wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Minutes after local midnight where it opens.
    pub start: u32,
    /// Minutes after local midnight where it closes.
    pub end: u32,
}

impl Window {
    /// Whether a local time of day (seconds after midnight) is inside.
    pub fn contains(&self, second_of_day: u32) -> bool {
        let (s, e) = (self.start * 60, self.end * 60);
        if s < e {
            (s..e).contains(&second_of_day)
        } else {
            second_of_day >= s || second_of_day < e
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Parse a window `HH:MM-HH:MM` (may wrap past midnight; start == end is an
/// error). Errors name the field `between`.
pub fn parse_window(s: &str) -> Result<Window, Error> {
    let bad = || {
        invalid(
            "between",
            format!("`{s}` is not HH:MM-HH:MM (e.g. 01:00-05:00)"),
        )
    };
    let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
    let minutes = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (start, end) = (minutes(a).ok_or_else(bad)?, minutes(b).ok_or_else(bad)?);
    if start == end {
        return Err(invalid(
            "between",
            format!("`{s}`: start and end are equal"),
        ));
    }
    Ok(Window { start, end })
}

/// Parse a cron pattern of 5 fields, or 6 with seconds first. Errors name
/// the field `cron` and say what is wrong.
pub fn parse_cron(pattern: &str) -> Result<Cron, Error> {
    let fields = pattern.split_whitespace().count();
    if !pattern.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        return Err(invalid(
            "cron",
            format!(
                "`{pattern}` has {fields} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
            ),
        ));
    }
    CronParser::builder()
        .year(Year::Disallowed)
        .build()
        .parse(pattern)
        .map_err(|e| invalid("cron", format!("`{pattern}`: {e}")))
}

#[derive(Debug)]
enum Kind {
    Cron(Arc<Cron>),
    Every { every: i64, anchor: i64 },
}

#[derive(Debug)]
struct Inner {
    kind: Kind,
    tz: Tz,
    window: Option<Window>,
    start_at: Option<i64>,
    end_at: Option<i64>,
    jitter_ms: i64,
    pipeline: bool,
}

/// A validated schedule trigger; immutable and cheap to clone.
#[derive(Debug, Clone)]
pub struct Trigger(Arc<Inner>);

fn check_target(spec: &ScheduleSpec) -> Result<(), Error> {
    if !valid_name(&spec.name) {
        return Err(invalid(
            "name",
            "must be 1-64 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    match (&spec.job, &spec.pipeline) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(invalid("job", "give exactly one of `job` and `pipeline`"));
        }
        (Some(_), None) if spec.group.as_deref().is_none_or(str::is_empty) => {
            return Err(invalid("group", "required when the schedule runs a job"));
        }
        (None, Some(p)) if !valid_name(p) => {
            return Err(invalid(
                "pipeline",
                "must be 1-64 characters of A-Z a-z 0-9 _ . -",
            ));
        }
        _ => {}
    }
    if let Some(g) = &spec.group
        && !baton_proto::valid_name(g)
    {
        return Err(invalid(
            "group",
            "must be 1-128 characters of A-Z a-z 0-9 _ . -",
        ));
    }
    Ok(())
}

fn check_limits(spec: &ScheduleSpec) -> Result<(Option<i64>, Option<i64>), Error> {
    let start_at = spec.start_at.map(|t| t.timestamp_millis());
    let end_at = spec.end_at.map(|t| t.timestamp_millis());
    if let (Some(s), Some(e)) = (start_at, end_at)
        && s >= e
    {
        return Err(invalid("end_at", "must be after `start_at`"));
    }
    if !(1..=DEFAULT_CATCHUP_CAP).contains(&spec.catchup_cap) {
        return Err(invalid(
            "catchup_cap",
            format!("must be 1..={DEFAULT_CATCHUP_CAP}"),
        ));
    }
    if spec.jitter_ms > i64::MAX as u64 / 4 {
        return Err(invalid("jitter_ms", "too large"));
    }
    Ok((start_at, end_at))
}

/// Cron patterns parsed once and shared by the triggers built through it
/// ([`Trigger::new_with`]): croner's parse is the costly part of building a
/// trigger, and a fleet's schedules share a handful of patterns (the timer's
/// first look after a start builds hundreds at once). Emptied when it holds
/// [`Crons::MAX`] patterns.
#[derive(Debug, Default)]
pub struct Crons(std::collections::HashMap<String, Arc<Cron>>);

impl Crons {
    /// Most patterns kept.
    pub const MAX: usize = 4096;

    /// The parsed pattern (checked to match some date from `created_ms`
    /// in `tz` when it is parsed).
    fn get(&mut self, pattern: &str, created_ms: i64, tz: Tz) -> Result<Arc<Cron>, Error> {
        if let Some(c) = self.0.get(pattern) {
            return Ok(c.clone());
        }
        let cron = Arc::new(parse_cron(pattern)?);
        let from = Utc
            .timestamp_millis_opt(created_ms)
            .single()
            .unwrap_or_default();
        if let Err(croner::errors::CronError::TimeSearchLimitExceeded) =
            cron.find_next_occurrence(&from.with_timezone(&tz), false)
        {
            return Err(invalid("cron", format!("`{pattern}` matches no date")));
        }
        if self.0.len() >= Self::MAX {
            self.0.clear();
        }
        self.0.insert(pattern.to_owned(), cron.clone());
        Ok(cron)
    }

    /// Patterns held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Trigger {
    /// Validate and build. `created_ms` anchors an interval with no
    /// `anchor`/`start_at`.
    pub fn new(spec: &ScheduleSpec, created_ms: i64) -> Result<Trigger, Error> {
        Self::new_with(spec, created_ms, &mut Crons::default())
    }

    /// [`Trigger::new`], taking a parsed cron pattern from `crons` (and
    /// keeping one it parses there).
    pub fn new_with(
        spec: &ScheduleSpec,
        created_ms: i64,
        crons: &mut Crons,
    ) -> Result<Trigger, Error> {
        check_target(spec)?;
        let (start_at, end_at) = check_limits(spec)?;
        let tz = match spec.tz.as_deref() {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| invalid("tz", format!("`{name}` is not an IANA time zone name")))?,
        };
        let kind = match (&spec.cron, spec.every_ms) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid("cron", "give exactly one of `cron` and `every_ms`"));
            }
            (Some(pattern), None) => Kind::Cron(crons.get(pattern, created_ms, tz)?),
            (None, Some(every)) => {
                if every < MIN_EVERY_MS || every > i64::MAX as u64 / 4 {
                    return Err(invalid("every_ms", "must be at least 1000 (1s)"));
                }
                if spec.jitter_ms >= every {
                    return Err(invalid("jitter_ms", "must be below `every_ms`"));
                }
                let anchor = spec
                    .anchor
                    .map(|t| t.timestamp_millis())
                    .or(start_at)
                    .unwrap_or(created_ms);
                Kind::Every {
                    every: every as i64,
                    anchor,
                }
            }
        };
        let window = spec.between.as_deref().map(parse_window).transpose()?;
        Ok(Trigger(Arc::new(Inner {
            kind,
            tz,
            window,
            start_at,
            end_at,
            jitter_ms: spec.jitter_ms as i64,
            pipeline: spec.pipeline.is_some(),
        })))
    }

    /// The first nominal time strictly after `after_ms`, within
    /// `start_at..=end_at` (the window is not applied).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let i = &self.0;
        let after = match i.start_at {
            Some(s) => after_ms.max(s.saturating_sub(1)),
            None => after_ms,
        };
        let next = match &i.kind {
            Kind::Every { every, anchor } => {
                if after < *anchor {
                    *anchor
                } else {
                    let k = after.checked_sub(*anchor)? / every + 1;
                    anchor.checked_add(k.checked_mul(*every)?)?
                }
            }
            Kind::Cron(cron) => {
                let from = Utc
                    .timestamp_millis_opt(after)
                    .single()?
                    .with_timezone(&i.tz);
                cron.find_next_occurrence(&from, false)
                    .ok()?
                    .timestamp_millis()
            }
        };
        match i.end_at {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// The first nominal time at or after `at_ms` (same rules).
    pub fn first_at_or_after(&self, at_ms: i64) -> Option<i64> {
        self.next_after(at_ms.checked_sub(1)?)
    }

    /// Whether nominal `ms` is inside the active window, in the schedule's
    /// zone; true without one.
    pub fn in_window(&self, ms: i64) -> bool {
        let Some(w) = self.0.window else {
            return true;
        };
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => w.contains(t.with_timezone(&self.0.tz).num_seconds_from_midnight()),
            None => false,
        }
    }

    /// The active window, if any.
    pub fn window(&self) -> Option<Window> {
        self.0.window
    }

    /// Whether the schedule runs a pipeline (else a job).
    pub fn runs_pipeline(&self) -> bool {
        self.0.pipeline
    }

    /// Deterministic jitter of occurrence `nominal_ms` of schedule `key`
    /// (the schedule name): `0 ≤ j < min(jitter_ms, gap to the next
    /// occurrence)`; 0 without jitter.
    pub fn jitter_ms(&self, key: &str, nominal_ms: i64) -> i64 {
        if self.0.jitter_ms == 0 {
            return 0;
        }
        let gap = self.next_after(nominal_ms).map(|n| n - nominal_ms);
        self.jitter_with_gap(key, nominal_ms, gap)
    }

    /// [`Trigger::jitter_ms`] when the gap to the next occurrence is known
    /// (`None`: there is no next one).
    pub(crate) fn jitter_with_gap(&self, key: &str, nominal_ms: i64, gap: Option<i64>) -> i64 {
        let cap = match gap {
            Some(g) => self.0.jitter_ms.min(g),
            None => self.0.jitter_ms,
        };
        if cap <= 1 {
            return 0;
        }
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update([0u8]);
        h.update(nominal_ms.to_be_bytes());
        let d = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(first) % cap as u64) as i64
    }

    /// Nominal plus jitter: when occurrence `nominal_ms` fires.
    pub fn fire_at(&self, key: &str, nominal_ms: i64) -> i64 {
        nominal_ms + self.jitter_ms(key, nominal_ms)
    }

    /// `ms` as RFC 3339 in the schedule's zone with its offset (e.g.
    /// `2027-03-28T03:30:00+02:00`; milliseconds only when not zero).
    pub fn local(&self, ms: i64) -> String {
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => t
                .with_timezone(&self.0.tz)
                .to_rfc3339_opts(SecondsFormat::AutoSi, false),
            None => ms.to_string(),
        }
    }

    /// The zone's name (`UTC` by default).
    pub fn tz_name(&self) -> &str {
        self.0.tz.name()
    }

    /// Up to `count` occurrences after `from_ms` (exclusive), with their
    /// local time, firing time (jitter for `key`) and whether they fall
    /// outside the active window.
    pub fn preview(&self, key: &str, from_ms: i64, count: usize) -> Vec<NextOccurrence> {
        let mut out = Vec::with_capacity(count.min(1000));
        let mut at = from_ms;
        while out.len() < count {
            let Some(n) = self.next_after(at) else {
                break;
            };
            let (Some(nominal_at), Some(fire_at)) = (utc(n), utc(self.fire_at(key, n))) else {
                break;
            };
            out.push(NextOccurrence {
                nominal_at,
                local: self.local(n),
                fire_at,
                outside_window: !self.in_window(n),
            });
            at = n;
        }
        out
    }
}

/// Unix milliseconds as a UTC time.
pub fn utc(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests;
