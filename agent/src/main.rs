//! `baton-agent`: parse the command line, load the config, run the agent.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use baton_agent::agent::Agent;
use baton_agent::cli::{Cli, Cmd};
use baton_agent::config::{self, Config};
use baton_agent::{logging, shutdown::Signals};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Exit code after a second signal (128 + SIGINT, as shells report an interrupt).
const EXIT_FORCED: i32 = 130;

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let loaded = config::load(&cli.flags(), &env).and_then(|c| {
        if cli.cmd() == Cmd::Run {
            c.prepare_state_dir()?;
        }
        Ok(c)
    });
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("baton-agent: {e}");
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1));
        }
    };
    match cli.cmd() {
        Cmd::Validate => {
            for w in &config.warnings {
                eprintln!("warning: {w}");
            }
            println!("Config OK: {}", config.summary());
            ExitCode::SUCCESS
        }
        Cmd::Run => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("baton-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    logging::init(&config.log_level)?;
    for w in &config.warnings {
        warn!(detail = %w, "Config warning");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let signals = Signals::install()?;
        let agent = Agent::new(config).context("cannot start the agent")?;
        let groups = agent.process_groups();
        let shutdown = CancellationToken::new();
        tokio::select! {
            () = agent.run(shutdown.clone()) => Ok(()),
            () = signals.watch(shutdown) => {
                groups.kill_all();
                std::process::exit(EXIT_FORCED)
            }
        }
    })
}
