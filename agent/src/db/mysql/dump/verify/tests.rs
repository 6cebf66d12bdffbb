use super::*;

fn snap(tables: &[(&str, Option<&str>)], counts: [u64; 4]) -> Snapshot {
    Snapshot {
        tables: tables
            .iter()
            .map(|(n, s)| ((*n).to_owned(), s.map(str::to_owned)))
            .collect(),
        routines: counts[0],
        triggers: counts[1],
        views: counts[2],
        events: counts[3],
    }
}

#[test]
fn equal_snapshots_match() {
    let s = snap(&[("a", Some("1")), ("b", Some("2"))], [1, 1, 1, 0]);
    assert_eq!(compare(&s, &s.clone(), true), (2, Vec::new()));
}

#[test]
fn differences_are_listed() {
    let source = snap(
        &[("a", Some("1")), ("b", Some("2")), ("c", None), ("e", None)],
        [2, 1, 1, 1],
    );
    let restored = snap(
        &[
            ("a", Some("1")),
            ("b", Some("3")),
            ("d", Some("0")),
            ("e", None),
        ],
        [1, 1, 1, 0],
    );
    let (compared, m) = compare(&source, &restored, true);
    assert_eq!(compared, 3);
    assert_eq!(
        m,
        vec![
            "table `b`: checksum 2 in the source, 3 in the restored copy",
            "table `c` is missing from the restored copy",
            "table `e`: no checksum (NULL in the source, NULL in the restored copy)",
            "table `d` is in the restored copy only",
            "routines: 2 in the source, 1 in the restored copy",
            "events: 1 in the source, 0 in the restored copy",
        ]
    );
    let (_, m) = compare(&source, &restored, false);
    assert!(!m.iter().any(|x| x.contains("checksum")), "{m:?}");
    let nulls = snap(&[("a", None)], [0; 4]);
    assert_eq!(
        compare(&nulls, &nulls.clone(), false),
        (1, Vec::new()),
        "--no-data: names only"
    );
}

const EVENT: &str = "/*!50106 CREATE*/ /*!50117 DEFINER=`root`@`localhost`*/ /*!50106 EVENT `ev` ON SCHEDULE EVERY 1 DAY STARTS '2026-11-26 06:30:56' ON COMPLETION NOT PRESERVE ENABLE DO INSERT INTO t (name) VALUES ('ev') */ ;;\n";

fn filter(input: &str, cuts: &[usize]) -> (String, usize) {
    let mut f = EventDisabler::default();
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
