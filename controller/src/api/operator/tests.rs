//! Submit through the real router, in-process: placement (422 naming
//! `group` / `spec.connection`, `allow_unplaced`) and the checks by the
//! connection's advertised engine.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_proto::auth::{OPERATOR_PREFIX, Role};
use baton_proto::{Capabilities, ConnectionInfo, JobKind};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::config::{Config, Flags};
use crate::credentials::hash_secret;
use crate::store::agents::AgentSeen;
use crate::store::{Store, testutil};

struct Api {
    state: crate::api::AppState,
    token: String,
    _dir: tempfile::TempDir,
}

/// Advertise `connections` for agent `id` of `groups`, as its poll would.
async fn advertise(store: &Store, id: &str, groups: &[&str], connections: &[(&str, &str)]) {
    testutil::enrolled(store, id, groups).await;
    let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
    let capabilities = Capabilities {
        kinds: JobKind::ALL.to_vec(),
        connections: connections
            .iter()
            .map(|(name, kind)| ConnectionInfo {
                name: (*name).to_owned(),
                kind: (*kind).to_owned(),
            })
            .collect(),
        stores: Vec::new(),
    };
    let seen = AgentSeen {
        id,
        groups: &groups,
        capabilities: &capabilities,
        version: "test",
        os: "linux",
        free_slots: 1,
        metrics: None,
    };
    store.agent_sync(&seen, 1).await.expect("sync");
}

async fn api() -> Api {
    let (store, dir) = testutil::store().await;
    advertise(&store, "a1", &["g"], &[("main", "mysql"), ("erp", "mssql")]).await;
    let env = BTreeMap::from([(
        "BATON_CONTROLLER_ALLOW_PLAIN_HTTP".to_owned(),
        "true".to_owned(),
    )]);
    let flags = Flags {
        state_dir: Some(dir.path().to_owned()),
        ..Flags::default()
    };
    let config = Config::load(None, &env, &flags).expect("config");
    let token = format!("{OPERATOR_PREFIX}placementtest");
    store
        .create_operator_token("t1", "ops", Role::Operator, &hash_secret(&token), "test", 0)
        .await
        .expect("token");
    let state =
        crate::server::app_state(&store, &config, &tokio_util::sync::CancellationToken::new());
    Api {
        state,
        token,
        _dir: dir,
    }
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = crate::api::router(self.state.clone())
            .oneshot(req)
            .await
            .expect("answered");
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    /// Submit; on 422 the field and message of the error.
    async fn submit(&self, job: Value) -> Result<(), (String, String)> {
        let (status, body) = self.post("/v1/jobs", job).await;
        if status == StatusCode::CREATED {
            return Ok(());
        }
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "unprocessable", "{body}");
        Err((
            body["error"]["field"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

fn sql(group: &str, connection: &str) -> Value {
    json!({"group": group, "spec": {"kind": "sql", "connection": connection, "sql": "SELECT 1"}})
}

#[tokio::test]
async fn no_agent_for_the_group_or_connection_is_422_naming_what_exists() {
    let api = api().await;
    let (field, message) = api.submit(sql("nosuch", "main")).await.expect_err("group");
    assert_eq!(field, "group");
    assert!(message.contains("groups with agents: g"), "{message}");
    let (field, message) = api
        .submit(sql("g", "nosuch"))
        .await
        .expect_err("connection");
    assert_eq!(field, "spec.connection");
    assert!(message.contains("erp (mssql), main (mysql)"), "{message}");
    api.submit(sql("g", "main")).await.expect("placed");
    api.submit(json!({"group": "g", "spec": {"kind": "noop"}}))
        .await
        .expect("noop");
}

#[tokio::test]
async fn allow_unplaced_accepts_it_anyway() {
    let api = api().await;
    for mut job in [sql("nosuch", "main"), sql("g", "nosuch")] {
        job["allow_unplaced"] = json!(true);
        api.submit(job).await.expect("opted in");
    }
}

#[tokio::test]
async fn a_batch_names_the_job_at_fault() {
    let api = api().await;
    let (status, body) = api
        .post(
            "/v1/jobs/batch",
            json!({"jobs": [sql("g", "main"), sql("g", "nosuch")]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "jobs[1].spec.connection");
    let mut opted = sql("g", "nosuch");
    opted["allow_unplaced"] = json!(true);
    let (status, body) = api
        .post("/v1/jobs/batch", json!({"jobs": [sql("g", "main"), opted]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_new_agent_is_seen_after_a_change() {
    let api = api().await;
    api.submit(sql("h", "main"))
        .await
        .expect_err("no agent yet");
    advertise(&api.state.store, "a2", &["h"], &[("main", "mysql")]).await;
    api.state.placement.changed();
    api.submit(sql("h", "main")).await.expect("seen");
}

fn procedure(connection: &str, name: &str, value: Value) -> Value {
    json!({"group": "g", "spec": {"kind": "procedure", "connection": connection,
        "procedure": name, "params": [{"name": "p", "value": value}]}})
}

#[tokio::test]
async fn procedure_names_and_values_are_checked_by_the_connection_kind() {
    let api = api().await;
    let date = json!({"type": "int", "value": 1});
    let (field, message) = api
        .submit(procedure("main", "shop.dbo.usp_x", date.clone()))
        .await
        .expect_err("three parts on mysql");
    assert_eq!(field, "spec.procedure");
    assert!(message.contains("(on mysql)"), "{message}");
    api.submit(procedure("erp", "shop.dbo.usp_x", date))
        .await
        .expect("three parts on mssql");
    for (value, conn) in [
        (json!({"type": "date", "value": "2026-13-45"}), "main"),
        (json!({"type": "decimal", "value": "12,5"}), "erp"),
        (json!({"type": "bytes", "value": "***"}), "main"),
    ] {
        let (field, _) = api
            .submit(procedure(conn, "usp_x", value.clone()))
            .await
            .expect_err("bad value");
        assert_eq!(field, "spec.params[0].value", "{value}");
    }
    // Unplaced and unknown: only what every engine refuses.
    let mut unknown = procedure(
        "nosuch",
        "shop.dbo.usp_x",
        json!({"type": "int", "value": 1}),
    );
    unknown["allow_unplaced"] = json!(true);
    api.submit(unknown.clone()).await.expect("kind unknown");
    unknown["spec"]["params"][0]["value"] = json!({"type": "date", "value": "2026-13-45"});
    let (field, _) = api.submit(unknown).await.expect_err("every engine refuses");
    assert_eq!(field, "spec.params[0].value");
}

/// A submit's audit row is written once, with the job (one commit): status
/// 201, the operator as actor; a replayed `Idempotency-Key` (200) is
/// recorded by the middleware as any other call; a refused submit too.
#[tokio::test]
async fn a_submit_is_audited_once_with_its_job() {
    let api = api().await;
    let keyed = |key: &str| {
        Request::post("/v1/jobs")
            .header("authorization", format!("Bearer {}", api.token))
            .header("content-type", "application/json")
            .header(baton_proto::IDEMPOTENCY_KEY_HEADER, key)
            .body(Body::from(
                json!({"group": "g", "spec": {"kind": "noop"}}).to_string(),
            ))
            .expect("request")
    };
    for expected in [StatusCode::CREATED, StatusCode::OK] {
        let resp = crate::api::router(api.state.clone())
            .oneshot(keyed("k-1"))
            .await
            .expect("answered");
        assert_eq!(resp.status(), expected);
    }
    api.submit(sql("nosuch", "main")).await.expect_err("422");
    let rows = api
        .state
        .store
        .list_audit(None, None, 100)
        .await
        .expect("audit");
    let statuses: Vec<u16> = rows
        .entries
        .iter()
        .filter(|e| e.action == "POST /v1/jobs")
        .map(|e| e.status)
        .collect();
    // Newest first: the 422, the replay, the creation — each once.
    assert_eq!(statuses, vec![422, 200, 201], "{rows:?}");
    let created = rows
        .entries
        .iter()
        .find(|e| e.status == 201)
        .expect("201 row");
    assert_eq!(created.actor, "token:ops");
    assert_eq!(created.target, "/v1/jobs");
    // On SQLite the row goes in with the job (the middleware skipped it).
    let mut job = testutil::new_job("g", None, "h");
    job.audit = Some(crate::store::audit::AuditRecord {
        actor: "token:x".into(),
        role: "operator".into(),
        action: "POST /v1/jobs".into(),
        target: "/v1/jobs".into(),
        status: 201,
        error: None,
    });
    let done = api.state.store.submit(job, 5).await.expect("submit");
    assert!(done.created && done.audited);
    let rows = api
        .state
        .store
        .list_audit(Some("token:x"), None, 10)
        .await
        .expect("audit");
    assert_eq!(rows.entries.len(), 1);
}

fn call(connection: &str, params: Value) -> Value {
    json!({"group": "g", "spec": {"kind": "procedure", "connection": connection,
        "procedure": "dbo.usp_x", "params": params}})
}

/// What the document cannot state (a parameter named twice, a `sql_type`
/// off the allow-list) is 422 naming the field, in a submit and a batch;
/// what it states (a value for an in parameter) stays 400.
#[tokio::test]
async fn procedure_rules_the_document_cannot_state_are_422_naming_the_field() {
    let api = api().await;
    let int = json!({"type": "int", "value": 1});
    let twice = call(
        "erp",
        json!([{"name": "Id", "value": int}, {"name": "id", "value": int}]),
    );
    let (field, message) = api.submit(twice.clone()).await.expect_err("twice");
    assert_eq!(field, "spec.params[1].name");
    assert!(message.contains("given twice"), "{message}");
    for sql_type in ["money", "decimal(10,12)", "nvarchar(4001)", "varchar"] {
        let (field, message) = api
            .submit(call(
                "erp",
                json!([{"name": "a", "value": int, "sql_type": sql_type}]),
            ))
            .await
            .expect_err(sql_type);
        assert_eq!(field, "spec.params[0].sql_type", "{sql_type}");
        assert!(message.contains(sql_type), "{message}");
    }
    let (status, body) = api
        .post("/v1/jobs/batch", json!({"jobs": [sql("g", "main"), twice]}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unprocessable", "{body}");
    assert_eq!(
        body["error"]["field"], "jobs[1].spec.params[1].name",
        "{body}"
    );
    for params in [
        json!([{"name": "a"}]),
        json!([{"name": "a", "mode": "in_out", "value": null}]),
    ] {
        let (status, body) = api.post("/v1/jobs", call("erp", params)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert_eq!(body["error"]["field"], "spec.params[0].value", "{body}");
    }
}

/// A procedure call at the edges of what the document allows is accepted.
#[tokio::test]
async fn valid_procedure_submits_with_edge_values_are_accepted() {
    let api = api().await;
    let name = "p".repeat(127);
    let params = json!([
        {"name": name, "value": {"type": "int", "value": i64::MIN}},
        {"name": "out_only", "mode": "out", "sql_type": "int"},
        {"name": "typed_out", "mode": "out", "value": {"type": "string", "value": ""}, "sql_type": " NVarChar ( MAX ) "},
        {"name": "d", "value": {"type": "decimal", "value": "-0.00000000000000000000000000000000000001"}, "sql_type": "decimal(38,38)"},
        {"name": "n", "mode": "in_out", "value": {"type": "null"}, "sql_type": "datetime2(0)"},
        {"name": "b", "value": {"type": "bytes", "value": ""}, "sql_type": "varbinary(8000)"},
        {"name": "t", "value": {"type": "date_time", "value": "9999-12-31T23:59:59.9999999"}},
        {"name": "f", "value": {"type": "float", "value": -1.7976931348623157e308}, "sql_type": "float"},
        {"name": "u", "value": {"type": "string", "value": "00000000-0000-0000-0000-000000000000"}, "sql_type": "uniqueidentifier"},
    ]);
    api.submit(call("erp", params)).await.expect("edge values");
    api.submit(call("main", json!([])))
        .await
        .expect("no params");
    let mut unplaced = call("nosuch", json!([{"name": "x", "mode": "out"}]));
    unplaced["allow_unplaced"] = json!(true);
    api.submit(unplaced).await.expect("an out parameter alone");
}
