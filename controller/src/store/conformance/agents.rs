use baton_proto::pipeline::{PipelineSpec, StepCondition, StepSpec};
use baton_proto::{Capabilities, Completion, ConnectionInfo, JobKind, JobState};

use super::schedules::{run_one, spec};
use crate::store::agents::AgentSeen;
use crate::store::{Error, Store, rows_ts as ts};

/// Conformance case `presence_and_blocked_reason`.
pub async fn presence_and_blocked_reason(s: &Store) {
    let caps = Capabilities {
        kinds: vec![JobKind::Command, JobKind::Sql, JobKind::Upload],
        connections: vec![ConnectionInfo {
            name: "main".into(),
            kind: "mysql".into(),
        }],
        stores: vec!["offsite".into()],
    };
    let groups = vec!["db".to_string()];
    let seen = AgentSeen {
        id: "a1",
        groups: &groups,
        capabilities: &caps,
        version: "0.1.0",
        os: "linux",
        free_slots: 2,
        metrics: None,
    };
    crate::store::testutil::enrolled(s, "a1", &["db"]).await;
    s.agent_polled(&seen, 1000).await.expect("poll");
    let list = s.list_agents(1500, 1000).await.expect("list");
    assert_eq!(list.len(), 1);
    assert!(list[0].online);
    assert_eq!(list[0].free_slots, 2);
    assert!(!s.list_agents(5000, 1000).await.expect("list")[0].online);
    let queued = s
        .submit(crate::store::testutil::new_job("db", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    let r = |g: &'static str, k, c: Option<&'static str>| {
        let s = s.clone();
        let mut job = queued.clone();
        (job.group, job.kind, job.connection) = (g.to_owned(), k, c.map(str::to_owned));
        async move { s.blocked_reason(&job, 1500, 1000).await.expect("reason") }
    };
    assert_eq!(r("db", JobKind::Sql, Some("main")).await, None);
    assert!(
        r("db", JobKind::Sql, Some("other"))
            .await
            .expect("blocked")
            .contains("connection `other`")
    );
    assert!(
        r("db", JobKind::Dump, None)
            .await
            .expect("blocked")
            .contains("`dump`")
    );
    assert!(
        r("web", JobKind::Command, None)
            .await
            .expect("blocked")
            .contains("group `web`")
    );
    let upload = |store: &'static str| {
        let s = s.clone();
        let mut job = queued.clone();
        (job.kind, job.connection) = (JobKind::Upload, None);
        job.spec = baton_proto::JobSpec::Upload(baton_proto::upload::UploadSpec {
            store: store.into(),
            file: "/d/x.sql.zst".into(),
            key: None,
            retention: None,
        });
        async move { s.blocked_reason(&job, 1500, 1000).await.expect("reason") }
    };
    assert_eq!(upload("offsite").await, None);
    assert_eq!(
        upload("archive").await.as_deref(),
        Some("no online agent of group `db` has store `archive`")
    );

    // Drain: the next poll says so, the agent list shows since when, and
    // a job only it could run is blocked; resume lifts it.
    let d = s.set_drain("a1", true, 1200).await.expect("drain");
    assert_eq!(d.drained_at, Some(1200));
    assert_eq!(d.groups, vec!["db".to_string()]);
    assert!(d.running.is_empty());
    assert_eq!(
        s.set_drain("a1", true, 1300)
            .await
            .expect("again")
            .drained_at,
        Some(1200),
        "draining twice keeps the first time"
    );
    assert!(s.agent_polled(&seen, 1400).await.expect("poll"));
    assert!(s.agent_drained("a1").await.expect("drained"));
    assert_eq!(
        s.list_agents(1500, 1000).await.expect("list")[0].drained_at,
        Some(ts(1200))
    );
    assert_eq!(
        r("db", JobKind::Sql, Some("main")).await.as_deref(),
        Some("every agent of group `db` that could run it is drained (a1)")
    );
    let d = s.set_drain("a1", false, 1500).await.expect("resume");
    assert_eq!(d.drained_at, None);
    assert!(!s.agent_polled(&seen, 1500).await.expect("poll"));
    assert_eq!(r("db", JobKind::Sql, Some("main")).await, None);
    assert!(matches!(
        s.set_drain("nobody", true, 1).await,
        Err(Error::Missing(_))
    ));
}

/// Conformance case `a_pinned_step_waits_for_its_agent_and_says_why`: a
/// queued step pinned to the agent of an earlier step is blocked by that
/// agent alone (offline, drained, no free slot, revoked), whatever other
/// agents of its group could do; the reason names the agent and the step.
pub async fn a_pinned_step_waits_for_its_agent_and_says_why(s: &Store) {
    crate::store::testutil::enrolled(s, "a1", &["g"]).await;
    crate::store::testutil::enrolled(s, "a2", &["g"]).await;
    let job = spec("x").job.expect("template");
    let step = |name: &str, after: Option<&str>| StepSpec {
        name: name.into(),
        depends_on: after.iter().map(|a| a.to_string()).collect(),
        on: StepCondition::Success,
        same_agent_as: after.map(str::to_owned),
        group: None,
        job: job.clone(),
    };
    let p = PipelineSpec {
        name: "p".into(),
        group: "g".into(),
        timeout_ms: None,
        steps: vec![step("dump", None), step("verify", Some("dump"))],
    };
    s.put_pipeline(&p, true, 0).await.expect("put");
    let run = s.start_run("p", None, 15_000, 0).await.expect("start").run;
    run_one(s, "a1", Completion::Succeeded, "", 10).await;
    s.follow_up(20, 100, 15_000).await.expect("follow up");
    let id = s.get_run(run.id).await.expect("run").steps[1]
        .job_id
        .expect("queued");
    let pinned = s.get_job(id).await.expect("job");
    assert_eq!(pinned.state, JobState::Queued);

    let groups = vec!["g".to_string()];
    let caps = Capabilities {
        kinds: vec![JobKind::Noop],
        connections: Vec::new(),
        stores: Vec::new(),
    };
    let poll = |id: &'static str, free_slots: u32, now: i64| {
        let (s, groups, caps) = (s.clone(), groups.clone(), caps.clone());
        async move {
            let seen = AgentSeen {
                id,
                groups: &groups,
                capabilities: &caps,
                version: "0.1.0",
                os: "linux",
                free_slots,
                metrics: None,
            };
            s.agent_polled(&seen, now).await.expect("poll");
        }
    };
    let reason = |now: i64| {
        let (s, job) = (s.clone(), pinned.clone());
        async move { s.blocked_reason(&job, now, 1_000).await.expect("reason") }
    };
    let waits = "waits for agent `a1`, which ran step `dump` and holds its files";

    poll("a1", 0, 1_000).await;
    poll("a2", 4, 1_000).await;
    assert_eq!(
        reason(1_500).await,
        Some(format!("{waits}; it has no free slot"))
    );
    poll("a1", 1, 1_200).await;
    assert_eq!(reason(1_500).await, None, "its agent can take it");
    // Offline: another agent of the group, online and free, does not help.
    poll("a2", 4, 5_000).await;
    assert_eq!(
        reason(5_000).await,
        Some(format!("{waits}; it is offline since 1970-01-01T00:00:01Z"))
    );
    poll("a1", 1, 5_000).await;
    s.set_drain("a1", true, 5_100).await.expect("drain");
    assert_eq!(
        reason(5_500).await,
        Some(format!("{waits}; it is drained since 1970-01-01T00:00:05Z"))
    );
    s.set_drain("a1", false, 5_600).await.expect("resume");
    s.revoke_agent("a1", 5_700).await.expect("revoke");
    let revoked = reason(5_800).await.expect("blocked");
    assert!(
        revoked.starts_with(waits) && revoked.contains("revoked"),
        "{revoked}"
    );
    // An unpinned job of the same group is not blocked by `a1`.
    let free = s
        .submit(crate::store::testutil::new_job("g", None, "h"), 1)
        .await
        .expect("submit")
        .job;
    assert_eq!(
        s.blocked_reason(&free, 5_800, 1_000).await.expect("reason"),
        None
    );
}

/// Conformance case `fleet_figures_by_group_and_state`.
pub async fn fleet_figures_by_group_and_state(s: &Store) {
    use crate::store::agents::GroupAgents;
    let caps = Capabilities::default();
    for (id, groups) in [("a1", &["db", "web"][..]), ("a2", &["db"]), ("a3", &["db"])] {
        crate::store::testutil::enrolled(s, id, groups).await;
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if id != "a3" {
            let seen = AgentSeen {
                id,
                groups: &groups,
                capabilities: &caps,
                version: "0.1.0",
                os: "linux",
                free_slots: 1,
                metrics: None,
            };
            s.agent_polled(&seen, 1000).await.expect("poll");
        }
    }
    s.set_drain("a2", true, 1100).await.expect("drain");
    let g = |group: &str, online, draining, offline| GroupAgents {
        group: group.into(),
        online,
        draining,
        offline,
    };
    assert_eq!(
        s.fleet_figures(1500, 1000).await.expect("figures"),
        vec![g("db", 1, 1, 1), g("web", 1, 0, 0)]
    );
    // Revoked agents are not counted; a1 is offline once the window passed.
    s.revoke_agent("a3", 1600).await.expect("revoke");
    assert_eq!(
        s.fleet_figures(5000, 1000).await.expect("figures"),
        vec![g("db", 0, 1, 1), g("web", 0, 0, 1)]
    );
}

/// Conformance case `placement_reads_each_distinct_pair_once`: agents
/// configured alike are one row of the placement read; a revoked agent is
/// none.
pub async fn placement_reads_each_distinct_pair_once(s: &Store) {
    let caps = |conn: &str| Capabilities {
        kinds: vec![JobKind::Sql],
        connections: vec![ConnectionInfo {
            name: conn.into(),
            kind: "mysql".into(),
        }],
        stores: Vec::new(),
    };
    let (db, web) = (vec!["db".to_string()], vec!["web".to_string()]);
    let fleet = [
        ("a1", &db, caps("main")),
        ("a2", &db, caps("main")),
        ("a3", &db, caps("main")),
        ("a4", &db, caps("other")),
        ("a5", &web, caps("main")),
    ];
    for (id, groups, caps) in &fleet {
        let names: Vec<&str> = groups.iter().map(String::as_str).collect();
        crate::store::testutil::enrolled(s, id, &names).await;
        let seen = AgentSeen {
            id,
            groups,
            capabilities: caps,
            version: "0.1.0",
            os: "linux",
            free_slots: 1,
            metrics: None,
        };
        s.agent_polled(&seen, 1000).await.expect("poll");
    }
    let mut read = s.placement().await.expect("placement");
    read.sort_by(|a, b| (&a.0, &a.1.connections[0].name).cmp(&(&b.0, &b.1.connections[0].name)));
    let pairs: Vec<(&str, &str)> = read
        .iter()
        .map(|(g, c)| (g[0].as_str(), c.connections[0].name.as_str()))
        .collect();
    assert_eq!(pairs, [("db", "main"), ("db", "other"), ("web", "main")]);
    s.revoke_agent("a5", 2000).await.expect("revoke");
    let read = s.placement().await.expect("placement");
    assert_eq!(read.len(), 2, "the revoked agent's pair is gone: {read:?}");
}
