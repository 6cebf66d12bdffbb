//! What the chaos runs against: one controller on SQLite, or several
//! replicas on one PostgreSQL database; either way agents that reach every
//! controller through fault proxies of their own.

use std::path::PathBuf;
use std::time::Duration;

use baton_tests::api::Api;
use baton_tests::cluster::Cluster;
use baton_tests::faultproxy::FaultProxy;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::postgres::Pg;
use baton_tests::proc::{Agent, AgentOpts};

/// Which store, and how many controllers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// One controller on SQLite, `kill -9`ed and restarted twice.
    Sqlite,
    /// `replicas` controllers on PostgreSQL; one at a time `kill -9`ed and
    /// restarted, `kills` times over the run.
    Postgres { replicas: usize, kills: usize },
}

impl Mode {
    /// Controller kills the run makes.
    pub(super) fn kills(self) -> usize {
        match self {
            Mode::Sqlite => 2,
            Mode::Postgres { kills, .. } => kills,
        }
    }
}

/// One agent's way to the controllers: a fault proxy per controller.
pub(super) struct Link {
    proxies: Vec<FaultProxy>,
}

impl Link {
    pub(super) fn pass(&self) {
        self.proxies.iter().for_each(FaultProxy::pass);
    }
    pub(super) fn black_hole(&self) {
        self.proxies.iter().for_each(FaultProxy::black_hole);
    }
    pub(super) fn reset_existing(&self) {
        self.proxies.iter().for_each(FaultProxy::reset_existing);
    }
    pub(super) fn delay(&self, by: Duration) {
        self.proxies.iter().for_each(|p| p.delay(by));
    }
}

pub(super) enum Fleet {
    One(Cluster),
    Ha(HaCluster),
}

impl Fleet {
    /// Controllers for `mode` and `agents` agents (`tweak` sets their
    /// options), each behind its own proxies; wait until all are online.
    pub(super) async fn start(
        mode: Mode,
        pg: Option<&Pg>,
        agents: usize,
        tweak: impl Fn(&mut AgentOpts),
    ) -> (Fleet, Vec<Link>) {
        let mut fleet = match mode {
            Mode::Sqlite => Fleet::One(Cluster::start(0).await.expect("cluster")),
            Mode::Postgres { replicas, .. } => Fleet::Ha(
                HaCluster::start_in(
                    pg.expect("a PostgreSQL server"),
                    replicas,
                    0,
                    HaOpts::default(),
                    |_| {},
                )
                .await
                .expect("replicas"),
            ),
        };
        let mut links = Vec::new();
        for i in 1..=agents {
            let mut proxies = Vec::new();
            for addr in fleet.controller_addrs() {
                proxies.push(FaultProxy::start(addr).await.expect("proxy"));
            }
            let mut urls: Vec<String> = proxies.iter().map(FaultProxy::url).collect();
            // Agent i prefers replica i mod N.
            let n = urls.len();
            urls.rotate_left(i % n);
            let mut o = AgentOpts::new(&format!("agent-{i}"));
            tweak(&mut o);
            match &mut fleet {
                Fleet::One(c) => {
                    c.add_agent_at(o, &urls[0]).await.expect("agent");
                }
                Fleet::Ha(c) => {
                    c.add_agent_at(o, &urls).await.expect("agent");
                }
            }
            links.push(Link { proxies });
        }
        let online = match &fleet {
            Fleet::One(c) => c.wait_agents_online().await,
            Fleet::Ha(c) => c.wait_agents_online().await,
        };
        online.expect("agents online");
        (fleet, links)
    }

    fn controller_addrs(&self) -> Vec<std::net::SocketAddr> {
        match self {
            Fleet::One(c) => vec![c.controller.addr],
            Fleet::Ha(c) => c.controllers.iter().map(|c| c.addr).collect(),
        }
    }

    /// An admin client per controller.
    pub(super) fn apis(&self) -> Vec<Api> {
        match self {
            Fleet::One(c) => vec![c.api.clone()],
            Fleet::Ha(c) => (0..c.controllers.len()).map(|i| c.api(i)).collect(),
        }
    }

    pub(super) fn agents(&self) -> &[Agent] {
        match self {
            Fleet::One(c) => &c.agents,
            Fleet::Ha(c) => &c.agents,
        }
    }

    pub(super) fn agent(&mut self, i: usize) -> &mut Agent {
        match self {
            Fleet::One(c) => &mut c.agents[i],
            Fleet::Ha(c) => &mut c.agents[i],
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        match self {
            Fleet::One(c) => c.path(name),
            Fleet::Ha(c) => c.path(name),
        }
    }

    /// How many controllers.
    pub(super) fn controllers(&self) -> usize {
        match self {
            Fleet::One(_) => 1,
            Fleet::Ha(c) => c.controllers.len(),
        }
    }

    /// Name of controller `i` in the fault log.
    pub(super) fn controller_name(&self, i: usize) -> String {
        match self {
            Fleet::One(_) => "controller".to_owned(),
            Fleet::Ha(_) => format!("ctl-{i}"),
        }
    }

    pub(super) fn kill_controller(&mut self, i: usize) {
        match self {
            Fleet::One(c) => c.controller.kill9(),
            Fleet::Ha(c) => c.kill9(i),
        }
    }

    pub(super) async fn restart_controller(&mut self, i: usize) {
        let r = match self {
            Fleet::One(c) => c.controller.restart().await,
            Fleet::Ha(c) => c.restart(i).await,
        };
        r.expect("controller restart");
    }
}
