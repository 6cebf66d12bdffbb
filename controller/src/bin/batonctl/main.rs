//! `batonctl`: the operator CLI of Baton.
//!
//! Talks to the controller's operator API (`/v1/jobs`, `/v1/agents`,
//! `/v1/schedules`, `/v1/pipelines`, `/v1/runs`, and the identity routes:
//! enrollment tokens, operator tokens, audit, whoami) with a
//! bearer token read from `BATON_TOKEN` or a token file (never from a flag,
//! so it does not end up in shell history or `ps`).
//!
//! Exit codes: 0 success; 1 API or transport error (and `submit --wait` on a
//! job that did not succeed); 2 usage error.

mod apply;
mod client;
mod drill;
mod identity;
mod manifest;
mod notifications;
mod pipeline;
mod render;
mod render_auth;
mod render_schedule;
mod schedule;
mod submit;
mod template;
mod zone;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use baton_proto::env;
use baton_proto::{DEFAULT_PORT, JobId, JobKind, JobList, JobState, JobView};
use clap::{Parser, Subcommand, ValueEnum};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use client::{Api, ApiError, ListQuery, TransportError, UsageError, usage};
use identity::{AgentsArgs, AuditArgs, EnrollCmd, TokensCmd};
use submit::{SubmitArgs, parse_key_value, parse_kind, parse_state};

/// Help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// How often `submit --wait` polls the job.
const WAIT_POLL: Duration = Duration::from_millis(200);
/// How long `submit --wait` tolerates an unreachable or unready controller.
const WAIT_OUTAGE: Duration = Duration::from_secs(60);

/// Operator CLI of Baton.
///
/// The operator token comes from the BATON_TOKEN environment variable or from
/// --token-file / BATON_TOKEN_FILE (the file wins when both are set).
#[derive(Debug, Parser)]
#[command(name = "batonctl", version, after_help = baton_proto::env::help(baton_proto::env::BATONCTL))]
struct Cli {
    /// Controller base URL; repeat it (or separate with commas) for several
    /// controllers on one database: calls fail over between them.
    #[arg(long, env = env::CTL_URL.name, value_delimiter = ',', default_values_t = [default_url()], global = true, help_heading = GLOBAL)]
    url: Vec<String>,
    /// File holding the operator token (instead of BATON_TOKEN).
    #[arg(long, env = env::CTL_TOKEN_FILE.name, value_name = "PATH", global = true, help_heading = GLOBAL)]
    token_file: Option<PathBuf>,
    /// PEM CA certificate(s) of an https controller; when given, only these are trusted.
    #[arg(long, env = env::CTL_CA_FILE.name, value_name = "PATH", global = true, help_heading = GLOBAL)]
    ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table, global = true, help_heading = GLOBAL)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Human-readable tables.
    Table,
    /// The controller's JSON, pretty-printed.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a job (from flags or from a JSON/TOML file).
    ///
    /// Example: batonctl submit --program /bin/echo -- hello world
    Submit(Box<SubmitArgs>),
    /// List jobs, newest first.
    List(ListArgs),
    /// Show a job, its attempts and its result.
    Get {
        /// Job id.
        id: JobId,
    },
    /// Cancel a job (a running job stops at its next heartbeat).
    Cancel {
        /// Job id.
        id: JobId,
    },
    /// Queue a finished job again.
    Retry {
        /// Job id.
        id: JobId,
    },
    /// List agents (the default); revoke, drain or resume one.
    Agents(AgentsArgs),
    /// Enrollment tokens: create (for new agents), list, revoke. Admin only.
    #[command(subcommand)]
    Enroll(EnrollCmd),
    /// Operator tokens: create, list, revoke. Admin only.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Show the audit log, newest first. Admin only.
    Audit(AuditArgs),
    /// Webhook notifications: `ls` shows recent deliveries and their result.
    #[command(subcommand)]
    Notifications(notifications::NotificationsCmd),
    /// Failover drills: start one, list them, show a report and its timeline.
    #[command(subcommand)]
    Drill(drill::DrillCmd),
    /// Schedules: create, list, show, pause, resume, trigger, history,
    /// backfill, delete; `next` previews occurrences (offline with --cron/--every).
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// Pipelines: create, list, show, run, status, cancel, retry, history, delete.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCmd),
    /// Make the controller's schedules and pipelines what TOML files say
    /// (create, update or leave each; print the changes).
    ///
    /// Example: batonctl apply -f /etc/baton/schedules.d --prune
    Apply(apply::ApplyArgs),
    /// Show the name and role of the operator token in use.
    Whoami,
    /// Check the controller's /healthz and /readyz (no token needed).
    Health,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
    #[arg(long, value_name = "S", value_parser = parse_state)]
    state: Option<JobState>,
    /// Only jobs of this group.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// Only jobs of this kind.
    #[arg(long, value_name = "K", value_parser = parse_kind)]
    kind: Option<JobKind>,
    /// Only jobs with this label.
    #[arg(long, value_name = "K=V", value_parser = parse_key_value)]
    label: Option<(String, String)>,
    /// At most this many jobs (1-1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    limit: Option<u32>,
    /// Only jobs older than this id (the next page).
    #[arg(long, value_name = "ID")]
    before: Option<JobId>,
}

fn default_url() -> String {
    format!("https://127.0.0.1:{DEFAULT_PORT}")
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            if let Some(hint) = e.downcast_ref::<ApiError>().and_then(ApiError::hint) {
                eprintln!("hint: {hint}");
            }
            if let Some(hint) = e
                .downcast_ref::<TransportError>()
                .and_then(TransportError::hint)
            {
                eprintln!("hint: {hint}");
            }
            if e.is::<UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Write to stdout; a closed pipe (`| head`) surfaces as an io error.
fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}

fn out_json(answer: &client::Answer) -> Result<()> {
    out(&answer.pretty())
}

/// Decode a typed view from an answer body.
fn decode<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T> {
    serde_json::from_value(v.clone())
        .with_context(|| format!("unexpected {what} from the controller"))
}

/// The operator token: `--token-file`/`BATON_TOKEN_FILE`, else `BATON_TOKEN`.
fn read_token(token_file: Option<&std::path::Path>) -> Result<String> {
    let (token, origin) = match token_file {
        Some(path) => {
            // A missing file is told by the read below.
            if path.exists() {
                baton_controller::config::check_secret_file(path)
                    .map_err(|m| usage(format!("token file {}: {m}", path.display())))?;
            }
            (
                std::fs::read_to_string(path).map_err(|e| {
                    usage(format!("cannot read token file {}: {e}", path.display()))
                })?,
                format!("token file {}", path.display()),
            )
        }
        None => match std::env::var(env::CTL_TOKEN.name) {
            Ok(t) => (t, "BATON_TOKEN".to_owned()),
            Err(std::env::VarError::NotPresent) => {
                return Err(usage(
                    "no operator token: set BATON_TOKEN or pass --token-file PATH",
                ));
            }
            Err(e) => return Err(usage(format!("BATON_TOKEN: {e}"))),
        },
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(usage(format!("{origin} is empty")));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage(format!(
            "{origin} holds more than one word; it must hold only the token"
        )));
    }
    Ok(token)
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let bases = cli
        .url
        .iter()
        .map(|u| client::parse_base_url(u))
        .collect::<Result<Vec<_>>>()?;
    let json = cli.output == Output::Json;
    let token = match &cli.command {
        Command::Health => String::new(),
        Command::Schedule(schedule::ScheduleCmd::Next(a)) if a.name.is_none() => String::new(),
        _ => read_token(cli.token_file.as_deref())?,
    };
    let api = Api::with_bases(bases, token, cli.ca_file.as_deref())?;
    match cli.command {
        Command::Submit(args) => submit(&api, &args, json).await,
        Command::List(a) => list(&api, a, json).await,
        Command::Get { id } => {
            let answer = api.get(id).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let view: JobView = decode(&answer.body, "job")?;
            out(&render::render_job(&view, answer.now()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cancel { id } | Command::Retry { id } => {
            let action = if matches!(cli.command, Command::Cancel { .. }) {
                "cancel"
            } else {
                "retry"
            };
            let answer = api.action(id, action).await?;
            if json {
                return out_json(&answer).map(|()| ExitCode::SUCCESS);
            }
            let view: JobView = decode(&answer.body, "job")?;
            out(&render::render_state_line(&view))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents(args) => identity::agents(&api, args, json).await,
        Command::Enroll(cmd) => identity::enroll(&api, cmd, json).await,
        Command::Tokens(cmd) => identity::tokens(&api, cmd, json).await,
        Command::Audit(args) => identity::audit(&api, &args, json).await,
        Command::Notifications(cmd) => notifications::notifications(&api, cmd, json).await,
        Command::Drill(cmd) => drill::drill(&api, cmd, json).await,
        Command::Schedule(cmd) => schedule::schedule(&api, cmd, json).await,
        Command::Pipeline(cmd) => pipeline::pipeline(&api, cmd, json).await,
        Command::Apply(args) => apply::apply(&api, &args, json).await,
        Command::Whoami => identity::whoami(&api, json).await,
        Command::Health => health(&api, json).await,
    }
}

/// `batonctl submit`: send the job; with `--wait`, follow it to its end
/// (exit 1 unless it succeeded).
async fn submit(api: &Api, args: &SubmitArgs, json: bool) -> Result<ExitCode> {
    // File and flag mistakes surface here, before any request (exit 2).
    let job = args.build(&mut std::io::stdin().lock())?;
    // With several controllers a submit whose answer was lost is sent to
    // another one: a key of its own makes that repeat return the same job.
    let auto_key = (args.idempotency_key.is_none() && api.several()).then(submit::auto_key);
    let key = args.idempotency_key.as_deref().or(auto_key.as_deref());
    let answer = api.submit(&job, key).await?;
    let view: JobView = decode(&answer.body, "job")?;
    if answer.status == StatusCode::OK && auto_key.is_none() {
        eprintln!(
            "note: idempotency key seen before: job {} is the earlier submission",
            view.id
        );
    }
    if !args.wait {
        if json {
            out_json(&answer)?;
        } else {
            out(&format!("Submitted job {} ({})", view.id, view.state))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        out(&format!("Submitted job {} ({})", view.id, view.state))?;
    }
    let timeout = args.wait_timeout.map(Duration::from_millis);
    let (raw, done) = wait_for(api, view.id, timeout).await?;
    if json {
        out_json(&raw)?;
    } else {
        out("")?;
        out(&render::render_job(&done, raw.now()))?;
    }
    if done.state == JobState::Succeeded {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("error: job {} ended {}", done.id, done.state);
        Ok(ExitCode::from(1))
    }
}

/// `batonctl list`: one page of jobs, newest first, and how to get the next.
async fn list(api: &Api, a: ListArgs, json: bool) -> Result<ExitCode> {
    let query = ListQuery {
        state: a.state.map(|s| s.as_str().to_owned()),
        group: a.group,
        kind: a.kind.map(|k| k.as_str().to_owned()),
        label: a.label,
        limit: a.limit,
        before: a.before,
    };
    let answer = api.list(&query).await?;
    if json {
        return out_json(&answer).map(|()| ExitCode::SUCCESS);
    }
    let list: JobList = decode(&answer.body, "job list")?;
    out(&render::render_list(&list, answer.now()))?;
    if let Some(next) = list.next_before {
        eprintln!("(more jobs: add --before {next})");
    }
    Ok(ExitCode::SUCCESS)
}

/// The line `--wait` prints when the job's blocked reason appears or
/// changes (`None` while it stays the same or the job is not blocked).
fn blocked_line(last: &mut Option<String>, now: Option<String>) -> Option<String> {
    if now == *last {
        return None;
    }
    *last = now.clone();
    now.map(|reason| format!("blocked: {reason}"))
}

/// Poll the job until it is terminal, printing its blocked reason (stderr)
/// when it appears or changes; tolerate a controller outage of up to [`WAIT_OUTAGE`].
async fn wait_for(
    api: &Api,
    id: JobId,
    timeout: Option<Duration>,
) -> Result<(client::Answer, JobView)> {
    let start = Instant::now();
    let mut failing_since: Option<Instant> = None;
    let mut last_state: Option<JobState> = None;
    let mut last_reason: Option<String> = None;
    loop {
        match api.get(id).await {
            Ok(answer) => {
                failing_since = None;
                let view: JobView = decode(&answer.body, "job")?;
                if view.state.is_terminal() {
                    return Ok((answer, view));
                }
                last_state = Some(view.state);
                if let Some(line) = blocked_line(&mut last_reason, view.blocked_reason) {
                    eprintln!("{line}");
                }
            }
            Err(e) if client::is_transient(&e) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= WAIT_OUTAGE {
                    return Err(e.context(format!(
                        "gave up waiting for job {id}: the controller has been unavailable for {}",
                        render::fmt_ms(WAIT_OUTAGE.as_millis() as u64)
                    )));
                }
            }
            Err(e) => return Err(e),
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            let state = last_state.map_or("unknown", JobState::as_str);
            bail!(
                "timed out after {} waiting for job {id} (state: {state})",
                render::fmt_ms(limit.as_millis() as u64)
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

/// `batonctl health`: exit 0 only when the controller is live and ready.
async fn health(api: &Api, json: bool) -> Result<ExitCode> {
    let (live, live_body) = api.probe("/healthz").await?;
    let (ready, ready_body) = api.probe("/readyz").await?;
    let ok = live.is_success() && ready.is_success();
    if json {
        let body = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.into()));
        out(&serde_json::to_string_pretty(&serde_json::json!({
            "healthz": { "status": live.as_u16(), "body": body(&live_body) },
            "readyz": { "status": ready.as_u16(), "body": body(&ready_body) },
            "ok": ok,
        }))?)?;
    } else {
        let word = |s: StatusCode, body: &str| {
            if s.is_success() {
                "ok".to_owned()
            } else {
                format!("not ok ({})", client::ApiError::from_response(s, body))
            }
        };
        out(&format!(
            "healthz: {}\nreadyz: {}",
            word(live, &live_body),
            word(ready, &ready_body)
        ))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests;
