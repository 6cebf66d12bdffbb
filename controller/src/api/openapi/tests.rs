//! The document is the checked-in `docs/openapi.json`, covers every route
//! of the router with exactly the methods it routes, and is served without
//! a token.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::document_json;
use crate::config::{Config, Flags};
use crate::store::testutil;

const UPDATE_VAR: &str = "BATON_UPDATE_OPENAPI";

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

fn document() -> Value {
    serde_json::from_str(document_json()).expect("the document is JSON")
}

/// The guard: a change to a route, an annotation or a proto type changes
/// the document, and then this fails until the file is regenerated.
#[test]
fn checked_in_document_is_the_generated_one() {
    let path = checked_in();
    let generated = document_json();
    if std::env::var(UPDATE_VAR).is_ok_and(|v| v == "1") {
        std::fs::write(&path, generated).expect("write docs/openapi.json");
        eprintln!("Wrote {}", path.display());
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != generated {
        let line = on_disk
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.json is not the document the code generates (first difference at \
             line {}: file {:?}, code {:?}). Regenerate it with\n    \
             {UPDATE_VAR}=1 cargo test -p baton-controller --lib api::openapi\n\
             and commit the file.",
            line + 1,
            on_disk.lines().nth(line).unwrap_or("<end>"),
            generated.lines().nth(line).unwrap_or("<end>"),
        );
    }
}

/// The paths the router's source registers (`.route("…"`), in
/// `api/mod.rs`.
fn routed_paths() -> BTreeSet<String> {
    let src = include_str!("../mod.rs");
    let mut paths = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let lit = rest.trim_start();
        if let Some(after) = lit.strip_prefix('"') {
            let end = after.find('"').expect("closing quote");
            paths.insert(after[..end].to_owned());
        }
    }
    paths
}

fn documented() -> BTreeMap<String, BTreeSet<String>> {
    let doc = document();
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(p, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|k| matches!(k.as_str(), "get" | "put" | "post" | "delete" | "patch"))
                .cloned()
                .collect();
            (p.clone(), methods)
        })
        .collect()
}

#[test]
fn every_route_is_in_the_document_and_nothing_else() {
    let routed = routed_paths();
    assert!(routed.len() > 40, "found only {routed:?}");
    let documented: BTreeSet<String> = documented().into_keys().collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without an #[utoipa::path] annotation listed in api::openapi::ApiDoc: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");
}

async fn state() -> (crate::api::AppState, tempfile::TempDir) {
    let (store, dir) = testutil::store().await;
    let env = BTreeMap::from([(
        "BATON_CONTROLLER_ALLOW_PLAIN_HTTP".to_owned(),
        "true".to_owned(),
    )]);
    let flags = Flags {
        state_dir: Some(dir.path().to_owned()),
        ..Flags::default()
    };
    let config = Config::load(None, &env, &flags).expect("config");
    let state =
        crate::server::app_state(&store, &config, &tokio_util::sync::CancellationToken::new());
    (state, dir)
}

/// Each documented path answers 405 to exactly the methods it does not
/// document (so a method added to a route without its annotation fails).
#[tokio::test]
async fn documented_methods_are_the_routed_ones() {
    let (state, _dir) = state().await;
    for (path, methods) in documented() {
        let uri = path.replace("{id}", "1");
        for m in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
            let req = Request::builder()
                .method(m.clone())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .expect("request");
            let status = crate::api::router(state.clone())
                .oneshot(req)
                .await
                .expect("answered")
                .status();
            let is_documented = methods.contains(&m.as_str().to_ascii_lowercase());
            assert_eq!(
                status == StatusCode::METHOD_NOT_ALLOWED,
                !is_documented,
                "{m} {path}: answered {status}, documented: {is_documented}"
            );
        }
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let (state, _dir) = state().await;
    let req = Request::get("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let resp = crate::api::router(state)
        .oneshot(req)
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    let served: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(served, document());
    assert_eq!(served["openapi"], "3.1.0");
}

/// Every operation names its caller, and the operator ones the least role
/// the handler's extractor demands.
#[test]
fn roles_and_error_answers() {
    let doc = document();
    let op = |path: &str, method: &str| doc["paths"][path][method].clone();
    let scope =
        |path: &str, method: &str| op(path, method)["security"][0]["operator_token"][0].clone();
    assert_eq!(scope("/v1/jobs", "get"), "viewer");
    assert_eq!(scope("/v1/jobs", "post"), "operator");
    assert_eq!(scope("/v1/tokens", "post"), "admin");
    assert_eq!(scope("/metrics", "get"), "viewer");
    assert!(op("/v1/agents/{id}/poll", "post")["security"][0]["agent_secret"].is_array());
    assert!(op("/openapi.json", "get")["security"].is_null());
    assert!(op("/v1/agents/enroll", "post")["security"].is_null());
    let submit = op("/v1/jobs", "post");
    for status in [
        "201", "400", "401", "403", "409", "413", "415", "422", "503",
    ] {
        assert!(
            submit["responses"][status].is_object(),
            "POST /v1/jobs lacks {status}"
        );
    }
    assert_eq!(
        submit["responses"]["409"]["content"]["application/json"]["example"]["error"]["code"],
        "idempotency_conflict"
    );
    assert!(
        submit["description"]
            .as_str()
            .is_some_and(|d| d.contains("role **operator**")),
        "{submit}"
    );
    // Found by schemathesis (ST103, undocumented status): a taken token
    // name and a taken agent id are 409.
    for (path, method) in [("/v1/tokens", "post"), ("/v1/agents/enroll", "post")] {
        assert_eq!(
            op(path, method)["responses"]["409"]["content"]["application/json"]["example"]["error"]
                ["code"],
            "conflict",
            "{method} {path}"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["operator_token"]["scheme"], "bearer");
    assert_eq!(schemes["agent_secret"]["scheme"], "bearer");
}

/// Fields and parameters the handlers check with `valid_name` carry its
/// pattern, so a client (and schemathesis) knows `""` or `a b` is refused:
/// schemathesis sent `{"agent_id": ""}` to enroll, valid by the document
/// then, and got 400; `GET /v1/jobs?before=-116` likewise (the minimum was
/// lost on the `JobId` alias).
#[test]
fn checked_names_and_ids_are_constrained_in_the_document() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let name_pattern = r"^[A-Za-z0-9_.\-]{1,128}$";
    for (schema, field) in [
        ("EnrollRequest", "agent_id"),
        ("OperatorTokenCreate", "name"),
        ("JobSubmit", "group"),
        ("DrillStart", "group"),
        ("PipelineSpec", "group"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["pattern"], name_pattern,
            "{schema}.{field}"
        );
    }
    // Schedule, pipeline and step names: at most 64 (`schedule::valid_name`).
    let short_pattern = r"^[A-Za-z0-9_.\-]{1,64}$";
    for (schema, field) in [
        ("ScheduleSpec", "name"),
        ("PipelineSpec", "name"),
        ("StepSpec", "name"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["pattern"], short_pattern,
            "{schema}.{field}"
        );
    }
    let short = regex::Regex::new(short_pattern).expect("pattern");
    for n in [0, 1, 64, 65] {
        let sample = "s".repeat(n);
        assert_eq!(
            short.is_match(&sample),
            baton_proto::schedule::valid_name(&sample),
            "{n}"
        );
    }
    let batch = &schemas["JobBatchSubmit"]["properties"]["jobs"];
    assert_eq!(
        (&batch["minItems"], &batch["maxItems"]),
        (&1.into(), &baton_proto::job::MAX_BATCH_JOBS.into())
    );
    let ttl = &schemas["JobSubmit"]["properties"]["lease_ttl_ms"];
    assert_eq!(ttl["minimum"], baton_proto::limits::MIN_LEASE_TTL_MS);
    assert_eq!(ttl["maximum"], baton_proto::limits::MAX_LEASE_TTL_MS);
    let re = regex::Regex::new(name_pattern).expect("pattern");
    let long = "a".repeat(baton_proto::limits::MAX_NAME_LEN);
    for sample in [
        "",
        "a",
        "db-01.x_y",
        "a b",
        "ä",
        "a/b",
        &long,
        &format!("{long}a"),
    ] {
        assert_eq!(
            re.is_match(sample),
            baton_proto::valid_name(sample),
            "{sample:?}"
        );
    }
    let params = doc["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .clone();
    let before = params
        .iter()
        .find(|p| p["name"] == "before")
        .expect("before");
    assert_eq!(before["schema"]["minimum"], 1, "{before}");
    let audit = doc["paths"]["/v1/audit"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .clone();
    let before = audit
        .iter()
        .find(|p| p["name"] == "before")
        .expect("before");
    assert_eq!(before["schema"]["minimum"], 1, "{before}");
}

/// Each schema example is a body the proto type parses (so the examples a
/// client copies, and schemathesis' examples phase sends, are well-formed).
#[test]
fn schema_examples_parse_as_their_types() {
    fn parses<T: serde::de::DeserializeOwned>(doc: &Value, schema: &str) {
        let example = doc["components"]["schemas"][schema]["example"].clone();
        assert!(example.is_object(), "{schema} has no example");
        if let Err(e) = serde_json::from_value::<T>(example) {
            panic!("the example of {schema} does not parse: {e}");
        }
    }
    let doc = document();
    parses::<baton_proto::JobSubmit>(&doc, "JobSubmit");
    parses::<baton_proto::schedule::ScheduleSpec>(&doc, "ScheduleSpec");
    parses::<baton_proto::drill::DrillStart>(&doc, "DrillStart");
    parses::<baton_proto::auth::OperatorTokenCreate>(&doc, "OperatorTokenCreate");
    parses::<baton_proto::auth::EnrollmentTokenCreate>(&doc, "EnrollmentTokenCreate");
    parses::<baton_proto::auth::EnrollRequest>(&doc, "EnrollRequest");
    parses::<baton_proto::ErrorBody>(&doc, "ErrorBody");
}

/// utoipa wrote each `JobSpec` variant as `allOf: [{$ref: NoopSpec}, {kind}]`;
/// with `NoopSpec`'s `additionalProperties: false` no body satisfied it and
/// schemathesis could not generate a job ("Nothing satisfies the branch at
/// /components/schemas/JobSpec/oneOf/0"). Each variant is one closed object
/// holding `kind` and the spec's fields.
#[test]
fn job_spec_variants_are_closed_objects_with_their_kind() {
    let doc = document();
    assert!(!document_json().contains("\"allOf\""), "an allOf is left");
    let variants = doc["components"]["schemas"]["JobSpec"]["oneOf"]
        .as_array()
        .expect("oneOf")
        .clone();
    assert_eq!(variants.len(), baton_proto::JobKind::ALL.len());
    for v in &variants {
        assert_eq!(v["type"], "object", "{v}");
        assert_eq!(v["additionalProperties"], false, "{v}");
        let kind = v["properties"]["kind"]["enum"][0].as_str().expect("kind");
        assert!(baton_proto::JobKind::parse(kind).is_some(), "{kind}");
        let required = v["required"].as_array().expect("required");
        assert!(required.contains(&Value::from("kind")), "{v}");
    }
    let noop = variants
        .iter()
        .find(|v| v["properties"]["kind"]["enum"][0] == "noop")
        .expect("noop");
    assert!(noop["properties"]["sleep_ms"].is_object(), "{noop}");
}

/// Views stamped with the controller's clock document the header.
#[test]
fn stamped_views_document_the_now_header() {
    let doc = document();
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/agents",
        "/v1/schedules",
        "/v1/runs/{id}",
    ] {
        let headers = &doc["paths"][path]["get"]["responses"]["200"]["headers"];
        assert!(
            headers[baton_proto::NOW_HEADER].is_object(),
            "GET {path}: {headers}"
        );
    }
}

/// Procedure parameters (found by `positive_data_acceptance`): the document
/// states that an in or inout parameter needs a value (`if`/`else` on
/// `mode`), lists the `sql_type` allow-list, and the operations taking a
/// job spec document the 422 of what it cannot state (a name given twice,
/// a `sql_type` off the list).
#[test]
fn procedure_params_state_what_a_schema_can() {
    let doc = document();
    let param = &doc["components"]["schemas"]["ProcedureParam"];
    assert_eq!(param["if"]["properties"]["mode"]["const"], "out", "{param}");
    assert_eq!(param["if"]["required"][0], "mode", "{param}");
    assert_eq!(param["else"]["required"][0], "value", "{param}");
    assert_eq!(
        param["else"]["properties"]["value"]["$ref"],
        "#/components/schemas/ParamValue"
    );
    let sql_type = param["properties"]["sql_type"]["description"]
        .as_str()
        .expect("description");
    assert!(
        sql_type.contains(baton_proto::sql_type::SQL_TYPES),
        "{sql_type}"
    );
    for (path, method) in [
        ("/v1/jobs", "post"),
        ("/v1/jobs/batch", "post"),
        ("/v1/schedules", "post"),
        ("/v1/schedules/{id}", "put"),
        ("/v1/pipelines", "post"),
        ("/v1/pipelines/{id}", "put"),
        ("/v1/drills", "post"),
    ] {
        let answer = &doc["paths"][path][method]["responses"]["422"];
        assert_eq!(
            answer["content"]["application/json"]["example"]["error"]["code"], "unprocessable",
            "{method} {path}: {answer}"
        );
    }
    let labels = &doc["components"]["schemas"]["JobSubmit"]["properties"]["labels"];
    assert_eq!(
        labels["additionalProperties"]["maxLength"],
        crate::validate::MAX_LABEL_VALUE
    );
}
