//! Several controller replicas on one PostgreSQL database, and agents that
//! know all of them: the shape of the high-availability tests.
//!
//! The first replica runs `init` (migrations, the admin token); the others
//! join the initialised database with the same token. Each replica has its
//! own state dir and port (127.0.0.1:0, kept across restarts). Agents get
//! every replica's URL (`controller_urls`), rotated so that agent `i` prefers
//! replica `i mod N`; an agent enrolls on the replica it reaches first and its
//! identity is in the shared database.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::api::Api;
use crate::postgres::Pg;
use crate::proc::{Agent, AgentOpts, Controller, bin};

/// A running multi-replica cluster in its own temp dir.
#[derive(Debug)]
pub struct HaCluster {
    /// Keeps the temp dir alive (and removes it at the end).
    pub tmp: tempfile::TempDir,
    /// What the controllers' `[store] url` says.
    pub store_url: String,
    /// The replicas, `ctl-0` … `ctl-N-1`.
    pub controllers: Vec<Controller>,
    /// The agents, `agent-1` … `agent-M`.
    pub agents: Vec<Agent>,
    /// The admin token (valid on every replica).
    pub admin_token: String,
    /// Controller config of every replica.
    controller_extra: String,
    /// The database made for this cluster, dropped with it.
    owned_db: Option<(Pg, String)>,
}

/// Options of [`HaCluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct HaOpts {
    /// Extra top-level controller config (TOML, before the `[store]` table).
    pub controller_extra: String,
    /// Extra lines of the `[store]` table (e.g. `poll_only = true`).
    pub store_extra: String,
    /// Environment of every replica.
    pub controller_env: Vec<(String, String)>,
}

impl HaCluster {
    /// `controllers` replicas on a fresh database of `pg`, and `agents`
    /// one-slot agents in group `default` knowing every replica.
    pub async fn start(controllers: usize, agents: usize, pg: &Pg) -> Result<HaCluster> {
        Self::start_in(pg, controllers, agents, HaOpts::default(), |_| {}).await
    }

    /// Like [`HaCluster::start`], with options and per-agent tweaks. The
    /// database is dropped when the cluster is.
    pub async fn start_in(
        pg: &Pg,
        controllers: usize,
        agents: usize,
        opts: HaOpts,
        tweak: impl Fn(&mut AgentOpts),
    ) -> Result<HaCluster> {
        let db = pg.create_database("ha")?;
        let mut c = Self::start_with(controllers, agents, &pg.url_of(&db), opts, tweak).await;
        match &mut c {
            Ok(c) => c.owned_db = Some((pg.clone(), db)),
            Err(_) => {
                let _ = pg.drop_database(&db);
            }
        }
        c
    }

    /// Like [`HaCluster::start`] on the database `store_url` names (it must
    /// exist; the first replica migrates it), with options and per-agent tweaks.
    pub async fn start_with(
        controllers: usize,
        agents: usize,
        store_url: &str,
        opts: HaOpts,
        tweak: impl Fn(&mut AgentOpts),
    ) -> Result<HaCluster> {
        crate::init_crypto();
        anyhow::ensure!(controllers >= 1, "at least one controller");
        let tmp = tempfile::Builder::new().prefix("baton-ha-").tempdir()?;
        let extra = format!(
            "allow_plain_http = true\n{}\n[store]\nurl = \"{store_url}\"\n{}\n",
            opts.controller_extra, opts.store_extra
        );
        let first = Controller::start_env(
            &tmp.path().join("ctl-0"),
            "127.0.0.1:0",
            &extra,
            None,
            opts.controller_env.clone(),
        )
        .await
        .context("the first replica")?;
        let admin_token = first.admin_token.clone();
        let mut cs = vec![first];
        for i in 1..controllers {
            let c = Controller::join(
                &tmp.path().join(format!("ctl-{i}")),
                "127.0.0.1:0",
                &extra,
                &admin_token,
                opts.controller_env.clone(),
            )
            .await
            .with_context(|| format!("replica ctl-{i}"))?;
            cs.push(c);
        }
        let mut cluster = HaCluster {
            tmp,
            store_url: store_url.to_owned(),
            controllers: cs,
            agents: Vec::new(),
            admin_token,
            controller_extra: extra,
            owned_db: None,
        };
        for i in 1..=agents {
            let mut o = AgentOpts::new(&format!("agent-{i}"));
            tweak(&mut o);
            cluster.add_agent(o).await?;
        }
        Ok(cluster)
    }

    /// An admin client of replica `i`.
    pub fn api(&self, i: usize) -> Api {
        self.controllers[i].api()
    }

    /// Every replica's base URL, in order.
    pub fn urls(&self) -> Vec<String> {
        self.controllers.iter().map(Controller::url).collect()
    }

    /// Start one more agent, enrolled with a token from a live replica, its
    /// URL list rotated so that it prefers replica `agents.len() mod N`.
    pub async fn add_agent(&mut self, opts: AgentOpts) -> Result<&mut Agent> {
        let mut urls = self.urls();
        let first = self.agents.len() % urls.len();
        urls.rotate_left(first);
        self.add_agent_at(opts, &urls).await
    }

    /// Start one more agent that reaches the replicas at `urls` (fault
    /// proxies in front of them, say), enrolled with a token from a live
    /// replica unless `opts` has one.
    pub async fn add_agent_at(
        &mut self,
        mut opts: AgentOpts,
        urls: &[String],
    ) -> Result<&mut Agent> {
        anyhow::ensure!(!urls.is_empty(), "no controller URL");
        if opts.enrollment_token.is_none() {
            let api = self.live_api().context("no replica is running")?;
            opts.enrollment_token = Some(api.enrollment_token(&opts.groups).await?);
        }
        let agent = if agents_know_several_urls() {
            Agent::start_urls(self.tmp.path(), urls, opts)?
        } else {
            Agent::start(self.tmp.path(), &urls[0], opts)?
        };
        self.agents.push(agent);
        Ok(self.agents.last_mut().expect("just pushed"))
    }

    /// A client of the first running replica.
    pub fn live_api(&self) -> Option<Api> {
        self.controllers
            .iter()
            .find(|c| c.proc.is_some())
            .map(Controller::api)
    }

    /// `kill -9` replica `i`.
    pub fn kill9(&mut self, i: usize) {
        self.controllers[i].kill9();
    }

    /// Start replica `i` again (same port, same database).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.controllers[i].restart().await
    }

    /// Add a replica (no `init`) and return its index. Agents started before
    /// do not know it.
    pub async fn add_controller(&mut self) -> Result<usize> {
        let i = self.controllers.len();
        let env = self.controllers[0].env.clone();
        let c = Controller::join(
            &self.tmp.path().join(format!("ctl-{i}")),
            "127.0.0.1:0",
            &self.controller_extra,
            &self.admin_token,
            env,
        )
        .await?;
        self.controllers.push(c);
        Ok(i)
    }

    /// Wait until every agent has polled at least once (as replica 0 sees it:
    /// presence is in the shared database).
    pub async fn wait_agents_online(&self) -> Result<()> {
        let api = self.live_api().context("no replica is running")?;
        api.wait_online(self.agents.len(), Duration::from_secs(60))
            .await
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.logs()))
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
        let mut s = String::new();
        for (i, c) in self.controllers.iter().enumerate() {
            s.push_str(&format!("== ctl-{i} ==\n{}\n", c.log_text()));
        }
        for a in &self.agents {
            s.push_str(&format!("== {} ==\n{}\n", a.opts.id, a.log_text()));
        }
        s
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        if let Some((pg, db)) = self.owned_db.take() {
            // Its sessions first: every replica and agent stops.
            for a in &mut self.agents {
                if let Some(mut p) = a.proc.take() {
                    p.kill9();
                }
            }
            for c in &mut self.controllers {
                c.kill9();
            }
            let _ = pg.drop_database(&db);
        }
    }
}

/// Whether this `baton-agent` takes `controller_urls = [...]`: asked once by
/// `baton-agent validate` of such a config. Older agents know one
/// `controller_url`; then agents get replica 0 only (printed once).
pub fn agents_know_several_urls() -> bool {
    static KNOWS: OnceLock<bool> = OnceLock::new();
    *KNOWS.get_or_init(|| {
        let knows = probe_controller_urls().unwrap_or(false);
        if !knows {
            eprintln!(
                "note: this baton-agent does not take controller_urls; HA test agents know replica 0 only"
            );
        }
        knows
    })
}

fn probe_controller_urls() -> Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("baton-ha-probe-")
        .tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"probe\"\ncontroller_urls = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]\nstate_dir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )?;
    let out = Command::new(bin("baton-agent")?)
        .arg("--config")
        .arg(&config)
        .arg("validate")
        .output()?;
    Ok(out.status.success())
}
