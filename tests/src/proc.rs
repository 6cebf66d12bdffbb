//! Real processes: the controller and agents, started, signalled, restarted.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::api::Api;
use crate::pki::Pki;

/// Directory holding the Baton binaries.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("BATON_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of a Baton binary; fails with a hint when it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if !p.exists() {
        bail!(
            "{} not found: run `cargo build --workspace --bins` first (or set BATON_BIN_DIR)",
            p.display()
        );
    }
    Ok(p)
}

/// A process that is killed when dropped.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    fn spawn(mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().context("spawn")?;
        Ok(Proc {
            child: Some(child),
            log: log.to_path_buf(),
        })
    }

    /// The OS pid, while running.
    pub fn pid(&self) -> Option<Pid> {
        self.child.as_ref().map(|c| Pid::from_raw(c.id() as i32))
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) -> Result<()> {
        if let Some(pid) = self.pid() {
            kill(pid, sig)?;
        }
        Ok(())
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for exit (up to `timeout`), returning the exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    self.child = None;
                    return Ok(status.code());
                }
            } else {
                return Ok(None);
            }
            if Instant::now() > end {
                bail!("process did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = kill(pid, Signal::SIGCONT);
        }
        self.kill9();
    }
}

/// A controller process with its own state dir.
#[derive(Debug)]
pub struct Controller {
    /// The process (None while stopped).
    pub proc: Option<Proc>,
    /// Config, log (and the state unless `state_dir` says otherwise).
    pub dir: PathBuf,
    /// State dir (database, listen.addr).
    pub state_dir: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// Bound address.
    pub addr: SocketAddr,
    /// The admin token `baton-controller init` printed.
    pub admin_token: String,
    /// CA to trust when the controller serves HTTPS.
    pub ca: Option<PathBuf>,
    /// Extra environment of the controller process (kept across restarts;
    /// not given to `init`), e.g. [`crate::faketime::FakeClock::env`].
    pub env: Vec<(String, String)>,
}

impl Controller {
    /// Start on `127.0.0.1:0` over plain HTTP (explicitly allowed) and wait for `/readyz`.
    pub async fn start(dir: &Path, extra_config: &str) -> Result<Controller> {
        let extra = format!("allow_plain_http = true\n{extra_config}");
        Self::start_custom(dir, "127.0.0.1:0", &extra, None).await
    }

    /// Start over HTTPS with `pki`'s server certificate (`mtls`: agents need client certificates).
    pub async fn start_tls(dir: &Path, pki: &Pki, mtls: bool) -> Result<Controller> {
        let tls = pki.controller_toml(mtls);
        Self::start_custom(dir, "127.0.0.1:0", &tls, Some(pki.ca.clone())).await
    }

    /// Write the config (`extra_config` appended), run `init` for the admin
    /// token, start, and wait for `/readyz`.
    pub async fn start_custom(
        dir: &Path,
        listen: &str,
        extra_config: &str,
        ca: Option<PathBuf>,
    ) -> Result<Controller> {
        Self::start_full(dir, dir, listen, extra_config, ca, Vec::new()).await
    }

    /// Like [`Controller::start_custom`], the process running with `env` added.
    pub async fn start_env(
        dir: &Path,
        listen: &str,
        extra_config: &str,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> Result<Controller> {
        Self::start_full(dir, dir, listen, extra_config, ca, env).await
    }

    /// Like [`Controller::start_custom`], with the database in `state_dir`
    /// (config, log and `listen.addr` stay in `dir`).
    pub async fn start_with_state(
        dir: &Path,
        state_dir: &Path,
        listen: &str,
        extra_config: &str,
        ca: Option<PathBuf>,
    ) -> Result<Controller> {
        Self::start_full(dir, state_dir, listen, extra_config, ca, Vec::new()).await
    }

    async fn start_full(
        dir: &Path,
        state_dir: &Path,
        listen: &str,
        extra_config: &str,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> Result<Controller> {
        let config = write_config(dir, state_dir, listen, extra_config)?;
        let out = Command::new(bin("baton-controller")?)
            .arg("--config")
            .arg(&config)
            .arg("init")
            .output()?;
        if !out.status.success() {
            bail!("init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let admin_token = String::from_utf8(out.stdout)?.trim().to_owned();
        Self::launch(dir, state_dir, config, admin_token, ca, env).await
    }

    /// Another replica on a store that is already initialised (a shared
    /// PostgreSQL database named in `extra_config`): no `init`; `admin_token`
    /// is the one the first replica's `init` printed. Plain HTTP on `listen`.
    pub async fn join(
        dir: &Path,
        listen: &str,
        extra_config: &str,
        admin_token: &str,
        env: Vec<(String, String)>,
    ) -> Result<Controller> {
        let config = write_config(dir, dir, listen, extra_config)?;
        Self::launch(dir, dir, config, admin_token.to_owned(), None, env).await
    }

    /// Like [`Controller::join`], over HTTPS verified with `ca`.
    pub async fn join_ca(
        dir: &Path,
        extra_config: &str,
        admin_token: &str,
        ca: Option<PathBuf>,
    ) -> Result<Controller> {
        let config = write_config(dir, dir, "127.0.0.1:0", extra_config)?;
        Self::launch(dir, dir, config, admin_token.to_owned(), ca, Vec::new()).await
    }

    async fn launch(
        dir: &Path,
        state_dir: &Path,
        config: PathBuf,
        admin_token: String,
        ca: Option<PathBuf>,
        env: Vec<(String, String)>,
    ) -> Result<Controller> {
        let mut c = Controller {
            proc: None,
            dir: dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            config,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_token,
            ca,
            env,
        };
        c.spawn(None).await?;
        Ok(c)
    }

    /// An admin client.
    pub fn api(&self) -> Api {
        Api::connect(&self.url(), &self.admin_token, self.ca.as_deref())
    }

    async fn spawn(&mut self, listen: Option<SocketAddr>) -> Result<()> {
        let addr_file = self.state_dir.join("listen.addr");
        let _ = fs::remove_file(&addr_file);
        let mut cmd = Command::new(bin("baton-controller")?);
        cmd.arg("--config").arg(&self.config);
        if let Some(l) = listen {
            cmd.arg("--listen").arg(l.to_string());
        }
        // The environment wins over the file: a config that sets its own
        // `log_level` (to change it on SIGHUP) gets it.
        let level_in_file = fs::read_to_string(&self.config)
            .is_ok_and(|c| c.lines().any(|l| l.trim_start().starts_with("log_level")));
        if !level_in_file {
            // `BATON_BENCH_CONTROLLER_LOG` (for a look by hand, e.g.
            // `info,sqlx=debug` to see every statement) wins over the default.
            let level = std::env::var("BATON_BENCH_CONTROLLER_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".to_owned());
            cmd.env("BATON_CONTROLLER_LOG", level);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn(cmd, &self.dir.join("controller.log"))?;
        self.proc = Some(proc);
        let end = Instant::now() + Duration::from_secs(30);
        let addr: SocketAddr = loop {
            if let Ok(s) = fs::read_to_string(&addr_file)
                && let Ok(a) = s.trim().parse()
            {
                break a;
            }
            if let Some(p) = self.proc.as_mut()
                && !p.running()
            {
                bail!("controller exited at start:\n{}", p.log_text());
            }
            if Instant::now() > end {
                bail!("controller did not write listen.addr");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.addr = addr;
        wait_ready(&self.api()).await
    }

    /// Base URL.
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `kill -9` the controller.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Start again on the same port, same database.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill9();
        let addr = self.addr;
        self.spawn(Some(addr)).await
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("controller.log")).unwrap_or_default()
    }
}

/// Write `dir/controller.toml`: listen, state dir, then `extra_config`.
fn write_config(dir: &Path, state_dir: &Path, listen: &str, extra_config: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let config = dir.join("controller.toml");
    fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nstate_dir = \"{}\"\n{extra_config}\n",
            state_dir.display()
        ),
    )?;
    Ok(config)
}

/// Poll `/readyz` until 200.
pub async fn wait_ready(api: &Api) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = api.raw(reqwest::Method::GET, "/readyz", None, &[]).await
            && r.status.is_success()
        {
            return Ok(());
        }
        if Instant::now() > end {
            bail!("{}/readyz never answered 200", api.url);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How to configure an agent.
#[derive(Debug, Clone)]
pub struct AgentOpts {
    /// Agent id.
    pub id: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Slots.
    pub slots: u32,
    /// Allow-listed programs.
    pub allow: Vec<String>,
    /// Extra TOML appended to the config.
    pub extra: String,
    /// Enrollment token, written to a file the config names (first start only).
    pub enrollment_token: Option<String>,
    /// Environment added to the agent process (kept across its restarts).
    pub env: Vec<(String, String)>,
}

impl AgentOpts {
    /// One slot, group `default`, `/bin/sh` and friends allowed.
    pub fn new(id: &str) -> AgentOpts {
        AgentOpts {
            id: id.to_owned(),
            groups: vec!["default".into()],
            slots: 1,
            allow: [
                "/bin/sh",
                "/bin/echo",
                "/bin/sleep",
                "/bin/true",
                "/bin/false",
            ]
            .map(String::from)
            .to_vec(),
            extra: String::new(),
            enrollment_token: None,
            env: Vec::new(),
        }
    }
}

/// An agent process with its own state dir.
#[derive(Debug)]
pub struct Agent {
    /// Its options.
    pub opts: AgentOpts,
    /// The process (None while stopped).
    pub proc: Option<Proc>,
    /// State dir (outbox).
    pub dir: PathBuf,
    /// Config file.
    pub config: PathBuf,
}

impl Agent {
    /// Write its config and start it against `controller_url`.
    pub fn start(root: &Path, controller_url: &str, opts: AgentOpts) -> Result<Agent> {
        let line = format!("controller_url = \"{controller_url}\"");
        Self::start_line(root, &line, opts)
    }

    /// Write its config and start it against several controller replicas
    /// (`controller_urls = [...]`, tried in this order).
    pub fn start_urls(root: &Path, controller_urls: &[String], opts: AgentOpts) -> Result<Agent> {
        let list = controller_urls
            .iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ");
        Self::start_line(root, &format!("controller_urls = [{list}]"), opts)
    }

    fn start_line(root: &Path, controller_line: &str, opts: AgentOpts) -> Result<Agent> {
        let dir = root.join(format!("agent-{}", opts.id));
        fs::create_dir_all(&dir)?;
        let config = dir.join("agent.toml");
        let enroll = match &opts.enrollment_token {
            Some(t) => {
                let f = dir.join("enroll.token");
                crate::mariadb::write_private_file(&f, t)?;
                format!("enrollment_token_file = \"{}\"\n", f.display())
            }
            None => String::new(),
        };
        let groups = opts
            .groups
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let allow = opts
            .allow
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(", ");
        fs::write(
            &config,
            format!(
                "agent_id = \"{}\"\n{controller_line}\ngroups = [{groups}]\nslots = {}\nstate_dir = \"{}\"\nshutdown_grace = \"5s\"\n{enroll}\n[command]\nallow = [{allow}]\n\n{}\n",
                opts.id,
                opts.slots,
                dir.join("state").display(),
                opts.extra,
            ),
        )?;
        let mut a = Agent {
            opts,
            proc: None,
            dir,
            config,
        };
        a.spawn()?;
        Ok(a)
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin("baton-agent")?);
        cmd.arg("--config")
            .arg(&self.config)
            .env("BATON_AGENT_LOG", "info")
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn(cmd, &self.dir.join("agent.log"))?);
        Ok(())
    }

    /// Start again with the same state dir (outbox kept).
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        self.spawn()
    }

    /// SIGTERM (a graceful stop), then wait up to `timeout` for the exit;
    /// its code (`None` for a signal's end).
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let p = self.proc();
        p.signal(Signal::SIGTERM)?;
        p.wait_exit(timeout)
    }

    /// The process, which must be running.
    pub fn proc(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("agent process is running")
    }

    /// Its log.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// The agent secret from its identity file (after enrollment).
    pub fn secret(&self) -> Result<String> {
        let text = fs::read_to_string(self.dir.join("state").join("identity.json"))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v["secret"]
            .as_str()
            .map(str::to_owned)
            .context("identity.json has no secret")
    }

    /// Number of completions waiting in its outbox (read without changing it).
    pub fn outbox_len(&self) -> usize {
        outbox_waiting(&self.dir.join("state").join("outbox")).len()
    }
}

/// The completions (job id, token) waiting in an agent's outbox directory:
/// the log `log` (records `<len> <crc32> <json>\n`, see the agent's
/// `outbox` module; a record that does not parse ends the reading, like a
/// torn last one) after the files of the previous layout (`*.json`).
pub fn outbox_waiting(dir: &Path) -> std::collections::BTreeSet<(i64, i64)> {
    let mut live = std::collections::BTreeSet::new();
    let key = |v: &serde_json::Value| {
        Some((
            v.get("job_id")?.as_i64()?,
            v.pointer("/request/token")?.as_i64()?,
        ))
    };
    for item in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let v: serde_json::Value = fs::read(item.path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let items = v.as_array().cloned().unwrap_or_else(|| vec![v]);
        live.extend(items.iter().filter_map(key));
    }
    let bytes = fs::read(dir.join("log")).unwrap_or_default();
    let mut rest = &bytes[..];
    while let Some(record) = next_record(&mut rest) {
        if let Some(k) = record.get("completion").and_then(key) {
            live.insert(k);
        }
        if let Some(done) = record.get("done")
            && let (Some(j), Some(t)) = (done["job_id"].as_i64(), done["token"].as_i64())
        {
            live.remove(&(j, t));
        }
    }
    live
}

/// The payload of the record at the start of `rest`, which moves past it.
fn next_record(rest: &mut &[u8]) -> Option<serde_json::Value> {
    let len = usize::from_str_radix(std::str::from_utf8(rest.get(..8)?).ok()?, 16).ok()?;
    let payload = rest.get(18..18 + len)?;
    let value = serde_json::from_slice(payload).ok()?;
    *rest = rest.get(18 + len + 1..)?;
    Some(value)
}

/// The pids a test command wrote to `path`, one per line (none yet: empty).
pub fn pids_in(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Wait (up to 60 s) until `path` names at least `n` pids; panics otherwise.
pub async fn wait_pids(path: &Path, n: usize) -> Vec<i32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pids = pids_in(path);
        if pids.len() >= n {
            return pids;
        }
        assert!(
            std::time::Instant::now() < end,
            "{} never had {n} pids",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a pid is alive (not a zombie we could still signal).
pub fn pid_alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie still answers kill(0); look at its state.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
