use baton_proto::{Capabilities, ConnectionInfo, JobKind};

use crate::store::agents::AgentSeen;
use crate::store::{Error, Store, rows_ts as ts};

/// Conformance case `presence_and_blocked_reason`.
pub async fn presence_and_blocked_reason(s: &Store) {
    let caps = Capabilities {
        kinds: vec![JobKind::Command, JobKind::Sql],
        connections: vec![ConnectionInfo {
            name: "main".into(),
            kind: "mysql".into(),
        }],
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
    let r = |g: &'static str, k, c: Option<&'static str>| {
        let s = s.clone();
        async move { s.blocked_reason(g, k, c, 1500, 1000).await.expect("reason") }
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
