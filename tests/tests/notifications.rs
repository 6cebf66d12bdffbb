//! Notifications end to end: a real controller and agent, a webhook
//! receiver on loopback that fails its first answers. A job that fails with
//! its attempts exhausted is delivered once, signed, after the receiver's
//! failures and a `kill -9` of the controller; another group's webhook gets
//! nothing; deliveries are listed by the API and batonctl.

use std::time::{Duration, Instant};

use baton_proto::JobState;
use baton_proto::notify::{DeliveryList, DeliveryState, WebhookBody};
use baton_tests::cluster::Cluster;
use baton_tests::ha::{HaCluster, HaOpts};
use baton_tests::postgres;
use baton_tests::proc::bin;
use baton_tests::webhook::{Answer, Received, Receiver};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::json;
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(60);
const SECRET: &str = "e2e-webhook-secret-0123456789";

/// Check a request's signature as a receiver would (README "Notifications").
fn verify(r: &Received) {
    let ts = r.header("x-baton-timestamp").expect("timestamp header");
    let sig = r.header("x-baton-signature").expect("signature header");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let hex = sig.strip_prefix("sha256=").expect("sha256= prefix");
    mac.verify_slice(&hex::decode(hex).expect("hex"))
        .expect("the signature verifies");
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().expect("seconds");
    assert!((0..120).contains(&age), "timestamp {ts} is now");
}

async fn deliveries(c: &Cluster) -> DeliveryList {
    c.api
        .get_json("/v1/notifications/deliveries")
        .await
        .expect("deliveries")
}

/// Wait until `f` holds of the deliveries.
async fn wait_deliveries(
    c: &Cluster,
    what: &str,
    f: impl Fn(&DeliveryList) -> bool,
) -> DeliveryList {
    let end = Instant::now() + WAIT;
    loop {
        let d = deliveries(c).await;
        if f(&d) {
            return d;
        }
        assert!(Instant::now() < end, "{what}: {d:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A secret file (0600) in `dir`.
fn secret_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("hook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_delivered_once_signed_after_failures_and_a_controller_kill() {
    let rx = Receiver::start(&[Answer::Status(500), Answer::Close])
        .await
        .expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = secret_file(dir.path());
    let config = format!(
        "[notifications]\n\
         [[notifications.webhooks]]\nname = \"ops\"\nurl = \"{}\"\nsecret_file = \"{}\"\n\
         events = [\"job_failed\"]\ngroups = [\"default\"]\n\
         [[notifications.webhooks]]\nname = \"elsewhere\"\nurl = \"{}\"\nsecret_file = \"{}\"\n\
         groups = [\"other\"]\n",
        rx.url("/ops"),
        secret_file.display(),
        rx.url("/elsewhere"),
        secret_file.display(),
    );
    let mut c = Cluster::start_with(1, &config, |_| {})
        .await
        .expect("cluster");
    let job = json!({
        "group": "default",
        "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", "exit 3"]},
        "retry": {"max_attempts": 2, "initial_backoff_ms": 50},
    });
    let j = c.api.submit(job).await.expect("submit");
    let j = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(
        (j.state, j.attempts_spent),
        (JobState::Failed, 2),
        "{}",
        c.logs()
    );

    // The receiver's 500 and its closed connection are retried; after the
    // second failure is recorded the delivery is pending: kill -9 then.
    let d = wait_deliveries(&c, "two failed attempts", |d| {
        d.deliveries.first().is_some_and(|x| x.attempts == 2)
    })
    .await;
    assert_eq!(
        d.deliveries.len(),
        1,
        "one delivery: the other group's webhook has none"
    );
    let first = &d.deliveries[0];
    assert_eq!(first.state, DeliveryState::Pending, "{first:?}");
    assert_eq!(
        (first.webhook.as_str(), first.event.as_str()),
        ("ops", "job_failed")
    );
    assert_eq!(first.subject, j.id.to_string());
    assert_eq!(
        first.last_status, None,
        "the second answer was a closed connection"
    );
    c.controller.kill9();
    assert_eq!(rx.received().len(), 2, "nothing delivered before the kill");
    c.controller.restart().await.expect("restart");

    let d = wait_deliveries(&c, "delivered after the restart", |d| {
        d.deliveries
            .first()
            .is_some_and(|x| x.state == DeliveryState::Delivered)
    })
    .await;
    let done = &d.deliveries[0];
    assert_eq!(
        (done.attempts, done.last_status, done.last_error.as_deref()),
        (3, Some(200), None)
    );
    // No second delivery comes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    check_received(&rx.received(), &j.id.to_string());
    check_listing(&c).await;
}

/// The receiver got a 500, a closed connection, then one accepted request,
/// all for `/ops`, signed, carrying one event about job `job`.
fn check_received(got: &[Received], job: &str) {
    let answers: Vec<Answer> = got.iter().map(|r| r.answer).collect();
    assert_eq!(
        answers,
        vec![Answer::Status(500), Answer::Close, Answer::Status(200)],
        "exactly one accepted delivery"
    );
    assert!(
        got.iter().all(|r| r.path == "/ops"),
        "another group's webhook was called"
    );
    for r in got {
        verify(r);
    }
    let body: WebhookBody = serde_json::from_slice(&got[2].body).expect("body");
    assert_eq!(
        (body.event.as_str(), body.subject.clone()),
        ("job_failed", job.to_owned())
    );
    assert_eq!(body.groups, vec!["default".to_string()]);
    assert_eq!(body.detail["attempts"], 2);
    assert!(body.text.contains(&format!("job {job}")), "{}", body.text);
    let ids: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<WebhookBody>(&r.body)
                .expect("body")
                .id
        })
        .collect();
    assert!(
        ids.iter().all(|i| *i == body.id),
        "one event id on every try: {ids:?}"
    );
}

/// Viewers may list deliveries (the API and batonctl); a bad query names its field.
async fn check_listing(c: &Cluster) {
    let viewer = c
        .api
        .operator_token("watcher", "viewer")
        .await
        .expect("token");
    let v = c.api.with_token(&viewer);
    let bad = v
        .raw(
            Method::GET,
            "/v1/notifications/deliveries?state=sent",
            None,
            &[],
        )
        .await
        .expect("bad query");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["field"], "state", "{}", bad.body);
    let ok = v
        .raw(
            Method::GET,
            "/v1/notifications/deliveries?state=delivered",
            None,
            &[],
        )
        .await
        .expect("list");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["deliveries"].as_array().map(Vec::len), Some(1));
    let out = std::process::Command::new(bin("batonctl").expect("batonctl"))
        .args(["--url", &c.controller.url(), "notifications", "ls"])
        .env("BATON_TOKEN", &viewer)
        .output()
        .expect("batonctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("delivered") && text.contains("ops"), "{text}");
}

/// Two replicas on one PostgreSQL database send each event once: claims are
/// taken with `SKIP LOCKED`, and a failed try is retried by whichever
/// replica claims it next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_deliver_each_failure_once() {
    baton_tests::require_postgres!();
    let pg = postgres::shared().await.expect(postgres::INSTALL_HINT);
    let rx = Receiver::start(&[Answer::Status(500), Answer::Close])
        .await
        .expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let opts = HaOpts {
        controller_extra: format!(
            "[notifications]\n[[notifications.webhooks]]\nname = \"ops\"\nurl = \"{}\"\n\
             secret_file = \"{}\"\nevents = [\"job_failed\"]\n",
            rx.url("/ops"),
            secret_file(dir.path()).display()
        ),
        ..HaOpts::default()
    };
    let c = HaCluster::start_in(pg, 2, 1, opts, |_| {})
        .await
        .expect("cluster");
    let n = 8;
    let mut ids = Vec::new();
    for i in 0..n {
        let job = json!({
            "group": "default",
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", "exit 1"]},
            "retry": {"max_attempts": 1},
        });
        ids.push(c.api(i % 2).submit(job).await.expect("submit").id);
    }
    for id in &ids {
        let j = c.api(0).wait_terminal(*id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Failed, "{}", c.logs());
    }
    let end = Instant::now() + WAIT;
    loop {
        let d: DeliveryList = c
            .api(1)
            .get_json("/v1/notifications/deliveries?state=delivered")
            .await
            .expect("deliveries");
        if d.deliveries.len() == n {
            break;
        }
        assert!(Instant::now() < end, "{d:?}\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.received();
    let accepted: Vec<WebhookBody> = got
        .iter()
        .filter(|r| r.answer == Answer::Status(200))
        .map(|r| serde_json::from_slice(&r.body).expect("body"))
        .collect();
    let mut subjects: Vec<String> = accepted.iter().map(|b| b.subject.clone()).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(accepted.len(), n, "each event accepted once: {subjects:?}");
    assert_eq!(subjects.len(), n);
    assert_eq!(
        got.len(),
        n + 2,
        "the two failed tries were retried, nothing else"
    );
    for r in &got {
        verify(r);
    }
}

/// `validate` refuses a webhook without a secret source, naming file, key
/// and line, exit 78; the secret never appears in its output.
#[test]
fn validate_names_the_webhook_key_and_line_and_exits_78() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("controller.toml");
    let body = "allow_plain_http = true\n[notifications]\n[[notifications.webhooks]]\n\
                name = \"ops\"\nurl = \"http://127.0.0.1:9/h\"\nsecret_env = \"BATON_E2E_UNSET_HOOK\"\n";
    std::fs::write(&cfg, body).expect("write");
    let run = |extra_env: Option<(&str, &str)>| {
        let mut cmd = std::process::Command::new(bin("baton-controller").expect("bin"));
        cmd.args(["--config", cfg.to_str().expect("path"), "validate"])
            .env_remove("BATON_E2E_UNSET_HOOK");
        if let Some((k, v)) = extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("run")
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("controller.toml, line 6, key `notifications.webhooks[0].secret_env`"),
        "{err}"
    );
    let out = run(Some(("BATON_E2E_UNSET_HOOK", SECRET)));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains(SECRET), "the secret was printed: {all}");
}
