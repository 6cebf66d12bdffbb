use std::os::unix::process::ExitStatusExt;

use super::*;

fn ok() -> ExitStatus {
    ExitStatus::from_raw(0)
}

fn code(c: i32) -> ExitStatus {
    ExitStatus::from_raw(c << 8)
}

#[test]
fn rows_are_split_by_marker_and_unescaped() {
    let stdout =
        format!("{MARKER}0\n10.11.14-MariaDB\n{MARKER}1\n{MARKER}2\na\\tb\tNULL\nc\\\\d\t\\n\n");
    let r = parse_batch(3, &stdout, "", ok()).expect("parse");
    assert_eq!(scalar(&r[0]).as_deref(), Some("10.11.14-MariaDB"));
    assert_eq!(r[1], Ok(Vec::new()), "empty result");
    assert_eq!(
        r[2],
        Ok(vec![
            vec![Some("a\tb".to_owned()), None],
            vec![Some("c\\d".to_owned()), Some("\n".to_owned())],
        ])
    );
}

#[test]
fn an_error_belongs_to_its_statement() {
    // Statement 1 (the second) is on script line 4.
    let stdout = format!("{MARKER}0\nx\n{MARKER}1\n{MARKER}2\n7\n");
    let stderr = "--------------\nSHOW MASTER STATUS\n--------------\n\n\
        ERROR 1227 (42000) at line 4: Access denied; you need (at least one of) the SUPER, BINLOG MONITOR privilege(s) for this operation\n";
    let r = parse_batch(3, &stdout, stderr, ok()).expect("parse");
    assert!(r[0].is_ok());
    assert!(r[1].as_ref().expect_err("failed").contains("1227"));
    assert_eq!(scalar(&r[2]).as_deref(), Some("7"));
}

#[test]
fn connection_failures_fail_the_batch() {
    let e = parse_batch(
        2,
        "",
        "ERROR 2002 (HY000): Can't connect to local server through socket '/x' (2)\n",
        code(1),
    )
    .expect_err("no connection");
    assert!(e.retryable(), "{e}");
    assert!(e.to_string().contains("Can't connect"), "{e}");
    let e = parse_batch(
        1,
        "",
        "ERROR 1045 (28000): Access denied for user 'x'@'localhost' (using password: YES)\n",
        code(1),
    )
    .expect_err("bad password");
    assert!(!e.retryable(), "{e}");
    let e = parse_batch(
        2,
        &format!("{MARKER}0\n"),
        "ERROR 2013 (HY000) at line 4: Lost connection to server during query\n",
        ok(),
    )
    .expect_err("lost");
    assert!(e.retryable());
    let r = parse_batch(2, &format!("{MARKER}0\n"), "", ok()).expect("parse");
    assert!(
        r[1].is_err(),
        "a statement never reached is not an empty result"
    );
}

#[test]
fn quoting() {
    assert_eq!(ident("a`b"), "`a``b`");
    assert_eq!(literal("it's \\ ok"), "'it''s \\\\ ok'");
    assert_eq!(unescape("NULL"), None);
    assert_eq!(unescape("\\0x\\q\\").as_deref(), Some("\0x\\q\\"));
}
