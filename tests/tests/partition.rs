//! Partitions: an agent cut off from the controller by a TCP fault proxy
//! (black hole) while it holds a lease.
//!
//! - The cut-off agent fences its work on its own monotonic clock before the
//!   lease runs out on the controller: its command stops appending before the
//!   controller's recorded lease deadline, and before the new holder starts.
//! - Another agent (not behind the proxy) takes the job over and finishes it;
//!   the cut-off agent never completes it, and a completion it parked during
//!   the partition is refused `409 lease_lost` once the network heals.
//! - With the database lock (MariaDB `GET_LOCK`, a procedure that goes on
//!   after `KILL QUERY`), the new holder's session never overlaps the old one
//!   (intervals recorded in a non-transactional table, plus the server's
//!   processlist at the new holder's start), and the effect happens once.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobId, JobState, JobView};
use baton_tests::api::Api;
use baton_tests::cluster::Cluster;
use baton_tests::faultproxy::FaultProxy;
use baton_tests::mariadb::{self, MariaDb};
use baton_tests::proc::{AgentOpts, pid_alive};
use chrono::{DateTime, Utc};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const TTL_MS: u64 = 3000;

/// A controller, no agents yet, and a fault proxy in front of it.
async fn setup() -> (Cluster, FaultProxy) {
    let c = Cluster::start(0).await.expect("cluster");
    let proxy = FaultProxy::start(c.controller.addr).await.expect("proxy");
    (c, proxy)
}

fn opts(id: &str, extra: &str) -> AgentOpts {
    let mut o = AgentOpts::new(id);
    o.extra = extra.to_owned();
    o
}

/// Start agent `cut` behind the proxy; wait until it polls.
async fn add_cut_agent(c: &mut Cluster, proxy: &FaultProxy, extra: &str) {
    c.add_agent_at(opts("cut", extra), &proxy.url())
        .await
        .expect("cut agent");
    c.wait_agents_online().await.expect("online");
}

/// The controller's deadline for `agent`'s lease on `job`, as last listed.
async fn listed_deadline(api: &Api, agent: &str, job: JobId) -> Option<DateTime<Utc>> {
    let list = api.agents().await.ok()?;
    list.agents
        .iter()
        .find(|a| a.id == agent)?
        .leases
        .iter()
        .find(|l| l.job_id == job)
        .map(|l| l.expires_at)
}

/// Follow the lease of `agent` on `job` until the controller no longer lists
/// it; returns the last deadline seen (frozen once heartbeats stop arriving).
async fn last_deadline(api: &Api, agent: &str, job: JobId) -> DateTime<Utc> {
    let end = Instant::now() + WAIT;
    let mut last = None;
    loop {
        match listed_deadline(api, agent, job).await {
            Some(d) => last = Some(d),
            None if last.is_some() => break,
            None => {}
        }
        assert!(Instant::now() < end, "the lease of {agent} never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    last.expect("seen")
}

/// `(pid, time)` lines the loop script appended.
fn marks(path: &Path) -> Vec<(i32, DateTime<Utc>)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (pid, ns) = l.split_once(' ')?;
            Some((
                pid.parse().ok()?,
                DateTime::from_timestamp_nanos(ns.parse().ok()?),
            ))
        })
        .collect()
}

async fn wait_log(c: &mut Cluster, agent: &str, needle: &str) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let log = c.agent(agent).log_text();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < end,
            "{agent} never logged {needle:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until the controller has seen `agent` after `t` (its calls get through again).
async fn wait_seen_after(c: &Cluster, agent: &str, t: DateTime<Utc>) {
    let end = Instant::now() + WAIT;
    loop {
        let seen = c
            .api
            .agents()
            .await
            .ok()
            .and_then(|l| l.agents.into_iter().find(|a| a.id == agent))
            .is_some_and(|a| a.last_seen > t);
        if seen {
            return;
        }
        assert!(
            Instant::now() < end,
            "{agent} never reached the controller again\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start agent `direct` (not behind the proxy) and wait until it polls.
async fn add_direct_agent(c: &mut Cluster, extra: &str) {
    c.add_agent(opts("direct", extra))
        .await
        .expect("direct agent");
    c.wait_agents_online().await.expect("online");
}

fn successes(j: &JobView) -> usize {
    j.attempts
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_agent_fences_before_the_controller_deadline_and_another_finishes() {
    let (mut c, proxy) = setup().await;
    add_cut_agent(&mut c, &proxy, "").await;
    let file = c.path("marks");
    let script = format!(
        "end=$(( $(date +%s) + 7 )); while [ $(date +%s) -lt $end ]; do echo \"$$ $(date +%s%N)\" >> {f}; sleep 0.05; done; echo finished",
        f = file.display()
    );
    let job = c
        .api
        .submit(json!({
            "group": "default",
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
            "lease_ttl_ms": TTL_MS,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
        }))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    assert_eq!(holder, "cut");
    let end = Instant::now() + WAIT;
    while marks(&file).is_empty() {
        assert!(Instant::now() < end, "the job never started appending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other agent is polling before the partition begins.
    add_direct_agent(&mut c, "").await;
    // A heartbeat or two gets through first, then the partition.
    tokio::time::sleep(Duration::from_millis(TTL_MS / 2)).await;
    proxy.black_hole();
    let deadline = last_deadline(&c.api, "cut", job.id).await;

    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts.len(), 2, "{:#?}", done.attempts);
    assert_eq!(done.attempts[0].agent_id, "cut");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(done.attempts[1].agent_id, "direct");
    assert_eq!(successes(&done), 1);
    let takeover = done.attempts[1].started_at;

    let all = marks(&file);
    let cut_pid = all[0].0;
    let cut_last = all
        .iter()
        .filter(|(p, _)| *p == cut_pid)
        .map(|(_, t)| *t)
        .max()
        .expect("cut marks");
    let margin = deadline - cut_last;
    eprintln!(
        "cut-off agent: last append {cut_last}, controller deadline {deadline} \
         (margin {} ms), takeover at {takeover}",
        margin.num_milliseconds()
    );
    assert!(
        cut_last < deadline,
        "the cut-off agent's work appended at {cut_last}, after the controller's deadline {deadline}\n{}",
        c.logs()
    );
    assert!(
        cut_last < takeover,
        "the old work overlapped the new holder"
    );
    assert!(!pid_alive(cut_pid), "the fenced command is gone");
    let log = c.agent("cut").log_text();
    let fence_line = log
        .lines()
        .find(|l| {
            l.contains("Lease lost, stopping job")
                && l.contains(&format!("job_id={}", job.id))
                && l.contains("no renewal before the lease deadline")
        })
        .unwrap_or_else(|| panic!("the cut-off agent did not fence on its clock\n{log}"));
    // The agent logs the fence, then SIGKILLs the command's process group.
    let fenced_at: DateTime<Utc> = fence_line
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .expect("log timestamp");
    eprintln!(
        "cut-off agent fenced at {fenced_at}, {} us before the controller's deadline",
        (deadline - fenced_at)
            .num_microseconds()
            .unwrap_or_default()
    );
    assert!(
        fenced_at < takeover,
        "the agent fenced at {fenced_at}, after the job was re-granted at {takeover}"
    );
    // The agent's deadline is the controller's minus a margin (TTL/10, at
    // most 1 s): it fences before the controller's deadline, not at it.
    assert!(
        fenced_at < deadline,
        "the agent fenced at {fenced_at}, not before the controller's deadline {deadline}"
    );
    assert!(
        all.iter().any(|(p, _)| *p != cut_pid),
        "the new holder ran the work"
    );

    // Heal: the cut-off agent talks to the controller again, and never completes the job.
    let healed = Utc::now();
    proxy.pass();
    wait_seen_after(&c, "cut", healed).await;
    let after = c.api.job(job.id).await.expect("job");
    assert_eq!(after.attempts.len(), 2);
    assert_eq!(successes(&after), 1);
    let log = c.agent("cut").log_text();
    assert!(
        !log.lines().any(
            |l| l.contains("Completion delivered") && l.contains(&format!("job_id={}", job.id))
        ),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_parked_during_the_partition_is_refused_409_after_healing() {
    let (mut c, proxy) = setup().await;
    add_cut_agent(&mut c, &proxy, "").await;
    let file = c.path("ends");
    let script = format!("sleep 1; echo end >> {}; echo finished", file.display());
    let job = c
        .api
        .submit(json!({
            "group": "default",
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", script]},
            "lease_ttl_ms": TTL_MS,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
        }))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    assert_eq!(holder, "cut");
    proxy.black_hole();
    // The work ends before the lease does: its completion waits in the outbox.
    wait_log(&mut c, "cut", "Job finished").await;
    let end = Instant::now() + WAIT;
    while c.agent("cut").outbox_len() != 1 {
        assert!(Instant::now() < end, "no completion parked\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    add_direct_agent(&mut c, "").await;
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(done.attempts[1].agent_id, "direct");

    proxy.pass();
    let log = wait_log(&mut c, "cut", "Dropped completion: lease lost").await;
    assert!(
        log.lines()
            .any(|l| l.contains("Dropped completion: lease lost")
                && l.contains(&format!("job_id={}", job.id))),
        "{log}"
    );
    let after = c.api.job(job.id).await.expect("job");
    assert_eq!(after.attempts.len(), 2, "{:#?}", after.attempts);
    assert_eq!(
        successes(&after),
        1,
        "the refused completion is not a success"
    );
    assert_eq!(
        after.attempts[0].outcome,
        Some(AttemptOutcome::LeaseExpired)
    );
    // The agent logs the refusal, then removes the file.
    let end = Instant::now() + WAIT;
    while c.agent("cut").outbox_len() != 0 {
        assert!(
            Instant::now() < end,
            "the refused completion is dropped\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Without a ledger a command job runs again (at-least-once): both runs ended.
    let ends = std::fs::read_to_string(&file).unwrap_or_default();
    assert_eq!(ends.lines().filter(|l| *l == "end").count(), 2);
}

/// The non-transactional span table and the procedure: a start row that
/// counts the other active sessions of the same user — not the agent's kill
/// helper (its `KILL` statements, its processlist probe for the session it
/// killed, its connection being torn down as `Killed`: both seen failing
/// this check) — and names them in `who`, a tick row every
/// 0.2 s (a procedure goes on after `KILL QUERY`), the effect, an end row.
const DB_SETUP: &str =
    "CREATE TABLE spans (id INT AUTO_INCREMENT PRIMARY KEY, conn BIGINT, ev VARCHAR(8),
       t DATETIME(6), others INT, who VARCHAR(1024)) ENGINE=MyISAM
     //
     CREATE TABLE effects (id INT AUTO_INCREMENT PRIMARY KEY, conn BIGINT) ENGINE=InnoDB
     //
     CREATE PROCEDURE work(IN secs INT) SQL SECURITY INVOKER
     BEGIN
       DECLARE i INT DEFAULT 0;
       INSERT INTO spans (conn, ev, t, others, who)
         SELECT CONNECTION_ID(), 'start', UTC_TIMESTAMP(6), COUNT(*), GROUP_CONCAT(CONCAT(ID, ':', COMMAND, ':', COALESCE(STATE, ''), ':', LEFT(COALESCE(INFO, ''), 60)) SEPARATOR ' | ') FROM information_schema.PROCESSLIST
         WHERE USER = SUBSTRING_INDEX(USER(), '@', 1) AND ID <> CONNECTION_ID()
           AND COMMAND NOT IN ('Sleep', 'Killed') AND COALESCE(INFO, '') NOT LIKE 'KILL%'
           AND COALESCE(INFO, '') NOT LIKE '%information_schema.PROCESSLIST%';
       WHILE i < secs * 5 DO
         DO SLEEP(0.2);
         INSERT INTO spans (conn, ev, t, others) VALUES (CONNECTION_ID(), 'tick', UTC_TIMESTAMP(6), 0);
         SET i = i + 1;
       END WHILE;
       INSERT INTO effects (conn) VALUES (CONNECTION_ID());
       INSERT INTO spans (conn, ev, t, others) VALUES (CONNECTION_ID(), 'end', UTC_TIMESTAMP(6), 0);
     END";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_db_lock_the_new_holder_never_overlaps_the_cut_off_one() {
    baton_tests::require_mariadb!();
    let mdb: &'static MariaDb = mariadb::server().await.expect(mariadb::INSTALL_HINT);
    let db = mdb.create_database("part").expect("database");
    mdb.sql(Some(&db), &format!("DELIMITER //\n{DB_SETUP}\n//"))
        .expect("setup sql");
    let (user, password) = mdb.create_user(&db, &["ALL"]).expect("user");
    let secrets = tempfile::Builder::new()
        .prefix("baton-part-secrets-")
        .tempdir()
        .expect("tmp");
    let pw = secrets.path().join("main.password");
    mariadb::write_password_file(&pw, &password).expect("password file");
    let conn = mdb.connection_toml("main", &db, &user, &pw);

    let (mut c, proxy) = setup().await;
    add_cut_agent(&mut c, &proxy, &conn).await;
    let job = c
        .api
        .submit(json!({
            "group": "default",
            "spec": {"kind": "procedure", "connection": "main", "procedure": "work",
                     "params": [{"name": "secs", "value": {"type": "int", "value": 6}}],
                     "exactly_once": true},
            "lease_ttl_ms": TTL_MS,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 0, "jitter": 0.0}
        }))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    assert_eq!(holder, "cut");
    // The other agent polls before the partition: it is granted the job as
    // soon as the lease expires, while the cut-off session still works.
    add_direct_agent(&mut c, &conn).await;
    let rows = |sql: &str| mdb.sql(Some(&db), sql).expect("query");
    let end = Instant::now() + WAIT;
    while rows("SELECT COUNT(*) FROM spans WHERE ev = 'tick'").trim() == "0" {
        assert!(
            Instant::now() < end,
            "the procedure never ticked\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.black_hole();
    let deadline = last_deadline(&c.api, "cut", job.id).await;
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{done:#?}\n{}", c.logs());
    assert_eq!(done.attempts[0].agent_id, "cut");
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::LeaseExpired));
    assert_eq!(successes(&done), 1);

    // One session per attempt that reached the work: (conn, first, last, others at start).
    let spans = rows(
        "SELECT conn, MIN(t), MAX(t), MAX(CASE WHEN ev = 'start' THEN others END), \
         SUM(ev = 'end') FROM spans GROUP BY conn ORDER BY MIN(t)",
    );
    let sessions: Vec<Vec<String>> = spans
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect();
    eprintln!("sessions (conn, first, last, others at start, ended):\n{spans}");
    eprintln!("controller deadline of the cut-off lease: {deadline}");
    assert!(sessions.len() >= 2, "{spans}");
    for pair in sessions.windows(2) {
        assert!(
            pair[0][2] < pair[1][1],
            "session {} still worked at {} when session {} began at {}",
            pair[0][0],
            pair[0][2],
            pair[1][0],
            pair[1][1]
        );
    }
    for s in &sessions[1..] {
        assert_eq!(
            s[3],
            "0",
            "another session of the job was active at start: {spans}\n{}",
            rows("SELECT conn, who FROM spans WHERE ev = 'start'")
        );
    }
    assert_eq!(
        sessions[0][4], "0",
        "the cut-off session never finished the work"
    );
    // The new holder was granted while the old session still worked (a
    // procedure goes on after KILL QUERY until the agent's KILL CONNECTION):
    // only the lock kept them apart.
    let old_last = chrono::NaiveDateTime::parse_from_str(&sessions[0][2], "%Y-%m-%d %H:%M:%S%.f")
        .expect("timestamp")
        .and_utc();
    let regrant = done.attempts[1].started_at;
    eprintln!(
        "old session worked until {old_last} ({} ms past the controller's deadline); \
         the job was re-granted at {regrant}",
        (old_last - deadline).num_milliseconds()
    );
    assert!(
        regrant < old_last,
        "re-granted at {regrant}, after the old session ended at {old_last}: the lock was not needed"
    );
    assert_eq!(
        rows("SELECT COUNT(*) FROM effects").trim(),
        "1",
        "the effect happened once"
    );
    let last = sessions.last().expect("a session");
    assert_eq!(
        rows("SELECT conn FROM effects").trim(),
        last[0],
        "by the last holder"
    );
    assert_eq!(
        rows(&format!(
            "SELECT COUNT(*) FROM baton_ledger WHERE job_id = {}",
            job.id
        ))
        .trim(),
        "1"
    );
    let healed = Utc::now();
    proxy.pass();
    wait_seen_after(&c, "cut", healed).await;
    let after = c.api.job(job.id).await.expect("job");
    assert_eq!(successes(&after), 1);
    drop(secrets);
}
