//! Ledger SQL and replayed data, without a server.

use serde_json::json;

use super::*;

#[test]
fn sql_is_qualified_with_the_connection_database() {
    let l = Ledger::new("main", "shop", true).expect("ledger");
    let ddl = l.create_sql();
    assert!(
        ddl.starts_with("CREATE TABLE IF NOT EXISTS `shop`.`baton_ledger` ("),
        "{ddl}"
    );
    for col in [
        "fleet VARCHAR(64) NOT NULL",
        "job_id BIGINT NOT NULL",
        "attempt INT NOT NULL",
        "token BIGINT NOT NULL",
        "committed_at TIMESTAMP(6)",
        "result LONGTEXT",
        "PRIMARY KEY (fleet, job_id)",
        "ENGINE=InnoDB",
    ] {
        assert!(ddl.contains(col), "{col} in {ddl}");
    }
    assert_eq!(
        l.lookup_sql(),
        "SELECT result, attempt, token, committed_at FROM `shop`.`baton_ledger` WHERE fleet = ? AND job_id = ?"
    );
    assert_eq!(
        l.record_sql(),
        "INSERT INTO `shop`.`baton_ledger` (fleet, job_id, attempt, token, committed_at, result) \
         VALUES (?, ?, ?, ?, CURRENT_TIMESTAMP(6), ?)"
    );
    assert!(Ledger::new("main", "sh`op", true).is_err());
}

#[test]
fn replayed_data_says_so() {
    let c = Committed {
        data: json!({"result_sets": [], "affected_rows": 1, "ledger": "committed"}),
        attempt: 1,
        token: 4,
        committed_at: json!("2024-01-02T03:04:05.000001"),
    };
    let d = replayed(&c);
    assert_eq!(d["ledger"], "replayed");
    assert_eq!(d["affected_rows"], 1);
    assert_eq!(d["replayed_from"]["token"], 4);
    assert_eq!(d["replayed_from"]["attempt"], 1);
}

#[test]
fn lock_names_are_namespaced_by_fleet() {
    use crate::db::mysql::session::lock_name;
    assert_eq!(lock_name("", 7), "baton:job:7");
    assert_eq!(
        lock_name("0a1b2c3d4e5f6a7b", 7),
        "baton:0a1b2c3d4e5f6a7b:job:7"
    );
    assert!(lock_name("0a1b2c3d4e5f6a7b", i64::MAX).len() <= 64);
}
