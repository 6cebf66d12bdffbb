use super::*;

#[test]
fn percentiles_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&v, 50.0), 50.0);
    assert_eq!(percentile(&v, 99.0), 99.0);
    assert_eq!(percentile(&v, 100.0), 100.0);
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(percentile(&[], 50.0), 0.0);
}

#[test]
fn rows_judge_targets_and_spread() {
    let r = Row::over("p50", &[1.0, 3.0, 2.0], "ms").target(Target::Le(2.0));
    assert_eq!(r.value, 2.0);
    assert_eq!(r.spread, Some((1.0, 3.0)));
    assert_eq!(r.pass, Some(true));
    let r = Row::new("rate", 10.0, "jobs/s").target(Target::Ge(20.0));
    assert_eq!(r.pass, Some(false));
    let mut rep = ScenarioReport::new("x", "tls", 3);
    rep.rows.push(r);
    assert!(!rep.all_pass());
    assert!(rep.table().contains("MISS"));
}
