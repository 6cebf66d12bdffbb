use super::*;

#[test]
fn error_lines_skip_warnings() {
    let err = "mariadb-dump: Warning: column statistics not supported by the server\n\
               mariadb-dump: Couldn't execute 'show create table `v`': SHOW VIEW command denied to user 'ro'@'localhost' for table `exp1`.`v` (1142)\n\
               mariadb-dump: ro has insufficient privileges to SHOW CREATE PROCEDURE `p`!\n\
               Warning: something about an error\n";
    let lines = error_lines(err);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("insufficient privileges"));
    assert!(!is_error_line("-- Warning: error-ish"));
    assert!(is_error_line(
        "ERROR 1146 (42S02) at line 1: Table 'x.t' doesn't exist"
    ));
}

#[test]
fn codes_and_retry() {
    let denied =
        "mariadb-dump: Couldn't execute 'show create table `v`': SHOW VIEW command denied (1142)";
    assert_eq!(error_codes(denied), vec![1142]);
    assert!(!retryable(denied));
    let down = "mariadb-dump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\" when trying to connect";
    assert_eq!(error_codes(down), vec![2002]);
    assert!(retryable(down));
    assert_eq!(
        error_codes("ERROR 1045 (28000): Access denied for user"),
        vec![1045]
    );
    assert!(!retryable(
        "mariadb-dump: ro has insufficient privileges to SHOW CREATE PROCEDURE `p`!"
    ));
    assert!(retryable(
        "mariadb-dump: Error 1412: Table definition has changed, please retry transaction"
    ));
    assert!(retryable("killed by signal 9"));
}

#[test]
fn summary_prefers_error_lines_and_is_bounded() {
    assert_eq!(
        summary("note\nmariadb-dump: Got error: 1049: Unknown database\n"),
        "mariadb-dump: Got error: 1049: Unknown database"
    );
    assert_eq!(summary("a\nb\nc\nd\n"), "b; c; d");
    let long = format!("error {}", "é".repeat(3000));
    assert!(summary(&long).len() <= 2048 + "…".len());
}

#[test]
fn hidden_routine_bodies_name_the_mysql_proc_grant() {
    let stderr = "mariadb-dump: dx has insufficient privileges to SHOW CREATE FUNCTION `f`!\n";
    assert_eq!(
        hint(stderr, Some("dx@localhost")),
        " — routines of another definer need GRANT SELECT ON mysql.proc TO 'dx'@'localhost' \
         (see README: dump grants)"
    );
    assert!(hint(stderr, None).contains("TO <the dump login>"));
    assert_eq!(hint("mariadb-dump: Got error: 2002: no server", None), "");
    assert_eq!(
        proc_grant(Some("a@b@%")),
        "GRANT SELECT ON mysql.proc TO 'a@b'@'%'"
    );
}
