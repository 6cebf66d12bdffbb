//! Placement refusals name the field and list what exists.

use baton_proto::{Capabilities, ConnectionInfo, JobSpec, JobSubmit, NoopSpec, SqlSpec};

use super::*;

fn agent(groups: &[&str], conns: &[(&str, &str)]) -> (Vec<String>, Capabilities) {
    (
        groups.iter().map(|g| (*g).to_owned()).collect(),
        Capabilities {
            kinds: Vec::new(),
            connections: conns
                .iter()
                .map(|(name, kind)| ConnectionInfo {
                    name: (*name).to_owned(),
                    kind: (*kind).to_owned(),
                })
                .collect(),
            stores: Vec::new(),
        },
    )
}

fn sql(group: &str, connection: &str) -> JobSubmit {
    let mut job: JobSubmit = serde_json::from_value(serde_json::json!({
        "group": group, "spec": {"kind": "noop"}
    }))
    .expect("job");
    job.spec = JobSpec::Sql(SqlSpec {
        connection: connection.into(),
        sql: "SELECT 1".into(),
        exactly_once: false,
        session: Default::default(),
    });
    job
}

fn fleet() -> Fleet {
    Fleet::new(&[
        agent(&["g", "h"], &[("main", "mysql"), ("erp", "mssql")]),
        agent(&["g"], &[("main", "mariadb-future")]),
        agent(&["g"], &[("main", "mariadb")]),
        agent(&["idle"], &[]),
    ])
}

#[test]
fn an_unknown_group_names_the_groups_that_exist() {
    let e = fleet().place(&sql("nosuch", "main")).expect_err("group");
    assert_eq!(e.field, "group");
    assert!(e.message.contains("`nosuch`"), "{}", e.message);
    assert!(
        e.message.contains("groups with agents: g, h, idle"),
        "{}",
        e.message
    );
    let e = Fleet::default().place(&sql("g", "main")).expect_err("none");
    assert!(e.message.contains("no agent is enrolled"), "{}", e.message);
}

#[test]
fn an_unknown_connection_names_the_ones_advertised_with_kinds() {
    let e = fleet().place(&sql("g", "nosuch")).expect_err("connection");
    assert_eq!(e.field, "spec.connection");
    assert!(
        e.message
            .contains("they advertise: erp (mssql), main (mariadb/mariadb-future/mysql)"),
        "{}",
        e.message
    );
    let e = fleet().place(&sql("idle", "main")).expect_err("none");
    assert!(
        e.message.contains("advertise no connection"),
        "{}",
        e.message
    );
}

#[test]
fn known_connections_give_their_engines() {
    assert_eq!(fleet().place(&sql("g", "main")), Ok(vec![Engine::Mysql]));
    assert_eq!(fleet().place(&sql("h", "erp")), Ok(vec![Engine::Mssql]));
    let mut noop = sql("g", "x");
    noop.spec = JobSpec::Noop(NoopSpec::default());
    assert_eq!(fleet().place(&noop), Ok(vec![]));
}

#[test]
fn allow_unplaced_accepts_what_no_agent_runs() {
    for (g, c) in [("nosuch", "main"), ("g", "nosuch")] {
        let mut job = sql(g, c);
        job.allow_unplaced = true;
        assert_eq!(fleet().place(&job), Ok(vec![]), "{g} {c}");
    }
    let mut known = sql("g", "main");
    known.allow_unplaced = true;
    assert_eq!(fleet().place(&known), Ok(vec![Engine::Mysql]));
}

#[test]
fn long_lists_are_cut() {
    let names: Vec<String> = (0..30).map(|i| format!("g{i:02}")).collect();
    let agents: Vec<_> = names.iter().map(|n| agent(&[n.as_str()], &[])).collect();
    let e = Fleet::new(&agents)
        .place(&sql("x", "c"))
        .expect_err("group");
    assert!(e.message.contains("g19, … 10 more"), "{}", e.message);
    assert!(!e.message.contains("g20"), "{}", e.message);
}

fn upload(group: &str, store: &str) -> JobSubmit {
    let mut job = sql(group, "main");
    job.spec = JobSpec::Upload(baton_proto::upload::UploadSpec {
        store: store.into(),
        file: "/var/lib/baton/dumps/x.sql.zst".into(),
        key: None,
        retention: None,
    });
    job
}

#[test]
fn an_upload_needs_a_store_an_agent_of_its_group_advertises() {
    let mut with_store = agent(&["g"], &[]);
    with_store.1.stores = vec!["offsite".into(), "archive".into()];
    let fleet = Fleet::new(&[with_store, agent(&["h"], &[("main", "mysql")])]);
    assert_eq!(
        fleet.place(&upload("g", "offsite")).expect("placed"),
        vec![]
    );
    let e = fleet
        .place(&upload("g", "nosuch"))
        .expect_err("unknown store");
    assert_eq!(e.field, "spec.store");
    assert!(
        e.message
            .contains("store `nosuch` (they advertise: archive, offsite)"),
        "{}",
        e.message
    );
    let e = fleet
        .place(&upload("h", "offsite"))
        .expect_err("other group");
    assert!(
        e.message.contains("they advertise no store"),
        "{}",
        e.message
    );
    let mut anyway = upload("h", "offsite");
    anyway.allow_unplaced = true;
    assert!(fleet.place(&anyway).is_ok());
}

/// A restore of group `g`'s connection `main` from `store`.
fn restore_from(store: &str) -> JobSubmit {
    let mut job = sql("g", "main");
    job.spec = JobSpec::Restore(baton_proto::RestoreSpec {
        connection: "main".into(),
        source: baton_proto::RestoreSource {
            store: Some(store.into()),
            key_prefix: Some("main/".into()),
            ..Default::default()
        },
        database: "baton_drill_main".into(),
        replace: true,
    });
    job
}

#[test]
fn a_restore_from_a_store_needs_the_store_and_the_connection() {
    let mut with_store = agent(&["g"], &[("main", "mysql")]);
    with_store.1.stores = vec!["offsite".into()];
    let fleet = Fleet::new(&[with_store]);
    assert!(fleet.place(&restore_from("offsite")).is_ok());
    let e = fleet
        .place(&restore_from("nosuch"))
        .expect_err("unknown store");
    assert_eq!(e.field, "spec.source.store");
    assert!(e.message.contains("store `nosuch`"), "{}", e.message);
}

/// A job naming a connection and a store runs on one agent that has both:
/// one agent with the connection and another with the store is refused,
/// naming `spec.source.store` and both names.
#[test]
fn a_connection_and_a_store_on_different_agents_are_refused() {
    let db_only = agent(&["g"], &[("main", "mysql")]);
    let mut store_only = agent(&["g"], &[]);
    store_only.1.stores = vec!["offsite".into()];
    let apart = Fleet::new(&[db_only.clone(), store_only]);
    let e = apart
        .place(&restore_from("offsite"))
        .expect_err("no agent has both");
    assert_eq!(e.field, "spec.source.store");
    assert!(
        e.message
            .contains("both connection `main` and store `offsite`"),
        "{}",
        e.message
    );
    let mut anyway = restore_from("offsite");
    anyway.allow_unplaced = true;
    assert!(apart.place(&anyway).is_ok());
    let mut both = db_only;
    both.1.stores = vec!["offsite".into()];
    assert!(Fleet::new(&[both]).place(&restore_from("offsite")).is_ok());
}

/// Submits that find no snapshot at once (the first ones after a start)
/// share one read of the agents table; a change makes the next refusal
/// read once more, however many refusals wait for it.
#[tokio::test]
async fn concurrent_checks_share_one_rebuild() {
    let (store, _dir) = crate::store::testutil::store().await;
    crate::store::testutil::enrolled(&store, "a1", &["g"]).await;
    let placement = Placement::default();
    let known = sql("g", "main");
    let mut allowed = sql("g", "main");
    allowed.allow_unplaced = true;
    let checks = (0..20).map(|_| placement.check(&store, 0, |f| f.place(&allowed)));
    for answer in futures_util::future::join_all(checks).await {
        assert!(answer.expect("store").is_ok());
    }
    assert_eq!(placement.rebuilds(), 1);

    // `main` is advertised by no agent: a refusal on a current snapshot
    // reads nothing more.
    let refused = placement.check(&store, 0, |f| f.place(&known)).await;
    assert!(refused.expect("store").is_err());
    assert_eq!(placement.rebuilds(), 1);

    // After a change, 20 refusals at once read the store once, and refuse.
    placement.changed();
    let checks = (0..20).map(|_| placement.check(&store, 0, |f| f.place(&known)));
    for answer in futures_util::future::join_all(checks).await {
        assert!(answer.expect("store").is_err());
    }
    assert_eq!(placement.rebuilds(), 2);
}
