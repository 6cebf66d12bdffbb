//! `cancel`: how long an operator's cancel takes to reach the running work
//! (issue 16, point 11), with a 60 s lease TTL so no heartbeat (every 20 s)
//! can be what carried it. Per run: start the work, wait until it runs, call
//! `POST /v1/jobs/{id}/cancel`; latency = from the call's answer to the work
//! gone (often ~0: the holder is woken before the answer is written), and
//! from the call sent to the work gone:
//! - `command`: `sh -c 'echo $$ > pidfile; exec sleep 600'`, gone when its
//!   process is gone (`/proc/<pid>` missing or a zombie), sampled every 1 ms;
//!   once with every slot of the agent busy (1 slot: the notices-only poll),
//!   once with a slot free (2 slots: the normal long poll);
//! - `sql`: `SELECT SLEEP(60)` on a real MariaDB (`crate::mariadb`, started
//!   for the run), gone when `information_schema.PROCESSLIST` no longer shows
//!   it, sampled with the `mariadb` client (each sample ~10 ms: the figure's
//!   resolution). Skipped with the reason when MariaDB is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::JobId;
use serde_json::{Value, json};

use super::report::{Row, ScenarioReport, Target, percentile};
use super::{Args, Bench, GROUP};

const TTL_MS: u64 = 60_000;
/// The point's target: a cancel reaches the job within 1 s.
const TARGET_MS: f64 = 1000.0;
const WAIT: Duration = Duration::from_secs(30);

/// Run `--runs` cancels (default 20) per case.
pub async fn run(args: &Args) -> Result<ScenarioReport> {
    let runs = args.runs.unwrap_or(20);
    let mut rep = ScenarioReport::new("cancel", args.transport(), runs);
    rep.param("lease_ttl_ms", TTL_MS);
    rep.param("cancels_per_case", runs);
    for (slots, case) in [(1, "every slot busy"), (2, "a slot free")] {
        let samples = command_case(args, slots, runs).await?;
        rows(&mut rep, &format!("command, {case}"), &samples);
    }
    match crate::mariadb::skip_reason() {
        Some(why) => rep.notes.push(format!("sql half {why}")),
        None => {
            let (samples, look_ms) = sql_case(args, runs).await?;
            rows(&mut rep, "sql SLEEP(60), every slot busy", &samples);
            rep.notes.push(format!(
                "sql: one processlist look (a `mariadb` client run) takes {:.1} ms (median): \
                 the resolution of the sql figures",
                percentile(&look_ms, 50.0)
            ));
        }
    }
    rep.notes.push(
        "latency from the answer of POST /v1/jobs/{id}/cancel to the work gone; the \
         lease TTL is 60 s, so the first heartbeat would come 20 s after the grant"
            .into(),
    );
    Ok(rep)
}

/// One cancel: ms from the call sent, and from its answer, to the work gone.
type Sample = (f64, f64);

fn rows(rep: &mut ScenarioReport, case: &str, samples: &[Sample]) {
    let sent: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let answered: Vec<f64> = samples.iter().map(|s| s.1).collect();
    for (from, v) in [("answer", &answered), ("call", &sent)] {
        let mut p50 = Row::new(
            &format!("{from}→gone p50, {case}"),
            percentile(v, 50.0),
            "ms",
        );
        p50.spread = Some((percentile(v, 0.0), percentile(v, 100.0)));
        rep.rows.push(p50);
        rep.rows.push(
            Row::new(
                &format!("{from}→gone p99, {case}"),
                percentile(v, 99.0),
                "ms",
            )
            .target(Target::Le(TARGET_MS)),
        );
    }
}

/// The sample of a cancel sent at `sent`, answered at `answered`, now gone.
fn sample((sent, answered): (Instant, Instant)) -> Sample {
    (
        sent.elapsed().as_secs_f64() * 1000.0,
        answered.elapsed().as_secs_f64() * 1000.0,
    )
}

fn sleep_job(pidfile: &Path) -> Value {
    let script = format!("echo $$ > {}; exec /bin/sleep 600", pidfile.display());
    json!({
        "group": GROUP, "lease_ttl_ms": TTL_MS,
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "labels": {"source": "bench-cancel"},
    })
}

async fn command_case(args: &Args, slots: u32, runs: usize) -> Result<Vec<Sample>> {
    let mut b = Bench::start(args, "").await?;
    b.add_agents(1, slots).await?;
    b.wait_online(1).await?;
    let mut out = Vec::with_capacity(runs);
    for run in 0..runs {
        let pidfile = b.tmp.path().join(format!("cancel-{run}.pid"));
        let id = b.api.submit(sleep_job(&pidfile)).await?.id;
        b.api.wait_running(id, WAIT).await?;
        let pid = read_pid(&pidfile).await?;
        // Let the agent's next poll be held before cancelling.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = cancel(&b, id).await?;
        let end = asked.1 + WAIT;
        while alive(pid) {
            if Instant::now() > end {
                bail!("job {id}: process {pid} still runs {WAIT:?} after the cancel");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        out.push(sample(asked));
        b.api.wait_terminal(id, WAIT).await?;
    }
    b.check_alive()?;
    Ok(out)
}

/// Cancel `id`; the instants the call was sent and answered.
async fn cancel(b: &Bench, id: JobId) -> Result<(Instant, Instant)> {
    let sent = Instant::now();
    let v = b.api.cancel(id).await?;
    let answered = Instant::now();
    if v.state.is_terminal() {
        bail!("job {id} was already {} when cancelled", v.state);
    }
    Ok((sent, answered))
}

async fn read_pid(path: &Path) -> Result<i32> {
    let end = Instant::now() + WAIT;
    loop {
        if let Ok(t) = std::fs::read_to_string(path)
            && let Ok(pid) = t.trim().parse()
        {
            return Ok(pid);
        }
        if Instant::now() > end {
            bail!("{} was not written", path.display());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `pid` still runs (a zombie does not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn sql_case(args: &Args, runs: usize) -> Result<(Vec<Sample>, Vec<f64>)> {
    let db = crate::mariadb::server().await?;
    let name = db.create_database("bench_cancel")?;
    let (user, password) = db.create_user(&name, &["ALL"])?;
    let mut b = Bench::start(args, "").await?;
    let pw = b.tmp.path().join("db.password");
    crate::mariadb::write_password_file(&pw, &password)?;
    let conn = db.connection_toml_socket("bench", &name, &user, &pw);
    b.add_agent_with(1, &conn).await?;
    b.wait_online(1).await?;
    let mut out = Vec::with_capacity(runs);
    let mut looks = Vec::new();
    for run in 0..runs {
        let marker = format!("bench_cancel_{run}_{}", std::process::id());
        let id = b
            .api
            .submit(json!({
                "group": GROUP, "lease_ttl_ms": TTL_MS,
                "spec": {"kind": "sql", "connection": "bench",
                         "sql": format!("SELECT SLEEP(60) AS {marker}")},
                "labels": {"source": "bench-cancel"},
            }))
            .await?
            .id;
        b.api.wait_running(id, WAIT).await?;
        let end = Instant::now() + WAIT;
        while !in_processlist(db, &marker)? {
            if Instant::now() > end {
                bail!("job {id}: the query never showed in the processlist");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let asked = cancel(&b, id).await?;
        loop {
            let look = Instant::now();
            let running = in_processlist(db, &marker)?;
            looks.push(look.elapsed().as_secs_f64() * 1000.0);
            if !running {
                break;
            }
            if asked.1.elapsed() > WAIT {
                bail!("job {id}: the query still runs {WAIT:?} after the cancel");
            }
        }
        out.push(sample(asked));
        b.api.wait_terminal(id, WAIT).await?;
    }
    b.check_alive()?;
    Ok((out, looks))
}

/// Whether a statement containing `marker` runs (other than this look).
fn in_processlist(db: &crate::mariadb::MariaDb, marker: &str) -> Result<bool> {
    let n = db
        .sql(
            None,
            &format!(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
            ),
        )
        .context("reading the processlist")?;
    Ok(n.trim() != "0")
}
