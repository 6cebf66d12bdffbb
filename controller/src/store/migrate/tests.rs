use super::*;
use crate::store::Store;
use crate::store::audit::AuditRecord;
use crate::store::lease::GrantRequest;
use crate::store::postgres::testutil;
use crate::store::sqlite::{SqliteStore, SyncMode};
use crate::store::testutil::{enrolled, new_job};
use baton_proto::auth::Role;
use sqlx::sqlite::SqliteConnection;

/// A typed cell, for comparing both sides.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Cell {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

/// A populated SQLite store: jobs (one granted and completed), an operator
/// token, an enrolled agent, audit rows, and raw rows in every other table.
async fn populated(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("baton.db");
    let s = Store::new(std::sync::Arc::new(
        SqliteStore::open(&path, SyncMode::Normal)
            .await
            .expect("open"),
    ));
    enrolled(&s, "agent-1", &["default"]).await;
    for i in 0..450 {
        let key = format!("k{i}");
        s.submit(new_job("default", Some(&key), &key), 1_000 + i)
            .await
            .expect("submit");
    }
    let groups = vec!["default".to_string()];
    let kinds = vec![baton_proto::JobKind::Noop];
    let req = GrantRequest {
        agent_id: "agent-1",
        groups: &groups,
        kinds: &kinds,
        connections: &[],
        stores: &[],
        max: 2,
    };
    let granted = s.grant(&req, 5_000).await.expect("grant");
    assert_eq!(granted.grants.len(), 2);
    s.create_operator_token("t_1", "ops", Role::Operator, "hash-ops", "test", 10)
        .await
        .expect("token");
    for n in 0..3 {
        let r = AuditRecord {
            actor: "ops".into(),
            role: "operator".into(),
            action: "POST /v1/jobs".into(),
            target: format!("/v1/jobs/{n}"),
            status: 201,
            error: None,
        };
        s.audit_grouped(&r, 20 + n).await.expect("audit");
    }
    s.close().await;
    let mut c = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("raw");
    for sql in [
        "INSERT INTO schedules (id, name, spec, paused, cursor, next_fire_at, created_at, updated_at) VALUES (7, 'nightly', '{}', 1, 100, 101, 1, 2)",
        "INSERT INTO occurrences (schedule_id, nominal, count, trigger, state, recorded_at) VALUES (7, 100, 1, 'schedule', 'fired', 3)",
        "INSERT INTO occurrences_pruned (schedule_id, state, count) VALUES (7, 'missed', 4)",
        "INSERT INTO pipelines (name, spec, created_at, updated_at) VALUES ('backup', '{}', 1, 1)",
        "INSERT INTO pipeline_runs (id, pipeline, spec, state, created_at, updated_at) VALUES (3, 'backup', '{}', 'running', 1, 1)",
        "INSERT INTO run_steps (run_id, step, state, job_id) VALUES (3, 'dump', 'queued', 1)",
        "INSERT INTO drills (id, grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state, created_by, created_at, updated_at) VALUES (5, 'default', 'crash', 1, 1, 1, 1, 'running', 'ops', 1, 1)",
        "INSERT INTO drill_events (drill_id, at, kind, attempt) VALUES (5, 1, 'started', 0)",
        // A missed occurrence of a store older than the notifications (its
        // trigger's event removed): the copy must not make one.
        "INSERT INTO occurrences (schedule_id, nominal, count, trigger, state, recorded_at) VALUES (7, 200, 1, 'schedule', 'missed', 4)",
        "DELETE FROM notifications",
    ] {
        sqlx::query(sql).execute(&mut c).await.expect(sql);
    }
    let _ = c.close().await;
    path
}

/// `SELECT` of `columns` from `table`.
fn select(table: &str, columns: &[(String, Kind)]) -> String {
    let list = columns
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {list} FROM {table}")
}

/// Rows of either database as sorted typed cells.
fn cells<R>(rows: &[R], columns: &[(String, Kind)]) -> Vec<Vec<Cell>>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<bool>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut out: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .enumerate()
                .map(|(i, (_, k))| match k {
                    Kind::Int => Cell::Int(r.try_get(i).expect("int")),
                    Kind::Text => Cell::Text(r.try_get(i).expect("text")),
                    Kind::Bool => Cell::Bool(r.try_get(i).expect("bool")),
                })
                .collect()
        })
        .collect();
    out.sort();
    out
}

async fn sqlite_rows(path: &Path, table: &str, columns: &[(String, Kind)]) -> Vec<Vec<Cell>> {
    let mut c = open_source(path).await.expect("open source");
    let rows = sqlx::query(sqlx::AssertSqlSafe(select(table, columns)))
        .fetch_all(&mut c)
        .await
        .expect("select");
    cells(&rows, columns)
}

async fn pg_rows(c: &mut PgConnection, table: &str, columns: &[(String, Kind)]) -> Vec<Vec<Cell>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(select(table, columns)))
        .fetch_all(&mut *c)
        .await
        .expect("select");
    cells(&rows, columns)
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("read")))
}

#[tokio::test]
async fn every_row_is_copied_ids_and_fleet_kept_and_the_source_untouched() {
    let Some((url, _guard)) = testutil::scratch_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path()).await;
    let before = sha256_of(&path);
    let copied = copy(&path, &testutil::options(&url)).await.expect("copy");
    assert_eq!(sha256_of(&path), before, "the source file changed");
    let counts: std::collections::BTreeMap<_, _> = copied.0.iter().cloned().collect();
    assert_eq!(counts["jobs"], 450);
    assert_eq!(counts["attempts"], 2);
    assert_eq!(counts["audit"], 3);
    assert_eq!(counts["meta"], 1);
    assert_eq!(counts["occurrences"], 2);
    assert_eq!(counts["notifications"], 0);
    for t in [
        "agents",
        "operator_tokens",
        "enrollment_tokens",
        "schedules",
        "occurrences_pruned",
        "pipelines",
        "pipeline_runs",
        "run_steps",
        "drills",
        "drill_events",
    ] {
        assert_eq!(counts[t], 1, "{t}");
    }
    let mut c = PgConnection::connect(&url).await.expect("pg");
    let mut src = open_source(&path).await.expect("source");
    for table in TABLES {
        let columns = shared_columns(&mut src, &mut c, table, &path)
            .await
            .expect("columns");
        assert_eq!(
            pg_rows(&mut c, table, &columns).await,
            sqlite_rows(&path, table, &columns).await,
            "table {table} differs"
        );
    }
    // The next id continues after the copied ones.
    let next: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (grp, kind, spec, retry, lease_ttl_ms, state, not_before, created_at, updated_at)
         VALUES ('g', 'noop', '{}', '{}', 1, 'queued', 0, 0, 0) RETURNING id",
    )
    .fetch_one(&mut c)
    .await
    .expect("insert");
    assert_eq!(next, 451);
    // The event triggers are on again after the copy.
    sqlx::query("UPDATE jobs SET state = 'failed' WHERE id = 451")
        .execute(&mut c)
        .await
        .expect("fail");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&mut c)
        .await
        .expect("count");
    assert_eq!(events, 1, "a failure after the copy is an event");
}

#[tokio::test]
async fn a_non_empty_target_is_refused_and_keeps_its_rows() {
    let Some((url, _guard)) = testutil::scratch_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path()).await;
    copy(&path, &testutil::options(&url))
        .await
        .expect("first copy");
    let err = copy(&path, &testutil::options(&url))
        .await
        .expect_err("second copy");
    assert!(
        matches!(&err, Error::NotEmpty { table, rows } if table == "jobs" && *rows == 450),
        "{err}"
    );
    let mut c = PgConnection::connect(&url).await.expect("pg");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut c)
        .await
        .expect("count");
    assert_eq!(jobs, 450);
}

#[tokio::test]
async fn a_source_with_another_schema_is_refused_before_the_target_is_touched() {
    let Some((url, _guard)) = testutil::scratch_database().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = populated(dir.path()).await;
    let mut raw = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("raw");
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&mut raw)
    .await
    .expect("unapply");
    let _ = raw.close().await;
    let err = copy(&path, &testutil::options(&url))
        .await
        .expect_err("old schema");
    assert!(matches!(err, Error::SourceSchema { .. }), "{err}");
    let mut c = PgConnection::connect(&url).await.expect("pg");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
    )
    .fetch_one(&mut c)
    .await
    .expect("count");
    assert_eq!(
        tables, 0,
        "the target was migrated although the source was refused"
    );
    let missing = copy(&dir.path().join("nope.db"), &testutil::options(&url))
        .await
        .expect_err("missing");
    assert!(matches!(missing, Error::Source { .. }), "{missing}");
}
