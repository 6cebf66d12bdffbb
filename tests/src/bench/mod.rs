//! `baton-bench`: measurements against real controller and agent processes on
//! loopback (never a timed test). Each scenario starts its own controller
//! (SQLite, `synchronous=FULL`, HTTPS with a throwaway CA unless `--plain`)
//! and agents in a temp dir, and reports figures with their targets.
//!
//! - [`dispatch`]: submit → executor start latency, one job at a time.
//! - [`throughput`]: bulk noop jobs, submit to last completion.
//! - [`fleet`]: N simulated agents long-polling; the controller's RSS and CPU.
//! - [`failover`]: SIGKILL the holder, time until another agent starts the job.
//! - [`restart`]: SIGKILL the holder and restart it at once, time until its
//!   report ended the lease (`agent_restarted`) and the job is granted again.
//! - [`trickle`]: N simulated agents and a steady trickle of jobs; polls
//!   woken per job, the controller's CPU, dispatch latency.
//! - [`footprint`]: one idle agent's RSS and CPU; binary sizes.
//! - [`schedules`]: 10,000 once-a-minute schedules; firing lateness and controller CPU.
//! - [`cancel`]: an operator's cancel → the running command's process (or
//!   MariaDB query) gone, at a 60 s lease TTL.
//! - [`upload`]: a 1 GiB file to a local S3 server by an agent's `upload` job
//!   and by boto3 in the same run; the agent's peak RSS.
//! - [`report`]: tables and JSON; [`sysinfo`]: `/proc` readings.

pub mod cancel;
pub mod dispatch;
pub mod failover;
pub mod fleet;
pub mod footprint;
pub mod replica_failover;
pub mod report;
pub mod restart;
pub mod schedules;
pub mod store;
pub mod sysinfo;
pub mod throughput;
pub mod trickle;
pub mod upload;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use baton_proto::JobId;
use chrono::{DateTime, Utc};

use crate::api::Api;
use crate::pki::Pki;
use crate::proc::{Agent, AgentOpts, Controller, bin_dir};
use report::ScenarioReport;

/// The group every benchmark agent serves.
pub const GROUP: &str = "bench";

/// `--help`.
pub const HELP: &str = "\
baton-bench <scenario> [options]

Measures Baton with real controller and agent processes on loopback.
Scenarios: dispatch | throughput | idle-fleet | trickle | failover | restart | footprint | schedules
           | cancel | all
           | replica-failover (--store postgres --replicas 2; not in all)
           | upload (1 GiB to moto, agent vs boto3; needs `scripts/s3server install`; not in all)

Options:
  --runs N          runs per scenario (default 3; failover: kills per TTL, restart: kills, default 20;
                    cancel: cancels per case, default 20)
  --json            print one JSON document instead of tables
  --plain           plain HTTP instead of HTTPS (default: TLS with a throwaway CA)
  --jobs N          jobs (dispatch: 1000, throughput: 10000)
  --slots N         slots per agent in throughput (default 32)
  --in-flight N     concurrent submits in throughput (default 64)
  --batch N         throughput: jobs per POST /v1/jobs/batch call (default 1000)
  --single          throughput: one POST /v1/jobs per job instead of batches
  --agents N        simulated agents in idle-fleet and trickle (default 10000)
  --rate N          trickle: jobs submitted per second (default 100)
  --duration S      trickle: how long jobs are submitted (default 60)
  --parts N         upload: parts in flight (the store's `concurrency`; default: the agent's, 4)
  --part-mb N       upload: part size in MiB (the store's `part_size_mb`; default: the agent's, 8)
  --ttl-ms MS       failover lease TTL (default: both 2000 and 15000); restart (default 15000)
  --measure-secs S  observation window of idle-fleet and footprint (default 60)
  --schedules N     schedules in schedules (default 10000), each once a minute
  --window-secs S   observation window of schedules (default 180)
  --keep            keep the temp dirs (logs, databases) and print where they are
  --replicas N      controllers on the one PostgreSQL database (--store postgres; default 1):
                    idle-fleet spreads its agents over them, replica-failover needs 2 or more
  --store S         sqlite (default) or postgres: a fresh database per controller on the server
                    BATON_BENCH_PG_URL names (a superuser URL; `scripts/postgres start DIR` prints one);
                    both: every scenario on SQLite, then on PostgreSQL, and a side-by-side table

The harness does NOT build the daemons: `cargo run --release -p baton-tests
--bin baton-bench` builds only itself. Build them first, with the same profile:
  cargo build --release -p baton-agent -p baton-controller --bins
They are taken from the directory of this executable, or from BATON_BIN_DIR
(e.g. to measure another build); a warning says when they are older than the
sources of this tree.

Exit code 0 when every measurement ran (missed targets included); non-zero when
the harness failed: a job failed, a process died, a duplicate start was seen.";

/// Command-line options.
#[derive(Debug, Clone)]
pub struct Args {
    /// Scenario name.
    pub scenario: String,
    /// `--runs`.
    pub runs: Option<usize>,
    /// `--json`.
    pub json: bool,
    /// `--plain`.
    pub plain: bool,
    /// `--jobs`.
    pub jobs: Option<usize>,
    /// `--slots`.
    pub slots: u32,
    /// `--in-flight`.
    pub in_flight: usize,
    /// `--batch` (None: `--single`).
    pub batch: Option<usize>,
    /// `--agents`.
    pub agents: usize,
    /// `--ttl-ms`.
    pub ttl_ms: Option<u64>,
    /// `--measure-secs`.
    pub measure_secs: u64,
    /// `--keep`.
    pub keep: bool,
    /// `--schedules`.
    pub schedules: usize,
    /// `--window-secs`.
    pub window_secs: u64,
    /// The store of the scenario running (`--store`).
    pub store: store::StoreKind,
    /// Every store to run each scenario on (`--store both`: SQLite, PostgreSQL).
    pub stores: Vec<store::StoreKind>,
    /// `--replicas`.
    pub replicas: usize,
    /// `--rate`.
    pub rate: u32,
    /// `--duration`.
    pub duration_secs: u64,
    /// `--parts` (None: the agent's default).
    pub parts: Option<usize>,
    /// `--part-mb` (None: the agent's default).
    pub part_mb: Option<u64>,
}

impl Args {
    /// Parse `std::env::args()`; `Ok(None)` after printing `--help`.
    pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Option<Args>> {
        let mut a = Args {
            scenario: String::new(),
            runs: None,
            json: false,
            plain: false,
            jobs: None,
            slots: 32,
            in_flight: 64,
            batch: Some(1000),
            agents: 10_000,
            ttl_ms: None,
            measure_secs: 60,
            keep: false,
            schedules: 10_000,
            window_secs: 180,
            store: store::StoreKind::Sqlite,
            stores: vec![store::StoreKind::Sqlite],
            replicas: 1,
            rate: 100,
            duration_secs: 60,
            parts: None,
            part_mb: None,
        };
        fn val<T: std::str::FromStr>(it: &mut impl Iterator<Item = String>, k: &str) -> Result<T>
        where
            T::Err: std::fmt::Display,
        {
            let v = it.next().with_context(|| format!("{k} needs a value"))?;
            v.parse()
                .map_err(|e| anyhow::anyhow!("{k} {v}: {e} (try --help)"))
        }
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "-h" | "--help" => {
                    println!("{HELP}");
                    return Ok(None);
                }
                "--runs" => a.runs = Some(val(&mut it, "--runs")?),
                "--json" => a.json = true,
                "--plain" => a.plain = true,
                "--keep" => a.keep = true,
                "--jobs" => a.jobs = Some(val(&mut it, "--jobs")?),
                "--slots" => a.slots = val(&mut it, "--slots")?,
                "--in-flight" => a.in_flight = val(&mut it, "--in-flight")?,
                "--batch" => a.batch = Some(val(&mut it, "--batch")?),
                "--single" => a.batch = None,
                "--agents" => a.agents = val(&mut it, "--agents")?,
                "--ttl-ms" => a.ttl_ms = Some(val(&mut it, "--ttl-ms")?),
                "--measure-secs" => a.measure_secs = val(&mut it, "--measure-secs")?,
                "--schedules" => a.schedules = val(&mut it, "--schedules")?,
                "--window-secs" => a.window_secs = val(&mut it, "--window-secs")?,
                "--replicas" => a.replicas = val(&mut it, "--replicas")?,
                "--rate" => a.rate = val(&mut it, "--rate")?,
                "--duration" => a.duration_secs = val(&mut it, "--duration")?,
                "--parts" => a.parts = Some(val(&mut it, "--parts")?),
                "--part-mb" => a.part_mb = Some(val(&mut it, "--part-mb")?),
                "--store" => {
                    a.stores = store::StoreKind::parse_many(&val::<String>(&mut it, "--store")?)?;
                    a.store = a.stores[0];
                }
                s if !s.starts_with('-') && a.scenario.is_empty() => a.scenario = s.to_owned(),
                other => bail!("unknown argument {other} (try --help)"),
            }
        }
        if a.scenario.is_empty() {
            bail!("no scenario given (try --help)");
        }
        if a.replicas == 0 || (a.replicas > 1 && a.stores != [store::StoreKind::Postgres]) {
            bail!("--replicas N needs N >= 1, and --store postgres for N > 1");
        }
        if a.runs == Some(0)
            || a.in_flight == 0
            || a.slots == 0
            || a.batch == Some(0)
            || a.rate == 0
            || a.duration_secs == 0
        {
            bail!(
                "--runs, --in-flight, --slots, --batch, --rate and --duration must be at least 1"
            );
        }
        Ok(Some(a))
    }

    /// `tls` or `plain`.
    pub fn transport(&self) -> &'static str {
        if self.plain { "plain" } else { "tls" }
    }
}

/// Run the scenarios asked for; prints tables or JSON. Returns the exit code.
pub async fn run(args: Args) -> Result<i32> {
    const ALL: [&str; 9] = [
        "dispatch",
        "throughput",
        "idle-fleet",
        "trickle",
        "failover",
        "restart",
        "footprint",
        "schedules",
        "cancel",
    ];
    let names: Vec<&str> = match args.scenario.as_str() {
        "all" => ALL.to_vec(),
        "replica-failover" => vec!["replica-failover"],
        "upload" => vec!["upload"],
        s if ALL.contains(&s) => vec![s],
        other => bail!("unknown scenario {other} (try --help)"),
    };
    check_binaries()?;
    // idle-fleet holds a connection per simulated agent on each side (the
    // harness and the controller), plus files and sockets of their own.
    let nofile = sysinfo::raise_nofile(2 * args.agents as u64 + 4096)?;
    let machine = sysinfo::Machine::detect();
    if !args.json {
        println!("{}", machine.line());
        println!(
            "transport: {} ({}), store: {}, binaries: {}, RLIMIT_NOFILE {nofile}\n",
            args.transport(),
            if args.plain {
                "plain HTTP, --plain"
            } else {
                "HTTPS, throwaway CA"
            },
            args.stores
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(", then "),
            bin_dir().display()
        );
    }
    let mut reports = Vec::new();
    let mut failed = false;
    for name in names {
        for &store in &args.stores {
            let args = Args {
                store,
                ..args.clone()
            };
            let mut rep = run_one(name, &args, nofile).await;
            if args.stores.len() > 1 {
                rep.scenario = format!("{name} [{}]", store.short());
            }
            failed |= !rep.failures.is_empty();
            if !args.json {
                println!("{}", rep.table());
            }
            reports.push(rep);
        }
    }
    if args.stores.len() > 1 && !args.json {
        println!("{}", report::side_by_side(&reports, &args.stores));
    }
    if args.json {
        let scenarios: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["pass"] = serde_json::Value::Bool(r.all_pass());
                (r.scenario.clone(), v)
            })
            .collect();
        let doc = serde_json::json!({
            "machine": machine,
            "transport": args.transport(),
            "store": args.stores.iter().map(|s| s.describe()).collect::<Vec<_>>().join(", "),
            "scenarios": scenarios,
            "harness_ok": !failed,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    Ok(if failed { 1 } else { 0 })
}

/// One scenario on `args.store`; a harness error becomes a failed report.
async fn run_one(name: &str, args: &Args, nofile: u64) -> ScenarioReport {
    let r = match name {
        "dispatch" => dispatch::run(args).await,
        "throughput" => throughput::run(args).await,
        "idle-fleet" => fleet::run(args, nofile).await,
        "trickle" => trickle::run(args, nofile).await,
        "failover" => failover::run(args).await,
        "restart" => restart::run(args).await,
        "schedules" => schedules::run(args).await,
        "cancel" => cancel::run(args).await,
        "replica-failover" => replica_failover::run(args).await,
        "upload" => upload::run(args).await,
        _ => footprint::run(args).await,
    };
    r.unwrap_or_else(|e| {
        let mut rep = ScenarioReport::new(name, args.transport(), 0);
        rep.failures.push(format!("{e:#}"));
        rep
    })
}

/// The daemons must have been built next to this executable (or be in
/// BATON_BIN_DIR); warn when one is older than the sources of this tree.
fn check_binaries() -> Result<()> {
    let hint = "cargo build --release -p baton-agent -p baton-controller --bins";
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (b, srcs) in [
        ("baton-controller", ["controller", "proto"]),
        ("baton-agent", ["agent", "proto"]),
        ("batonctl", ["controller", "proto"]),
    ] {
        let p = bin_dir().join(b);
        let Ok(meta) = p.metadata() else {
            bail!(
                "{} not found: build the daemons first: `{hint}`",
                p.display()
            );
        };
        // Binaries from BATON_BIN_DIR may come from another tree: no source check.
        let built = meta
            .modified()
            .ok()
            .filter(|_| std::env::var_os("BATON_BIN_DIR").is_none());
        let newest = srcs
            .iter()
            .filter_map(|d| newest_mtime(&root.join(d).join("src")))
            .max();
        if let (Some(built), Some(newest)) = (built, newest)
            && newest > built
        {
            eprintln!(
                "warning: {} is older than its sources; rebuild it: `{hint}`",
                p.display()
            );
        }
    }
    Ok(())
}

/// The newest modification time of a file under `dir`.
fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let t = if e.file_type().ok()?.is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().ok()?.modified().ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// A controller (and agents) for one run, in its own temp dir.
#[derive(Debug)]
pub struct Bench {
    /// Temp dir (kept with `--keep`).
    pub tmp: tempfile::TempDir,
    /// The throwaway PKI, unless `--plain`.
    pub pki: Option<Pki>,
    /// The controller.
    pub controller: Controller,
    /// Admin client.
    pub api: Api,
    /// Agents, `agent-1` …
    pub agents: Vec<Agent>,
    /// Further controllers on the same database (`--replicas`).
    pub replicas: Vec<Controller>,
    /// The scratch PostgreSQL database (`--store postgres`), dropped last.
    pub pg: Option<store::PgScratch>,
}

impl Bench {
    /// Start a controller; `top_level` is extra top-level controller TOML.
    pub async fn start(args: &Args, top_level: &str) -> Result<Bench> {
        crate::init_crypto();
        let tmp = tempfile::Builder::new()
            .prefix("baton-bench-")
            .disable_cleanup(args.keep)
            .tempdir()?;
        if args.keep {
            eprintln!("keeping {}", tmp.path().display());
        }
        let dir = tmp.path().join("controller");
        let pg = match args.store {
            store::StoreKind::Sqlite => None,
            store::StoreKind::Postgres => {
                Some(store::PgScratch::create(&store::admin_url()?).await?)
            }
        };
        let store_toml = pg.as_ref().map(store::PgScratch::toml).unwrap_or_default();
        let (pki, controller) = if args.plain {
            let cfg = format!("{top_level}\n{store_toml}");
            (None, Controller::start(&dir, &cfg).await?)
        } else {
            let pki = Pki::generate(&tmp.path().join("pki"))?;
            let cfg = format!("{top_level}\n{}\n{store_toml}", pki.controller_toml(false));
            let c =
                Controller::start_custom(&dir, "127.0.0.1:0", &cfg, Some(pki.ca.clone())).await?;
            (Some(pki), c)
        };
        let api = controller.api();
        let mut replicas = Vec::new();
        for i in 1..args.replicas {
            let dir = tmp.path().join(format!("controller-{i}"));
            let cfg = match &pki {
                Some(p) => format!("{top_level}\n{}\n{store_toml}", p.controller_toml(false)),
                None => format!("allow_plain_http = true\n{top_level}\n{store_toml}"),
            };
            let ca = pki.as_ref().map(|p| p.ca.clone());
            replicas.push(Controller::join_ca(&dir, &cfg, &controller.admin_token, ca).await?);
        }
        Ok(Bench {
            tmp,
            pki,
            controller,
            api,
            agents: Vec::new(),
            replicas,
            pg,
        })
    }

    /// Enroll and start `n` more agents with `slots` slots in [`GROUP`].
    pub async fn add_agents(&mut self, n: usize, slots: u32) -> Result<()> {
        for _ in 0..n {
            let mut o = AgentOpts::new(&format!("agent-{}", self.agents.len() + 1));
            o.groups = vec![GROUP.into()];
            o.slots = slots;
            if let Some(p) = &self.pki {
                o.extra = p.agent_toml(false);
            }
            o.enrollment_token = Some(self.api.enrollment_token(&o.groups).await?);
            self.agents
                .push(Agent::start(self.tmp.path(), &self.controller.url(), o)?);
        }
        Ok(())
    }

    /// Enroll and start one more agent with `slots` slots and `extra`
    /// config TOML (e.g. a `[connections.*]` table).
    pub async fn add_agent_with(&mut self, slots: u32, extra: &str) -> Result<()> {
        let mut o = AgentOpts::new(&format!("agent-{}", self.agents.len() + 1));
        o.groups = vec![GROUP.into()];
        o.slots = slots;
        o.extra = match &self.pki {
            Some(p) => format!("{}\n{extra}", p.agent_toml(false)),
            None => extra.to_owned(),
        };
        o.enrollment_token = Some(self.api.enrollment_token(&o.groups).await?);
        self.agents
            .push(Agent::start(self.tmp.path(), &self.controller.url(), o)?);
        Ok(())
    }

    /// Wait until `n` agents are online (have polled).
    pub async fn wait_online(&self, n: usize) -> Result<()> {
        self.api.wait_online(n, Duration::from_secs(60)).await
    }

    /// Every controller's admin client: the first, then the replicas.
    pub fn apis(&self) -> Vec<Api> {
        std::iter::once(self.api.clone())
            .chain(self.replicas.iter().map(Controller::api))
            .collect()
    }

    /// Every controller's pid: the first, then the replicas.
    pub fn controller_pids(&self) -> Result<Vec<i32>> {
        std::iter::once(&self.controller)
            .chain(&self.replicas)
            .map(|c| {
                c.proc
                    .as_ref()
                    .and_then(|p| p.pid())
                    .map(|p| p.as_raw())
                    .context("a controller is not running")
            })
            .collect()
    }

    /// The controller's pid.
    pub fn controller_pid(&self) -> Result<i32> {
        self.controller
            .proc
            .as_ref()
            .and_then(|p| p.pid())
            .map(|p| p.as_raw())
            .context("controller is not running")
    }

    /// Fail if the controller or an agent that should run has died.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(p) = self.controller.proc.as_mut()
            && !p.running()
        {
            bail!("the controller died:\n{}", tail(&p.log_text(), 20));
        }
        for a in &mut self.agents {
            if let Some(p) = a.proc.as_mut()
                && !p.running()
            {
                bail!("{} died:\n{}", a.opts.id, tail(&p.log_text(), 20));
            }
        }
        Ok(())
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `Lease granted` line of an agent log: the job and the line's timestamp.
pub fn parse_grant(line: &str) -> Option<(JobId, DateTime<Utc>)> {
    if !line.contains("Lease granted") {
        return None;
    }
    let ts: DateTime<Utc> = line.split_whitespace().next()?.parse().ok()?;
    let rest = &line[line.find("job_id=")? + "job_id=".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((digits.parse().ok()?, ts))
}

/// Every `Lease granted` of an agent log file.
pub fn grants_in(path: &Path) -> Vec<(JobId, DateTime<Utc>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(parse_grant)
        .collect()
}

/// Follows a log file, returning the complete lines appended since the last read.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl LogTail {
    /// Start at the current end of `path`.
    pub fn at_end(path: &Path) -> LogTail {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        LogTail {
            path: path.to_path_buf(),
            offset,
            partial: String::new(),
        }
    }

    /// New complete lines.
    pub fn read_new(&mut self) -> Result<Vec<String>> {
        let mut f = std::fs::File::open(&self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = String::new();
        let n = f.read_to_string(&mut buf)?;
        self.offset += n as u64;
        self.partial.push_str(&buf);
        let mut lines: Vec<String> = self.partial.split('\n').map(str::to_owned).collect();
        self.partial = lines.pop().unwrap_or_default();
        Ok(lines)
    }
}

/// Milliseconds from `a` to `b` (negative when `b` is earlier), with microseconds.
pub fn ms_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

#[cfg(test)]
mod tests;
