//! `baton-agent`: parse the command line, load the config, then run, enroll or validate.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use baton_agent::agent::Agent;
use baton_agent::cli::{Cli, Cmd};
use baton_agent::config::{self, Config};
use baton_agent::identity::Identity;
use baton_agent::transport::{self, Transport};
use baton_agent::{enroll, logging, shutdown::Signals};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Exit code after a second signal (128 + SIGINT, as shells report an interrupt).
const EXIT_FORCED: i32 = 130;

fn main() -> ExitCode {
    baton_agent::install_crypto_provider();
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let cmd = cli.cmd();
    let loaded = config::load(&cli.flags(), &env).and_then(|c| {
        if cmd != Cmd::Validate {
            c.prepare_state_dir()?;
        }
        Ok(c)
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => return fail(e.exit_code(), &e),
    };
    match cmd {
        Cmd::Validate => validate(&config),
        Cmd::Enroll { token_file } => with_runtime(&config, |rt| {
            rt.block_on(enroll_command(&config, token_file.as_deref()))
        }),
        Cmd::Run => with_runtime(&config, |rt| rt.block_on(run(config.clone()))),
    }
}

fn fail(code: i32, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("baton-agent: {e}");
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn validate(config: &Config) -> ExitCode {
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    if transport::plain_http_remote(&config.controller_url) {
        eprintln!("warning: Talking to the controller over plain HTTP");
    }
    println!("Config OK: {}", config.summary());
    match Identity::load(&config.state_dir) {
        Ok(Some(id)) => {
            println!(
                "Identity: enrolled as {} (groups: {})",
                id.agent_id,
                id.groups.join(", ")
            );
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let next = if config.enrollment_token.is_some() {
                "`run` enrolls with the configured enrollment token"
            } else {
                "run `baton-agent enroll --token-file FILE` or set enrollment_token_file"
            };
            println!("Identity: not enrolled yet; {next}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(config::Error::EXIT_CODE, &e),
    }
}

/// Logging and a single-threaded runtime, then `f`.
fn with_runtime(config: &Config, f: impl FnOnce(&tokio::runtime::Runtime) -> ExitCode) -> ExitCode {
    if let Err(e) = logging::init(&config.log_level) {
        return fail(1, &e);
    }
    for w in &config.warnings {
        warn!(detail = %w, "Config warning");
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => f(&rt),
        Err(e) => fail(1, &format!("cannot start the async runtime: {e}")),
    }
}

async fn enroll_command(config: &Config, token_file: Option<&Path>) -> ExitCode {
    let transport = match Transport::new(&config.controller_url, &config.tls) {
        Ok(t) => t,
        Err(e) => return fail(1, &e),
    };
    match enroll::command(config, &transport, token_file, enroll::PATIENCE).await {
        Ok(id) => {
            println!(
                "Enrolled as {} (groups: {})",
                id.agent_id,
                id.groups.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.exit_code(), &e),
    }
}

async fn run(config: Config) -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => return fail(1, &e),
    };
    let shutdown = CancellationToken::new();
    let watch = signals.watch(shutdown.clone());
    tokio::pin!(watch);
    let transport = match Transport::new(&config.controller_url, &config.tls) {
        Ok(t) => t,
        Err(e) => return fail(1, &e),
    };
    let found = tokio::select! {
        r = enroll::identity_for_run(&config, &transport, enroll::PATIENCE, &shutdown) => r,
        () = &mut watch => std::process::exit(EXIT_FORCED),
    };
    let identity = match found {
        Ok(id) => id,
        Err(enroll::Error::Stopped) => {
            info!("Agent stopped before enrolling");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(e.exit_code(), &e),
    };
    let agent = match Agent::new(config, &identity, &transport) {
        Ok(a) => a,
        Err(e) => return fail(1, &format!("cannot start the agent: {e}")),
    };
    let groups = agent.process_groups();
    tokio::select! {
        () = agent.run(shutdown.clone()) => ExitCode::SUCCESS,
        () = &mut watch => {
            groups.kill_all();
            std::process::exit(EXIT_FORCED)
        }
    }
}
