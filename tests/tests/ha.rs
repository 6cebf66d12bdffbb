//! High availability end to end: several real controller replicas on one
//! PostgreSQL database, real agents knowing every replica, replicas killed
//! with SIGKILL and restarted, and a PostgreSQL primary killed and its
//! synchronous standby promoted under load.
//!
//! These tests need PostgreSQL: the shared server (`BATON_TEST_PG_URL`, which
//! `scripts/test` sets, or one started here) with a fresh database per test;
//! the database failover test starts a primary and a standby of its own. They
//! skip, saying why, without PostgreSQL unless `BATON_TEST_REQUIRE_PG=1`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use baton_proto::{AttemptOutcome, JobId, JobState, JobView};
use baton_tests::api::Api;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::postgres::{self, Pg, PgServer};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// How long a revoke on one replica may take to reach another: the stated
/// bound (ARCHITECTURE: every replica refuses a revoked agent within 2 s, the
/// PostgreSQL auth cache's TTL, even when the NOTIFY is lost) plus 1 s of
/// slack for a loaded machine.
const REVOKE_BOUND: Duration = Duration::from_secs(3);

/// A job that runs `secs` seconds, retried until it succeeds.
fn sleeper(k: usize, secs: f64) -> Value {
    json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", format!("sleep {secs:.2}")]},
        "lease_ttl_ms": 2000,
        "labels": {"ha_k": k.to_string()},
        "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 1000, "jitter": 0.2},
    })
}

/// Submit with an idempotency key, trying the replicas in turn from `first`,
/// until one acknowledges it (2xx). Panics on a refusal (4xx other than 429).
async fn submit_acked(apis: &[Api], first: usize, body: &Value, key: &str) -> JobId {
    let bytes = serde_json::to_vec(body).expect("json");
    let end = Instant::now() + Duration::from_secs(180);
    for i in (0..apis.len()).cycle().skip(first) {
        let r = apis[i]
            .raw(
                Method::POST,
                "/v1/jobs",
                Some(bytes.clone()),
                &[(baton_proto::IDEMPOTENCY_KEY_HEADER, key)],
            )
            .await;
        match r {
            Ok(r) if r.status.is_success() => return r.body["id"].as_i64().expect("job id"),
            Ok(r) if r.status.is_client_error() && r.status != 429 => {
                panic!("submit {key} refused: {} {}", r.status, r.body)
            }
            _ => {}
        }
        assert!(Instant::now() < end, "submit {key} never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!("cycle never ends")
}

/// The job from whichever replica answers.
async fn job_anywhere(apis: &[Api], id: JobId) -> Option<JobView> {
    for a in apis {
        if let Ok(j) = a.job(id).await {
            return Some(j);
        }
    }
    None
}

/// How many of `ids` are not terminal yet (None: no replica answered for one).
async fn unfinished(apis: &[Api], ids: &[JobId]) -> Option<usize> {
    let mut n = 0;
    for id in ids {
        if !job_anywhere(apis, *id).await?.state.is_terminal() {
            n += 1;
        }
    }
    Some(n)
}

/// Jobs running now, as the first replica that answers sees them.
async fn running_now(apis: &[Api]) -> usize {
    for a in apis {
        if let Ok(r) = a
            .raw(Method::GET, "/v1/jobs?state=running&limit=1000", None, &[])
            .await
            && r.status.is_success()
        {
            return r.body["jobs"].as_array().map_or(0, Vec::len);
        }
    }
    0
}

/// `key=<number>` from a log line: a field of the line or of its span.
fn field(line: &str, key: &str) -> Option<i64> {
    let at = line
        .find(&format!(" {key}="))
        .or_else(|| line.find(&format!("{{{key}=")))?
        + key.len()
        + 2;
    let rest = &line[at..];
    let end = rest
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What the agents' logs say: (job, token) → agents that were granted it,
/// and → agents whose completion the controller accepted as `succeeded`.
#[derive(Debug, Default)]
struct AgentEvidence {
    granted: HashMap<(i64, i64), Vec<String>>,
    delivered: HashMap<(i64, i64), Vec<String>>,
}

fn agent_evidence(c: &HaCluster) -> AgentEvidence {
    let mut ev = AgentEvidence::default();
    for a in &c.agents {
        for line in a.log_text().lines() {
            let (Some(job), Some(token)) = (field(line, "job_id"), field(line, "token")) else {
                continue;
            };
            let id = a.opts.id.clone();
            if line.contains("Lease granted") {
                ev.granted.entry((job, token)).or_default().push(id);
            } else if line.contains("Completion delivered") && line.contains("state=succeeded") {
                ev.delivered.entry((job, token)).or_default().push(id);
            }
        }
    }
    ev
}

/// Every violation of "ends once, no stale-token success, no token issued
/// twice, no acknowledged completion lost" for one job.
fn check_job(j: &JobView, ev: &AgentEvidence, out: &mut Vec<String>) {
    let id = j.id;
    if j.state != JobState::Succeeded {
        out.push(format!("job {id} ended {}: {:?}", j.state, j.error));
    }
    let mut by_number = j.attempts.clone();
    by_number.sort_by_key(|a| a.number);
    for w in by_number.windows(2) {
        if w[1].token <= w[0].token {
            out.push(format!(
                "job {id}: attempt {} has token {} after attempt {}'s {}",
                w[1].number, w[1].token, w[0].number, w[0].token
            ));
        }
    }
    let wins: Vec<_> = j
        .attempts
        .iter()
        .filter(|a| a.outcome == Some(AttemptOutcome::Succeeded))
        .collect();
    if wins.len() != 1 {
        out.push(format!("job {id}: {} successful attempts", wins.len()));
    }
    let last = j.attempts.iter().map(|a| a.token).max();
    for w in &wins {
        if Some(w.token) != last {
            out.push(format!(
                "job {id}: success on token {} but a later token {last:?} exists",
                w.token
            ));
        }
    }
    let recorded: HashMap<i64, &str> = j
        .attempts
        .iter()
        .map(|a| (a.token, a.agent_id.as_str()))
        .collect();
    for ((job, token), agents) in ev.granted.iter().filter(|((job, _), _)| *job == id) {
        let distinct: HashSet<&String> = agents.iter().collect();
        if distinct.len() > 1 {
            out.push(format!("job {job}: token {token} granted to {distinct:?}"));
        }
        if !agents
            .iter()
            .any(|a| recorded.get(token) == Some(&a.as_str()))
        {
            out.push(format!(
                "job {job}: token {token} granted to {agents:?} is not a recorded attempt (lost, so a later grant could reuse it)"
            ));
        }
    }
    for ((job, token), agents) in ev.delivered.iter().filter(|((job, _), _)| *job == id) {
        let ok = j
            .attempts
            .iter()
            .any(|a| a.token == *token && a.outcome == Some(AttemptOutcome::Succeeded));
        if !ok {
            out.push(format!(
                "job {job}: the completion of token {token} by {agents:?} was acknowledged, then lost"
            ));
        }
    }
}

/// Check every acknowledged job (and that nothing else was made).
async fn check_all(c: &HaCluster, apis: &[Api], ids: &BTreeMap<usize, JobId>) {
    let ev = agent_evidence(c);
    let mut violations = Vec::new();
    let mut attempts = 0;
    for (k, id) in ids {
        match job_anywhere(apis, *id).await {
            Some(j) => {
                attempts += j.attempts.len();
                check_job(&j, &ev, &mut violations);
            }
            None => violations.push(format!("acknowledged job {id} (k={k}) is lost")),
        }
    }
    let listed = apis[0]
        .raw(Method::GET, "/v1/jobs?limit=1000", None, &[])
        .await
        .expect("list");
    let n = listed.body["jobs"].as_array().map_or(0, Vec::len);
    if n != ids.len() {
        violations.push(format!(
            "{n} jobs exist for {} acknowledged submissions",
            ids.len()
        ));
    }
    println!(
        "ha: {} jobs, {attempts} attempts, {} grants and {} deliveries in agent logs",
        ids.len(),
        ev.granted.len(),
        ev.delivered.len()
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n{}",
        violations.len(),
        violations.join("\n"),
        c.logs()
    );
}

/// Submit `bodies` (idempotently, spread over the replicas, 8 at a time) in a task.
fn spawn_submitter(
    apis: Vec<Api>,
    bodies: Vec<Value>,
    tag: &'static str,
) -> tokio::task::JoinHandle<BTreeMap<usize, JobId>> {
    tokio::spawn(async move {
        let mut ids = BTreeMap::new();
        for (n, chunk) in bodies.chunks(8).enumerate() {
            let mut set = tokio::task::JoinSet::new();
            for (j, body) in chunk.iter().cloned().enumerate() {
                let apis = apis.clone();
                let k = n * 8 + j;
                set.spawn(async move {
                    let key = format!("{tag}-{k}");
                    (k, submit_acked(&apis, k, &body, &key).await)
                });
            }
            while let Some(r) = set.join_next().await {
                let (k, id) = r.expect("submit task");
                ids.insert(k, id);
            }
        }
        ids
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_kills_mid_jobs_lose_nothing_and_run_nothing_twice() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let mut c = HaCluster::start_in(pg, 3, 3, HaOpts::default(), |o| o.slots = 2)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let apis: Vec<Api> = (0..3).map(|i| c.api(i)).collect();
    let jobs = 60;
    let bodies: Vec<Value> = (0..jobs)
        .map(|k| sleeper(k, 0.5 + (k % 7) as f64 * 0.25))
        .collect();
    let mut submitter = Some(spawn_submitter(apis.clone(), bodies, "kills"));
    let mut ids: Option<BTreeMap<usize, JobId>> = None;
    let (mut kills, mut victim) = (0usize, 0usize);
    let mut running_at_kill = Vec::new();
    let started = Instant::now();
    loop {
        // One replica down at a time: kill, leave it down a little, restart.
        tokio::time::sleep(Duration::from_millis(1200 + rand::random_range(0..800))).await;
        running_at_kill.push(running_now(&apis).await);
        c.kill9(victim);
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rand::random_range(300..1200))).await;
        c.restart(victim)
            .await
            .unwrap_or_else(|e| panic!("restart ctl-{victim}: {e:#}\n{}", c.logs()));
        victim = (victim + 1 + rand::random_range(0..2)) % 3;
        if let Some(t) = submitter.take_if(|t| t.is_finished()) {
            ids = Some(t.await.expect("submitter"));
        }
        if let Some(ids) = &ids {
            let list: Vec<JobId> = ids.values().copied().collect();
            if kills >= 5 && unfinished(&apis, &list).await == Some(0) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "jobs not finished after {kills} replica kills\n{}",
            c.logs()
        );
    }
    println!(
        "ha: {kills} replica kills in {:.1?}, jobs running at each: {running_at_kill:?}",
        started.elapsed()
    );
    assert!(
        running_at_kill.iter().filter(|n| **n > 0).count() >= 3,
        "at least 3 kills mid-jobs: {running_at_kill:?}"
    );
    // Completions parked in outboxes drain; late, stale ones must be refused.
    let end = Instant::now() + Duration::from_secs(30);
    while c.agents.iter().any(|a| a.outbox_len() > 0) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ids = ids.expect("submitted");
    assert_eq!(ids.len(), jobs);
    // A retried submission is the same job, on any replica.
    let again = submit_acked(&apis, 2, &sleeper(0, 0.5), "kills-0").await;
    assert_eq!(
        Some(&again),
        ids.get(&0),
        "the idempotency key maps to the job"
    );
    check_all(&c, &apis, &ids).await;
}

/// Enroll `id` through replica `api` (an HTTP call, as an agent does); returns its secret.
async fn enroll(api: &Api, id: &str) -> String {
    let token = api
        .enrollment_token(&["default".to_owned()])
        .await
        .expect("enrollment token");
    let r = api
        .with_token("")
        .raw(
            Method::POST,
            "/v1/agents/enroll",
            Some(serde_json::to_vec(&json!({"token": token, "agent_id": id})).expect("json")),
            &[],
        )
        .await
        .expect("enroll");
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["secret"].as_str().expect("secret").to_owned()
}

async fn poll_status(api: &Api, id: &str, secret: &str) -> u16 {
    let body = json!({"groups": ["default"], "free_slots": 1,
                      "capabilities": {"kinds": ["noop", "command"]},
                      "version": "test", "os": "linux", "wait_ms": 0});
    api.with_token(secret)
        .raw(
            Method::POST,
            &format!("/v1/agents/{id}/poll"),
            Some(serde_json::to_vec(&body).expect("json")),
            &[],
        )
        .await
        .expect("poll")
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_on_one_replica_refuses_the_agent_on_another() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let c = HaCluster::start(2, 0, pg).await.expect("cluster");
    let (a, b) = (c.api(0), c.api(1));
    // Enrolled on A, known on B (the identity is in the shared database);
    // B has checked the secret, so a per-replica cache would hold it.
    let secret = enroll(&a, "edge-1").await;
    for _ in 0..3 {
        assert_eq!(
            poll_status(&b, "edge-1", &secret).await,
            200,
            "{}",
            c.logs()
        );
    }
    let r = a
        .raw(Method::POST, "/v1/agents/edge-1/revoke", None, &[])
        .await
        .expect("revoke");
    assert!(r.status.is_success(), "revoke: {} {}", r.status, r.body);
    let revoked = Instant::now();
    let refused = loop {
        let s = poll_status(&b, "edge-1", &secret).await;
        if s == 401 || s == 403 {
            break revoked.elapsed();
        }
        assert_eq!(s, 200, "a poll answers 200 or a refusal");
        assert!(
            revoked.elapsed() < REVOKE_BOUND,
            "replica B still accepts the agent {:?} after the revoke on A\n{}",
            revoked.elapsed(),
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("ha: replica B refused the revoked agent {refused:.1?} after the revoke on A");
    let s = poll_status(&a, "edge-1", &secret).await;
    assert!(s == 401 || s == 403, "and A refuses it: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_per_occurrence_on_three_replicas() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let mut c = HaCluster::start(3, 1, pg).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let api = c.api(0);
    api.create_schedule(json!({
        "name": "every-second", "group": "default", "cron": "* * * * * *", "tz": "UTC",
        "job": {"spec": {"kind": "noop", "sleep_ms": 0}, "retry": {"max_attempts": 1}},
    }))
    .await
    .expect("create");
    // Every replica runs the timer; one of them is killed and restarted too.
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.kill9(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart(1).await.expect("restart ctl-1");
    tokio::time::sleep(Duration::from_secs(4)).await;
    api.schedule_op("every-second", "pause")
        .await
        .expect("pause");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let h = c.api(2).history("every-second").await.expect("history");
    let mut per_nominal: BTreeMap<i64, usize> = BTreeMap::new();
    for o in &h {
        *per_nominal
            .entry(o.nominal_at.timestamp_millis())
            .or_insert(0) += 1;
    }
    let dup: Vec<_> = per_nominal.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dup.is_empty(),
        "two history rows for one nominal time: {dup:?}\n{h:#?}"
    );
    let fired: Vec<_> = h.iter().filter_map(|o| o.job_id).collect();
    assert!(
        fired.len() >= 6,
        "it fired {} times in 10 s: {h:#?}",
        fired.len()
    );
    // The database: one job per (schedule, nominal time), whoever fired it.
    let store = Pg::new(&c.store_url).expect("psql");
    let dups = store
        .sql(
            None,
            "SELECT schedule_id, nominal_at, COUNT(*) FROM jobs \
             WHERE schedule_id IS NOT NULL AND run_id IS NULL GROUP BY 1, 2 HAVING COUNT(*) > 1",
        )
        .expect("duplicate query");
    assert_eq!(
        dups.trim(),
        "",
        "nominal times with two jobs (schedule|nominal|n)"
    );
    let jobs = store
        .sql(
            None,
            "SELECT COUNT(*) FROM jobs WHERE schedule_id IS NOT NULL",
        )
        .expect("count");
    assert_eq!(
        jobs.trim().parse::<usize>().expect("count"),
        fired.len(),
        "one job per fired occurrence"
    );
    println!(
        "ha: {} occurrences fired by three replicas, none twice",
        fired.len()
    );
}

/// A noop job of `ms` milliseconds, retried until it succeeds.
fn noop(k: usize, ms: u64) -> Value {
    json!({
        "group": "default",
        "spec": {"kind": "noop", "sleep_ms": ms},
        "lease_ttl_ms": 2000,
        "labels": {"ha_k": k.to_string()},
        "retry": {"max_attempts": 100, "initial_backoff_ms": 100, "max_backoff_ms": 1000, "jitter": 0.2},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn primary_kill_and_standby_promotion_lose_nothing_acknowledged() {
    baton_tests::require_postgres!(own);
    let primary = tokio::task::spawn_blocking(PgServer::start)
        .await
        .expect("join")
        .expect("primary");
    let db = primary.pg.create_database("ha_failover").expect("db");
    let standby =
        tokio::task::block_in_place(|| primary.standby("s", true)).expect("synchronous standby");
    // Both hosts; libpq semantics: the first that accepts writes.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let c = HaCluster::start_with(2, 3, &url, HaOpts::default(), |o| o.slots = 2)
        .await
        .unwrap_or_else(|e| panic!("cluster on {url}: {e:#}"));
    c.wait_agents_online().await.expect("online");
    let apis: Vec<Api> = (0..2).map(|i| c.api(i)).collect();
    let jobs = 150;
    let bodies: Vec<Value> = (0..jobs)
        .map(|k| noop(k, 100 + (k % 5) as u64 * 100))
        .collect();
    let submitter = spawn_submitter(apis.clone(), bodies, "failover");
    // Under load: some jobs done, some running, submissions still coming.
    let end = Instant::now() + WAIT;
    loop {
        let done = apis[0]
            .raw(
                Method::GET,
                "/v1/jobs?state=succeeded&limit=1000",
                None,
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.body["jobs"].as_array().map(Vec::len))
            .unwrap_or(0);
        if done >= 20 {
            break;
        }
        assert!(
            Instant::now() < end,
            "no load before the failover\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = running_now(&apis).await;
    assert!(running > 0, "jobs are running when the primary dies");
    primary.kill9().expect("kill -9 the primary");
    let killed = Instant::now();
    tokio::task::block_in_place(|| standby.promote()).expect("promote the standby");
    println!(
        "ha: primary killed with {running} jobs running, standby promoted in {:.1?}",
        killed.elapsed()
    );
    let ids = tokio::time::timeout(Duration::from_secs(240), submitter)
        .await
        .unwrap_or_else(|_| panic!("submissions never all acknowledged\n{}", c.logs()))
        .expect("submitter");
    let list: Vec<JobId> = ids.values().copied().collect();
    let end = Instant::now() + Duration::from_secs(120);
    while unfinished(&apis, &list).await != Some(0) {
        assert!(
            Instant::now() < end,
            "jobs not finished after the failover\n{}\n== new primary ==\n{}",
            c.logs(),
            standby.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = Instant::now() + Duration::from_secs(30);
    while c.agents.iter().any(|a| a.outbox_len() > 0) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "ha: every job ended {:.1?} after the primary's kill",
        killed.elapsed()
    );
    check_all(&c, &apis, &ids).await;
    drop(c);
    drop(standby);
    drop(primary);
}

/// `/readyz` of `api` answers 200 within `within`.
async fn answers_ready(api: &Api, within: Duration) -> bool {
    tokio::time::timeout(within, api.raw(Method::GET, "/readyz", None, &[]))
        .await
        .is_ok_and(|r| r.is_ok_and(|r| r.status == 200))
}

/// Wait until every job of `ids` ended and the agents' outboxes drained.
async fn wait_all_ended(c: &HaCluster, apis: &[Api], ids: &BTreeMap<usize, JobId>) {
    let list: Vec<JobId> = ids.values().copied().collect();
    let end = Instant::now() + Duration::from_secs(120);
    while unfinished(apis, &list).await != Some(0) {
        assert!(Instant::now() < end, "jobs not finished\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = Instant::now() + Duration::from_secs(30);
    while c.agents.iter().any(|a| a.outbox_len() > 0) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_of_a_replica_mid_load_reloads_its_log_level_and_loses_nothing() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let opts = HaOpts {
        controller_extra: "log_level = \"info,sqlx=warn\"".into(),
        ..HaOpts::default()
    };
    let mut c = HaCluster::start_in(pg, 2, 2, opts, |o| o.slots = 2)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let apis: Vec<Api> = (0..2).map(|i| c.api(i)).collect();
    let bodies: Vec<Value> = (0..40)
        .map(|k| sleeper(k, 0.2 + (k % 4) as f64 * 0.1))
        .collect();
    let submitter = spawn_submitter(apis.clone(), bodies, "hup");
    let pid = c.controllers[0].proc.as_ref().and_then(|p| p.pid());
    let (hups, change_at) = (24, 12);
    let mut debug_before = 0;
    for n in 0..hups {
        if n == change_at {
            // The reloadable setting: DEBUG logs "Request answered" for
            // every call (INFO only for refusals).
            debug_before = c.controllers[0].log_text().matches(" DEBUG ").count();
            let cfg = &c.controllers[0].config;
            let text = std::fs::read_to_string(cfg).expect("config");
            let tmp = cfg.with_extension("toml.new");
            std::fs::write(&tmp, text.replace("info,sqlx=warn", "debug,sqlx=warn")).expect("write");
            std::fs::rename(&tmp, cfg).expect("rename");
        }
        c.controllers[0]
            .proc
            .as_ref()
            .expect("replica 0")
            .signal(nix::sys::signal::Signal::SIGHUP)
            .expect("SIGHUP");
        assert!(
            answers_ready(&apis[0], Duration::from_secs(10)).await,
            "replica 0 stopped serving after SIGHUP {n}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let ids = tokio::time::timeout(Duration::from_secs(180), submitter)
        .await
        .expect("submissions acknowledged")
        .expect("submitter");
    wait_all_ended(&c, &apis, &ids).await;
    let log = c.controllers[0].log_text();
    assert!(
        c.controllers[0].proc.as_mut().is_some_and(|p| p.running())
            && c.controllers[0].proc.as_ref().and_then(|p| p.pid()) == pid,
        "replica 0 died on SIGHUP\n{log}"
    );
    assert_eq!(
        log.matches("Received SIGHUP; reloaded").count(),
        hups,
        "every SIGHUP reloaded:\n{log}"
    );
    assert_eq!(debug_before, 0, "no DEBUG before the change");
    let debug_after = log.matches(" DEBUG ").count();
    assert!(
        debug_after > 0 && log.contains("debug,sqlx=warn"),
        "the new log level took effect ({debug_after} DEBUG lines):\n{log}"
    );
    check_all(&c, &apis, &ids).await;
    println!(
        "ha: {hups} SIGHUPs of a replica mid-load, {debug_after} DEBUG lines after the change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stopped_longer_than_the_lease_ttl_loses_nothing_and_runs_nothing_twice() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let c = HaCluster::start_in(pg, 2, 3, HaOpts::default(), |o| o.slots = 2)
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let apis: Vec<Api> = (0..2).map(|i| c.api(i)).collect();
    // Leases of 2 s; the replica is stopped 3 TTLs.
    let bodies: Vec<Value> = (0..40)
        .map(|k| sleeper(k, 0.3 + (k % 5) as f64 * 0.2))
        .collect();
    let submitter = spawn_submitter(apis.clone(), bodies, "stop");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = running_now(&apis).await;
    let done_before = done_count(&apis[1]).await;
    let stopped = Instant::now();
    c.controllers[0]
        .proc
        .as_ref()
        .expect("replica 0")
        .signal(nix::sys::signal::Signal::SIGSTOP)
        .expect("SIGSTOP");
    // The other replica serves meanwhile, and work ends through it.
    let mut served = true;
    while stopped.elapsed() < Duration::from_secs(6) {
        served &= answers_ready(&apis[1], Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let done_during = done_count(&apis[1]).await - done_before;
    c.controllers[0]
        .proc
        .as_ref()
        .expect("replica 0")
        .signal(nix::sys::signal::Signal::SIGCONT)
        .expect("SIGCONT");
    assert!(served, "replica 1 kept answering\n{}", c.logs());
    assert!(
        answers_ready(&apis[0], Duration::from_secs(10)).await,
        "replica 0 serves again after SIGCONT\n{}",
        c.logs()
    );
    let ids = tokio::time::timeout(Duration::from_secs(180), submitter)
        .await
        .expect("submissions acknowledged")
        .expect("submitter");
    wait_all_ended(&c, &apis, &ids).await;
    println!(
        "ha: replica 0 stopped 6 s with {running} jobs running; {done_during} jobs ended through replica 1 meanwhile"
    );
    assert!(running > 0, "jobs were running when the replica stopped");
    assert!(
        done_during > 0,
        "work went on through replica 1 while replica 0 was stopped\n{}",
        c.logs()
    );
    check_all(&c, &apis, &ids).await;
}

/// Jobs succeeded so far, as `api` sees them.
async fn done_count(api: &Api) -> usize {
    api.raw(
        Method::GET,
        "/v1/jobs?state=succeeded&limit=1000",
        None,
        &[],
    )
    .await
    .ok()
    .and_then(|r| r.body["jobs"].as_array().map(Vec::len))
    .unwrap_or(0)
}
