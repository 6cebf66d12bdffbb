use super::*;
use std::cell::Cell;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn layout_under_program_data() {
    let l = Layout::from_env(&env(&[("PROGRAMDATA", "/pd")]));
    assert_eq!(l.root, Path::new("/pd").join("Baton"));
    assert_eq!(l.config, Path::new("/pd/Baton/agent.toml"));
    assert_eq!(l.state, Path::new("/pd/Baton/state"));
    assert_eq!(l.dumps, Path::new("/pd/Baton/dumps"));
    assert_eq!(l.log_file(), Path::new("/pd/Baton/logs/agent.log"));
    let fallback = Layout::from_env(&env(&[("ProgramData", "")]));
    assert_eq!(
        fallback.root,
        Path::new(FALLBACK_PROGRAM_DATA).join(BASE_DIR)
    );
}

#[test]
fn icacls_removes_inheritance_and_grants_only_system_and_admins() {
    let args = icacls_args(Path::new(r"C:\ProgramData\Baton"));
    assert_eq!(
        args,
        [
            r"C:\ProgramData\Baton",
            "/inheritance:r",
            "/grant:r",
            "*S-1-5-18:(OI)(CI)F",
            "*S-1-5-32-544:(OI)(CI)F",
            "/Q"
        ]
    );
}

#[test]
fn ensure_creates_the_folders_and_restricts_a_new_root_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = Layout::under(tmp.path());
    let calls = Cell::new(0);
    let count = |p: &Path| {
        assert_eq!(p, layout.root);
        calls.set(calls.get() + 1);
        Ok(())
    };
    layout.ensure(false, count).expect("first");
    assert!(layout.state.is_dir() && layout.dumps.is_dir() && layout.logs.is_dir());
    assert_eq!(calls.get(), 1, "a new root is restricted");
    layout.ensure(false, count).expect("second");
    assert_eq!(calls.get(), 1, "an existing root is left alone");
    layout.ensure(true, count).expect("service");
    assert_eq!(calls.get(), 2, "the service always restricts");
    let refused = layout.ensure(true, |p| {
        Err(Error::Acl {
            path: p.to_path_buf(),
            reason: "denied".into(),
        })
    });
    assert!(matches!(refused, Err(Error::Acl { .. })));
}

#[test]
fn defaults_apply_only_where_nothing_was_set() {
    let tmp = tempfile::tempdir().expect("tmp");
    let layout = Layout::under(tmp.path());
    let none = |_: &Path| None;
    // Nothing installed yet: no config, default state dir.
    let d = defaults(&layout, None, false, &env(&[]), none);
    assert_eq!(d.config, None);
    assert_eq!(d.state_dir, Some(layout.state.clone()));
    // The default config exists and has no state_dir.
    std::fs::create_dir_all(&layout.root).expect("dir");
    std::fs::write(&layout.config, "slots = 2\n").expect("write");
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let d = defaults(&layout, None, false, &env(&[]), read);
    assert_eq!(d.config, Some(layout.config.clone()));
    assert_eq!(d.state_dir, Some(layout.state.clone()));
    // It sets state_dir: the file wins.
    std::fs::write(&layout.config, "state_dir = 'D:/x'\n").expect("write");
    let d = defaults(&layout, None, false, &env(&[]), read);
    assert_eq!(d.state_dir, None);
    // A named config is used as named, never replaced by the default.
    let other = tmp.path().join("other.toml");
    std::fs::write(&other, "slots = 1\n").expect("write");
    let d = defaults(&layout, Some(&other), false, &env(&[]), read);
    assert_eq!(d.config, None);
    assert_eq!(d.state_dir, Some(layout.state.clone()));
    let d = defaults(
        &layout,
        None,
        false,
        &env(&[("BATON_AGENT_CONFIG", other.to_str().expect("utf8"))]),
        read,
    );
    assert_eq!(d.config, None);
    // The flag or the environment sets state_dir.
    assert_eq!(
        defaults(&layout, None, true, &env(&[]), read).state_dir,
        None
    );
    let e = env(&[("BATON_AGENT_STATE_DIR", "D:/s")]);
    assert_eq!(defaults(&layout, None, false, &e, read).state_dir, None);
    // Broken TOML or an unreadable file: left to the loader to report.
    std::fs::write(&layout.config, "state_dir = [").expect("write");
    assert_eq!(
        defaults(&layout, None, false, &env(&[]), read).state_dir,
        None
    );
    assert_eq!(
        defaults(&layout, None, false, &env(&[]), none).state_dir,
        None
    );
}
