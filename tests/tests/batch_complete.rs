//! Batched completion end to end (`POST /v1/agents/{id}/complete`): one
//! result per item in order, a refused item (stale token, output over the
//! bound, a job the caller does not hold) does not fail the others, a
//! redelivery is answered `duplicate`, only the agent itself may call it,
//! 1..=256 items; a poll carries completions the same way
//! (`PollRequest::completions`), held like any other poll; and real agents
//! deliver their completions through these.

use std::time::Duration;

use baton_proto::JobState;
use baton_tests::cluster::Cluster;
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn noop(sleep_ms: u64) -> serde_json::Value {
    json!({"group": "default", "spec": {"kind": "noop", "sleep_ms": sleep_ms}})
}

fn item(job_id: i64, token: i64) -> serde_json::Value {
    json!({"job_id": job_id, "token": token, "completion": {"outcome": "succeeded"},
           "result": {"stdout": "done\n"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_answered_in_order_and_one_bad_item_fails_alone() {
    let mut c = Cluster::start_with(
        1,
        "max_log_tail_bytes = 1024\nmax_output_bytes = 4096",
        |o| o.slots = 4,
    )
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let mut running = Vec::new();
    for _ in 0..3 {
        let job = c.api.submit(noop(60_000)).await.expect("submit");
        let (view, holder) = c.api.wait_running(job.id, WAIT).await.expect("running");
        assert_eq!(holder, "agent-1");
        running.push((job.id, view.attempts.last().expect("attempt").token));
    }
    let secret = c.agent("agent-1").secret().expect("secret");
    let me = c.api.as_agent("agent-1", &secret);
    let [(a, ta), (b, tb), (d, td)] = running[..] else {
        panic!("three jobs");
    };
    let mut too_big = item(d, td);
    too_big["result"]["stdout"] = json!("x".repeat(4097));
    let body = json!({"completions": [item(a, ta), item(b, tb + 1), too_big, item(999_999, 1)]});
    let r = me
        .post("/v1/agents/agent-1/complete", body.clone())
        .await
        .expect("batch");
    assert_eq!(r.status, 200, "{}", r.body);
    let results = r.body["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 4, "{}", r.body);
    assert_eq!(results[0]["job_id"], a);
    assert_eq!(results[0]["state"], "succeeded", "{}", r.body);
    assert!(results[0].get("duplicate").is_none(), "{}", r.body);
    assert_eq!(results[1]["job_id"], b);
    assert_eq!(results[1]["code"], "lease_lost", "{}", r.body);
    assert_eq!(results[2]["job_id"], d);
    assert_eq!(results[2]["code"], "payload_too_large", "{}", r.body);
    assert_eq!(results[3]["job_id"], 999_999);
    assert!(results[3]["code"].is_string(), "{}", r.body);
    assert!(results[3]["message"].is_string(), "{}", r.body);
    assert_eq!(c.api.job(a).await.expect("job").state, JobState::Succeeded);
    for id in [b, d] {
        assert_eq!(c.api.job(id).await.expect("job").state, JobState::Running);
    }

    // The same completion again (an outbox redelivery): duplicate.
    let r = me
        .post(
            "/v1/agents/agent-1/complete",
            json!({"completions": [item(a, ta)]}),
        )
        .await
        .expect("again");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["state"], "succeeded", "{}", r.body);
    assert_eq!(r.body["results"][0]["duplicate"], true, "{}", r.body);

    // Whole-request refusals: another agent's route, no items, too many.
    let r = me
        .post(
            "/v1/agents/agent-2/complete",
            json!({"completions": [item(b, tb)]}),
        )
        .await
        .expect("other id");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = me
        .post("/v1/agents/agent-1/complete", json!({"completions": []}))
        .await
        .expect("empty");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "completions", "{}", r.body);
    let many: Vec<_> = (0..257).map(|i| item(b, tb + 1 + i)).collect();
    let r = me
        .post(
            "/v1/agents/agent-1/complete",
            json!({ "completions": many }),
        )
        .await
        .expect("too many");
    assert_eq!(r.status, 400, "{}", r.body);
    // An operator token is not an agent.
    let r = c
        .api
        .raw(
            Method::POST,
            "/v1/agents/agent-1/complete",
            Some(serde_json::to_vec(&json!({"completions": [item(b, tb)]})).expect("json")),
            &[],
        )
        .await
        .expect("operator");
    assert!(r.status == 401 || r.status == 403, "{}", r.body);
    assert_eq!(c.api.job(b).await.expect("job").state, JobState::Running);

    // A poll carries completions: recorded as the batch route would, and
    // answered in `completed`, in order, beside the poll's own answer.
    let poll = |completions: Vec<serde_json::Value>| {
        json!({"groups": ["default"], "free_slots": 0, "wait_ms": 0, "version": "test",
               "os": "linux", "capabilities": {"kinds": ["noop"], "connections": []},
               "completions": completions})
    };
    let r = me
        .post(
            "/v1/agents/agent-1/poll",
            poll(vec![item(b, tb), item(a, ta + 5)]),
        )
        .await
        .expect("poll with completions");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["grants"], json!([]), "{}", r.body);
    assert_eq!(r.body["completed"][0]["job_id"], b, "{}", r.body);
    assert_eq!(r.body["completed"][0]["state"], "succeeded", "{}", r.body);
    assert_eq!(r.body["completed"][1]["code"], "lease_lost", "{}", r.body);
    assert_eq!(c.api.job(b).await.expect("job").state, JobState::Succeeded);
    let many: Vec<_> = (0..257).map(|i| item(d, td + 1 + i)).collect();
    let r = me
        .post("/v1/agents/agent-1/poll", poll(many))
        .await
        .expect("too many");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error"]["field"], "completions", "{}", r.body);
    // With a free slot and a hold asked, a poll carrying completions is
    // held like any other: its completion is recorded while it waits, and
    // the answer at the end of the hold carries the result.
    let mut held = poll(vec![item(d, td)]);
    held["free_slots"] = json!(1);
    held["wait_ms"] = json!(4_000);
    let task = {
        let me = me.clone();
        tokio::spawn(async move { me.post("/v1/agents/agent-1/poll", held).await })
    };
    c.api
        .wait_for(d, WAIT, "succeeded", |j| j.state == JobState::Succeeded)
        .await
        .expect("recorded");
    assert!(!task.is_finished(), "answered before its hold ran out");
    let r = task.await.expect("join").expect("held poll");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["grants"], json!([]), "{}", r.body);
    assert_eq!(r.body["completed"][0]["state"], "succeeded", "{}", r.body);
    // A refused completion (a stale token) cuts the hold short: the agent
    // must hear of it at once, not when the hold runs out.
    let mut stale = poll(vec![item(b, tb + 9)]);
    stale["free_slots"] = json!(1);
    stale["wait_ms"] = json!(60_000);
    let asked = std::time::Instant::now();
    let r = me
        .post("/v1/agents/agent-1/poll", stale)
        .await
        .expect("poll with a refused completion");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["completed"][0]["code"], "lease_lost", "{}", r.body);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "held {:?} with a refused completion",
        asked.elapsed()
    );
}

/// A poll carrying a completion parks like an idle one: a job submitted
/// meanwhile is handed to it, and one answer carries both the grant and the
/// completion's result (one round trip per job for an agent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_poll_carrying_a_completion_is_handed_the_next_job() {
    let mut c = Cluster::start(1).await.expect("cluster");
    c.wait_agents_online().await.expect("online");
    let secret = c.agent("agent-1").secret().expect("secret");
    // The test polls as agent-1 from here on: the agent itself stops.
    let agent = c.agent("agent-1");
    let code = agent.terminate(Duration::from_secs(30)).expect("exit");
    assert_eq!(code, Some(0), "{}", agent.log_text());
    let me = c.api.as_agent("agent-1", &secret);
    let body = |free: u32, completions: Vec<serde_json::Value>| {
        json!({"groups": ["default"], "free_slots": free, "wait_ms": 30_000,
               "version": "test", "os": "linux",
               "capabilities": {"kinds": ["noop"], "connections": []},
               "completions": completions})
    };
    let first = c.api.submit(noop(0)).await.expect("submit");
    let r = me
        .post("/v1/agents/agent-1/poll", body(1, vec![]))
        .await
        .expect("poll");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["grants"][0]["job_id"], first.id, "{}", r.body);
    let token = r.body["grants"][0]["token"].as_i64().expect("token");

    let task = {
        let (me, held) = (me.clone(), body(1, vec![item(first.id, token)]));
        tokio::spawn(async move { me.post("/v1/agents/agent-1/poll", held).await })
    };
    c.api
        .wait_for(first.id, WAIT, "succeeded", |j| {
            j.state == JobState::Succeeded
        })
        .await
        .expect("recorded while held");
    assert!(!task.is_finished(), "a poll with a free slot was not held");
    let next = c.api.submit(noop(0)).await.expect("submit next");
    let r = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the held poll was not handed the job")
        .expect("join")
        .expect("held poll");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["grants"][0]["job_id"], next.id, "{}", r.body);
    assert_eq!(r.body["completed"][0]["job_id"], first.id, "{}", r.body);
    assert_eq!(r.body["completed"][0]["state"], "succeeded", "{}", r.body);
    assert!(
        r.body["completed"][0].get("duplicate").is_none(),
        "{}",
        r.body
    );
    let (_, holder) = c.api.wait_running(next.id, WAIT).await.expect("running");
    assert_eq!(holder, "agent-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_deliver_their_completions_in_batches() {
    // Every answer logged ("Request answered" with its route and status).
    let c = Cluster::start_with(
        2,
        "log_level = \"info,baton_controller::api::trace=debug\"",
        |o| o.slots = 8,
    )
    .await
    .expect("cluster");
    c.wait_agents_online().await.expect("online");
    let jobs: Vec<_> = (0..60).map(|i| noop(i % 4)).collect();
    let r = c
        .api
        .raw(
            Method::POST,
            "/v1/jobs/batch",
            Some(serde_json::to_vec(&json!({ "jobs": jobs })).expect("json")),
            &[],
        )
        .await
        .expect("submit");
    assert_eq!(r.status, 201, "{}", r.body);
    let ids: Vec<i64> = r.body["jobs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|j| j["id"].as_i64())
        .collect();
    assert_eq!(ids.len(), 60, "{}", r.body);
    for id in &ids {
        let j = c.api.wait_terminal(*id, WAIT).await.expect("terminal");
        assert_eq!(j.state, JobState::Succeeded, "{}", c.logs());
    }
    // Every completion was delivered (logged by its agent) and its outbox file
    // removed (both just after the controller's answer: wait for them; an
    // idle agent's last completion rides a poll held until its wait ends).
    let end = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < end {
        if c.agents.iter().all(|a| a.outbox_len() == 0)
            && ids.iter().all(|id| {
                c.logs().lines().any(|l| {
                    l.contains("Completion delivered") && l.contains(&format!("job_id={id} "))
                })
            })
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = c.logs();
    for id in &ids {
        assert!(
            logs.lines().any(|l| l.contains("Completion delivered")
                && l.contains(&format!("job_id={id} "))),
            "no delivery of job {id}\n{logs}"
        );
    }
    for i in 0..2 {
        assert_eq!(c.agents[i].outbox_len(), 0, "{logs}");
    }
    // Through the batch route or riding polls, not the single one.
    let answered = |route: &str| {
        c.controller
            .log_text()
            .lines()
            .filter(|l| l.contains("Request answered") && l.contains(&format!("route=\"{route}\"")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let batches = answered("/v1/agents/{id}/complete");
    assert!(!batches.is_empty(), "{}", c.controller.log_text());
    assert!(
        batches.iter().all(|l| l.contains("status=200")),
        "{batches:?}"
    );
    assert_eq!(answered("/v1/jobs/{id}/complete"), Vec::<String>::new());
    // Accepted completions are the attempts' ends, not audit rows.
    let entries = c.api.audit_entries().await.expect("audit");
    assert!(
        !entries.iter().any(|e| e["action"]
            .as_str()
            .is_some_and(|a| a.ends_with("/complete"))),
        "{entries:?}"
    );
}
