//! Benchmark results: rows with a value, an optional spread and target, the
//! aligned text table, and the JSON document (`--json`).

use std::collections::BTreeMap;

use serde::Serialize;

/// A target a figure is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// The figure must be at most this.
    Le(f64),
    /// The figure must be at least this.
    Ge(f64),
}

impl Target {
    /// Whether `v` meets the target.
    pub fn met(self, v: f64) -> bool {
        match self {
            Target::Le(t) => v <= t,
            Target::Ge(t) => v >= t,
        }
    }

    fn text(self, unit: &str) -> String {
        match self {
            Target::Le(t) => format!("<= {} {unit}", num(t)),
            Target::Ge(t) => format!(">= {} {unit}", num(t)),
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// The figure (the median over runs when there were several).
    pub value: f64,
    /// Unit, e.g. `ms`.
    pub unit: String,
    /// Smallest and largest value over the runs (or samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<(f64, f64)>,
    /// The target, if the figure has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Whether the target was met (None without target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<bool>,
}

impl Row {
    /// A figure without spread or target.
    pub fn new(metric: &str, value: f64, unit: &str) -> Row {
        Row {
            metric: metric.to_owned(),
            value,
            unit: unit.to_owned(),
            spread: None,
            target: None,
            pass: None,
        }
    }

    /// The median of `values`, with their min–max spread when there are several.
    pub fn over(metric: &str, values: &[f64], unit: &str) -> Row {
        let mut r = Row::new(metric, median(values), unit);
        if values.len() > 1 {
            r.spread = Some((min(values), max(values)));
        }
        r
    }

    /// Attach a target (and judge the value against it).
    pub fn target(mut self, t: Target) -> Row {
        self.pass = Some(t.met(self.value));
        self.target = Some(t);
        self
    }
}

/// One table comparing the stores: for each scenario run on every store
/// (named `<scenario> [<store>]`), a line per metric with each store's
/// median and spread.
pub fn side_by_side(reports: &[ScenarioReport], stores: &[super::store::StoreKind]) -> String {
    let mut out = format!(
        "== side by side ({}) ==\n",
        stores
            .iter()
            .map(|s| s.short())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for r in reports {
        let base = r.scenario.split(" [").next().unwrap_or(&r.scenario);
        if !scenarios.contains(&base) {
            scenarios.push(base);
        }
    }
    for base in scenarios {
        let of: Vec<Option<&ScenarioReport>> = stores
            .iter()
            .map(|s| {
                let name = format!("{base} [{}]", s.short());
                reports.iter().find(|r| r.scenario == name)
            })
            .collect();
        let Some(first) = of.iter().flatten().next() else {
            continue;
        };
        out.push_str(&format!("{base}\n"));
        for row in &first.rows {
            let cells: Vec<String> = of
                .iter()
                .map(|r| {
                    r.and_then(|r| r.rows.iter().find(|x| x.metric == row.metric))
                        .map_or_else(|| "—".to_owned(), cell)
                })
                .collect();
            out.push_str(&format!("   {:<44} {}\n", row.metric, cells.join("  |  ")));
        }
    }
    out
}

/// A row's value with its unit and spread, as the tables print it.
fn cell(r: &Row) -> String {
    let spread = r
        .spread
        .map(|(lo, hi)| format!(" [{} – {}]", num(lo), num(hi)))
        .unwrap_or_default();
    format!("{} {}{spread}", num(r.value), r.unit)
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub scenario: String,
    /// `tls` or `plain`.
    pub transport: String,
    /// How many runs (or samples) the figures summarise.
    pub runs: usize,
    /// Parameters it ran with.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The figures.
    pub rows: Vec<Row>,
    /// Remarks (method, caveats).
    pub notes: Vec<String>,
    /// Harness-level failures (a job failed, duplicates, a process died).
    pub failures: Vec<String>,
}

impl ScenarioReport {
    /// An empty report.
    pub fn new(scenario: &str, transport: &str, runs: usize) -> ScenarioReport {
        ScenarioReport {
            scenario: scenario.to_owned(),
            transport: transport.to_owned(),
            runs,
            params: BTreeMap::new(),
            rows: Vec::new(),
            notes: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// Record a parameter.
    pub fn param(&mut self, k: &str, v: impl Into<serde_json::Value>) {
        self.params.insert(k.to_owned(), v.into());
    }

    /// Add a row per `(metric, unit, target)` that `s` recorded, in that
    /// order (medians over runs, with the spread and the verdict).
    pub fn add_rows(&mut self, s: &Series, rows: &[(&str, &str, Option<Target>)]) {
        for &(metric, unit, target) in rows {
            if let Some(mut r) = s.row(metric, unit) {
                if let Some(t) = target {
                    r = r.target(t);
                }
                self.rows.push(r);
            }
        }
    }

    /// Whether every target was met.
    pub fn all_pass(&self) -> bool {
        self.rows.iter().all(|r| r.pass != Some(false))
    }

    /// The aligned table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "== {} ({}, {} run{}) ==\n",
            self.scenario,
            self.transport,
            self.runs,
            if self.runs == 1 { "" } else { "s" }
        );
        if !self.params.is_empty() {
            let p: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                .collect();
            out.push_str(&format!("   params: {}\n", p.join(" ")));
        }
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.metric.clone(),
                    format!("{} {}", num(r.value), r.unit),
                    r.spread
                        .map(|(a, b)| format!("[{} – {}]", num(a), num(b)))
                        .unwrap_or_default(),
                    r.target.map(|t| t.text(&r.unit)).unwrap_or_default(),
                    match r.pass {
                        Some(true) => "PASS".into(),
                        Some(false) => "MISS".into(),
                        None => String::new(),
                    },
                ]
            })
            .collect();
        let head = ["metric", "value", "min – max", "target", ""];
        let mut w = head.map(str::len);
        for c in &cells {
            for (i, s) in c.iter().enumerate() {
                w[i] = w[i].max(s.chars().count());
            }
        }
        let line = |c: &[String]| {
            let mut s = String::from("   ");
            for (i, v) in c.iter().enumerate() {
                let pad = w[i].saturating_sub(v.chars().count());
                if i == 1 {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(v);
                } else {
                    s.push_str(v);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("  ");
            }
            s.trim_end().to_owned() + "\n"
        };
        out.push_str(&line(&head.map(String::from)));
        for c in &cells {
            out.push_str(&line(c));
        }
        for f in &self.failures {
            out.push_str(&format!("   FAIL: {f}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("   note: {n}\n"));
        }
        out
    }
}

/// A number with a sensible number of decimals.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || a >= 1000.0 || (a >= 1.0 && v.fract() == 0.0) {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Median (mean of the middle two for an even count); 0 when empty.
pub fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (`p` in 0..=100); 0 when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Smallest value (0 when empty).
pub fn min(v: &[f64]) -> f64 {
    sorted(v).first().copied().unwrap_or(0.0)
}

/// Largest value (0 when empty).
pub fn max(v: &[f64]) -> f64 {
    sorted(v).last().copied().unwrap_or(0.0)
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// Per-run figures by metric name, in insertion order.
#[derive(Debug, Default)]
pub struct Series {
    order: Vec<String>,
    values: BTreeMap<String, Vec<f64>>,
}

impl Series {
    /// Record one run's value of `metric`.
    pub fn push(&mut self, metric: &str, v: f64) {
        if !self.values.contains_key(metric) {
            self.order.push(metric.to_owned());
        }
        self.values.entry(metric.to_owned()).or_default().push(v);
    }

    /// The row for `metric` (median over runs, spread), or None if never recorded.
    pub fn row(&self, metric: &str, unit: &str) -> Option<Row> {
        self.values.get(metric).map(|v| Row::over(metric, v, unit))
    }

    /// Every value of `metric`.
    pub fn get(&self, metric: &str) -> &[f64] {
        self.values.get(metric).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests;
