//! The chaos suite's findings: agent logs parsed, every job checked against
//! the ledger, the command file and the attempts, takeover times measured,
//! and the summary table.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use baton_proto::{AttemptOutcome, JobState, JobView};

use super::{Fault, FaultKind, Kind, Knobs, Planned};

/// `key=<number>` from a log line.
fn field(line: &str, key: &str) -> Option<i64> {
    // A field of the line (` key=`) or of its span (`job{key=`).
    let at = line
        .find(&format!(" {key}="))
        .or_else(|| line.find(&format!("{{{key}=")))?
        + key.len()
        + 2;
    let rest = &line[at..];
    let end = rest
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What the agents logged about one (job, token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Seen {
    /// Heartbeat answered 409 lease_lost.
    HeartbeatLost,
    /// Completion answered 409 lease_lost.
    CompletionLost,
    /// Release refused (409/403).
    ReleaseLost,
    /// The agent fenced on its own clock.
    SelfFenced,
    /// The controller accepted a completion (`state=succeeded`).
    Delivered,
}

impl Seen {
    fn of(line: &str) -> Option<Seen> {
        if line.contains("Dropped completion: lease lost") {
            Some(Seen::CompletionLost)
        } else if line.contains("Lease lost, stopping job") {
            if line.contains("lease_lost") {
                Some(Seen::HeartbeatLost)
            } else {
                Some(Seen::SelfFenced)
            }
        } else if line.contains("Release refused: lease already lost") {
            Some(Seen::ReleaseLost)
        } else if line.contains("Completion delivered") && line.contains("state=succeeded") {
            Some(Seen::Delivered)
        } else {
            None
        }
    }
}

pub(super) struct Inputs<'a> {
    pub(super) jobs: &'a [Planned],
    pub(super) views: &'a HashMap<usize, JobView>,
    pub(super) effects: &'a str,
    pub(super) ledger: &'a str,
    pub(super) command_file: &'a str,
    pub(super) logs: &'a [(String, String)],
    pub(super) faults: &'a [Fault],
}

/// Everything measured, and every violation found.
#[derive(Debug, Default)]
pub(super) struct Report {
    by_kind: BTreeMap<Kind, usize>,
    states: BTreeMap<String, usize>,
    attempts: usize,
    takeovers: usize,
    /// Fault on the holder → the next grant, seconds.
    fault_to_regrant: Vec<f64>,
    /// Lease expiry recorded → the next grant, seconds.
    expiry_to_regrant: Vec<f64>,
    /// Takeovers with no fault on the holder in the window before the expiry.
    unexplained: usize,
    unexplained_notes: Vec<String>,
    seen: BTreeMap<Seen, usize>,
    ledger_dups: usize,
    command_dups: usize,
    command_jobs_duplicated: usize,
    violations: Vec<String>,
}

fn pairs(text: &str) -> HashMap<i64, i64> {
    text.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once('\t')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

impl Report {
    pub(super) fn build(i: Inputs<'_>) -> Report {
        let mut r = Report::default();
        let effects = pairs(i.effects);
        let ledger = pairs(i.ledger);
        let mut lines: HashMap<i64, usize> = HashMap::new();
        for l in i.command_file.lines() {
            if let Ok(k) = l.trim().parse::<i64>() {
                *lines.entry(k).or_insert(0) += 1;
            }
        }
        // (job, token) → what agents logged, and who logged deliveries.
        let mut logged: HashMap<(i64, i64), Vec<(Seen, String)>> = HashMap::new();
        for (agent, text) in i.logs {
            for line in text.lines() {
                let (Some(seen), Some(job), Some(token)) =
                    (Seen::of(line), field(line, "job_id"), field(line, "token"))
                else {
                    continue;
                };
                *r.seen.entry(seen).or_insert(0) += 1;
                logged
                    .entry((job, token))
                    .or_default()
                    .push((seen, agent.clone()));
            }
        }
        let mut known = std::collections::HashSet::new();
        for p in i.jobs {
            *r.by_kind.entry(p.kind).or_insert(0) += 1;
            let Some(j) = i.views.get(&p.k) else {
                r.violations
                    .push(format!("job k={} was never acknowledged", p.k));
                continue;
            };
            known.insert(j.id);
            *r.states.entry(j.state.to_string()).or_insert(0) += 1;
            r.attempts += j.attempts.len();
            r.check_job(p, j, &logged);
            r.measure_takeovers(j, i.faults);
            let k = p.k as i64;
            match p.kind {
                Kind::Ledger => {
                    let n = effects.get(&k).copied().unwrap_or(0);
                    if n != 1 {
                        r.violations
                            .push(format!("ledger job {} (k={k}): {n} effects", j.id));
                    }
                    r.ledger_dups += (n - 1).max(0) as usize;
                    if ledger.get(&j.id).copied().unwrap_or(0) != 1 {
                        r.violations
                            .push(format!("job {}: no single ledger row", j.id));
                    }
                }
                Kind::Command => {
                    let n = lines.get(&k).copied().unwrap_or(0);
                    if j.state == JobState::Succeeded && n == 0 {
                        r.violations
                            .push(format!("command job {} succeeded without its effect", j.id));
                    }
                    if n > 1 {
                        r.command_dups += n - 1;
                        r.command_jobs_duplicated += 1;
                    }
                }
                Kind::Noop => {}
            }
        }
        for k in effects.keys() {
            if !i
                .jobs
                .iter()
                .any(|p| p.k as i64 == *k && p.kind == Kind::Ledger)
            {
                r.violations.push(format!("an effect for unknown key {k}"));
            }
        }
        for (job, token) in logged.keys() {
            if !known.contains(job) {
                r.violations.push(format!(
                    "agents logged job {job} token {token}, not submitted here"
                ));
            }
        }
        r
    }

    fn check_job(
        &mut self,
        p: &Planned,
        j: &JobView,
        logged: &HashMap<(i64, i64), Vec<(Seen, String)>>,
    ) {
        let id = j.id;
        if j.state != JobState::Succeeded {
            self.violations.push(format!(
                "job {id} (k={}) ended {}: {:?}",
                p.k, j.state, j.error
            ));
        }
        let wins: Vec<_> = j
            .attempts
            .iter()
            .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
            .collect();
        if j.state == JobState::Succeeded && wins.len() != 1 {
            self.violations
                .push(format!("job {id}: {} successful attempts", wins.len()));
        }
        let last_token = j.attempts.iter().map(|a| a.token).max();
        for w in &wins {
            if Some(w.token) != last_token {
                self.violations.push(format!(
                    "job {id}: success on token {} but a later token {last_token:?} exists",
                    w.token
                ));
            }
            let delivered = logged.get(&(id, w.token)).is_some_and(|v| {
                v.iter()
                    .any(|(s, agent)| *s == Seen::Delivered && *agent == w.agent_id)
            });
            if !delivered {
                self.violations.push(format!(
                    "job {id}: success on token {} that {} never logged as delivered",
                    w.token, w.agent_id
                ));
            }
        }
        for a in &j.attempts {
            let Some(seen) = logged.get(&(id, a.token)) else {
                continue;
            };
            let stale = seen.iter().any(|(s, _)| {
                matches!(
                    s,
                    Seen::HeartbeatLost
                        | Seen::CompletionLost
                        | Seen::ReleaseLost
                        | Seen::SelfFenced
                )
            });
            if stale && a.outcome == Some(AttemptOutcome::Succeeded) {
                self.violations.push(format!(
                    "job {id}: token {} was refused or fenced on the agent, yet ended succeeded",
                    a.token
                ));
            }
        }
    }

    fn measure_takeovers(&mut self, j: &JobView, faults: &[Fault]) {
        for w in j.attempts.windows(2) {
            let (old, new) = (&w[0], &w[1]);
            if old.outcome != Some(AttemptOutcome::LeaseExpired) {
                continue;
            }
            self.takeovers += 1;
            if let Some(end) = old.ended_at {
                self.expiry_to_regrant.push(secs(new.started_at - end));
            }
            let end = old.ended_at.unwrap_or(new.started_at);
            // The fault that cost the lease: the first on its holder (or a
            // controller kill) after its last renewal. Renewals come every
            // TTL/3, so that fault is at most 4/3 TTL (plus slack) before the
            // expiry, and not before the grant.
            let ttl = chrono::TimeDelta::milliseconds(j.lease_ttl_ms as i64);
            let from =
                (end - ttl * 4 / 3 - chrono::TimeDelta::milliseconds(500)).max(old.started_at);
            let cause = faults
                .iter()
                .filter(|f| {
                    (f.target == old.agent_id || f.kind == FaultKind::ControllerKill)
                        && f.at >= from
                        && f.at <= end
                })
                .map(|f| f.at)
                .min();
            match cause {
                Some(at) => self.fault_to_regrant.push(secs(new.started_at - at)),
                None => {
                    self.unexplained += 1;
                    // Say what came last on the holder, for the summary.
                    let last = faults
                        .iter()
                        .filter(|f| f.target == old.agent_id && f.at <= end)
                        .max_by_key(|f| f.at);
                    self.unexplained_notes.push(match last {
                        Some(f) => format!(
                            "job {} on {}: last fault {} {:.1} s before the expiry",
                            j.id,
                            old.agent_id,
                            f.kind.label(),
                            secs(end - f.at)
                        ),
                        None => format!("job {} on {}: no fault on it at all", j.id, old.agent_id),
                    });
                }
            }
        }
    }

    pub(super) fn table(
        &self,
        knobs: Knobs,
        run: Duration,
        faults: &BTreeMap<FaultKind, usize>,
    ) -> String {
        let mut out = String::new();
        let mut row = |k: &str, v: String| out.push_str(&format!("| {k:<46} | {v:>40} |\n"));
        row("seed", knobs.seed.to_string());
        row("lease TTL (ms)", knobs.ttl_ms.to_string());
        row(
            "run time (s, submit → all terminal)",
            format!("{:.1}", run.as_secs_f64()),
        );
        row("jobs", knobs.jobs.to_string());
        for (k, n) in &self.by_kind {
            let name = match k {
                Kind::Ledger => "  sql exactly_once (MariaDB ledger)",
                Kind::Command => "  command (file append, at-least-once)",
                Kind::Noop => "  noop",
            };
            row(name, n.to_string());
        }
        for (s, n) in &self.states {
            row(&format!("  ended {s}"), n.to_string());
        }
        for (k, n) in faults {
            row(&format!("fault: {}", k.label()), n.to_string());
        }
        row("attempts", self.attempts.to_string());
        row(
            "takeovers (lease_expired → re-grant)",
            self.takeovers.to_string(),
        );
        let mut f = self.fault_to_regrant.clone();
        f.sort_by(f64::total_cmp);
        let mut e = self.expiry_to_regrant.clone();
        e.sort_by(f64::total_cmp);
        let pct = |v: &[f64], p: f64| percentile(v, p).map_or("-".into(), |x| format!("{x:.2}"));
        let dist = |v: &[f64]| {
            [0.0, 10.0, 50.0, 90.0, 99.0, 100.0]
                .map(|p| pct(v, p))
                .join(" / ")
        };
        row(
            "takeovers without a fault on the holder",
            self.unexplained.to_string(),
        );
        row("takeover s, fault → re-grant:", String::new());
        row("  min / p10 / p50 / p90 / p99 / max", dist(&f));
        row("takeover s, lease expiry → re-grant:", String::new());
        row("  min / p10 / p50 / p90 / p99 / max", dist(&e));
        for (s, n) in &self.seen {
            let name = match s {
                Seen::HeartbeatLost => "409 lease_lost on heartbeat (agent logs)",
                Seen::CompletionLost => "409 lease_lost on completion (agent logs)",
                Seen::ReleaseLost => "release refused, lease lost (agent logs)",
                Seen::SelfFenced => "self-fenced on the agent's clock",
                Seen::Delivered => "completions accepted (incl. duplicates)",
            };
            row(name, n.to_string());
        }
        row(
            "duplicates, ledger jobs (must be 0)",
            self.ledger_dups.to_string(),
        );
        row(
            "duplicates, command jobs (lines / jobs)",
            format!("{} / {}", self.command_dups, self.command_jobs_duplicated),
        );
        row("violations", self.violations.len().to_string());
        for n in self.unexplained_notes.iter().take(10) {
            out.push_str(&format!("  takeover without a recent fault: {n}\n"));
        }
        out
    }

    pub(super) fn assert_all(&self) {
        assert!(
            self.violations.is_empty(),
            "{} violations:\n{}",
            self.violations.len(),
            self.violations
                .iter()
                .take(50)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Seconds of a duration, for the summary.
fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The `p`-th percentile (0–100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}
