use super::*;

#[test]
fn grant_lines_parse() {
    let l = "2026-11-26T11:08:31.123456Z  INFO Lease granted job_id=42 token=1 attempt=1 kind=noop";
    let (id, ts) = parse_grant(l).expect("a grant");
    assert_eq!(id, 42);
    assert_eq!(ts.timestamp_subsec_micros(), 123_456);
    assert!(parse_grant("2026-11-26T11:08:31.123456Z  INFO Polling").is_none());
    let a: DateTime<Utc> = "2026-11-26T11:08:31.000100Z".parse().expect("ts");
    let b: DateTime<Utc> = "2026-11-26T11:08:31.001600Z".parse().expect("ts");
    assert_eq!(ms_between(a, b), 1.5);
}

#[test]
fn args_parse() {
    let a = Args::parse(
        ["dispatch", "--runs", "1", "--jobs", "10", "--plain"]
            .into_iter()
            .map(String::from),
    )
    .expect("parses")
    .expect("not help");
    assert_eq!(a.scenario, "dispatch");
    assert_eq!(a.runs, Some(1));
    assert_eq!(a.jobs, Some(10));
    assert_eq!(a.transport(), "plain");
    assert!(Args::parse(["x", "--runs", "0"].into_iter().map(String::from)).is_err());
    assert!(Args::parse(["--bogus"].into_iter().map(String::from)).is_err());
    let t = Args::parse(
        [
            "trickle",
            "--agents",
            "500",
            "--rate",
            "20",
            "--duration",
            "5",
        ]
        .into_iter()
        .map(String::from),
    )
    .expect("parses")
    .expect("not help");
    assert_eq!((t.agents, t.rate, t.duration_secs), (500, 20, 5));
    assert!(Args::parse(["trickle", "--rate", "0"].into_iter().map(String::from)).is_err());
}

#[test]
fn log_tail_returns_complete_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("a.log");
    std::fs::write(&p, "old\n").expect("write");
    let mut t = LogTail::at_end(&p);
    std::fs::write(&p, "old\none\ntw").expect("write");
    assert_eq!(t.read_new().expect("read"), vec!["one".to_owned()]);
    std::fs::write(&p, "old\none\ntwo\n").expect("write");
    assert_eq!(t.read_new().expect("read"), vec!["two".to_owned()]);
}

/// `--store both` runs every scenario on SQLite then PostgreSQL, and the
/// side-by-side table pairs their rows by metric.
#[test]
fn both_stores_and_the_side_by_side_table() {
    use report::{Row, ScenarioReport, side_by_side};
    use store::StoreKind;

    let a = Args::parse(
        ["dispatch", "--store", "both"]
            .into_iter()
            .map(String::from),
    )
    .expect("parses")
    .expect("not help");
    assert_eq!(a.stores, vec![StoreKind::Sqlite, StoreKind::Postgres]);
    assert_eq!(a.store, StoreKind::Sqlite);
    assert!(
        Args::parse(
            ["x", "--store", "both", "--replicas", "2"]
                .into_iter()
                .map(String::from)
        )
        .is_err(),
        "replicas need postgres alone"
    );
    let rep = |store: &str, v: f64| {
        let mut r = ScenarioReport::new(&format!("dispatch [{store}]"), "tls", 3);
        r.rows.push(Row::over("p99", &[v, v + 1.0, v + 2.0], "ms"));
        r
    };
    let t = side_by_side(
        &[rep("sqlite", 1.0), rep("postgres", 4.0)],
        &[StoreKind::Sqlite, StoreKind::Postgres],
    );
    let line = t.lines().find(|l| l.contains("p99")).expect("a p99 line");
    let (sq, pg) = line.split_once('|').expect("two columns");
    assert!(sq.contains("2 ms") && pg.contains("5 ms"), "{t}");
}
