//! Command line: `baton-agent [run|enroll|validate|service run|install|uninstall] [flags]`,
//! `--version`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Flags;

/// Baton agent: long-polls the controller, holds leases, runs jobs next to the database.
#[derive(Debug, Parser)]
#[command(name = "baton-agent", version, about, after_help = baton_proto::env::help(baton_proto::env::AGENT))]
pub struct Cli {
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Cmd>,
    /// Config file (TOML). Also BATON_AGENT_CONFIG.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Agent id asked for at enrollment (overrides `agent_id`; default: the host name).
    #[arg(long, global = true)]
    pub agent_id: Option<String>,
    /// Controller base URL (overrides `controller_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub controller_url: Option<String>,
    /// Several controller base URLs, comma-separated (overrides `controller_urls`).
    #[arg(long, global = true, value_name = "URL,URL")]
    pub controller_urls: Option<String>,
    /// Worker group to serve; repeat for several (overrides `groups`).
    #[arg(long = "group", global = true, value_name = "NAME")]
    pub groups: Vec<String>,
    /// Jobs run at once, 1-256 (overrides `slots`).
    #[arg(long, global = true, value_name = "N")]
    pub slots: Option<String>,
    /// State directory (overrides `state_dir`).
    #[arg(long, global = true, value_name = "PATH")]
    pub state_dir: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Cmd {
    /// Run the agent (the default). Enrolls first when not enrolled and a token is configured.
    Run,
    /// Enroll with the controller using a single-use enrollment token, write
    /// `<state_dir>/identity.json`, exit.
    Enroll {
        /// File holding the enrollment token (`-` reads standard input). Default:
        /// `enrollment_token_file`, BATON_AGENT_ENROLLMENT_TOKEN_FILE or BATON_AGENT_ENROLLMENT_TOKEN.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Load and validate the config, print a summary and whether the agent is
    /// enrolled, exit (78 on error). Never enrolls.
    Validate,
    /// The Windows service `BatonAgent` (on other systems these exit with an error).
    Service {
        /// What to do with the service.
        #[command(subcommand)]
        action: ServiceCmd,
    },
}

/// `baton-agent service ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum ServiceCmd {
    /// Run as the service (what the Service Control Manager starts; not for a console).
    Run,
    /// Register the service `BatonAgent` (automatic start, LocalSystem, restart on
    /// failure). `--config PATH` is stored in the service's command line.
    Install,
    /// Stop and remove the service `BatonAgent` (files are left in place).
    Uninstall,
}

impl Cli {
    /// The flags as the highest config layer.
    pub fn flags(&self) -> Flags {
        Flags {
            config: self.config.clone(),
            agent_id: self.agent_id.clone(),
            controller_url: self.controller_url.clone(),
            controller_urls: self.controller_urls.clone(),
            groups: self.groups.clone(),
            slots: self.slots.clone(),
            state_dir: self.state_dir.clone(),
        }
    }

    /// The subcommand, `run` when none was given.
    pub fn cmd(&self) -> Cmd {
        self.command.clone().unwrap_or(Cmd::Run)
    }
}

#[cfg(test)]
mod tests;
