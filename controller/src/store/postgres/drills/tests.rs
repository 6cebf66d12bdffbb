//! Drills with several replicas on one database (PostgreSQL only; the
//! single-store behaviour is the conformance suite's).

use baton_proto::drill::{DrillEventKind, DrillState};
use baton_proto::{JobSpec, NoopSpec, RetryPolicy};

use super::*;
use crate::store::postgres::testutil;

/// A noop job of group `g` written directly (the jobs area is not under
/// test here): `running` with one attempt of token 1 held by `a1`, or
/// `succeeded` at `finished_at` after that attempt.
async fn job(s: &PgStore, finished_at: Option<i64>) -> i64 {
    let spec = serde_json::to_string(&JobSpec::Noop(NoopSpec::default())).expect("spec");
    let retry = serde_json::to_string(&RetryPolicy::default()).expect("retry");
    let state = if finished_at.is_some() {
        "succeeded"
    } else {
        "running"
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, attempts_spent, grants, last_token,
                           not_before, created_at, updated_at, finished_at)
         VALUES ('g', 'noop', $1, $2, 1000, $3, 1, 1, 1, 0, 0, 0, $4) RETURNING id",
    )
    .bind(spec)
    .bind(retry)
    .bind(state)
    .bind(finished_at)
    .fetch_one(&s.pool)
    .await
    .expect("job");
    let outcome = finished_at.map(|_| "succeeded");
    sqlx::query(
        "INSERT INTO attempts (job_id, number, agent_id, token, started_at, ended_at, outcome)
         VALUES ($1, 1, 'a1', 1, 10, $2, $3)",
    )
    .bind(id)
    .bind(finished_at)
    .bind(outcome)
    .execute(&s.pool)
    .await
    .expect("attempt");
    id
}

/// A running crash drill of `job_id`, created at 0.
async fn drill(s: &PgStore, job_id: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO drills (grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state, created_by, created_at, updated_at)
         VALUES ('g', 'crash', 1000, 1000, 10000, $1, 'running', 'test', 0, 0) RETURNING id",
    )
    .bind(job_id)
    .fetch_one(&s.pool)
    .await
    .expect("drill")
}

/// `(at, detail)` of each `kind` event of drill `id`.
async fn events_of(s: &PgStore, id: i64, kind: DrillEventKind) -> Vec<(i64, Option<String>)> {
    sqlx::query_as("SELECT at, detail FROM drill_events WHERE drill_id = $1 AND kind = $2")
        .bind(id)
        .bind(kind.as_str())
        .fetch_all(&s.pool)
        .await
        .expect("events")
}

/// Two replicas refresh the same ended drills at the same time, each with
/// its own `now`: every drill gets one verdict, and its stored report,
/// finish time and `verdict` event come from the same refresh (a second
/// writer would overwrite the first's finish time and report).
#[tokio::test]
async fn two_replicas_refreshing_at_once_write_one_verdict() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let mut drills = Vec::new();
    for _ in 0..40 {
        let j = job(&a, Some(500)).await;
        drills.push(drill(&a, j).await);
    }
    let mut tasks = Vec::new();
    for &id in &drills {
        for (s, now) in [(a.clone(), 10_000), (b.clone(), 20_000)] {
            tasks.push(tokio::spawn(async move { s.refresh_drill(id, now).await }));
        }
    }
    for t in tasks {
        t.await.expect("task").expect("refresh");
    }
    for &id in &drills {
        let view = a.get_drill(id).await.expect("drill");
        assert_ne!(view.state, DrillState::Running, "drill {id} ended");
        let verdicts = events_of(&a, id, DrillEventKind::Verdict).await;
        assert_eq!(verdicts.len(), 1, "drill {id}: one verdict event");
        let finished = view.finished_at.expect("finished").timestamp_millis();
        assert!(finished == 10_000 || finished == 20_000, "{finished}");
        assert_eq!(
            verdicts[0].0, finished,
            "drill {id}: the stored finish is the verdict event's (one writer)"
        );
        // A later refresh on either replica changes nothing.
        let again = b.refresh_drill(id, 30_000).await.expect("refresh");
        assert_eq!(again.finished_at, view.finished_at);
        assert_eq!(again.report, view.report);
        assert_eq!(events_of(&b, id, DrillEventKind::Verdict).await.len(), 1);
    }
}

/// The holder's heartbeat reaches two replicas at once (a retry after a
/// timeout): the fault is handed out once and `fault_sent` recorded once.
#[tokio::test]
async fn a_fault_is_handed_to_one_heartbeat_across_replicas() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let mut drills = Vec::new();
    for _ in 0..20 {
        let j = job(&a, None).await;
        drills.push((j, drill(&a, j).await));
    }
    let mut tasks = Vec::new();
    for &(j, _) in &drills {
        for (s, now) in [(a.clone(), 1_000), (b.clone(), 1_001)] {
            tasks.push(tokio::spawn(async move {
                s.drill_fault_for(j, "a1", 1, now).await
            }));
        }
    }
    let mut handed = 0;
    for t in tasks {
        if t.await.expect("task").expect("fault").is_some() {
            handed += 1;
        }
    }
    assert_eq!(handed, drills.len(), "one fault per drill");
    for &(j, id) in &drills {
        assert_eq!(events_of(&a, id, DrillEventKind::FaultSent).await.len(), 1);
        assert!(
            b.drill_fault_for(j, "a1", 1, 2_000)
                .await
                .expect("fault")
                .is_none()
        );
        assert!(a.drill_fault_ack(id, j, "a1", 1, 2_100).await.expect("ack"));
        assert!(!b.drill_fault_ack(id, j, "a1", 1, 2_200).await.expect("ack"));
    }
}

/// A `controller_crash` drill's agent reports its failover to two replicas
/// at once (a retried call): one `agent_failover` event per drill, and one
/// of the two reports says it recorded it.
#[tokio::test]
async fn an_agents_failover_reported_to_two_replicas_is_recorded_once() {
    let Some((a, b, _guard)) = testutil::two_replicas().await else {
        return;
    };
    let mut drills = Vec::new();
    for n in 0..20 {
        let agent = format!("a{n}");
        let j = job(&a, None).await;
        let id = drill(&a, j).await;
        sqlx::query("UPDATE drills SET method = 'controller_crash', fault_agent = $1, fault_token = 1 WHERE id = $2")
            .bind(&agent)
            .bind(id)
            .execute(&a.pool)
            .await
            .expect("controller_crash");
        insert_event(
            &mut a.pool.acquire().await.expect("conn"),
            id,
            900,
            DrillEventKind::FaultInjected,
            1,
            Some(&agent),
            None,
        )
        .await
        .expect("fault_injected");
        drills.push((agent, id));
    }
    let mut tasks = Vec::new();
    for (agent, _) in &drills {
        for (s, now) in [(a.clone(), 2_000), (b.clone(), 2_001)] {
            let agent = agent.clone();
            tasks.push(tokio::spawn(async move {
                s.drill_agent_failover(&agent, 1_500, now).await
            }));
        }
    }
    let mut recorded = 0;
    for t in tasks {
        if t.await.expect("task").expect("failover") {
            recorded += 1;
        }
    }
    assert_eq!(recorded, drills.len(), "one report per drill recorded it");
    for (_, id) in &drills {
        let events = events_of(&a, *id, DrillEventKind::AgentFailover).await;
        assert_eq!(events.len(), 1, "drill {id}");
        assert_eq!(events[0].1.as_deref(), Some("1500 ms"));
    }
}
