use super::*;

fn snap(tables: &[(&str, Option<&str>)], counts: [u64; 4]) -> Snapshot {
    Snapshot {
        tables: tables
            .iter()
            .map(|(n, s)| TableFigures {
                name: (*n).to_owned(),
                rows: s.map(|_| 3),
                checksum: s.map(str::to_owned),
            })
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

#[test]
fn rows_are_compared_with_the_data() {
    let source = snap(&[("a", Some("1"))], [0; 4]);
    let mut restored = source.clone();
    restored.tables[0].rows = Some(2);
    let (_, m) = compare(&source, &restored, true);
    assert_eq!(
        m,
        vec!["table `a`: 3 rows in the source, 2 in the restored copy"]
    );
    assert_eq!(compare(&source, &restored, false).1, Vec::<String>::new());
}
