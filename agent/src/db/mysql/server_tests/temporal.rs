//! DATE, DATETIME, TIMESTAMP and TIME come back as the server prints them
//! (what `mariadb` shows), through both protocols, with their column types;
//! OUT parameters of those types too.

use super::*;

/// The values and what the `mariadb` client shows for them.
const ROW: [&str; 6] = [
    "2006-02-14 22:04:36",
    "2006-02-14 22:04:36.123",
    "2006-02-14 22:04:36",
    "2006-02-14",
    "22:04:36",
    "-838:59:59.50",
];
const TYPES: [&str; 6] = ["datetime", "datetime", "timestamp", "date", "time", "time"];
const TABLE: &str = "CREATE TABLE tt (dt DATETIME, dt3 DATETIME(3), ts TIMESTAMP NULL, d DATE, \
     t TIME, t2 TIME(2)); \
     INSERT INTO tt VALUES ('2006-02-14 22:04:36', '2006-02-14 22:04:36.123', \
     '2006-02-14 22:04:36', '2006-02-14', '22:04:36', '-838:59:59.5')";

#[tokio::test]
async fn temporal_cells_keep_the_servers_text_in_a_select() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec(TABLE).await;
    let exec = MysqlExecutor::sql(db.pools(false));
    let out = exec
        .execute(job(job_id(), batch("SELECT * FROM tt", false)))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let set = &data(&out)["result_sets"][0];
    assert_eq!(set["rows"], json!([ROW]), "{set}");
    assert_eq!(set["types"], json!(TYPES), "{set}");
}

#[tokio::test]
async fn temporal_cells_and_out_params_keep_the_servers_text_in_a_procedure() {
    if !crate::db::test_server::available() {
        return;
    }
    let mut db = TestDb::new().await;
    db.exec(TABLE).await;
    db.exec(
        "CREATE PROCEDURE p(OUT o DATETIME, OUT o3 DATETIME(3)) \
         BEGIN \
           SELECT * FROM tt; \
           SELECT dt, dt3 INTO o, o3 FROM tt; \
         END",
    )
    .await;
    let exec = MysqlExecutor::procedure(db.pools(false));
    let hint = || ParamValue::DateTime("2000-01-01T00:00:00".into());
    let out = exec
        .execute(job(
            job_id(),
            call(
                &format!("{}.p", db.name),
                vec![
                    param("o", ParamMode::Out, hint()),
                    param("o3", ParamMode::Out, hint()),
                ],
                false,
            ),
        ))
        .await;
    assert_eq!(out.completion, Completion::Succeeded, "{out:?}");
    let d = data(&out);
    let set = &d["result_sets"][0];
    assert_eq!(set["rows"], json!([ROW]), "binary protocol: {set}");
    assert_eq!(set["types"], json!(TYPES), "{set}");
    assert_eq!(
        d["out"],
        json!({"o": "2006-02-14 22:04:36", "o3": "2006-02-14 22:04:36.123"}),
        "{d}"
    );
}
