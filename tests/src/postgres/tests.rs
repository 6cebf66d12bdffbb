use super::*;

#[test]
fn with_database_replaces_the_path_and_keeps_the_query() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "t_1"),
        "postgres://postgres@127.0.0.1:5432/t_1"
    );
    assert_eq!(
        with_database(
            "postgres://u@127.0.0.1:1,127.0.0.1:2/db?target_session_attrs=read-write",
            "x"
        ),
        "postgres://u@127.0.0.1:1,127.0.0.1:2/x?target_session_attrs=read-write"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

#[test]
fn create_database_refuses_a_bad_prefix() {
    let pg = Pg {
        url: "postgres://postgres@127.0.0.1:1/postgres".into(),
        psql: PathBuf::from("/nonexistent/psql"),
    };
    assert!(pg.create_database("Bad-Prefix").is_err());
    assert!(pg.create_database("").is_err());
}

/// The failover tests' building blocks: a synchronous standby has every
/// acknowledged commit of a primary that is then killed; once promoted it
/// takes writes.
#[test]
fn a_promoted_synchronous_standby_has_every_acknowledged_commit() {
    if let Some(reason) = own_server_skip_reason() {
        println!("{reason}");
        return;
    }
    let primary = PgServer::start().expect("primary");
    let standby = primary.standby("s", true).expect("standby");
    let state = primary
        .pg
        .sql(None, "SELECT sync_state FROM pg_stat_replication")
        .expect("replication state");
    assert_eq!(state.trim(), "sync", "{}", primary.log_text());
    let db = primary.pg.create_database("failover").expect("database");
    primary
        .pg
        .sql(
            Some(&db),
            "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 500)",
        )
        .expect("writes");
    primary.kill9().expect("kill -9");
    assert!(
        primary.pg.sql(None, "SELECT 1").is_err(),
        "the primary is down"
    );
    assert!(
        standby
            .pg
            .sql(Some(&db), "INSERT INTO t VALUES (0)")
            .is_err(),
        "a standby refuses writes"
    );
    standby.promote().expect("promote");
    let n = standby
        .pg
        .sql(
            Some(&db),
            "INSERT INTO t VALUES (501); SELECT count(*) FROM t",
        )
        .expect("writes after promotion");
    assert_eq!(n.trim(), "501");
    // The standby lives in the primary's dir; both go with the primary.
    let root = primary.dir.clone();
    drop(standby);
    drop(primary);
    assert!(!root.exists(), "{} removed", root.display());
}
