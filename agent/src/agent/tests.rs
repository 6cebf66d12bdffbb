//! The whole agent against the fake controller: real HTTP, real processes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use baton_proto::{
    CommandSpec, CompleteRequest, Completion, Grant, JobKind, JobResult, JobSpec, NoopSpec,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;
use crate::config::{CommandConfig, Config, Secret, TlsConfig};
use crate::executor::command::{CommandExecutor, CommandSettings};
use crate::fake_controller::{Fake, Heartbeat};
use crate::identity::Identity;
use crate::outbox::{Entry, Outbox};
use crate::transport::Transport;

/// The secret of the test identity.
pub const SECRET: &str = "baton_agt_test-secret";

const LIMIT: Duration = Duration::from_secs(10);

struct Running {
    fake: Fake,
    state: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    fn outbox_files(&self) -> Vec<Entry> {
        crate::outbox::waiting(self.state.path()).expect("outbox")
    }

    /// Whether the outbox empties within `LIMIT`: the agent marks a
    /// completion done after the controller's answer arrives, which is
    /// just after the fake controller recorded it.
    async fn outbox_drains(&self) -> bool {
        let end = tokio::time::Instant::now() + LIMIT;
        while tokio::time::Instant::now() < end {
            if self.outbox_files().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    async fn stop(self) -> (Fake, tempfile::TempDir) {
        self.shutdown.cancel();
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("agent stops")
            .expect("no panic");
        (self.fake, self.state)
    }
}

/// A config for the tests (`groups` empty: those of the identity).
pub fn config(url: &str, state: &Path, grace: Duration) -> Config {
    Config {
        config_file: None,
        agent_id: "a1".into(),
        hostname: "host-1".into(),
        controller_urls: vec![url.into()],
        enrollment_token: None,
        tls: TlsConfig::default(),
        groups: Vec::new(),
        slots: 2,
        state_dir: state.to_path_buf(),
        poll_wait: Duration::from_millis(200),
        shutdown_grace: grace,
        log_level: "info".into(),
        log_format: crate::config::LogFormat::Text,
        command: CommandConfig {
            allow: vec!["sh".into()],
            ..CommandConfig::default()
        },
        connections: BTreeMap::new(),
        stores: BTreeMap::new(),
        warnings: Vec::new(),
    }
}

/// The identity the agent runs with (enrolled for group `g`).
pub fn identity(url: &str) -> Identity {
    Identity {
        agent_id: "a1".into(),
        secret: Secret::new(SECRET),
        groups: vec!["g".into()],
        controller_url: url.into(),
        controller_urls: Vec::new(),
        enrolled_at: chrono::Utc::now(),
        fleet: String::new(),
    }
}

/// Start the agent against a fresh fake, with `grants` queued and `prepare`
/// run on the state dir first.
async fn start(grants: Vec<Grant>, grace: Duration, prepare: impl FnOnce(&Path)) -> Running {
    let fake = Fake::start().await;
    {
        let mut s = fake.script();
        s.grants.extend(grants);
        s.secret = Some(SECRET.into());
    }
    let state = tempfile::tempdir().expect("tempdir");
    prepare(state.path());
    let cfg = config(&fake.url, state.path(), grace);
    let (task, shutdown) = spawn_agent(cfg, &identity(&fake.url));
    Running {
        fake,
        state,
        shutdown,
        task,
    }
}

/// Run an agent with `cfg` and `identity` until the returned token fires.
pub fn spawn_agent(cfg: Config, identity: &Identity) -> (JoinHandle<()>, CancellationToken) {
    let mut settings = CommandSettings::from_config(&cfg.command);
    settings.term_grace = Duration::from_millis(300);
    let transport = Transport::with_urls(&cfg.controller_urls, &cfg.tls).expect("transport");
    let agent =
        Agent::with_command_executor(cfg, identity, &transport, CommandExecutor::new(settings))
            .expect("agent");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    (task, shutdown)
}

pub fn grant(job_id: i64, ttl_ms: u64, spec: JobSpec) -> Grant {
    Grant {
        job_id,
        attempt: 1,
        token: 10 + job_id,
        lease_ttl_ms: ttl_ms,
        held_ms: 0,
        timeout_ms: None,
        group: "g".into(),
        spec,
        retry_codes: Vec::new(),
    }
}

fn sh(script: &str) -> JobSpec {
    JobSpec::Command(CommandSpec {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: BTreeMap::new(),
        working_dir: None,
    })
}

pub fn noop(sleep_ms: u64) -> JobSpec {
    JobSpec::Noop(NoopSpec { sleep_ms })
}

async fn read_pid(path: &Path) -> i32 {
    for _ in 0..500 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pid in {}", path.display());
}

async fn gone(pid: i32) -> bool {
    for _ in 0..300 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if stat.is_empty() || state.starts_with('Z') {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn runs_a_job_and_delivers_its_completion() {
    let agent = start(vec![grant(1, 5_000, sh("echo hi"))], LIMIT, |_| {}).await;
    let fake = agent.fake.clone();
    assert!(fake.until(LIMIT, |s| !s.completes.is_empty()).await);
    {
        let s = fake.script();
        let (job_id, req) = &s.completes[0];
        assert_eq!((*job_id, req.token), (1, 11));
        assert_eq!(req.completion, Completion::Succeeded);
        assert_eq!(req.result.stdout, "hi\n");
        // The completion says when the work started after the grant.
        assert!(req.started_after_ms.is_some_and(|ms| ms < 5_000), "{req:?}");
        let poll = &s.polls[0];
        assert_eq!(poll.groups, ["g"]);
        assert_eq!(poll.free_slots, 2);
        assert_eq!(poll.capabilities.kinds, [JobKind::Command, JobKind::Noop]);
        assert!(poll.capabilities.connections.is_empty());
        assert_eq!(poll.wait_ms, Some(200));
        let auth = s.last_auth.clone().expect("headers");
        assert_eq!(auth, (format!("Bearer {SECRET}"), "a1".into()));
        assert_eq!(s.unauthorized, 0);
    }
    assert!(agent.outbox_drains().await, "delivered files are removed");
    let (fake, _) = agent.stop().await;
    assert_eq!(fake.script().completes.len(), 1, "reported once");
}

#[tokio::test]
async fn self_fences_when_heartbeats_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let agent = start(vec![grant(2, 600, sh(&script))], LIMIT, |_| {}).await;
    agent.fake.script().heartbeat = Heartbeat::Unavailable;
    let pid = read_pid(&pidfile).await;
    let started = std::time::Instant::now();
    assert!(gone(pid).await, "the job's process was not killed");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Well past the deadline: nothing may have been reported.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        agent.fake.script().heartbeats.len() >= 2,
        "it tried to renew"
    );
    // Every heartbeat says when the work started after the grant.
    assert!(
        agent
            .fake
            .script()
            .heartbeats
            .iter()
            .all(|(_, h)| h.started_after_ms.is_some()),
        "a heartbeat without the start"
    );
    assert_eq!(agent.fake.script().complete_attempts, 0);
    assert!(
        agent.outbox_drains().await,
        "a fenced job never reaches the outbox"
    );
    let (fake, _) = agent.stop().await;
    assert_eq!(fake.script().complete_attempts, 0);
    assert!(fake.script().releases.is_empty());
}

#[tokio::test]
async fn lease_lost_on_heartbeat_stops_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let agent = start(vec![grant(3, 900, sh(&script))], LIMIT, |_| {}).await;
    agent.fake.script().heartbeat = Heartbeat::LeaseLost;
    let pid = read_pid(&pidfile).await;
    assert!(gone(pid).await, "the job's process was not killed");
    assert_eq!(
        agent.fake.script().heartbeats.len(),
        1,
        "no renewal after lease_lost"
    );
    let (fake, _) = agent.stop().await;
    assert_eq!(fake.script().complete_attempts, 0);
}

#[tokio::test]
async fn operator_cancel_completes_as_cancelled() {
    let agent = start(vec![grant(4, 600, noop(60_000))], LIMIT, |_| {}).await;
    agent.fake.script().heartbeat = Heartbeat::Cancel;
    assert!(agent.fake.until(LIMIT, |s| !s.completes.is_empty()).await);
    assert_eq!(
        agent.fake.script().completes[0].1.completion,
        Completion::Cancelled
    );
    agent.stop().await;
}

/// A cancel notice in a poll answer stops the job as a heartbeat's
/// `cancel_requested` does, long before any heartbeat (TTL 60 s: the first
/// goes out after 20 s); the notice names the lease (job and token).
#[tokio::test]
async fn a_cancel_notice_in_a_poll_answer_completes_as_cancelled() {
    let agent = start(
        vec![
            grant(6, 60_000, noop(60_000)),
            grant(7, 60_000, noop(4_000)),
        ],
        LIMIT,
        |_| {},
    )
    .await;
    assert!(
        agent
            .fake
            .until(LIMIT, |s| s.polls.iter().any(|p| p.leases.len() == 2))
            .await
    );
    agent.fake.script().cancel_jobs = vec![6];
    assert!(agent.fake.until(LIMIT, |s| !s.completes.is_empty()).await);
    {
        let s = agent.fake.script();
        assert_eq!(s.completes[0].0, 6);
        assert_eq!(s.completes[0].1.completion, Completion::Cancelled);
        assert!(s.heartbeats.is_empty(), "learnt by a heartbeat");
    }
    // Job 7 goes on, and polls no longer name the cancelled lease.
    let only_7 = |s: &crate::fake_controller::Script| {
        s.polls
            .last()
            .is_some_and(|p| p.leases.iter().map(|l| l.job_id).eq([7]))
    };
    assert!(agent.fake.until(LIMIT, only_7).await);
    assert_eq!(agent.fake.script().completes.len(), 1);
    assert!(agent.fake.until(LIMIT, |s| s.completes.len() == 2).await);
    assert_eq!(
        agent.fake.script().completes[1].1.completion,
        Completion::Succeeded
    );
    agent.stop().await;
}

#[tokio::test]
async fn completion_waits_out_an_outage_and_the_lease_is_kept_meanwhile() {
    let agent = start(vec![], LIMIT, |_| {}).await;
    {
        let mut s = agent.fake.script();
        s.complete_unavailable = 2;
        s.grants.push_back(grant(5, 600, noop(0)));
    }
    assert!(agent.fake.until(LIMIT, |s| s.complete_attempts == 1).await);
    assert_eq!(
        agent.outbox_files().len(),
        1,
        "kept in the outbox while undelivered"
    );
    assert!(agent.fake.until(LIMIT, |s| !s.completes.is_empty()).await);
    {
        let s = agent.fake.script();
        assert_eq!(s.complete_attempts, 3);
        assert_eq!(s.completes[0].1.completion, Completion::Succeeded);
        assert!(
            s.heartbeats.iter().any(|(job, _)| *job == 5),
            "heartbeats kept the lease while the completion waited"
        );
    }
    assert!(agent.outbox_drains().await);
    let beats = agent.fake.script().heartbeats.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        agent.fake.script().heartbeats.len(),
        beats,
        "no heartbeat once delivered"
    );
    agent.stop().await;
}

#[tokio::test]
async fn leftover_completions_are_delivered_at_start() {
    let entry = Entry {
        job_id: 77,
        request: CompleteRequest {
            started_after_ms: None,
            token: 3,
            completion: Completion::Failed { retryable: true },
            result: JobResult::default(),
            error: Some("exited with status 1".into()),
        },
    };
    let e = entry.clone();
    let agent = start(vec![], LIMIT, move |state| {
        Outbox::open(state)
            .expect("outbox")
            .write(&e)
            .expect("write");
    })
    .await;
    assert!(agent.fake.until(LIMIT, |s| !s.completes.is_empty()).await);
    assert_eq!(agent.fake.script().completes[0], (77, entry.request));
    assert!(agent.outbox_drains().await);
    agent.stop().await;
}

#[tokio::test]
async fn leftover_batch_files_are_delivered_through_an_outage_at_start() {
    let entries: Vec<Entry> = (0..3)
        .map(|i| Entry {
            job_id: 80 + i,
            request: CompleteRequest {
                started_after_ms: None,
                token: 1,
                completion: Completion::Succeeded,
                result: JobResult::default(),
                error: None,
            },
        })
        .collect();
    let fake = Fake::start().await;
    {
        let mut s = fake.script();
        s.secret = Some(SECRET.into());
        // The controller cannot take the first two calls: the delivery task retries.
        s.complete_unavailable = 2;
    }
    let state = tempfile::tempdir().expect("tempdir");
    // A batch file of the previous layout (a JSON array, one file per batch).
    let dir = state.path().join("outbox");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("80-1.json"),
        serde_json::to_vec(&entries).expect("json"),
    )
    .expect("write");
    let (task, shutdown) =
        spawn_agent(config(&fake.url, state.path(), LIMIT), &identity(&fake.url));
    let agent = Running {
        fake,
        state,
        shutdown,
        task,
    };
    assert!(agent.fake.until(LIMIT, |s| s.completes.len() == 3).await);
    assert_eq!(
        agent.fake.script().complete_attempts,
        5,
        "2 refused, 3 taken"
    );
    let mut got: Vec<_> = agent
        .fake
        .script()
        .completes
        .iter()
        .map(|(job, _)| *job)
        .collect();
    got.sort_unstable();
    assert_eq!(got, [80, 81, 82]);
    assert!(
        agent.outbox_drains().await,
        "each is marked done with its answer"
    );
    assert!(
        !dir.join("80-1.json").exists(),
        "moved into the log at start"
    );
    agent.stop().await;
}

#[tokio::test]
async fn completion_refused_for_lease_lost_is_dropped() {
    let agent = start(vec![], LIMIT, |_| {}).await;
    {
        let mut s = agent.fake.script();
        s.complete_lease_lost = true;
        s.grants.push_back(grant(6, 5_000, noop(0)));
    }
    assert!(agent.fake.until(LIMIT, |s| s.complete_attempts == 1).await);
    let (fake, state) = agent.stop().await;
    assert_eq!(fake.script().complete_attempts, 1, "never sent again");
    let left = crate::outbox::waiting(state.path()).expect("outbox");
    assert!(left.is_empty(), "dropped: {left:?}");
}

#[tokio::test]
async fn shutdown_stops_and_releases_running_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let agent = start(
        vec![grant(8, 5_000, sh(&script))],
        Duration::from_millis(100),
        |_| {},
    )
    .await;
    let pid = read_pid(&pidfile).await;
    let (fake, state) = agent.stop().await;
    assert!(gone(pid).await, "the job's process was not killed");
    let s = fake.script();
    assert_eq!(s.releases.len(), 1);
    assert_eq!(s.releases[0].0, 8);
    assert_eq!(s.releases[0].1.token, 18);
    assert_eq!(s.releases[0].1.reason, "shutdown");
    assert_eq!(s.complete_attempts, 0, "released, not completed");
    let left = crate::outbox::waiting(state.path()).expect("outbox");
    assert!(left.is_empty());
}

#[tokio::test]
async fn shutdown_lets_jobs_finish_within_the_grace() {
    let agent = start(vec![grant(9, 5_000, noop(300))], LIMIT, |_| {}).await;
    assert!(
        agent.fake.until(LIMIT, |s| s.polls.len() >= 2).await,
        "granted"
    );
    let (fake, _) = agent.stop().await;
    let s = fake.script();
    assert_eq!(s.completes.len(), 1, "finished and delivered before exit");
    assert_eq!(s.completes[0].1.completion, Completion::Succeeded);
    assert!(s.releases.is_empty());
}

#[tokio::test]
async fn no_poll_while_every_slot_is_busy() {
    let agent = start(
        vec![grant(20, 600, noop(800)), grant(21, 600, noop(800))],
        LIMIT,
        |_| {},
    )
    .await;
    assert!(agent.fake.until(LIMIT, |s| !s.heartbeats.is_empty()).await);
    let polls = agent.fake.script().polls.len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While every slot is busy, polls ask for no work: they are held for
    // the running jobs' cancel notices only, naming both leases.
    {
        let s = agent.fake.script();
        let busy = &s.polls[polls..];
        assert!(!busy.is_empty(), "no poll for cancel notices");
        for p in busy {
            assert_eq!(p.free_slots, 0, "polled for work with no free slot");
            let jobs: Vec<_> = p.leases.iter().map(|l| l.job_id).collect();
            assert_eq!(jobs, vec![20, 21], "{p:?}");
        }
    }
    assert!(agent.fake.until(LIMIT, |s| s.completes.len() == 2).await);
    assert!(
        agent.fake.until(LIMIT, |s| s.polls.len() > polls).await,
        "polls again"
    );
    agent.stop().await;
}

#[tokio::test]
async fn revoked_agent_fences_its_job_and_does_not_spin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    // TTL 4.5 s: a heartbeat every 1.5 s, the deadline far enough not to be the reason.
    let agent = start(vec![grant(30, 4_500, sh(&script))], LIMIT, |_| {}).await;
    let pid = read_pid(&pidfile).await;
    assert!(agent.fake.until(LIMIT, |s| !s.heartbeats.is_empty()).await);
    agent.fake.script().revoked = true;
    let revoked_at = std::time::Instant::now();
    // The next heartbeat is refused: the controller ended the lease, the job stops.
    assert!(gone(pid).await, "the job's process was not killed");
    assert!(
        revoked_at.elapsed() < Duration::from_millis(2_900),
        "fenced on the 401, not at the lease deadline"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    {
        let s = agent.fake.script();
        assert_eq!(s.complete_attempts, 0, "a fenced job is never reported");
        // One refused heartbeat and one refused poll: a refused poll waits the
        // longest backoff (10 s) before the next, and the keeper stopped.
        assert!(
            (1..=2).contains(&s.unauthorized),
            "refused calls: {}",
            s.unauthorized
        );
    }
    assert!(agent.outbox_drains().await);
    let (fake, _) = agent.stop().await;
    assert_eq!(fake.script().complete_attempts, 0);
}

#[tokio::test]
async fn refused_poll_backs_off_to_the_cap() {
    let agent = start(vec![], LIMIT, |_| {}).await;
    assert!(agent.fake.until(LIMIT, |s| !s.polls.is_empty()).await);
    agent.fake.script().secret = Some("baton_agt_rotated".into());
    assert!(agent.fake.until(LIMIT, |s| s.unauthorized >= 1).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        agent.fake.script().unauthorized,
        1,
        "no second poll within the backoff after a 401"
    );
    agent.stop().await;
}

#[tokio::test]
async fn rate_limited_poll_waits_for_retry_after() {
    let fake = Fake::start().await;
    fake.script().poll_rate_limited = 1;
    let state = tempfile::tempdir().expect("tempdir");
    let (task, shutdown) =
        spawn_agent(config(&fake.url, state.path(), LIMIT), &identity(&fake.url));
    assert!(fake.until(LIMIT, |s| !s.poll_auth.is_empty()).await);
    let limited_at = std::time::Instant::now();
    assert!(fake.until(LIMIT, |s| !s.polls.is_empty()).await);
    assert!(
        limited_at.elapsed() >= Duration::from_millis(900),
        "polled again {:?} after a 429 with Retry-After: 1",
        limited_at.elapsed()
    );
    assert_eq!(fake.script().poll_auth.len(), 2);
    shutdown.cancel();
    task.await.expect("no panic");
}

#[tokio::test]
async fn forbidden_heartbeat_fences_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let agent = start(vec![grant(31, 5_000, sh(&script))], LIMIT, |_| {}).await;
    agent.fake.script().heartbeat = Heartbeat::Forbidden;
    let pid = read_pid(&pidfile).await;
    let started = std::time::Instant::now();
    assert!(gone(pid).await, "the job's process was not killed");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "fenced on the 403, not at the 5 s deadline"
    );
    let (fake, _) = agent.stop().await;
    let s = fake.script();
    assert_eq!(s.heartbeats.len(), 1, "no renewal after forbidden");
    assert_eq!(s.complete_attempts, 0);
}

#[tokio::test]
async fn completion_refused_as_forbidden_is_dropped() {
    let agent = start(vec![], LIMIT, |_| {}).await;
    {
        let mut s = agent.fake.script();
        s.complete_forbidden = true;
        s.grants.push_back(grant(32, 5_000, noop(0)));
    }
    assert!(agent.fake.until(LIMIT, |s| s.complete_attempts == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (fake, state) = agent.stop().await;
    assert_eq!(fake.script().complete_attempts, 1, "never sent again");
    assert!(fake.script().completes.is_empty());
    let left = crate::outbox::waiting(state.path()).expect("outbox");
    assert!(left.is_empty(), "dropped: {left:?}");
}

#[tokio::test]
async fn configured_groups_are_limited_to_the_enrolled_ones() {
    let fake = Fake::start().await;
    let state = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&fake.url, state.path(), LIMIT);
    cfg.groups = vec!["g".into(), "not-granted".into()];
    let (task, shutdown) = spawn_agent(cfg, &identity(&fake.url));
    assert!(fake.until(LIMIT, |s| !s.polls.is_empty()).await);
    assert_eq!(fake.script().polls[0].groups, ["g"]);
    shutdown.cancel();
    task.await.expect("no panic");

    let mut cfg = config(&fake.url, state.path(), LIMIT);
    cfg.groups = vec!["other".into()];
    let transport = Transport::new(&fake.url, &TlsConfig::default()).expect("transport");
    let e = Agent::new(cfg, &identity(&fake.url), &transport).expect_err("no group left");
    assert!(
        e.to_string().contains("none of the configured groups"),
        "{e}"
    );
}
