//! The OpenAPI 3.1 document of the HTTP API, generated from the code: the
//! `#[utoipa::path]` annotation next to each handler (route, parameters,
//! bodies, success and specific error answers, the role it needs) and the
//! schemas derived on the proto types (feature `openapi` of `baton-proto`).
//! [`Conventions`] adds what every operation shares: the JSON error answers
//! (400, 401/403, 408, 413, 415, 503) with examples, and the role in each
//! operation's description.
//!
//! Served at `GET /openapi.json` without a token, and checked into
//! `docs/openapi.json`: `openapi/tests.rs` fails when the two differ
//! (`BATON_UPDATE_OPENAPI=1` rewrites the file) and when a route of
//! [`super::router`] is missing from the document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use baton_proto::ErrorCode;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, path::Operation};

/// Security scheme of operator tokens; its scope names the least role.
pub const OPERATOR_SCHEME: &str = "operator_token";
/// Security scheme of agent secrets.
pub const AGENT_SCHEME: &str = "agent_secret";

/// The document: every route's operation and the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton controller API",
        version = "1",
        description = "The controller's HTTP API, version 1 (`/v1/...`): operators \
submit and watch jobs, schedules, pipelines and drills; agents poll for \
leases and report back. Every non-2xx answer is the JSON error body \
`{\"error\": {\"code\", \"message\", \"field\"}}`; `code` is one of `ErrorCode` \
and decides the status, `field` names the request field at fault.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        super::healthz,
        super::readyz,
        serve,
        super::metrics::serve,
        super::operator::submit,
        super::operator::list,
        super::batch::submit_batch,
        super::operator::get_job,
        super::operator::cancel,
        super::operator::retry,
        super::operator::agents,
        super::operator::drain_agent,
        super::operator::resume_agent,
        super::identity::enroll,
        super::identity::revoke_agent,
        super::identity::create_enrollment_token,
        super::identity::list_enrollment_tokens,
        super::identity::revoke_enrollment_token,
        super::identity::create_operator_token,
        super::identity::list_operator_tokens,
        super::identity::revoke_operator_token,
        super::identity::whoami,
        super::identity::audit_log,
        super::schedules::list,
        super::schedules::create,
        super::schedules::put,
        super::schedules::show,
        super::schedules::delete,
        super::schedules::pause,
        super::schedules::resume,
        super::schedules::trigger,
        super::schedules::backfill,
        super::schedules::history,
        super::schedules::next,
        super::pipelines::list,
        super::pipelines::create,
        super::pipelines::put,
        super::pipelines::show,
        super::pipelines::delete,
        super::pipelines::run,
        super::pipelines::runs,
        super::pipelines::show_run,
        super::pipelines::cancel_run,
        super::pipelines::retry_run,
        super::drills::start,
        super::drills::list,
        super::drills::show,
        super::agent::poll,
        super::agent::heartbeat,
        super::agent::complete,
        super::agent::complete_batch,
        super::agent::release,
        super::agent::abandon,
        super::drills::fault_ack,
        super::notifications::deliveries,
    ),
    components(schemas(baton_proto::ErrorBody, baton_proto::ErrorCode)),
    modifiers(&Conventions),
    tags(
        (name = "jobs", description = "Submit, list, read, cancel and retry jobs"),
        (name = "agents", description = "The fleet as operators see it; drain and resume"),
        (name = "identity", description = "Enrollment, operator tokens, revocation, audit"),
        (name = "schedules", description = "Cron schedules and their occurrences"),
        (name = "pipelines", description = "Pipelines of steps and their runs"),
        (name = "drills", description = "Failover drills"),
        (name = "notifications", description = "Webhook deliveries and their results"),
        (name = "agent", description = "The agents' wire protocol (agent secrets only)"),
        (name = "health", description = "Probes, metrics and this document"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON with a final newline, built once.
pub fn document_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        merge_tagged_variants(&mut doc);
        tighten(&mut doc);
        let mut text = serde_json::to_string_pretty(&doc)
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot serialise the document: {e}\"}}"));
        text.push('\n');
        text
    })
}

/// utoipa writes a variant of an internally tagged enum (`JobSpec`, tag
/// `kind`) as `allOf: [{$ref: Spec}, {kind}]`; with the spec's
/// `additionalProperties: false` (serde's `deny_unknown_fields`) nothing
/// satisfies that, though serde accepts `{"kind": "noop", "sleep_ms": 5}`.
/// Such an `allOf` of plain objects becomes the one object it means.
fn merge_tagged_variants(doc: &mut serde_json::Value) {
    let schemas = doc["components"]["schemas"].clone();
    merge_in(doc, &schemas);
}

fn merge_in(v: &mut serde_json::Value, schemas: &serde_json::Value) {
    use serde_json::{Map, Value};
    if let Some(parts) = v.get("allOf").and_then(Value::as_array) {
        let resolved: Option<Vec<&Map<String, Value>>> = parts
            .iter()
            .map(|p| {
                let p = match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
                    None => p,
                };
                p.as_object()
                    .filter(|o| o.get("type") == Some(&Value::from("object")))
            })
            .collect();
        if let Some(objects) = resolved.filter(|o| o.len() > 1) {
            let mut properties = Map::new();
            let mut required: Vec<Value> = Vec::new();
            for o in &objects {
                if let Some(p) = o.get("properties").and_then(Value::as_object) {
                    properties.extend(p.clone());
                }
                if let Some(r) = o.get("required").and_then(Value::as_array) {
                    required.extend(r.iter().cloned());
                }
            }
            let closed = objects
                .iter()
                .any(|o| o.get("additionalProperties") == Some(&Value::Bool(false)));
            let mut merged = Map::new();
            merged.insert("type".into(), "object".into());
            if let Some(d) = v.get("description") {
                merged.insert("description".into(), d.clone());
            }
            merged.insert("required".into(), Value::Array(required));
            merged.insert("properties".into(), Value::Object(properties));
            if closed {
                merged.insert("additionalProperties".into(), Value::Bool(false));
            }
            *v = Value::Object(merged);
            return;
        }
    }
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| merge_in(x, schemas)),
        Value::Array(a) => a.iter_mut().for_each(|x| merge_in(x, schemas)),
        _ => {}
    }
}

/// What the derives cannot say, written into the document: the server
/// refuses these, so the document must not call them valid (found by
/// schemathesis' `positive_data_acceptance`).
///
/// - `ParamValue`'s `null` variant carries no `value` (serde refuses one);
/// - the groups of an enrollment token are names, like every group.
fn tighten(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let schemas = &mut doc["components"]["schemas"];
    if let Some(variants) = schemas["ParamValue"]["oneOf"].as_array_mut() {
        for v in variants {
            if v["properties"]["type"]["enum"] == json!(["null"]) {
                v["additionalProperties"] = Value::Bool(false);
            }
        }
    }
    let groups = &mut schemas["EnrollmentTokenCreate"]["properties"]["groups"];
    if groups.get("items").is_some() {
        groups["items"]["pattern"] = json!(r"^[A-Za-z0-9_.\-]{1,128}$");
        groups["minItems"] = json!(1);
    }
    procedure_params(schemas);
    session_settings(doc);
    labels(doc);
}

/// `ProcedureParam`: `value` is required unless `mode` is `out` (serde
/// reads a missing `mode` as `in`, and `"value": null` as no value), and
/// `sql_type` lists the allow-list of `baton_proto::sql_type` (a grammar
/// with bounds no pattern states exactly: the server answers 422 naming
/// `spec.params[i].sql_type`; so does a name given twice).
fn procedure_params(schemas: &mut serde_json::Value) {
    use serde_json::json;
    let param = &mut schemas["ProcedureParam"];
    if param.get("properties").is_none() {
        return;
    }
    param["if"] = json!({"properties": {"mode": {"const": "out"}}, "required": ["mode"]});
    param["else"] = json!({
        "required": ["value"],
        "properties": {"value": {"$ref": "#/components/schemas/ParamValue"}},
    });
    let sql_type = &mut param["properties"]["sql_type"]["description"];
    if let Some(d) = sql_type.as_str() {
        *sql_type = json!(format!(
            "{d}\n\nAccepted (case-insensitive, blanks ignored): {}; n of nvarchar 1-4000, of \
             varchar and varbinary 1-8000; precision 1-38, scale 0 to the precision; time and \
             datetime2 scale 0-7. Another type is refused with 422 naming the field.",
            baton_proto::sql_type::SQL_TYPES
        ));
    }
}

/// Every `labels` map: keys are names, at most 64 of them, values at most
/// 256 characters (the server counts 256 bytes: a shorter value of wide
/// characters past that is 422, which JSON Schema's character count cannot
/// say).
fn labels(v: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(l)) =
                m.get_mut("properties").and_then(|p| p.get_mut("labels"))
                && l.get("type") == Some(&Value::from("object"))
            {
                l.insert(
                    "propertyNames".into(),
                    json!({"pattern": r"^[A-Za-z0-9_.\-]{1,128}$"}),
                );
                l.insert("maxProperties".into(), json!(crate::validate::MAX_LABELS));
                l.insert(
                    "additionalProperties".into(),
                    json!({"type": "string", "maxLength": crate::validate::MAX_LABEL_VALUE}),
                );
            }
            m.values_mut().for_each(labels);
        }
        Value::Array(a) => a.iter_mut().for_each(labels),
        _ => {}
    }
}

/// A job's `session` (`baton_proto::session`): the allowed keys of both
/// engines, each value as a schema can say it — a subset of what the
/// server takes (numbers only as JSON numbers, names without spaces); the
/// engine's own keys are checked at placement (422).
fn session_settings(v: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let int = |lo: i64, hi: i64| json!({"type": "integer", "minimum": lo, "maximum": hi});
    let text = |pattern: &str| json!({"type": "string", "pattern": pattern});
    let keys = json!({
        "time_zone": text(r"^([+-](0[0-9]|1[0-4]):[0-5][0-9]|[A-Za-z][A-Za-z0-9_/+-]{0,63})$"),
        "sql_mode": text(r"^[A-Za-z0-9_,]{0,1024}$"),
        "timestamp": int(1, 2_147_483_647),
        "lock_wait_timeout": int(1, 31_536_000),
        "innodb_lock_wait_timeout": int(1, 1_073_741_824),
        "max_statement_time": int(0, 31_536_000),
        "max_execution_time": int(0, 4_294_967_295),
        "DATEFORMAT": {"type": "string", "enum": ["mdy", "dmy", "ymd", "ydm", "myd", "dym"]},
        "LANGUAGE": text(r"^[A-Za-z][A-Za-z_()-]{0,127}$"),
        "LOCK_TIMEOUT": int(-1, 2_147_483_647),
        "DATEFIRST": int(1, 7),
        "DEADLOCK_PRIORITY": {"oneOf": [
            {"type": "string", "enum": ["LOW", "NORMAL", "HIGH"]}, int(-10, 10)]},
        "ARITHABORT": {"type": "boolean"},
    });
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(session)) =
                m.get_mut("properties").and_then(|p| p.get_mut("session"))
                && session.contains_key("$ref")
            {
                session.remove("$ref");
                session.insert("type".into(), "object".into());
                session.insert("properties".into(), keys);
                session.insert("additionalProperties".into(), Value::Bool(false));
                session.insert(
                    "maxProperties".into(),
                    json!(baton_proto::session::MAX_SETTINGS),
                );
            }
            m.values_mut().for_each(session_settings);
        }
        Value::Array(a) => a.iter_mut().for_each(session_settings),
        _ => {}
    }
}

/// The body of `/healthz` and `/readyz` when all is well.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Status {
    /// `ok` (`/healthz`) or `ready` (`/readyz`).
    pub status: String,
}

/// `GET /openapi.json`: this document (no token needed).
#[utoipa::path(
    get,
    operation_id = "openapi_document",
    path = "/openapi.json",
    tag = "health",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)
    )
)]
pub async fn serve() -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// What every operation shares, added after the annotations: the security
/// schemes, the role in the description, the shared JSON error answers.
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            OPERATOR_SCHEME,
            bearer(
                "An operator token (`baton_op_…`), made with `baton-controller token create` \
                 or `POST /v1/tokens`. Roles: viewer (reads) < operator (changes jobs, \
                 schedules, pipelines, drills, drains) < admin (tokens, enrollment, \
                 revocation, audit); the scope of an operation's requirement is the least \
                 role it needs, and a higher role is accepted.",
            ),
        );
        components.add_security_scheme(
            AGENT_SCHEME,
            bearer(
                "An agent secret (`baton_agt_…`) issued by `POST /v1/agents/enroll`; \
                 when the controller requires client certificates, also a TLS client \
                 certificate signed by its client CA. Operator tokens are refused here.",
            ),
        );
        for (status, code) in SHARED {
            components
                .responses
                .insert(shared_name(*status), RefOr::T(error_answer(*code, None)));
        }
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                conventions(op);
            }
        }
    }
}

/// Error answers most operations share, with the code their example shows.
const SHARED: &[(u16, ErrorCode)] = &[
    (400, ErrorCode::BadRequest),
    (401, ErrorCode::Unauthorized),
    (403, ErrorCode::Forbidden),
    (408, ErrorCode::RequestTimeout),
    (413, ErrorCode::PayloadTooLarge),
    (415, ErrorCode::UnsupportedMediaType),
    (503, ErrorCode::StoreUnavailable),
];

fn shared_name(status: u16) -> String {
    format!("Error{status}")
}

fn bearer(description: &str) -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(description))
            .build(),
    )
}

/// The role (or agent secret) an operation's security requirement names.
fn caller(op: &Operation) -> Option<String> {
    let reqs = serde_json::to_value(op.security.as_ref()?).ok()?;
    let first = reqs.as_array()?.first()?.as_object()?;
    if first.contains_key(AGENT_SCHEME) {
        return Some("an agent secret".to_owned());
    }
    let role = first.get(OPERATOR_SCHEME)?.as_array()?.first()?.as_str()?;
    Some(match role {
        "admin" => "an operator token with role **admin**".to_owned(),
        r => format!("an operator token with role **{r}** or higher"),
    })
}

fn conventions(op: &mut Operation) {
    let who = caller(op);
    let line = match &who {
        Some(w) => format!("Caller: {w}."),
        None => "Caller: anyone (no token).".to_owned(),
    };
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{line}"),
        _ => line,
    });
    let mut shared = vec![503];
    if who.is_some() {
        shared.extend([401, 403]);
    }
    if op.request_body.is_some() {
        shared.extend([400, 408, 413, 415]);
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        shared.push(400);
    }
    let responses = &mut op.responses.responses;
    for status in shared {
        responses.entry(status.to_string()).or_insert_with(|| {
            RefOr::Ref(Ref::new(format!(
                "#/components/responses/{}",
                shared_name(status)
            )))
        });
    }
    for resp in responses.values_mut() {
        if let RefOr::T(r) = resp {
            add_error_example(r);
        }
    }
}

/// An error answer of `code`'s status whose example shows `code`.
fn error_answer(code: ErrorCode, description: Option<String>) -> utoipa::openapi::Response {
    let description = description.unwrap_or_else(|| {
        let codes: Vec<String> = ALL_CODES
            .iter()
            .filter(|c| c.status() == code.status())
            .map(|c| format!("`{}`", code_name(*c)))
            .collect();
        format!("JSON error body; code {}", codes.join(" or "))
    });
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .example(Some(example(code)))
                .build(),
        )
        .build()
}

/// A response of the annotations whose body is the error body gets the
/// example of the code its description names first (`` `lease_lost`: … ``).
fn add_error_example(resp: &mut utoipa::openapi::Response) {
    let named = resp
        .description
        .split('`')
        .nth(1)
        .and_then(|n| ALL_CODES.iter().find(|c| code_name(**c) == n).copied());
    let Some(code) = named else { return };
    if let Some(RefOr::T(content)) = resp.content.get_mut("application/json")
        && content.example.is_none()
    {
        content.example = Some(example(code));
    }
}

fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn example(code: ErrorCode) -> serde_json::Value {
    let (message, field) = match code {
        ErrorCode::BadRequest => ("must be between 1 and 1000", Some("limit")),
        ErrorCode::Unauthorized => ("missing Authorization: Bearer token", None),
        ErrorCode::Forbidden => ("role viewer may not do this; operator is needed", None),
        ErrorCode::NotFound => ("no such job: 42", None),
        ErrorCode::RequestTimeout => ("the request body did not arrive within 10000 ms", None),
        ErrorCode::Conflict => ("job 42 is succeeded", None),
        ErrorCode::LeaseLost => ("lease lost: job 42 token 3", Some("token")),
        ErrorCode::IdempotencyConflict => (
            "the key was used with another request",
            Some(baton_proto::IDEMPOTENCY_KEY_HEADER),
        ),
        ErrorCode::PayloadTooLarge => ("request body too large: at most 16384 bytes here", None),
        ErrorCode::UnsupportedMediaType => ("Content-Type must be application/json", None),
        ErrorCode::Unprocessable => (
            "no enrolled agent of group `db` advertises connection `orders`",
            Some("spec.connection"),
        ),
        ErrorCode::RateLimited => ("too many enrollment attempts; retry later", None),
        ErrorCode::NotReady => ("starting or shutting down", None),
        ErrorCode::Overloaded => ("too many requests without credentials", None),
        ErrorCode::StoreUnavailable => (
            "the store cannot commit (disk full), nothing was changed: database or disk is full",
            None,
        ),
        ErrorCode::Internal => ("internal store error", None),
        ErrorCode::MethodNotAllowed => ("this route does not take PATCH", None),
    };
    serde_json::to_value(baton_proto::ErrorBody::new(
        code,
        message,
        field.map(str::to_owned),
    ))
    .unwrap_or_default()
}

/// Every error code (the `match` in [`example`] keeps this list whole).
const ALL_CODES: &[ErrorCode] = &[
    ErrorCode::BadRequest,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::RequestTimeout,
    ErrorCode::Conflict,
    ErrorCode::Unprocessable,
    ErrorCode::LeaseLost,
    ErrorCode::IdempotencyConflict,
    ErrorCode::PayloadTooLarge,
    ErrorCode::UnsupportedMediaType,
    ErrorCode::RateLimited,
    ErrorCode::NotReady,
    ErrorCode::Overloaded,
    ErrorCode::StoreUnavailable,
    ErrorCode::Internal,
];

#[cfg(test)]
mod tests;
