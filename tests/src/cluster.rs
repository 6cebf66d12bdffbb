//! A controller plus N agents in one group.

use std::path::PathBuf;

use anyhow::Result;

use crate::api::Api;
use crate::proc::{Agent, AgentOpts, Controller};

/// A running test cluster in its own temp dir.
#[derive(Debug)]
pub struct Cluster {
    /// Keeps the temp dir alive (and removes it at the end).
    pub tmp: tempfile::TempDir,
    /// The controller.
    pub controller: Controller,
    /// The agents, `agent-1` … `agent-N`.
    pub agents: Vec<Agent>,
    /// Operator client.
    pub api: Api,
}

impl Cluster {
    /// Start a controller and `n` one-slot agents in group `default`.
    pub async fn start(n: usize) -> Result<Cluster> {
        Self::start_with(n, "", |_| {}).await
    }

    /// Like [`Cluster::start`], with extra controller config and per-agent tweaks.
    pub async fn start_with(
        n: usize,
        controller_extra: &str,
        tweak: impl Fn(&mut AgentOpts),
    ) -> Result<Cluster> {
        Self::start_env(n, controller_extra, Vec::new(), tweak).await
    }

    /// Like [`Cluster::start_with`], the controller process running with
    /// `controller_env` added (kept across its restarts).
    pub async fn start_env(
        n: usize,
        controller_extra: &str,
        controller_env: Vec<(String, String)>,
        tweak: impl Fn(&mut AgentOpts),
    ) -> Result<Cluster> {
        crate::init_crypto();
        let tmp = tempfile::Builder::new().prefix("baton-e2e-").tempdir()?;
        let extra = format!("allow_plain_http = true\n{controller_extra}");
        let controller = Controller::start_env(
            &tmp.path().join("controller"),
            "127.0.0.1:0",
            &extra,
            None,
            controller_env,
        )
        .await?;
        let api = controller.api();
        let mut agents = Vec::new();
        for i in 1..=n {
            let mut opts = AgentOpts::new(&format!("agent-{i}"));
            tweak(&mut opts);
            if opts.enrollment_token.is_none() {
                opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await?);
            }
            agents.push(Agent::start(tmp.path(), &controller.url(), opts)?);
        }
        Ok(Cluster {
            tmp,
            controller,
            agents,
            api,
        })
    }

    /// Wait until every agent has polled at least once.
    pub async fn wait_agents_online(&self) -> Result<()> {
        let want = self.agents.len();
        self.api
            .wait_online(want, std::time::Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
    }

    /// Start one more agent (enrolled with a fresh token).
    pub async fn add_agent(&mut self, mut opts: AgentOpts) -> Result<&mut Agent> {
        if opts.enrollment_token.is_none() {
            opts.enrollment_token = Some(self.api.enrollment_token(&opts.groups).await?);
        }
        let url = self.controller.url();
        self.agents.push(Agent::start(self.tmp.path(), &url, opts)?);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// Start one more agent that reaches the controller at `controller_url`
    /// (a [`crate::faultproxy::FaultProxy`] in front of it, say).
    pub async fn add_agent_at(
        &mut self,
        mut opts: AgentOpts,
        controller_url: &str,
    ) -> Result<&mut Agent> {
        if opts.enrollment_token.is_none() {
            opts.enrollment_token = Some(self.api.enrollment_token(&opts.groups).await?);
        }
        self.agents
            .push(Agent::start(self.tmp.path(), controller_url, opts)?);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// The agent with this id.
    pub fn agent(&mut self, id: &str) -> &mut Agent {
        let i = self
            .agents
            .iter()
            .position(|a| a.opts.id == id)
            .unwrap_or_else(|| panic!("no agent {id}"));
        &mut self.agents[i]
    }

    /// A path inside the cluster's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("== controller ==\n{}\n", self.controller.log_text());
        for a in &self.agents {
            s.push_str(&format!("== {} ==\n{}\n", a.opts.id, a.log_text()));
        }
        s
    }
}
