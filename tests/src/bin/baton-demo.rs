//! `baton-demo`: Baton's main job on the embedded default.
//!
//! Starts a controller on SQLite and three local agents in one group, submits
//! demo jobs, SIGKILLs the agent holding a running job, shows another agent
//! finish it (attempt 1 `lease_expired`, attempt 2 `succeeded`) with the
//! measured takeover time, then keeps the controller up for `batonctl` until
//! Ctrl-C (or exits 0 with `--exit`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_proto::{AttemptOutcome, JobState, JobView};
use baton_tests::api::Api;
use baton_tests::pki::Pki;
use baton_tests::proc::{Agent, AgentOpts, Controller, bin_dir};
use serde_json::json;

struct Args {
    exit: bool,
    dir: PathBuf,
    ttl_ms: u64,
    port: u16,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        exit: false,
        dir: PathBuf::from(".baton-demo"),
        ttl_ms: 5_000,
        port: 8420,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--exit" => a.exit = true,
            "--dir" => a.dir = it.next().context("--dir needs a path")?.into(),
            "--ttl-ms" => a.ttl_ms = it.next().context("--ttl-ms needs a value")?.parse()?,
            "--port" => a.port = it.next().context("--port needs a value")?.parse()?,
            "-h" | "--help" => {
                println!(
                    "baton-demo [--exit] [--dir DIR] [--ttl-ms MS] [--port PORT]\n\
                     Runs a controller + 3 agents, kills the holder of a running job and shows the takeover."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    Ok(a)
}

fn step(msg: &str) {
    println!("\n==> {msg}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    baton_tests::init_crypto();
    let args = parse_args()?;
    for b in ["baton-controller", "baton-agent", "batonctl"] {
        baton_tests::proc::bin(b)?;
    }
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir).context("clear the demo dir")?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;

    step("Starting a controller on SQLite (HTTPS) and three agents in group `demo`");
    let pki = Pki::generate(&dir.join("pki"))?;
    let listen = if std::net::TcpListener::bind(("127.0.0.1", args.port)).is_ok() {
        format!("127.0.0.1:{}", args.port)
    } else {
        "127.0.0.1:0".to_owned()
    };
    let mut controller = Controller::start_custom(
        &dir.join("controller"),
        &listen,
        &pki.controller_toml(false),
        Some(pki.ca.clone()),
    )
    .await?;
    let url = controller.url();
    println!(
        "    controller  {url}  (TLS with a CA made for this demo: {}; state in {})",
        pki.ca.display(),
        dir.join("controller").display()
    );
    let api = controller.api();
    let mut agents = Vec::new();
    for i in 1..=3 {
        let mut o = AgentOpts::new(&format!("agent-{i}"));
        o.groups = vec!["demo".into()];
        o.extra = pki.agent_toml(false);
        o.enrollment_token = Some(api.enrollment_token(&o.groups).await?);
        agents.push(Agent::start(&dir, &url, o)?);
    }
    wait_online(&api, 3).await?;
    println!("    agents      agent-1, agent-2, agent-3 enrolled (single-use tokens) and online");

    step("Submitting demo jobs");
    let hello = api
        .submit(job("echo \"hello from $(hostname)\"", args.ttl_ms, 1))
        .await?;
    let flaky = api
        .submit(job(
            &format!(
                "f={}/flaky; if [ -e $f ]; then echo recovered; else touch $f; echo first try fails >&2; exit 1; fi",
                dir.display()
            ),
            args.ttl_ms,
            3,
        ))
        .await?;
    let relay = api
        .submit(job(
            "for i in 1 2 3 4 5 6; do echo step $i; sleep 0.5; done; echo relay finished",
            args.ttl_ms,
            3,
        ))
        .await?;
    println!(
        "    job {} echo, job {} fails once then recovers, job {} a 3 s relay (lease TTL {} ms)",
        hello.id, flaky.id, relay.id, args.ttl_ms
    );

    step("Killing the agent that holds the relay job");
    let holder = wait_holder(&api, relay.id).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let idx = agents
        .iter()
        .position(|a| a.opts.id == holder)
        .context("holder is not one of ours")?;
    let killed_at = chrono::Utc::now();
    let killed_instant = Instant::now();
    agents[idx].proc().kill9();
    println!(
        "    SIGKILL {holder} at {}",
        killed_at.format("%H:%M:%S%.3f")
    );
    let taken = loop {
        let j = api.job(relay.id).await?;
        if j.attempts.len() >= 2 {
            break j;
        }
        if killed_instant.elapsed() > Duration::from_secs(120) {
            bail!("no takeover after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let second = &taken.attempts[1];
    let takeover_ms = (second.started_at - killed_at).num_milliseconds();
    println!(
        "    {} took the job over: attempt 2 granted {} ms after the kill (TTL {} ms)",
        second.agent_id, takeover_ms, args.ttl_ms
    );

    step("Waiting for every job to finish");
    let mut all_ok = true;
    for id in [hello.id, flaky.id, relay.id] {
        let j = wait_terminal(&api, id).await?;
        print_job(&j);
        all_ok &= j.state == JobState::Succeeded;
    }
    let relay_done = api.job(relay.id).await?;
    let shape_ok = relay_done.attempts.len() == 2
        && relay_done.attempts[0].outcome == Some(AttemptOutcome::LeaseExpired)
        && relay_done.attempts[1].outcome == Some(AttemptOutcome::Succeeded);

    agents[idx].restart()?;
    step("Summary");
    println!(
        "    relay job {}: attempt 1 on {holder} -> lease_expired, attempt 2 on {} -> succeeded",
        relay.id, second.agent_id
    );
    println!(
        "    takeover time: {} ms (kill -> re-grant), TTL {} ms; all jobs succeeded: {}",
        takeover_ms, args.ttl_ms, all_ok
    );
    if !(all_ok && shape_ok) {
        bail!(
            "the demo did not go as expected; logs are in {}",
            dir.display()
        );
    }

    let ctl = bin_dir().join("batonctl");
    println!("\nTry batonctl against this controller:");
    println!(
        "    export BATON_URL={url} BATON_CA_FILE={} BATON_TOKEN={}",
        pki.ca.display(),
        controller.admin_token
    );
    println!("    {} agents", ctl.display());
    println!("    {} list", ctl.display());
    println!("    {} get {}", ctl.display(), relay.id);
    println!(
        "    {} submit --group demo --program /bin/echo -- hello baton --wait",
        ctl.display()
    );
    if args.exit {
        shutdown(&mut controller, &mut agents);
        return Ok(());
    }
    println!("\nController and agents keep running; Ctrl-C stops them.");
    tokio::signal::ctrl_c().await?;
    shutdown(&mut controller, &mut agents);
    Ok(())
}

fn job(script: &str, ttl_ms: u64, attempts: u32) -> serde_json::Value {
    json!({
        "group": "demo",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
        "lease_ttl_ms": ttl_ms,
        "retry": {"max_attempts": attempts, "initial_backoff_ms": 200},
        "labels": {"source": "demo"}
    })
}

fn shutdown(controller: &mut Controller, agents: &mut [Agent]) {
    for a in agents.iter_mut() {
        if let Some(p) = a.proc.as_mut() {
            let _ = p.signal(nix::sys::signal::Signal::SIGTERM);
            let _ = p.wait_exit(Duration::from_secs(10));
        }
    }
    if let Some(p) = controller.proc.as_mut() {
        let _ = p.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = p.wait_exit(Duration::from_secs(10));
    }
    println!("Stopped.");
}

async fn wait_online(api: &Api, n: usize) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(l) = api.agents().await
            && l.agents.iter().filter(|a| a.online).count() >= n
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("agents did not come online")
}

async fn wait_holder(api: &Api, id: i64) -> Result<String> {
    let (_, holder) = api.wait_running(id, Duration::from_secs(60)).await?;
    Ok(holder)
}

async fn wait_terminal(api: &Api, id: i64) -> Result<JobView> {
    api.wait_terminal(id, Duration::from_secs(120)).await
}

fn print_job(j: &JobView) {
    let out = j
        .result
        .as_ref()
        .map(|r| r.stdout.trim().replace('\n', " | "))
        .unwrap_or_default();
    println!("    job {} {}: {}", j.id, j.state, out);
    for a in &j.attempts {
        let dur = a
            .ended_at
            .map(|e| format!("{} ms", (e - a.started_at).num_milliseconds()))
            .unwrap_or_default();
        println!(
            "      attempt {} on {} token {} -> {} {}{}",
            a.number,
            a.agent_id,
            a.token,
            a.outcome.map(|o| o.as_str()).unwrap_or("running"),
            dur,
            a.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
}
