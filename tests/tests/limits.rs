//! The controller's HTTP boundary against a real controller and agent:
//! strangers' connections and bodies are bounded, lists and values are
//! bounded, every error is the JSON error body naming the field.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use baton_proto::{ErrorBody, ErrorCode, JobList, JobState, JobView};
use baton_tests::api::{Api, Raw};
use baton_tests::cluster::Cluster;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);

/// What a raw connection got: the status and JSON body of the first
/// answer, and how long after the request began the server closed it
/// (`None`: still open when we gave up).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    closed_after: Option<Duration>,
}

impl Answer {
    fn code(&self) -> Option<ErrorCode> {
        serde_json::from_value::<ErrorBody>(self.body.clone())
            .ok()
            .map(|e| e.error.code)
    }
}

/// How a raw request sends its body.
#[derive(Debug, Clone, Copy)]
enum Body {
    /// Declares `len` bytes, sends one every `every`.
    Trickle { len: usize, every: Duration },
    /// Declares `len` bytes and sends them all at once.
    Full { len: usize },
    /// Chunked, `len` bytes in 64 KiB chunks.
    Chunked { len: usize },
}

/// Send `POST path` over a plain TCP connection and read until the server
/// closes it (at most `give_up`).
async fn raw_post(addr: SocketAddr, path: &str, body: Body, give_up: Duration) -> Answer {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let framing = match body {
        Body::Trickle { len, .. } | Body::Full { len } => format!("Content-Length: {len}"),
        Body::Chunked { .. } => "Transfer-Encoding: chunked".to_owned(),
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: baton\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    );
    wr.write_all(head.as_bytes()).await.expect("head");
    // Write errors are expected: the server may close before the body is sent.
    let writer = tokio::spawn(async move {
        match body {
            Body::Trickle { len, every } => {
                for _ in 0..len {
                    if wr.write_all(b" ").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }
            Body::Full { len } => {
                let chunk = vec![b' '; 64 << 10];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if wr.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            }
            Body::Chunked { len } => {
                let chunk = vec![b' '; 64 << 10];
                let mut left = len;
                while left > 0 {
                    let n = left.min(chunk.len());
                    let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                    if wr.write_all(&framed).await.is_err() {
                        return;
                    }
                    left -= n;
                }
                let _ = wr.write_all(b"0\r\n\r\n").await;
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    let closed_after = loop {
        match tokio::time::timeout_at((start + give_up).into(), rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) | Ok(Err(_)) => break Some(start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    };
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Answer {
        status,
        body,
        closed_after,
    }
}

/// Resident and peak resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn command(args: &[&str]) -> Value {
    json!({"group": "default", "spec": {"kind": "command", "program": "/bin/echo", "args": args},
           "allow_unplaced": true})
}

async fn send(api: &Api, method: Method, path: &str, body: Option<Value>) -> Raw {
    api.raw(
        method,
        path,
        body.map(|b| serde_json::to_vec(&b).expect("json")),
        &[],
    )
    .await
    .expect("request")
}

fn field(r: &Raw) -> Option<String> {
    r.error().and_then(|e| e.error.field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_are_cut_at_the_read_timeout_and_strangers_are_bounded_per_address() {
    let c = Cluster::start_with(
        1,
        "body_read_timeout = \"2s\"\nmax_unauthenticated_per_address = 8\nenroll_per_minute = 1000",
        |_| {},
    )
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let addr = c.controller.addr;
    let every = Duration::from_millis(200);
    let flood: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(raw_post(
                addr,
                "/v1/agents/enroll",
                Body::Trickle { len: 1000, every },
                Duration::from_secs(30),
            ))
        })
        .collect();
    // Meanwhile the agent's held polls go on: a job runs.
    let job = c
        .api
        .submit(command(&["during the flood"]))
        .await
        .expect("job");
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    let mut timed_out = 0;
    for task in flood {
        let a = task.await.expect("task");
        // Nobody keeps a connection: cut at the 2 s timeout (with a sane
        // tolerance), or refused at once past the per-address limit.
        let closed = a.closed_after.expect("the server closed the connection");
        assert!(closed < Duration::from_secs(7), "{a:?}");
        match a.status {
            408 => {
                assert_eq!(a.code(), Some(ErrorCode::RequestTimeout), "{a:?}");
                assert!(closed >= Duration::from_millis(1900), "{a:?}");
                timed_out += 1;
            }
            429 => assert_eq!(a.code(), Some(ErrorCode::RateLimited), "{a:?}"),
            _ => panic!("unexpected answer {a:?}"),
        }
    }
    assert!(
        (1..=8).contains(&timed_out),
        "at most 8 admitted from one address, {timed_out} were"
    );
    let metrics = c.api.metrics().await.expect("metrics");
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("baton_unauthenticated_refused_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("metric");
    assert_eq!(refused, 50 - timed_out, "{metrics}");
    // An operator's trickled body is cut too, with the same answer.
    let a = raw_post(
        addr,
        "/v1/jobs",
        Body::Trickle { len: 1000, every },
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        a.status, 401,
        "a stranger is refused before the body: {a:?}"
    );
    assert!(a.closed_after.expect("closed") < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrollment_rate_limit_answers_before_the_body_is_read() {
    let c = Cluster::start_with(0, "enroll_per_minute = 2", |_| {})
        .await
        .expect("cluster");
    let anon = c.api.with_token("");
    for _ in 0..2 {
        let r = send(
            &anon,
            Method::POST,
            "/v1/agents/enroll",
            Some(json!({"token": "baton_enr_bogus", "agent_id": "x"})),
        )
        .await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
    // The third attempt trickles its body (the read timeout is 30 s): the
    // refusal comes at once, without waiting for it.
    let a = raw_post(
        c.controller.addr,
        "/v1/agents/enroll",
        Body::Trickle {
            len: 1000,
            every: Duration::from_millis(200),
        },
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(a.status, 429, "{a:?}");
    assert_eq!(a.code(), Some(ErrorCode::RateLimited));
    assert!(
        a.closed_after.expect("closed") < Duration::from_secs(5),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_big_anonymous_bodies_is_refused_early_and_memory_stays_bounded() {
    let c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let addr = c.controller.addr;
    let pid = c
        .controller
        .proc
        .as_ref()
        .and_then(|p| p.pid())
        .expect("pid")
        .as_raw();
    let (rss_before, _) = rss_kib(pid);
    let big = (4 << 20) - 1;
    let mut flood = Vec::new();
    for i in 0..60 {
        let (path, body) = match i % 4 {
            0 => ("/v1/agents/enroll", Body::Full { len: big }),
            1 => ("/v1/agents/enroll", Body::Chunked { len: big }),
            2 => ("/v1/jobs", Body::Full { len: big }),
            _ => ("/v1/no/such/route", Body::Full { len: big }),
        };
        flood.push(tokio::spawn(raw_post(
            addr,
            path,
            body,
            Duration::from_secs(30),
        )));
    }
    let job = c
        .api
        .submit(command(&["still running"]))
        .await
        .expect("job");
    let mut codes = std::collections::BTreeMap::new();
    for task in flood {
        let a = task.await.expect("task");
        assert!(a.closed_after.is_some(), "connection left open: {a:?}");
        let code = a
            .code()
            .unwrap_or_else(|| panic!("not a JSON error: {a:?}"));
        assert!(
            matches!(
                code,
                ErrorCode::PayloadTooLarge
                    | ErrorCode::RateLimited
                    | ErrorCode::Overloaded
                    | ErrorCode::Unauthorized
                    | ErrorCode::NotFound
            ),
            "{a:?}"
        );
        *codes.entry(format!("{} {code:?}", a.status)).or_insert(0) += 1;
    }
    assert!(
        codes.keys().any(|k| k.starts_with("413")),
        "enrollment bodies over the small limit are refused as too large: {codes:?}"
    );
    let done = c.api.wait_terminal(job.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    // 60 bodies of 4 MiB were offered (240 MiB): nothing like that was kept.
    let (rss_after, peak) = rss_kib(pid);
    eprintln!("answers {codes:?}; RSS {rss_before} KiB -> {rss_after} KiB, peak {peak} KiB");
    assert!(
        peak.saturating_sub(rss_before) < 48 << 10,
        "peak RSS grew from {rss_before} KiB to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_naming_the_field() {
    let c = Cluster::start(0).await.expect("cluster");
    let api = &c.api;
    let job = api.submit(command(&["x"])).await.expect("job");
    let r = send(api, Method::DELETE, "/v1/jobs", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.error().expect("json").error.code,
        ErrorCode::MethodNotAllowed
    );
    for path in [
        "/v1/jobs/+1",
        "/v1/jobs/01",
        "/v1/jobs/-1",
        "/v1/jobs/%FF",
        "/v1/drills/+1",
    ] {
        let r = send(api, Method::GET, path, None).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert_eq!(field(&r).as_deref(), Some("id"), "{path}");
    }
    assert_eq!(job.id, 1);
    let r = send(api, Method::GET, "/v1/jobs/1", None).await;
    assert_eq!(r.status, 200);
    let r = send(api, Method::POST, "/v1/agents/%FF%FE/drain", None).await;
    assert_eq!((r.status.as_u16(), field(&r).as_deref()), (400, Some("id")));
    let r = send(
        api,
        Method::POST,
        "/v1/tokens",
        Some(json!({"name": "x", "role": 5})),
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), field(&r).as_deref()),
        (400, Some("role"))
    );
    let bad_retry = json!({"group": "g", "spec": {"kind": "noop"}, "retry": {"retry_on": [1]}});
    let r = send(api, Method::POST, "/v1/jobs", Some(bad_retry)).await;
    assert_eq!(
        field(&r).as_deref(),
        Some("retry.retry_on[0]"),
        "{:?}",
        r.body
    );
    let bad_mode = json!({"group": "g", "spec": {"kind": "procedure", "connection": "c",
        "procedure": "p", "params": [{"name": "a", "mode": 5, "value": {"type": "null"}}]}});
    let r = send(api, Method::POST, "/v1/jobs", Some(bad_mode)).await;
    assert_eq!(
        field(&r).as_deref(),
        Some("spec.params[0].mode"),
        "{:?}",
        r.body
    );
    // Integers past what is stored.
    for (body, want) in [
        (
            json!({"group": "g", "spec": {"kind": "noop"}, "timeout_ms": u64::MAX}),
            "timeout_ms",
        ),
        (
            json!({"group": "g", "spec": {"kind": "noop"}, "retry": {"max_backoff_ms": u64::MAX}}),
            "retry.max_backoff_ms",
        ),
        (
            json!({"group": "g", "spec": {"kind": "noop"}, "lease_ttl_ms": u64::MAX}),
            "lease_ttl_ms",
        ),
        (
            json!({"group": "g", "spec": {"kind": "noop"}, "priority": i64::MAX}),
            "priority",
        ),
    ] {
        let r = send(api, Method::POST, "/v1/jobs", Some(body)).await;
        assert_eq!(
            (r.status.as_u16(), field(&r).as_deref()),
            (400, Some(want)),
            "{:?}",
            r.body
        );
    }
    let r = api
        .drill_start(json!({"group": "g", "method": "crash", "rto_ms": u64::MAX}))
        .await
        .expect("drill");
    assert_eq!(
        (r.status.as_u16(), field(&r).as_deref()),
        (400, Some("rto_ms")),
        "{:?}",
        r.body
    );
    for (path, want) in [
        ("/v1/jobs?limit=5000", "limit"),
        ("/v1/jobs?limit=abc", "limit"),
        ("/v1/jobs?before=0", "before"),
        ("/v1/jobs?colour=red", "colour"),
        ("/v1/audit?limit=0", "limit"),
        ("/v1/drills?limit=1001", "limit"),
    ] {
        let r = send(api, Method::GET, path, None).await;
        assert_eq!(
            (r.status.as_u16(), field(&r).as_deref()),
            (400, Some(want)),
            "{path}: {:?}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_summaries_and_specs_are_bounded() {
    let c = Cluster::start_with(1, "max_spec_bytes = 300000", |_| {})
        .await
        .expect("cluster");
    c.wait_agents_online().await.expect("online");
    // Two arguments of 100 KB (Linux takes at most 128 KiB per argument).
    let arg = "a".repeat(100_000);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            c.api
                .submit(command(&[&arg, &arg]))
                .await
                .expect("big job")
                .id,
        );
    }
    for id in &ids {
        let done = c.api.wait_terminal(*id, WAIT).await.expect("terminal");
        assert_eq!(done.state, JobState::Succeeded, "{:?}", done.error);
    }
    // A spec past max_spec_bytes is refused naming its largest part: 422,
    // a configured limit the OpenAPI document cannot state.
    let too_big = "b".repeat(300_001);
    let r = send(&c.api, Method::POST, "/v1/jobs", Some(command(&[&too_big]))).await;
    assert_eq!(
        (r.status.as_u16(), field(&r).as_deref()),
        (422, Some("spec.args")),
        "{:?}",
        r.body
    );
    let env = json!({"group": "default", "spec": {"kind": "command", "program": "/bin/true",
        "env": {"A": too_big}}});
    let r = send(&c.api, Method::POST, "/v1/jobs", Some(env)).await;
    assert_eq!(field(&r).as_deref(), Some("spec.env"), "{:?}", r.body);
    // 4 jobs of 200 KB args and 200 KB output: the list holds neither.
    let started = Instant::now();
    let r = send(&c.api, Method::GET, "/v1/jobs?limit=1000", None).await;
    assert_eq!(r.status, 200);
    let bytes = r.body.to_string().len();
    assert!(bytes < 8 << 10, "a list of 4 summaries is {bytes} bytes");
    let list: JobList = serde_json::from_value(r.body).expect("summaries");
    assert_eq!(list.jobs.len(), 4);
    assert_eq!(list.jobs[0].what.as_deref(), Some("/bin/echo"));
    assert_eq!(list.jobs[0].exit_code, Some(0));
    eprintln!(
        "list of 4 big jobs: {bytes} bytes in {:?}",
        started.elapsed()
    );
    // The whole job is one GET away.
    let full: JobView = c.api.job(ids[0]).await.expect("job");
    assert_eq!(full.result.expect("result").stdout.len(), 200_002);
    // batonctl lists them.
    let out = Command::new(baton_tests::proc::bin("batonctl").expect("bin"))
        .args(["list"])
        .env("BATON_URL", c.controller.url())
        .env("BATON_TOKEN", &c.controller.admin_token)
        .output()
        .expect("batonctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("/bin/echo")).count(),
        4,
        "{text}"
    );
}

/// `depth` levels of nested arrays around a number.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_result_data_is_refused_and_batonctl_keeps_listing() {
    let c = Cluster::start(0).await.expect("cluster");
    let api = &c.api;
    let groups = vec!["default".to_owned()];
    let token = api.enrollment_token(&groups).await.expect("token");
    let r = send(
        &api.with_token(""),
        Method::POST,
        "/v1/agents/enroll",
        Some(json!({"token": token, "agent_id": "a1"})),
    )
    .await;
    let secret = r.body["secret"].as_str().expect("secret").to_owned();
    let agent = api.as_agent("a1", &secret);
    let poll = json!({"groups": ["default"], "free_slots": 2, "capabilities": {"kinds": ["noop"]},
        "version": "test", "os": "linux", "wait_ms": 0});
    let j1 = api
        .submit(json!({"group": "default", "spec": {"kind": "noop"}}))
        .await
        .expect("j1")
        .id;
    let j2 = api
        .submit(json!({"group": "default", "spec": {"kind": "noop"}}))
        .await
        .expect("j2")
        .id;
    let r = agent.post("/v1/agents/a1/poll", poll).await.expect("poll");
    let grants = r.body["grants"].as_array().expect("grants").clone();
    assert_eq!(grants.len(), 2, "{:?}", r.body);
    let token_of = |id: i64| {
        grants
            .iter()
            .find(|g| g["job_id"] == id)
            .and_then(|g| g["token"].as_i64())
            .expect("granted")
    };
    let complete = |id: i64, data: Value| json!({"token": token_of(id), "completion": {"outcome": "succeeded"}, "result": {"data": data}});
    let r = agent
        .post(
            &format!("/v1/jobs/{j1}/complete"),
            complete(j1, nested(100)),
        )
        .await
        .expect("complete");
    assert_eq!(
        (r.status.as_u16(), field(&r).as_deref()),
        (400, Some("result.data")),
        "{:?}",
        r.body
    );
    let batch = json!({"completions": [{"job_id": j1, "token": token_of(j1),
        "completion": {"outcome": "succeeded"}, "result": {"data": nested(40)}}]});
    let r = agent
        .post("/v1/agents/a1/complete", batch)
        .await
        .expect("batch");
    assert_eq!(r.body["results"][0]["code"], "bad_request", "{:?}", r.body);
    let r = agent
        .post(&format!("/v1/jobs/{j1}/complete"), complete(j1, nested(32)))
        .await
        .expect("complete");
    assert_eq!(r.status, 200, "32 levels are accepted: {:?}", r.body);
    let r = agent
        .post(&format!("/v1/jobs/{j2}/complete"), complete(j2, nested(20)))
        .await
        .expect("complete");
    assert_eq!(r.status, 200);
    for args in [
        vec!["list".to_owned()],
        vec!["get".to_owned(), j1.to_string()],
    ] {
        let out = Command::new(baton_tests::proc::bin("batonctl").expect("bin"))
            .args(&args)
            .env("BATON_URL", c.controller.url())
            .env("BATON_TOKEN", &c.controller.admin_token)
            .output()
            .expect("batonctl");
        assert_eq!(
            out.status.code(),
            Some(0),
            "batonctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_calls_cannot_grow_the_audit_log_without_bound() {
    let c = Cluster::start(0).await.expect("cluster");
    let anon = c.api.with_token("");
    let long = format!("/{}", "x".repeat(30_000));
    for i in 0..200 {
        let path = if i % 2 == 0 {
            long.as_str()
        } else {
            "/v1/jobs"
        };
        let r = send(&anon, Method::POST, path, Some(json!({}))).await;
        assert!(matches!(r.status.as_u16(), 401 | 404), "{:?}", r.body);
    }
    // A routed path is kept, cut.
    let long_id = format!("/v1/jobs/{}/cancel", "9".repeat(5000));
    let r = send(&anon, Method::POST, &long_id, None).await;
    assert_eq!(r.status, 401);
    let entries = c.api.audit_entries().await.expect("audit");
    let anonymous: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("anonymous"))
        })
        .collect();
    assert!(
        !anonymous.is_empty() && anonymous.len() <= 35,
        "refused anonymous calls are rate-limited in the log: {} rows",
        anonymous.len()
    );
    for e in &anonymous {
        let target = e["target"].as_str().expect("target");
        assert!(
            target.len() <= 260,
            "a row keeps at most ~256 bytes of path: {}",
            target.len()
        );
        assert!(
            !target.contains("xxxx"),
            "unrouted paths are not kept: {target}"
        );
    }
    assert!(
        anonymous
            .iter()
            .any(|e| e["action"] == "POST unrouted" && e["target"] == "unrouted"),
        "{anonymous:#?}"
    );
    let metrics = c.api.metrics().await.expect("metrics");
    let suppressed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("baton_audit_suppressed_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("metric");
    assert!(suppressed >= 170, "{suppressed}");
}
