//! OUT parameters without a value and session settings, against the real
//! server (same rules and helpers as the rest of [`super`]).

use std::collections::BTreeMap;

use baton_proto::SessionValue;

use super::*;

/// An OUT parameter as an operator writes it: no value.
fn out_param(name: &str) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode: ParamMode::Out,
        value: None,
        sql_type: None,
    }
}

fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, SessionValue> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), SessionValue::Text((*v).to_owned())))
        .collect()
}

fn with_session(mut spec: JobSpec, session: BTreeMap<String, SessionValue>) -> JobSpec {
    match &mut spec {
        JobSpec::Procedure(p) => p.session = session,
        JobSpec::Sql(s) => s.session = session,
        _ => panic!("no session on {}", spec.kind()),
    }
    spec
}

/// The README's example: a day report using CURRENT_DATE, its OUT values
/// read without dummy values, pinned to a day by `timestamp` and
/// `time_zone`; the next job on the same pooled connection sees neither.
#[tokio::test]
async fn session_settings_pin_the_day_and_do_not_leak_into_the_next_job() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec("CREATE TABLE orders (shop_id INT, created_at DATETIME)")
        .await;
    db.exec(
        "INSERT INTO orders VALUES (1, '2026-11-27 01:00:00'), (1, '2026-11-27 02:00:00'), \
         (1, '2026-11-26 09:00:00'), (2, '2026-11-27 03:00:00')",
    )
    .await;
    db.exec(
        "CREATE PROCEDURE day_report(IN p_shop INT, OUT p_orders INT, OUT p_day DATE, \
         OUT p_zone VARCHAR(64), OUT p_session BIGINT) \
         BEGIN \
           SET p_day = CURRENT_DATE; \
           SELECT COUNT(*) INTO p_orders FROM orders \
             WHERE shop_id = p_shop AND DATE(created_at) = CURRENT_DATE; \
           SET p_zone = @@session.time_zone; \
           SET p_session = CONNECTION_ID(); \
         END",
    )
    .await;
    let mut conn = db.connection(false);
    conn.pool_size = 1;
    let exec = MysqlExecutor::procedure(Arc::new(Pools::new([conn])));
    let report = |session| {
        with_session(
            call(
                &format!("{}.day_report", db.name),
                vec![
                    param("p_shop", ParamMode::In, ParamValue::Int(1)),
                    out_param("p_orders"),
                    out_param("p_day"),
                    out_param("p_zone"),
                    out_param("p_session"),
                ],
                false,
            ),
            session,
        )
    };
    // 2026-11-26 23:30 UTC is already the 27th at +05:00.
    let pinned = settings(&[
        ("timestamp", "2026-11-26T23:30:00Z"),
        ("time_zone", "+05:00"),
    ]);
    let out = exec.execute(job(job_id(), report(pinned))).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let first = data(&out)["out"].clone();
    assert_eq!(first["p_orders"], json!(2), "{first}");
    assert_eq!(first["p_day"], json!("2026-11-27"), "{first}");
    assert_eq!(first["p_zone"], json!("+05:00"), "{first}");

    let today: String = db
        .admin
        .query_first("SELECT CAST(CURRENT_DATE AS CHAR)")
        .await
        .expect("today")
        .expect("a row");
    let zone: String = db
        .admin
        .query_first("SELECT @@global.time_zone")
        .await
        .expect("zone")
        .expect("a row");
    // The next job, on the same connection once the pool has it back. The
    // pool resets a returned connection in the background; meanwhile a job
    // may get a second connection (the pool allows `pool_size + 1`), and
    // idle connections go out last-in first-out, so jobs one after the
    // other could keep getting that one. Each such connection is checked
    // for leaks too, then killed, so the pool drops it and hands out the
    // first job's connection once its reset is done.
    let mut reused = false;
    for _ in 0..200 {
        let out = exec.execute(job(job_id(), report(BTreeMap::new()))).await;
        assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
        let next = &data(&out)["out"];
        assert_eq!(next["p_zone"], json!(zone), "time_zone leaked: {next}");
        assert_eq!(next["p_day"], json!(today), "timestamp leaked: {next}");
        if next["p_session"] == first["p_session"] {
            reused = true;
            break;
        }
        if let Some(other) = next["p_session"].as_u64() {
            // It may be gone already; the next round tells.
            let _ = db
                .admin
                .query_drop(format!("KILL CONNECTION {other}"))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reused,
        "the pool never handed the first job's connection out again"
    );
}

#[tokio::test]
async fn sql_jobs_get_their_settings_and_a_foreign_key_runs_nothing() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec("CREATE TABLE t (x INT)").await;
    let exec = MysqlExecutor::sql(db.pools(false));
    let spec = with_session(
        batch(
            "SELECT @@session.sql_mode AS m, @@session.lock_wait_timeout AS w",
            false,
        ),
        [
            (
                "sql_mode".to_owned(),
                SessionValue::Text("ansi_quotes".into()),
            ),
            ("lock_wait_timeout".to_owned(), SessionValue::Int(7)),
        ]
        .into(),
    );
    let out = exec.execute(job(job_id(), spec)).await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let rows = &data(&out)["result_sets"][0]["rows"];
    assert_eq!(rows, &json!([["ANSI_QUOTES", 7]]), "{rows}");

    let foreign = with_session(
        batch("INSERT INTO t VALUES (1)", false),
        settings(&[("DATEFORMAT", "dmy")]),
    );
    let out = exec.execute(job(job_id(), foreign)).await;
    assert_eq!(
        out.completion,
        Completion::Failed { retryable: false },
        "{out:?}"
    );
    let error = out.error.clone().unwrap_or_default();
    assert!(error.contains("not allowed on mysql"), "{error}");
    assert_eq!(db.count("SELECT COUNT(*) FROM t").await, 0);
}
