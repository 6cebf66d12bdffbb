//! The chaos suite: many jobs over 5 agents while a driver SIGKILLs (and
//! restarts), SIGSTOPs/SIGCONTs agents, cuts, resets and delays their
//! network (each agent reaches every controller through fault proxies of its
//! own) and `kill -9`s + restarts the controller twice; then it checks that
//! nothing was lost and nothing that must happen once happened twice.
//!
//! Two modes: one controller on SQLite (`chaos_nothing_lost_nothing_twice`),
//! and three controller replicas on one PostgreSQL database
//! (`chaos_postgres_replicas_nothing_lost_nothing_twice`), where the driver
//! `kill -9`s a random replica (one at a time) four times and agents know
//! every replica. The two runs take turns, never overlap.
//!
//! # Jobs
//! A seeded mix of
//! - `sql` jobs with `exactly_once: true` on MariaDB (run ledger + `GET_LOCK`)
//!   that insert their chaos key into `effects`: the independent ledger, where
//!   every such job must appear exactly once;
//! - `command` jobs appending their key to a file: at-least-once without a
//!   ledger, so duplicates show what happens without one (reported, not
//!   asserted away);
//! - `noop` jobs.
//!
//! # Checks
//! Every acknowledged submission exists and is terminal after the controller
//! restarts (submissions carry an `Idempotency-Key`, retried until
//! acknowledged); every job succeeded with exactly one successful attempt,
//! which is its last (highest token); each `exactly_once` job's effect is in
//! MariaDB exactly once (and its ledger row too); every `409 lease_lost` an
//! agent logged (heartbeat, completion, release) is for an attempt that did
//! not end `succeeded`, and every success the controller recorded matches a
//! `Completion delivered` line of its holder with the same token.
//!
//! # Knobs (environment)
//! - `BATON_CHAOS_JOBS`: number of jobs (default 300, the CI size; soak runs up
//!   to 10000, e.g. `BATON_CHAOS_JOBS=10000 cargo test -p baton-tests --test
//!   chaos -- --nocapture`, about 20 minutes at TTL 2 s).
//! - `BATON_CHAOS_PG_JOBS`: the same for the PostgreSQL mode (default 150, the
//!   CI size). The PostgreSQL mode needs a server (`BATON_TEST_PG_URL`, or one
//!   it starts) and skips, saying why, without one.
//! - `BATON_CHAOS_SEED`: the random seed (printed at start; set it to replay
//!   the same job mix and fault choices — timings still differ run to run).
//! - `BATON_CHAOS_TTL_MS`: lease TTL of every job (default 2000, the floor).
//!   Fault durations and job durations scale with it.
//!
//! The summary table (jobs, faults by kind, takeovers, takeover times,
//! duplicates) is printed on stdout: run with `--nocapture` to see it. A
//! takeover is an attempt that ended `lease_expired` followed by another
//! grant; "fault → re-grant" runs from the fault that cost the lease (the
//! latest fault on the holder, or a controller kill, before the expiry) to
//! the next grant; "lease expiry → re-grant" from the recorded expiry to the
//! next grant (retry backoff and waiting for a free slot included).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use baton_proto::{JobId, JobView};
use baton_tests::api::Api;
use baton_tests::mariadb;
use chrono::{DateTime, Utc};

mod fleet;
mod report;
use fleet::{Fleet, Link, Mode};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use report::{Inputs, Report};
use serde_json::{Value, json};

const AGENTS: usize = 5;
const SLOTS: u32 = 3;
/// At most this many agents are down or frozen at once.
const MAX_FAULTED: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Ledger,
    Command,
    Noop,
}

/// One planned job.
#[derive(Debug, Clone)]
struct Planned {
    k: usize,
    kind: Kind,
    body: Value,
}

/// Knobs from the environment.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    jobs: usize,
    seed: u64,
    ttl_ms: u64,
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

impl Knobs {
    /// `jobs_var`: the variable with the number of jobs, else `jobs`.
    fn from_env(jobs_var: &str, jobs: usize) -> Knobs {
        Knobs {
            jobs: env_num(jobs_var).map_or(jobs, |n| n.clamp(1, 10_000) as usize),
            seed: env_num("BATON_CHAOS_SEED").unwrap_or_else(rand::random),
            ttl_ms: env_num("BATON_CHAOS_TTL_MS").map_or(2000, |t| t.max(2000)),
        }
    }
}

fn plan(knobs: Knobs, rng: &mut StdRng, file: &std::path::Path) -> Vec<Planned> {
    // Work lasts about a TTL, so faults land on running jobs at any TTL.
    let scale = knobs.ttl_ms as f64 / 2000.0;
    (0..knobs.jobs)
        .map(|k| {
            let roll = rng.random_range(0..10);
            let (kind, spec) = if roll < 4 {
                let (a, b) = (
                    scale * rng.random_range(0.1..1.2),
                    scale * rng.random_range(0.1..1.2),
                );
                let sql = format!(
                    "DO SLEEP({a:.2}); INSERT INTO effects (k, conn, t) VALUES ({k}, CONNECTION_ID(), NOW(6)); DO SLEEP({b:.2})"
                );
                (
                    Kind::Ledger,
                    json!({"kind": "sql", "connection": "main", "sql": sql, "exactly_once": true}),
                )
            } else if roll < 8 {
                let s: f64 = scale * rng.random_range(0.3..2.5);
                let script = format!("sleep {s:.2}; echo {k} >> {}", file.display());
                (
                    Kind::Command,
                    json!({"kind": "command", "program": "/bin/sh", "args": ["-c", script]}),
                )
            } else {
                let ms = (scale * rng.random_range(100.0..1500.0)) as u64;
                (Kind::Noop, json!({"kind": "noop", "sleep_ms": ms}))
            };
            let body = json!({
                "group": "default",
                "spec": spec,
                "lease_ttl_ms": knobs.ttl_ms,
                "labels": {"chaos_k": k.to_string()},
                "retry": {"max_attempts": 100, "initial_backoff_ms": 100,
                          "max_backoff_ms": 1000, "jitter": 0.2},
            });
            Planned { k, kind, body }
        })
        .collect()
}

/// Submit with an idempotency key until a controller acknowledges it,
/// trying them in turn from `first`.
async fn submit(apis: &[Api], first: usize, body: &Value, key: &str) -> JobId {
    let bytes = serde_json::to_vec(body).expect("json");
    let end = Instant::now() + Duration::from_secs(120);
    for i in (0..apis.len()).cycle().skip(first) {
        match apis[i]
            .raw(
                reqwest::Method::POST,
                "/v1/jobs",
                Some(bytes.clone()),
                &[(baton_proto::IDEMPOTENCY_KEY_HEADER, key)],
            )
            .await
        {
            Ok(r) if r.status.is_success() => {
                return r.body["id"].as_i64().expect("job id");
            }
            Ok(r) if r.status.is_client_error() && r.status != 429 => {
                panic!("submit {key} refused: {} {}", r.status, r.body)
            }
            _ => {}
        }
        assert!(Instant::now() < end, "submit {key} never acknowledged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!("cycle never ends")
}

/// Count queued and running jobs on the first controller that answers (None
/// while every controller is down).
async fn unfinished(apis: &[Api]) -> Option<usize> {
    for api in apis {
        if let Some(n) = unfinished_on(api).await {
            return Some(n);
        }
    }
    None
}

async fn unfinished_on(api: &Api) -> Option<usize> {
    let mut n = 0;
    for state in ["queued", "running"] {
        let mut before: Option<JobId> = None;
        loop {
            let path = match before {
                Some(b) => format!("/v1/jobs?state={state}&limit=1000&before={b}"),
                None => format!("/v1/jobs?state={state}&limit=1000"),
            };
            let r = api.raw(reqwest::Method::GET, &path, None, &[]).await.ok()?;
            if !r.status.is_success() {
                return None;
            }
            n += r.body["jobs"].as_array().map_or(0, Vec::len);
            match r.body["next_before"].as_i64() {
                Some(b) => before = Some(b),
                None => break,
            }
        }
    }
    Some(n)
}

/// The two modes take turns: each is sized for the machine on its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_nothing_lost_nothing_twice() {
    baton_tests::require_mariadb!();
    let _turn = ONE_AT_A_TIME.lock().await;
    run(Mode::Sqlite, Knobs::from_env("BATON_CHAOS_JOBS", 300), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chaos_postgres_replicas_nothing_lost_nothing_twice() {
    baton_tests::require_mariadb!();
    baton_tests::require_postgres!();
    let pg = baton_tests::postgres::shared()
        .await
        .expect(baton_tests::postgres::INSTALL_HINT);
    let _turn = ONE_AT_A_TIME.lock().await;
    let mode = Mode::Postgres {
        replicas: 3,
        kills: 4,
    };
    run(mode, Knobs::from_env("BATON_CHAOS_PG_JOBS", 150), Some(pg)).await;
}

async fn run(mode: Mode, knobs: Knobs, pg: Option<&baton_tests::postgres::Pg>) {
    println!(
        "chaos ({mode:?}): {} jobs, seed {} (BATON_CHAOS_SEED={} to replay), lease TTL {} ms",
        knobs.jobs, knobs.seed, knobs.seed, knobs.ttl_ms
    );
    let mut rng = StdRng::seed_from_u64(knobs.seed);

    let mdb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("chaos").expect("database");
    mdb.sql(
        Some(&db),
        "CREATE TABLE effects (id BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL, conn BIGINT, t DATETIME(6)) ENGINE=InnoDB",
    )
    .expect("effects table");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let secrets = tempfile::Builder::new()
        .prefix("baton-chaos-secrets-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = format!(
        "{}pool_size = {SLOTS}\n",
        mdb.connection_toml("main", &db, &user, &pw)
    );
    // Every agent reaches each controller through its own fault proxy.
    let (mut c, links) = Fleet::start(mode, pg, AGENTS, |o| {
        o.extra = conn.clone();
        o.slots = SLOTS;
    })
    .await;
    let apis = c.apis();
    let file = c.path("command-effects");
    let jobs = plan(knobs, &mut rng, &file);

    // Submit everything (idempotently) while the driver already runs.
    let started = Instant::now();
    let sub_apis = apis.clone();
    let to_submit: Vec<(usize, Value)> = jobs.iter().map(|p| (p.k, p.body.clone())).collect();
    let seed = knobs.seed;
    let mut submitter = Some(tokio::spawn(async move {
        let mut ids = BTreeMap::new();
        for chunk in to_submit.chunks(16) {
            let mut set = tokio::task::JoinSet::new();
            for (k, body) in chunk.iter().cloned() {
                let apis = sub_apis.clone();
                set.spawn(async move {
                    let key = format!("chaos-{seed}-{k}");
                    (k, submit(&apis, k, &body, &key).await)
                });
            }
            while let Some(r) = set.join_next().await {
                let (k, id) = r.expect("submit task");
                ids.insert(k, id);
            }
        }
        ids
    }));

    let budget = Duration::from_secs(120 + knobs.jobs as u64 * knobs.ttl_ms / 4000);
    let mut driver = Driver::new(
        knobs.ttl_ms,
        StdRng::seed_from_u64(knobs.seed ^ 0x5eed),
        links,
        mode.kills(),
    );
    let mut submitted: Option<BTreeMap<usize, JobId>> = None;
    let mut next_check = Instant::now();
    loop {
        driver.tick(&mut c).await;
        if let Some(task) = submitter.take_if(|t| t.is_finished()) {
            submitted = Some(task.await.expect("submitter"));
            println!("chaos: {} jobs acknowledged", knobs.jobs);
            continue;
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_secs(2);
            if let (Some(_), Some(left)) = (&submitted, unfinished(&apis).await) {
                let done = knobs.jobs - left.min(knobs.jobs);
                driver.progress(&mut c, done, knobs.jobs).await;
                if left == 0 && driver.controller_kills() >= mode.kills() {
                    break;
                }
            }
        }
        assert!(
            started.elapsed() < budget,
            "chaos run did not finish within {budget:?}; faults: {:?}",
            driver.counts()
        );
    }
    let run_time = started.elapsed();
    driver.heal(&mut c).await;
    // Let parked completions drain (late, stale ones must be refused).
    let end = Instant::now() + Duration::from_secs(30);
    while c.agents().iter().any(|a| a.outbox_len() > 0) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = submitted.expect("submitted");
    // A retried submission is the same job, not a second one.
    if let (Some(first), Some(id)) = (jobs.first(), ids.values().next()) {
        let key = format!("chaos-{seed}-{}", first.k);
        let again = submit(&apis, apis.len() - 1, &first.body, &key).await;
        assert_eq!(
            again, *id,
            "the idempotency key maps to the acknowledged job"
        );
    }

    // Every acknowledged job, after the restarts.
    let mut views: HashMap<usize, JobView> = HashMap::new();
    for (k, id) in &ids {
        let j = apis[k % apis.len()]
            .job(*id)
            .await
            .expect("an acknowledged job is never lost");
        views.insert(*k, j);
    }
    let effects = mdb
        .sql(Some(&db), "SELECT k, COUNT(*) FROM effects GROUP BY k")
        .expect("effects");
    let ledger = mdb
        .sql(
            Some(&db),
            "SELECT job_id, COUNT(*) FROM baton_ledger GROUP BY job_id",
        )
        .expect("ledger");
    let file_text = std::fs::read_to_string(&file).unwrap_or_default();
    let logs: Vec<(String, String)> = c
        .agents()
        .iter()
        .map(|a| (a.opts.id.clone(), a.log_text()))
        .collect();
    let r = Report::build(Inputs {
        jobs: &jobs,
        views: &views,
        effects: &effects,
        ledger: &ledger,
        command_file: &file_text,
        logs: &logs,
        faults: driver.log(),
    });
    println!("{}", r.table(knobs, run_time, &driver.counts()));
    r.assert_all();
    assert_eq!(
        driver.controller_kills(),
        mode.kills(),
        "controller kills ({} controllers)",
        c.controllers()
    );
    assert!(
        driver
            .counts()
            .get(&FaultKind::AgentKill)
            .is_some_and(|n| *n > 0)
            && driver
                .counts()
                .get(&FaultKind::AgentStop)
                .is_some_and(|n| *n > 0),
        "agents were killed and frozen: {:?}",
        driver.counts()
    );
    drop(secrets);
}

/// What the driver did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum FaultKind {
    /// SIGKILL of an agent (restarted later).
    AgentKill,
    /// SIGSTOP of an agent (SIGCONT later).
    AgentStop,
    /// The agent's proxy black-holes its traffic to the controller (healed later).
    AgentPartition,
    /// The agent's proxy resets its open connections.
    ConnReset,
    /// The agent's proxy delays every chunk (for a while).
    AgentDelay,
    /// `kill -9` of the controller (restarted on the same port and database).
    ControllerKill,
}

impl FaultKind {
    fn label(self) -> &'static str {
        match self {
            FaultKind::AgentKill => "agent SIGKILL + restart",
            FaultKind::AgentStop => "agent SIGSTOP/SIGCONT",
            FaultKind::AgentPartition => "agent partitioned (black hole)",
            FaultKind::ConnReset => "agent connections reset",
            FaultKind::AgentDelay => "agent traffic delayed",
            FaultKind::ControllerKill => "controller kill -9 + restart",
        }
    }
}

/// One injected fault: when, what, on whom (agent id or `controller`).
#[derive(Debug, Clone)]
struct Fault {
    at: DateTime<Utc>,
    kind: FaultKind,
    target: String,
}

/// Per-agent fault state.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    Up,
    Dead(Instant),
    Frozen(Instant),
    /// Behind a black-holed or delaying proxy until then.
    Cut(Instant),
}

/// The fault driver: one decision per tick, seeded.
struct Driver {
    ttl: Duration,
    rng: StdRng,
    health: Vec<Health>,
    links: Vec<Link>,
    log: Vec<Fault>,
    next: Instant,
    /// Controller kills over the run.
    kills: usize,
}

impl Driver {
    fn new(ttl_ms: u64, rng: StdRng, links: Vec<Link>, kills: usize) -> Driver {
        Driver {
            ttl: Duration::from_millis(ttl_ms),
            rng,
            health: vec![Health::Up; AGENTS],
            links,
            log: Vec::new(),
            next: Instant::now() + Duration::from_millis(500),
            kills,
        }
    }

    fn record(&mut self, kind: FaultKind, target: &str) {
        self.log.push(Fault {
            at: Utc::now(),
            kind,
            target: target.to_owned(),
        });
    }

    fn log(&self) -> &[Fault] {
        &self.log
    }

    fn counts(&self) -> BTreeMap<FaultKind, usize> {
        let mut m = BTreeMap::new();
        for f in &self.log {
            *m.entry(f.kind).or_insert(0) += 1;
        }
        m
    }

    fn controller_kills(&self) -> usize {
        self.log
            .iter()
            .filter(|f| f.kind == FaultKind::ControllerKill)
            .count()
    }

    /// A random span of `lo..hi` TTLs.
    fn ttls(&mut self, lo: f64, hi: f64) -> Duration {
        self.ttl.mul_f64(self.rng.random_range(lo..hi))
    }

    /// Restart dead agents and thaw frozen ones whose time has come; maybe inject a fault.
    async fn tick(&mut self, c: &mut Fleet) {
        let now = Instant::now();
        for i in 0..AGENTS {
            match self.health[i] {
                Health::Dead(until) if now >= until => {
                    c.agent(i).restart().expect("restart agent");
                    self.health[i] = Health::Up;
                }
                Health::Frozen(until) if now >= until => {
                    if let Some(p) = c.agent(i).proc.as_ref() {
                        p.signal(Signal::SIGCONT).expect("SIGCONT");
                    }
                    self.health[i] = Health::Up;
                }
                Health::Cut(until) if now >= until => {
                    self.links[i].pass();
                    self.health[i] = Health::Up;
                }
                _ => {}
            }
        }
        if now < self.next {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
        self.next = now + self.ttls(0.2, 0.6);
        let faulted = self.health.iter().filter(|h| **h != Health::Up).count();
        if faulted >= MAX_FAULTED || !self.rng.random_bool(0.7) {
            return;
        }
        let up: Vec<usize> = (0..AGENTS)
            .filter(|i| self.health[*i] == Health::Up)
            .collect();
        let i = up[self.rng.random_range(0..up.len())];
        let id = c.agent(i).opts.id.clone();
        // The first agent fault is a SIGKILL and the second a SIGSTOP, so a
        // short run (the PostgreSQL mode's) has both; then a random mix.
        let agent_faults = self.log.len() - self.controller_kills();
        let roll = match agent_faults {
            0 => 50,
            1 => 90,
            _ => self.rng.random_range(0..100),
        };
        if roll < 15 {
            // Some partitions outlast the lease (the agent must fence), some do not.
            let cut = self.ttls(0.2, 2.0);
            self.links[i].black_hole();
            self.health[i] = Health::Cut(Instant::now() + cut);
            self.record(FaultKind::AgentPartition, &id);
        } else if roll < 25 {
            self.links[i].reset_existing();
            self.record(FaultKind::ConnReset, &id);
        } else if roll < 35 {
            let by = Duration::from_millis(self.rng.random_range(20..300));
            let slow = self.ttls(0.5, 2.0);
            self.links[i].delay(by);
            self.health[i] = Health::Cut(Instant::now() + slow);
            self.record(FaultKind::AgentDelay, &id);
        } else if roll < 65 {
            c.agent(i).proc().kill9();
            let down = self.ttls(0.1, 1.0);
            self.health[i] = Health::Dead(Instant::now() + down);
            self.record(FaultKind::AgentKill, &id);
        } else {
            c.agent(i).proc().signal(Signal::SIGSTOP).expect("SIGSTOP");
            // Some freezes outlast the lease (a zombie wakes up), some do not.
            let frozen = self.ttls(0.2, 2.0);
            self.health[i] = Health::Frozen(Instant::now() + frozen);
            self.record(FaultKind::AgentStop, &id);
        }
    }

    /// Kill a controller (a random one of several) at evenly spread points
    /// of the run — with two kills at a third and at two thirds — and
    /// restart it after a while.
    async fn progress(&mut self, c: &mut Fleet, done: usize, total: usize) {
        let kills = self.controller_kills();
        let due = kills < self.kills && done * (self.kills + 1) >= total * (kills + 1);
        if !due {
            return;
        }
        let victim = self.rng.random_range(0..c.controllers());
        let name = c.controller_name(victim);
        c.kill_controller(victim);
        self.record(FaultKind::ControllerKill, &name);
        let down = Duration::from_millis(self.rng.random_range(300..3000));
        tokio::time::sleep(down).await;
        c.restart_controller(victim).await;
        println!(
            "chaos: {name} killed at {done}/{total} done, down {} ms",
            down.as_millis()
        );
    }

    /// End every fault: thaw and restart every agent.
    async fn heal(&mut self, c: &mut Fleet) {
        for i in 0..AGENTS {
            match self.health[i] {
                Health::Dead(_) => c.agent(i).restart().expect("restart agent"),
                Health::Frozen(_) => {
                    if let Some(p) = c.agent(i).proc.as_ref() {
                        p.signal(Signal::SIGCONT).expect("SIGCONT");
                    }
                }
                Health::Cut(_) => self.links[i].pass(),
                Health::Up => {}
            }
            self.health[i] = Health::Up;
        }
    }
}
