//! Identity, roles, TLS and audit, end to end against a real controller.

use std::time::Duration;

use baton_proto::{AttemptOutcome, ErrorCode, JobState};
use baton_tests::api::{Api, Raw};
use baton_tests::cluster::Cluster;
use baton_tests::pki::Pki;
use baton_tests::proc::{Agent, AgentOpts, Controller};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// Enroll an agent through the API (no process): returns (agent id, secret).
async fn enroll(api: &Api, id: &str, groups: &[&str]) -> (String, String) {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let token = api
        .enrollment_token(&groups)
        .await
        .expect("enrollment token");
    let anon = api.with_token("");
    let r = anon
        .raw(
            Method::POST,
            "/v1/agents/enroll",
            Some(serde_json::to_vec(&json!({"token": token, "agent_id": id})).expect("json")),
            &[],
        )
        .await
        .expect("enroll");
    assert_eq!(r.status, 200, "{:?}", r.body);
    (
        id.to_owned(),
        r.body["secret"].as_str().expect("secret").to_owned(),
    )
}

fn noop(group: &str) -> Value {
    json!({"group": group, "spec": {"kind": "noop"}, "allow_unplaced": true})
}

fn poll_body(group: &str) -> Value {
    json!({"groups": [group], "free_slots": 1, "capabilities": {"kinds": ["noop", "command"]},
           "version": "test", "os": "linux", "wait_ms": 0})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_over_every_endpoint() {
    let c = Cluster::start(0).await.expect("cluster");
    let admin = c.api.clone();
    let viewer = admin.with_token(&admin.operator_token("looker", "viewer").await.expect("t"));
    let operator = admin.with_token(&admin.operator_token("oncall", "operator").await.expect("t"));
    let (a_id, a_secret) = enroll(&admin, "agent-a", &["default"]).await;
    let (_, b_secret) = enroll(&admin, "agent-b", &["default"]).await;
    let agent_a = admin.with_token(&a_secret);
    let agent_b = admin.with_token(&b_secret);
    let none = admin.with_token("");
    let bad = admin
        .with_token("baton_op_0000000000000000000000000000000000000000000000000000000000000000");

    // Fixtures made fresh by the admin for each call that changes them.
    let fresh_job = || async { admin.submit(noop("other")).await.expect("job").id };
    let fresh_cancelled = || async {
        let id = admin.submit(noop("other")).await.expect("job").id;
        admin.cancel(id).await.expect("cancel");
        id
    };
    let fresh_enrollment = || async {
        let r = send(
            &admin,
            Method::POST,
            "/v1/enrollment-tokens",
            Some(json!({"groups": ["x"], "expires_in_ms": 60000})),
        )
        .await;
        r.body["view"]["id"].as_str().expect("id").to_owned()
    };
    let fresh_token = || async {
        let n = format!("tmp{}", rand_suffix());
        let r = send(
            &admin,
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": n, "role": "viewer"})),
        )
        .await;
        r.body["view"]["id"].as_str().expect("id").to_owned()
    };
    let fresh_agent = || async {
        enroll(&admin, &format!("tmp{}", rand_suffix()), &["x"])
            .await
            .0
    };

    // Callers in column order: none, bad, viewer, operator, admin, agent.
    let callers: [(&str, &Api); 6] = [
        ("none", &none),
        ("bad", &bad),
        ("viewer", &viewer),
        ("operator", &operator),
        ("admin", &admin),
        ("agent", &agent_a),
    ];
    let some_job = fresh_job().await;
    type Row = (&'static str, [u16; 6]);
    let reads: [(Method, String, Row); 6] = [
        (
            Method::GET,
            "/v1/jobs".into(),
            ("list jobs", [401, 401, 200, 200, 200, 403]),
        ),
        (
            Method::GET,
            format!("/v1/jobs/{some_job}"),
            ("get job", [401, 401, 200, 200, 200, 403]),
        ),
        (
            Method::GET,
            "/v1/agents".into(),
            ("agents", [401, 401, 200, 200, 200, 403]),
        ),
        (
            Method::GET,
            "/v1/whoami".into(),
            ("whoami", [401, 401, 200, 200, 200, 403]),
        ),
        (
            Method::GET,
            "/v1/enrollment-tokens".into(),
            ("list enrollment", [401, 401, 403, 403, 200, 403]),
        ),
        (
            Method::GET,
            "/v1/tokens".into(),
            ("list tokens", [401, 401, 403, 403, 200, 403]),
        ),
    ];
    for (method, path, (name, want)) in reads {
        for (i, (who, api)) in callers.iter().enumerate() {
            let r = send(api, method.clone(), &path, None).await;
            assert_eq!(r.status.as_u16(), want[i], "{name} as {who}: {:?}", r.body);
            if r.status.as_u16() >= 400 {
                assert!(r.error().is_some(), "{name} as {who}: JSON error body");
            }
        }
    }
    let audit = send(&admin, Method::GET, "/v1/audit", None).await;
    assert_eq!(audit.status, 200);
    for (who, api) in &callers[..4] {
        let r = send(api, Method::GET, "/v1/audit", None).await;
        assert!(matches!(r.status.as_u16(), 401 | 403), "audit as {who}");
    }

    // Writes: each call gets its own fresh target.
    for (i, (who, api)) in callers.iter().enumerate() {
        let want_op = [401, 401, 403, 0, 0, 403][i];
        let want_admin = [401, 401, 403, 403, 0, 403][i];
        let r = send(api, Method::POST, "/v1/jobs", Some(noop("other"))).await;
        assert_eq!(
            r.status.as_u16(),
            if want_op == 0 { 201 } else { want_op },
            "submit as {who}"
        );
        let id = fresh_job().await;
        let r = send(api, Method::POST, &format!("/v1/jobs/{id}/cancel"), None).await;
        assert_eq!(
            r.status.as_u16(),
            if want_op == 0 { 200 } else { want_op },
            "cancel as {who}"
        );
        let id = fresh_cancelled().await;
        let r = send(api, Method::POST, &format!("/v1/jobs/{id}/retry"), None).await;
        assert_eq!(
            r.status.as_u16(),
            if want_op == 0 { 200 } else { want_op },
            "retry as {who}"
        );
        let r = send(
            api,
            Method::POST,
            "/v1/enrollment-tokens",
            Some(json!({"groups": ["x"], "expires_in_ms": 60000})),
        )
        .await;
        assert_eq!(
            r.status.as_u16(),
            if want_admin == 0 { 201 } else { want_admin },
            "create enrollment as {who}"
        );
        let id = fresh_enrollment().await;
        let r = send(
            api,
            Method::POST,
            &format!("/v1/enrollment-tokens/{id}/revoke"),
            None,
        )
        .await;
        assert_eq!(
            r.status.as_u16(),
            if want_admin == 0 { 200 } else { want_admin },
            "revoke enrollment as {who}"
        );
        let r = send(
            api,
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": format!("n{}", rand_suffix()), "role": "viewer"})),
        )
        .await;
        assert_eq!(
            r.status.as_u16(),
            if want_admin == 0 { 201 } else { want_admin },
            "create token as {who}"
        );
        let id = fresh_token().await;
        let r = send(api, Method::POST, &format!("/v1/tokens/{id}/revoke"), None).await;
        assert_eq!(
            r.status.as_u16(),
            if want_admin == 0 { 200 } else { want_admin },
            "revoke token as {who}"
        );
        let id = fresh_agent().await;
        let r = send(api, Method::POST, &format!("/v1/agents/{id}/revoke"), None).await;
        assert_eq!(
            r.status.as_u16(),
            if want_admin == 0 { 200 } else { want_admin },
            "revoke agent as {who}"
        );
    }

    // Agent endpoints: a job held by agent A.
    let job = admin.submit(noop("default")).await.expect("job").id;
    let poll_path = format!("/v1/agents/{a_id}/poll");
    for (who, api, want) in [
        ("none", &none, 401),
        ("bad", &bad, 401),
        ("viewer", &viewer, 403),
        ("operator", &operator, 403),
        ("admin", &admin, 403),
        ("agent B as A", &agent_b, 403),
    ] {
        let r = send(api, Method::POST, &poll_path, Some(poll_body("default"))).await;
        assert_eq!(r.status.as_u16(), want, "poll as {who}: {:?}", r.body);
    }
    let r = send(
        &agent_a,
        Method::POST,
        &poll_path,
        Some(poll_body("not-granted")),
    )
    .await;
    assert_eq!(r.status, 403, "a group outside the enrollment");
    assert_eq!(
        r.error().expect("err").error.field.as_deref(),
        Some("groups[0]")
    );
    let r = send(
        &agent_a,
        Method::POST,
        &poll_path,
        Some(poll_body("default")),
    )
    .await;
    assert_eq!(r.status, 200);
    let grant = &r.body["grants"][0];
    assert_eq!(grant["job_id"], job);
    let token = grant["token"].as_i64().expect("token");
    for call in ["heartbeat", "release", "complete"] {
        let body = if call == "complete" {
            json!({"token": token, "completion": {"outcome": "succeeded"}})
        } else {
            json!({"token": token})
        };
        let path = format!("/v1/jobs/{job}/{call}");
        for (who, api, want) in [
            ("none", &none, 401),
            ("bad", &bad, 401),
            ("viewer", &viewer, 403),
            ("operator", &operator, 403),
            ("admin", &admin, 403),
            ("agent B on A's job", &agent_b, 403),
        ] {
            let r = send(api, Method::POST, &path, Some(body.clone())).await;
            assert_eq!(r.status.as_u16(), want, "{call} as {who}: {:?}", r.body);
        }
    }
    let r = send(
        &agent_a,
        Method::POST,
        &format!("/v1/jobs/{job}/heartbeat"),
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        &agent_a,
        Method::POST,
        &format!("/v1/jobs/{job}/complete"),
        Some(json!({"token": token, "completion": {"outcome": "succeeded"}})),
    )
    .await;
    assert_eq!(r.status, 200);
    // Enrollment needs no bearer, only a valid enrollment token.
    let r = send(
        &none,
        Method::POST,
        "/v1/agents/enroll",
        Some(json!({"token": "baton_enr_nope", "agent_id": "z"})),
    )
    .await;
    assert_eq!(r.status, 401);
}

fn rand_suffix() -> String {
    use rand::RngCore;
    format!("{:08x}", rand::rng().next_u32())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_tokens_are_single_use_expire_and_revoke_and_are_rate_limited() {
    let c = Cluster::start_with(0, "enroll_per_minute = 6", |_| {})
        .await
        .expect("cluster");
    let admin = c.api.clone();
    let anon = admin.with_token("");
    let try_enroll = |token: String, id: &'static str| {
        let anon = anon.clone();
        async move {
            send(
                &anon,
                Method::POST,
                "/v1/agents/enroll",
                Some(json!({"token": token, "agent_id": id})),
            )
            .await
        }
    };
    let t = admin.enrollment_token(&["g".into()]).await.expect("token");
    assert_eq!(try_enroll(t.clone(), "a1").await.status, 200);
    let r = try_enroll(t, "a2").await;
    assert_eq!(r.status, 401);
    assert!(
        r.error()
            .expect("err")
            .error
            .message
            .contains("already used")
    );
    let r = send(
        &admin,
        Method::POST,
        "/v1/enrollment-tokens",
        Some(json!({"groups": ["g"], "expires_in_ms": 1})),
    )
    .await;
    let expired = r.body["token"].as_str().expect("token").to_owned();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = try_enroll(expired, "a3").await;
    assert_eq!(r.status, 401);
    assert!(r.error().expect("err").error.message.contains("expired"));
    let r = send(
        &admin,
        Method::POST,
        "/v1/enrollment-tokens",
        Some(json!({"groups": ["g"], "expires_in_ms": 60000})),
    )
    .await;
    let revoked = r.body["token"].as_str().expect("token").to_owned();
    let id = r.body["view"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        send(
            &admin,
            Method::POST,
            &format!("/v1/enrollment-tokens/{id}/revoke"),
            None
        )
        .await
        .status,
        200
    );
    let r = try_enroll(revoked, "a4").await;
    assert_eq!(r.status, 401);
    assert!(r.error().expect("err").error.message.contains("revoked"));
    let list = send(&admin, Method::GET, "/v1/enrollment-tokens", None).await;
    let states: Vec<&str> = list.body["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["state"].as_str().expect("state"))
        .collect();
    for s in ["used", "expired", "revoked"] {
        assert!(states.contains(&s), "{states:?}");
    }
    // Six attempts a minute from one address: the next one waits.
    let mut limited = None;
    for _ in 0..8 {
        let r = try_enroll("baton_enr_bogus".into(), "a5").await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 401);
    }
    let r = limited.expect("rate limited");
    assert_eq!(r.error().expect("err").error.code, ErrorCode::RateLimited);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_hashes_not_secrets() {
    let c = Cluster::start(0).await.expect("cluster");
    let admin = c.api.clone();
    let op = admin.operator_token("ci", "operator").await.expect("token");
    let enr = admin.enrollment_token(&["g".into()]).await.expect("token");
    let anon = admin.with_token("");
    let r = send(
        &anon,
        Method::POST,
        "/v1/agents/enroll",
        Some(json!({"token": enr, "agent_id": "db1"})),
    )
    .await;
    let agent_secret = r.body["secret"].as_str().expect("secret").to_owned();
    // Use each once so nothing sits only in memory.
    assert_eq!(
        send(&admin.with_token(&op), Method::GET, "/v1/jobs", None)
            .await
            .status,
        200
    );
    let mut bytes = Vec::new();
    for f in ["baton.db", "baton.db-wal"] {
        if let Ok(b) = std::fs::read(c.controller.dir.join(f)) {
            bytes.extend(b);
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [&c.controller.admin_token, &op, &enr, &agent_secret] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is stored in clear"
        );
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        assert!(text.contains(&hash), "its hash is stored");
    }
    // And the list shows no secrets either.
    let list = send(&admin, Method::GET, "/v1/tokens", None).await;
    assert!(!list.body.to_string().contains(&op));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_log_tail_and_output_are_413_naming_the_field() {
    let c = Cluster::start_with(
        0,
        "max_log_tail_bytes = 1024\nmax_output_bytes = 4096",
        |_| {},
    )
    .await
    .expect("cluster");
    let admin = c.api.clone();
    let (id, secret) = enroll(&admin, "a1", &["default"]).await;
    let agent = admin.with_token(&secret);
    let job = admin.submit(noop("default")).await.expect("job").id;
    let r = send(
        &agent,
        Method::POST,
        &format!("/v1/agents/{id}/poll"),
        Some(poll_body("default")),
    )
    .await;
    let token = r.body["grants"][0]["token"].as_i64().expect("token");
    let r = send(
        &agent,
        Method::POST,
        &format!("/v1/jobs/{job}/heartbeat"),
        Some(json!({"token": token, "log_tail": "x".repeat(2000)})),
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.error().expect("err").error.field.as_deref(),
        Some("log_tail")
    );
    let r = send(&agent, Method::POST, &format!("/v1/jobs/{job}/complete"),
        Some(json!({"token": token, "completion": {"outcome": "succeeded"}, "result": {"stdout": "y".repeat(5000)}}))).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.error().expect("err").error.field.as_deref(),
        Some("result.stdout")
    );
    // Within bounds both pass, and the lease survived the refusals.
    let r = send(
        &agent,
        Method::POST,
        &format!("/v1/jobs/{job}/heartbeat"),
        Some(json!({"token": token, "log_tail": "ok"})),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_are_audited_with_who_what_and_result() {
    let c = Cluster::start(0).await.expect("cluster");
    let admin = c.api.clone();
    let viewer = admin.with_token(&admin.operator_token("looker", "viewer").await.expect("t"));
    let job = admin.submit(noop("g")).await.expect("job").id;
    let r = send(
        &viewer,
        Method::POST,
        &format!("/v1/jobs/{job}/cancel"),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    admin.cancel(job).await.expect("cancel");
    let (_, _) = enroll(&admin, "db9", &["g"]).await;
    let log = send(&admin, Method::GET, "/v1/audit?limit=100", None).await;
    let entries = log.body["entries"].as_array().expect("entries").clone();
    let find = |actor: &str, action: &str, status: u64| {
        entries
            .iter()
            .any(|e| e["actor"] == actor && e["action"] == action && e["status"] == status)
    };
    assert!(find("token:admin", "POST /v1/jobs", 201), "{entries:#?}");
    assert!(find("token:looker", "POST /v1/jobs/{id}/cancel", 403));
    assert!(find("token:admin", "POST /v1/jobs/{id}/cancel", 200));
    assert!(find("token:admin", "POST /v1/tokens", 201));
    assert!(find("agent:db9", "POST /v1/agents/enroll", 200));
    let refused = entries
        .iter()
        .find(|e| e["actor"] == "token:looker")
        .expect("refused entry");
    assert_eq!(refused["role"], "viewer");
    assert_eq!(refused["error"], "forbidden");
    assert_eq!(refused["target"], format!("/v1/jobs/{job}/cancel"));
    // Reads are not audited.
    assert!(
        !entries
            .iter()
            .any(|e| e["action"].as_str().is_some_and(|a| a.starts_with("GET")))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_agent_mid_job_requeues_it_at_once() {
    let mut c = Cluster::start(2).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let job = c
        .api
        .submit(json!({"group": "default", "lease_ttl_ms": 60000,
            "spec": {"kind": "command", "program": "/bin/sh", "args": ["-c", "sleep 2; echo done"]}}))
        .await
        .expect("submit");
    let (_, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
    let secret = c.agent(&holder).secret().expect("secret");
    let r = send(
        &c.api,
        Method::POST,
        &format!("/v1/agents/{holder}/revoke"),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["jobs_requeued"], json!([job.id]));
    // The TTL is 60 s: the job must move on long before it.
    let done = c
        .api
        .wait_terminal(job.id, Duration::from_secs(30))
        .await
        .expect("terminal");
    assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    assert_eq!(done.attempts[0].outcome, Some(AttemptOutcome::Revoked));
    assert_eq!(done.attempts_spent, 1, "the revoked attempt is not counted");
    assert_ne!(done.attempts[1].agent_id, holder);
    let r = send(
        &c.api.with_token(&secret),
        Method::POST,
        &format!("/v1/agents/{holder}/poll"),
        Some(poll_body("default")),
    )
    .await;
    assert_eq!(r.status, 401, "a revoked agent is refused");
    let agents = c.api.agents().await.expect("agents");
    let a = agents
        .agents
        .iter()
        .find(|a| a.id == holder)
        .expect("listed");
    assert!(a.revoked_at.is_some() && !a.online);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_end_to_end_with_a_pinned_ca_and_required_client_certificates() {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let pki = Pki::generate(&tmp.path().join("pki")).expect("pki");
    let ctl = Controller::start_tls(&tmp.path().join("controller"), &pki, true)
        .await
        .expect("controller");
    let api = ctl.api();
    assert!(api.url.starts_with("https://"));
    // A client pinned to another CA is refused at the handshake.
    let wrong = Api::connect(&api.url, &ctl.admin_token, Some(&pki.other_ca));
    assert!(wrong.raw(Method::GET, "/v1/jobs", None, &[]).await.is_err());
    // Plain HTTP to the TLS port gets no answer.
    let plain = Api::connect(
        &api.url.replace("https://", "http://"),
        &ctl.admin_token,
        None,
    );
    let r = plain.raw(Method::GET, "/readyz", None, &[]).await;
    assert!(r.is_err() || !r.expect("r").status.is_success());

    // An agent secret without a client certificate is refused on agent endpoints.
    let (id, secret) = enroll(&api, "nocert", &["tls"]).await;
    let r = send(
        &api.with_token(&secret),
        Method::POST,
        &format!("/v1/agents/{id}/poll"),
        Some(poll_body("tls")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(
        r.error()
            .expect("err")
            .error
            .message
            .contains("client certificate")
    );

    // Real agents: one with the right CA and a client certificate runs the job;
    // one pinned to the wrong CA never reaches the controller.
    let mut good = AgentOpts::new("good");
    good.groups = vec!["tls".into()];
    good.extra = pki.agent_toml(true);
    good.enrollment_token = Some(api.enrollment_token(&good.groups).await.expect("t"));
    let _good = Agent::start(tmp.path(), &ctl.url(), good).expect("agent");
    let mut bad = AgentOpts::new("badca");
    bad.groups = vec!["badca".into()];
    bad.extra = format!("[tls]\nca_file = \"{}\"\n", pki.other_ca.display());
    bad.enrollment_token = Some(api.enrollment_token(&bad.groups).await.expect("t"));
    let mut bad = Agent::start(tmp.path(), &ctl.url(), bad).expect("agent");
    let j = api
        .submit(json!({"group": "tls", "spec": {"kind": "command", "program": "/bin/echo", "args": ["over tls"]}}))
        .await
        .expect("submit");
    let done = api.wait_terminal(j.id, WAIT).await.expect("terminal");
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.result.expect("result").stdout, "over tls\n");
    let queued = api.submit(noop("badca")).await.expect("submit").id;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(api.job(queued).await.expect("job").state, JobState::Queued);
    let agents = api.agents().await.expect("agents");
    assert!(
        !agents.agents.iter().any(|a| a.id == "badca"),
        "never enrolled"
    );
    assert!(
        bad.proc().running() || bad.log_text().contains("certificate"),
        "{}",
        bad.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_without_init_writes_the_admin_token_to_a_private_file() {
    baton_tests::init_crypto();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("controller");
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("controller.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nallow_plain_http = true\n",
            dir.display()
        ),
    )
    .expect("write");
    let log = std::fs::File::create(dir.join("controller.log")).expect("log");
    let mut child =
        std::process::Command::new(baton_tests::proc::bin("baton-controller").expect("bin"))
            .arg("--config")
            .arg(&cfg)
            .stderr(log)
            .spawn()
            .expect("spawn");
    let token_file = dir.join("initial-admin.token");
    let addr_file = dir.join("listen.addr");
    for _ in 0..500 {
        if token_file.exists() && addr_file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let token = std::fs::read_to_string(&token_file)
        .expect("token file")
        .trim()
        .to_owned();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let url = format!(
        "http://{}",
        std::fs::read_to_string(&addr_file).expect("addr").trim()
    );
    let api = Api::connect(&url, &token, None);
    baton_tests::proc::wait_ready(&api).await.expect("ready");
    let who = send(&api, Method::GET, "/v1/whoami", None).await;
    assert_eq!(who.body["role"], "admin");
    let logged = std::fs::read_to_string(dir.join("controller.log")).expect("log");
    assert!(
        logged.contains("initial-admin.token") && !logged.contains(&token),
        "path logged, secret not"
    );
    // `init` now refuses: an admin exists.
    let out = std::process::Command::new(baton_tests::proc::bin("baton-controller").expect("bin"))
        .arg("--config")
        .arg(&cfg)
        .arg("init")
        .output()
        .expect("init");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already initialised"));
    let _ = child.kill();
    let _ = child.wait();
}
