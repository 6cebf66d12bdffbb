use super::*;

fn route(events: &[&str], groups: &[&str], labels: &[(&str, &str)]) -> Route {
    Route {
        name: "r".into(),
        events: events.iter().map(|s| (*s).to_owned()).collect(),
        groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[test]
fn routes_filter_by_event_group_and_label() {
    let g = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let team_db = BTreeMap::from([("team".to_owned(), "db".to_owned())]);
    let none = BTreeMap::new();
    assert!(route(&[], &[], &[]).matches("job_failed", &g(&["a"]), &none));
    assert!(route(&["job_failed"], &[], &[]).matches("job_failed", &[], &none));
    assert!(!route(&["drill_failed"], &[], &[]).matches("job_failed", &[], &none));
    assert!(route(&[], &["a", "b"], &[]).matches("job_failed", &g(&["x", "b"]), &none));
    assert!(!route(&[], &["a"], &[]).matches("job_failed", &g(&["b"]), &none));
    assert!(!route(&[], &["a"], &[]).matches("pipeline_failed", &[], &none));
    assert!(route(&[], &[], &[("team", "db")]).matches("job_failed", &[], &team_db));
    assert!(!route(&[], &[], &[("team", "web")]).matches("job_failed", &[], &team_db));
    assert!(!route(&[], &[], &[("team", "db")]).matches("job_failed", &[], &none));
}

#[test]
fn targets_read_the_stored_json() {
    let routes = [
        Route {
            name: "a".into(),
            ..route(&[], &["a"], &[])
        },
        Route {
            name: "all".into(),
            ..route(&[], &[], &[])
        },
    ];
    let t = targets(&routes, "job_failed", r#"["a"]"#, "{}").expect("targets");
    assert_eq!(t, vec!["a", "all"]);
    let t = targets(&routes, "job_failed", r#"["b"]"#, "{}").expect("targets");
    assert_eq!(t, vec!["all"]);
    assert!(targets(&routes, "job_failed", "not json", "{}").is_err());
}
