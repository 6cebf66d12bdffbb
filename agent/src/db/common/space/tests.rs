use super::*;

#[test]
fn rule_needs_estimate_plus_margin() {
    assert_eq!(required(0, MARGIN), MARGIN);
    assert!(fits(0, MARGIN, MARGIN));
    assert!(!fits(0, MARGIN - 1, MARGIN));
    assert!(fits(1_000, 1_000 + MARGIN, MARGIN));
    assert!(!fits(1_000, 999 + MARGIN, MARGIN));
    assert_eq!(
        required(u64::MAX, MARGIN),
        u64::MAX,
        "saturates rather than wraps"
    );
    assert!(!fits(u64::MAX - 1, u64::MAX - 1, MARGIN));
    // A larger reserve (the connection's dump_reserve_mb) asks for more.
    assert!(!fits(1_000, 1_000 + MARGIN, 2 * MARGIN));
}

#[test]
fn longest_mount_prefix_wins() {
    let mounts = vec![
        (PathBuf::from("/"), 100),
        (PathBuf::from("/var"), 50),
        (PathBuf::from("/var/lib/baton"), 7),
        (PathBuf::from("/var/li"), 1),
    ];
    assert_eq!(
        best_mount(Path::new("/var/lib/baton/dumps/main"), mounts.clone()),
        Some((PathBuf::from("/var/lib/baton"), 7))
    );
    assert_eq!(
        best_mount(Path::new("/var/lib/mysql"), mounts.clone()),
        Some((PathBuf::from("/var"), 50)),
        "/var/li is not a whole-component prefix of /var/lib"
    );
    assert_eq!(
        best_mount(Path::new("/srv"), mounts),
        Some((PathBuf::from("/"), 100))
    );
    assert_eq!(best_mount(Path::new("/srv"), Vec::new()), None);
}

#[test]
fn missing_directories_use_their_existing_ancestor() {
    let dir = tempfile::tempdir().expect("tmp");
    let deep = dir.path().join("a/b/c");
    let found = existing_ancestor(&deep).expect("ancestor");
    assert_eq!(found, dir.path().canonicalize().expect("canon"));
}
