use super::*;

fn known() -> BTreeMap<i64, Vec<u8>> {
    BTreeMap::from([(1, vec![1]), (2, vec![2])])
}

fn facts() -> Facts {
    Facts {
        primary: "db1:5432".into(),
        applied: vec![
            Applied {
                version: 1,
                success: true,
                checksum: vec![1],
            },
            Applied {
                version: 2,
                success: true,
                checksum: vec![2],
            },
        ],
        synchronous_commit: "on".into(),
        synchronous_standby_names: "ANY 1 (db2)".into(),
        standbys: 1,
    }
}

fn levels(f: &Facts) -> Vec<Level> {
    findings(f, &known()).iter().map(|x| x.level).collect()
}

fn text_of(f: &Facts, level: Level) -> String {
    findings(f, &known())
        .into_iter()
        .filter(|x| x.level == level)
        .map(|x| x.text)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_synchronous_standby_with_current_migrations_is_all_ok() {
    assert_eq!(levels(&facts()), [Level::Ok, Level::Ok, Level::Ok]);
}

#[test]
fn pending_unknown_changed_and_dirty_migrations_are_errors() {
    let mut f = facts();
    f.applied.truncate(1);
    assert!(text_of(&f, Level::Error).contains("not applied yet (2)"));
    let mut f = facts();
    f.applied.push(Applied {
        version: 3,
        success: true,
        checksum: vec![3],
    });
    assert!(text_of(&f, Level::Error).contains("newer controller"));
    let mut f = facts();
    f.applied[1].checksum = vec![9];
    assert!(text_of(&f, Level::Error).contains("different contents"));
    let mut f = facts();
    f.applied[1].success = false;
    assert!(text_of(&f, Level::Error).contains("did not finish"));
}

#[test]
fn synchronous_commit_off_is_an_error() {
    let mut f = facts();
    f.synchronous_commit = "off".into();
    let e = text_of(&f, Level::Error);
    assert!(e.contains("synchronous_commit is off"), "{e}");
}

#[test]
fn an_asynchronous_standby_is_a_warning_about_losing_acknowledged_commits() {
    let mut f = facts();
    f.synchronous_standby_names = String::new();
    let w = text_of(&f, Level::Warning);
    assert!(
        w.contains("asynchronous") && w.contains("already acknowledged"),
        "{w}"
    );
    assert!(!levels(&f).contains(&Level::Error));
    f.standbys = 0;
    let w = text_of(&f, Level::Warning);
    assert!(w.contains("no synchronous standby"), "{w}");
}

#[test]
fn local_commits_and_a_missing_synchronous_standby_are_warnings() {
    let mut f = facts();
    f.synchronous_commit = "local".into();
    assert!(text_of(&f, Level::Warning).contains("synchronous_commit is local"));
    let mut f = facts();
    f.standbys = 0;
    assert!(text_of(&f, Level::Warning).contains("no standby streams now"));
}
