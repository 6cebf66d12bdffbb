//! Batch submission end to end (`POST /v1/jobs/batch`): created in order,
//! all or none, the failing field named, idempotent on the whole body,
//! operator role only, audited once, and the jobs run.

use std::time::Duration;

use baton_proto::job::JobBatch;
use baton_proto::{ErrorCode, JobState};
use baton_tests::cluster::Cluster;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn noop(sleep_ms: u64) -> serde_json::Value {
    json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": sleep_ms},
           "allow_unplaced": true})
}

async fn post(
    api: &baton_tests::api::Api,
    body: &serde_json::Value,
    headers: &[(&str, &str)],
) -> baton_tests::api::Raw {
    api.raw(
        Method::POST,
        "/v1/jobs/batch",
        Some(serde_json::to_vec(body).expect("json")),
        headers,
    )
    .await
    .expect("post")
}

async fn job_count(api: &baton_tests::api::Api) -> usize {
    let r = api
        .raw(Method::GET, "/v1/jobs?limit=1000", None, &[])
        .await
        .expect("list");
    r.body["jobs"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_created_in_order_all_or_none_and_runs() {
    let c = Cluster::start_with(2, "", |o| o.slots = 4)
        .await
        .expect("cluster");
    // One invalid job: nothing is created, the field is named.
    let mut jobs: Vec<_> = (0..5).map(|_| noop(0)).collect();
    jobs[3] = noop(86_400_001);
    let r = post(&c.api, &json!({ "jobs": jobs }), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["error"]["field"], "jobs[3].spec.sleep_ms",
        "{}",
        r.body
    );
    let r = post(
        &c.api,
        &json!({"jobs": [noop(0), {"group": "default", "spec": {"kind": "command"}}]}),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        r.body["error"]["field"], "jobs[1].spec.program",
        "{}",
        r.body
    );
    let r = post(&c.api, &json!({ "jobs": [] }), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "jobs", "{}", r.body);
    let too_many: Vec<_> = (0..1001).map(|_| noop(0)).collect();
    let r = post(&c.api, &json!({ "jobs": too_many }), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(job_count(&c.api).await, 0);

    // A valid batch: 201, ids in order, every job runs.
    let jobs: Vec<_> = (0..20).map(|i| noop(i % 3)).collect();
    let r = post(&c.api, &json!({ "jobs": jobs }), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created: JobBatch = serde_json::from_value(r.body).expect("batch body");
    assert_eq!(created.jobs.len(), 20);
    assert!(created.jobs.windows(2).all(|w| w[1].id > w[0].id));
    for (i, j) in created.jobs.iter().enumerate() {
        assert_eq!(
            j.spec,
            serde_json::from_value(noop(i as u64 % 3)["spec"].clone()).expect("spec")
        );
    }
    for j in &created.jobs {
        let done = c.api.wait_terminal(j.id, WAIT).await.expect("terminal");
        assert_eq!(done.state, JobState::Succeeded, "{}", c.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_idempotency_role_and_audit() {
    let c = Cluster::start(0).await.expect("cluster");
    let body = json!({"jobs": [noop(0), noop(1), noop(2)]});
    let key = [(baton_proto::IDEMPOTENCY_KEY_HEADER, "batch-1")];
    let first = post(&c.api, &body, &key).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = post(&c.api, &body, &key).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(first.body["jobs"], again.body["jobs"]);
    let other = post(&c.api, &json!({"jobs": [noop(0)]}), &key).await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(
        other.body["error"]["code"],
        serde_json::to_value(ErrorCode::IdempotencyConflict).expect("code")
    );
    // The same key on a single submit is another request too.
    let single = c
        .api
        .raw(
            Method::POST,
            "/v1/jobs",
            Some(serde_json::to_vec(&noop(0)).expect("json")),
            &key,
        )
        .await
        .expect("submit");
    assert_eq!(single.status, 409, "{}", single.body);
    assert_eq!(job_count(&c.api).await, 3);

    // A viewer may not submit.
    let viewer = c
        .api
        .operator_token("viewer-1", "viewer")
        .await
        .expect("viewer token");
    let r = post(&c.api.with_token(&viewer), &body, &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(job_count(&c.api).await, 3);

    // Audited: one entry per call.
    let entries = c.api.audit_entries().await.expect("audit");
    let batch: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "POST /v1/jobs/batch")
        .collect();
    assert_eq!(batch.len(), 4, "{entries:?}");
    assert!(batch.iter().any(|e| e["status"] == 201));
    assert!(batch.iter().any(|e| e["status"] == 403));
}
