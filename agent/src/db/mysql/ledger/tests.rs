//! Ledger SQL, without a server.

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
