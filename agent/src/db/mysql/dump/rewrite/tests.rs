//! The dump filter: events disabled, the source's `ALTER DATABASE` lines renamed.
use super::*;

const EVENT: &str = "/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `ev` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 06:30:56' ON COMPLETION NOT PRESERVE ENABLE DO INSERT INTO t (name) VALUES ('ev') */ ;;\n";

fn filter(input: &str, cuts: &[usize]) -> (String, usize) {
    let mut f = DumpFilter::default();
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut last = 0;
    for &c in cuts {
        f.push(&bytes[last..c], &mut out);
        last = c;
    }
    f.push(&bytes[last..], &mut out);
    f.finish(&mut out);
    (String::from_utf8(out).expect("utf8"), f.disabled)
}

#[test]
fn events_are_created_disabled_whatever_the_chunks() {
    let input = format!(
        "DELIMITER ;;\n/*!50003 SET time_zone = 'SYSTEM' */ ;;\n{EVENT}{}/*!50003 CREATE*/ /*!50003 TRIGGER tr ENABLE */;;\nINSERT INTO t VALUES ('ON COMPLETION PRESERVE ENABLE');\n/*!50106 CREATE",
        EVENT
            .replace("`ev`", "`ev2`")
            .replace("NOT PRESERVE", "PRESERVE")
    );
    let expected = input
        .replacen("NOT PRESERVE ENABLE", "NOT PRESERVE DISABLE", 1)
        .replacen(
            "ON COMPLETION PRESERVE ENABLE DO",
            "ON COMPLETION PRESERVE DISABLE DO",
            1,
        );
    assert_ne!(expected, input);
    for cut in 0..=input.len() {
        let (out, n) = filter(&input, &[cut]);
        assert_eq!(out, expected, "cut at {cut}");
        assert_eq!(n, 2);
    }
    let (out, _) = filter(&input, &(1..input.len()).collect::<Vec<_>>());
    assert_eq!(out, expected, "byte by byte");
}

#[test]
fn other_lines_pass_untouched() {
    for input in [
        "",
        "\n\n",
        "/*!50106",
        "/*!50106 CREATE*/ /*!50106 EVENT `e` ON SCHEDULE AT '2030-01-01 00:00:00' ON COMPLETION NOT PRESERVE DISABLE DO SELECT 1 */ ;;\n",
        "/*!50106 CREATE*/ /*!50106 EVENT `e` ON SCHEDULE EVERY 1 DAY ON COMPLETION NOT PRESERVE DISABLE ON SLAVE DO SELECT 1 */ ;;",
        "CREATE TABLE t (a int);\nINSERT INTO t VALUES ('/*!50106 CREATE*/ EVENT x PRESERVE ENABLE');\n",
    ] {
        let (out, n) = filter(input, &[]);
        assert_eq!(out, input, "{input:?}");
        assert_eq!(n, 0, "{input:?}");
    }
}

#[test]
fn very_long_event_lines_pass_unchanged() {
    let long = format!(
        "/*!50106 CREATE*/ {} EVENT x PRESERVE ENABLE\n",
        "x".repeat(HOLD_LIMIT + 10)
    );
    // Over the limit before its end of line: passed through as it is.
    let (out, n) = filter(&long, &[100, 200_000, HOLD_LIMIT + 5]);
    assert!(out == long, "changed");
    assert_eq!(n, 0);
}

const ALTER: &str = "ALTER DATABASE `shop` CHARACTER SET latin1 COLLATE latin1_swedish_ci ;;\n";

fn renamed(input: &str, cuts: &[usize]) -> (String, usize) {
    let mut f = DumpFilter::new(false, Some(("shop", "copy")));
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut last = 0;
    for &c in cuts {
        f.push(&bytes[last..c], &mut out);
        last = c;
    }
    f.push(&bytes[last..], &mut out);
    f.finish(&mut out);
    (String::from_utf8(out).expect("utf8"), f.renamed)
}

#[test]
fn the_sources_alter_database_lines_name_the_target_whatever_the_chunks() {
    let input = format!(
        "-- Host: localhost    Database: shop\nDELIMITER ;;\n{ALTER}{EVENT}{}INSERT INTO t VALUES ('ALTER DATABASE `shop` x');\nALTER DATABASE `shopping` CHARACTER SET utf8mb4 ;\nALTER DATABASE `shop`",
        ALTER.replace(";;", ";")
    );
    let expected = input.replace(
        "ALTER DATABASE `shop` CHARACTER",
        "ALTER DATABASE `copy` CHARACTER",
    );
    assert_eq!(expected.matches("`copy`").count(), 2);
    for cut in 0..=input.len() {
        let (out, n) = renamed(&input, &[cut]);
        assert_eq!(out, expected, "cut at {cut}");
        assert_eq!(n, 2);
    }
    let (out, _) = renamed(&input, &(1..input.len()).collect::<Vec<_>>());
    assert_eq!(out, expected, "byte by byte");
    // Without disabling, events pass as dumped.
    assert!(out.contains("NOT PRESERVE ENABLE"));
}

#[test]
fn nothing_is_renamed_unless_asked() {
    let (out, n) = filter(ALTER, &[5]);
    assert_eq!((out.as_str(), n), (ALTER, 0));
}
