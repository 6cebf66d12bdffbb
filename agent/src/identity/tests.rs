use super::*;

fn identity() -> Identity {
    Identity {
        agent_id: "db1".into(),
        secret: Secret::new("baton_agt_s3cret"),
        groups: vec!["nightly".into(), "db".into()],
        controller_url: "https://ctl.test:8420".into(),
        controller_urls: Vec::new(),
        enrolled_at: DateTime::from_timestamp_millis(1_790_000_000_000).expect("ts"),
        fleet: "f1".into(),
    }
}

#[test]
fn host_names_become_valid_agent_ids() {
    assert_eq!(
        name_from_hostname("DB1.Example.COM").as_deref(),
        Some("db1.example.com")
    );
    assert_eq!(
        name_from_hostname(" db host#2 \n").as_deref(),
        Some("db-host-2")
    );
    assert_eq!(name_from_hostname("héllo").as_deref(), Some("h-llo"));
    assert_eq!(name_from_hostname(""), None);
    assert_eq!(name_from_hostname("---"), None);
    let long = "x".repeat(300);
    let name = name_from_hostname(&long).expect("truncated");
    assert_eq!(name.len(), 128);
    assert!(valid_name(&name));
    if let Some(host) = system_hostname() {
        let id = name_from_hostname(&host).expect("this host's name is usable");
        assert!(valid_name(&id), "{id:?}");
        assert_eq!(id, id.to_lowercase());
    }
}

#[test]
fn several_controllers_are_kept_and_old_files_still_load() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut id = identity();
    id.controller_urls = vec!["https://a:8420".into(), "https://ctl.test:8420".into()];
    let written = id.save(state.path()).expect("save");
    assert_eq!(
        Identity::load(state.path()).expect("load"),
        Some(id.clone())
    );
    assert!(id.enrolled_with_any(&["https://a:8420".into()]));
    assert!(id.enrolled_with_any(&["https://x".into(), "https://ctl.test:8420".into()]));
    assert!(!id.enrolled_with_any(&["https://other:8420".into()]));
    // One controller: the list is left out of the file, as before.
    let one = identity();
    one.save(state.path()).expect("save one");
    let text = fs::read_to_string(&written).expect("read");
    assert!(!text.contains("controller_urls"), "{text}");
    assert_eq!(
        Identity::load(state.path()).expect("load one"),
        Some(one.clone())
    );
    assert!(one.enrolled_with_any(&["https://ctl.test:8420".into()]));
}

#[test]
fn save_and_load_round_trip_with_mode_0600() {
    let state = tempfile::tempdir().expect("tempdir");
    assert!(Identity::load(state.path()).expect("load").is_none());
    let id = identity();
    let written = id.save(state.path()).expect("save");
    assert_eq!(written, state.path().join("identity.json"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&written).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let names: Vec<String> = fs::read_dir(state.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["identity.json"], "no temp file left");
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&written).expect("read")).expect("json");
    for key in [
        "agent_id",
        "secret",
        "groups",
        "controller_url",
        "enrolled_at",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    let back = Identity::load(state.path()).expect("load").expect("some");
    assert_eq!(back, id);
    assert!(
        !format!("{back:?}").contains("s3cret"),
        "Debug hides the secret"
    );
}

#[cfg(unix)]
#[test]
fn a_file_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().expect("tempdir");
    let path = identity().save(state.path()).expect("save");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = Identity::load(state.path()).expect_err("insecure");
    assert!(matches!(e, Error::Insecure { mode: 0o644, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("readable by group or others"), "{msg}");
    assert!(msg.contains("chmod 600"), "{msg}");
    assert!(!msg.contains("s3cret"));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    assert!(matches!(
        Identity::load(state.path()),
        Err(Error::Insecure { mode: 0o640, .. })
    ));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).expect("chmod");
    assert!(Identity::load(state.path()).expect("owner only").is_some());
}

#[cfg(unix)]
#[test]
fn saving_over_a_stale_temp_file_still_gives_0600() {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().expect("tempdir");
    let tmp = state.path().join(".identity.json.tmp");
    fs::write(&tmp, "partial").expect("write");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o666)).expect("chmod");
    let path = identity().save(state.path()).expect("save");
    let mode = fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!tmp.exists());
}

#[cfg(unix)]
#[test]
fn invalid_files_are_reported_without_the_secret() {
    use std::os::unix::fs::OpenOptionsExt;
    let state = tempfile::tempdir().expect("tempdir");
    let write = |text: &str| {
        let _ = fs::remove_file(path(state.path()));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path(state.path()))
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    };
    write("{\"agent_id\": \"db1\", \"secret\": \"baton_agt_s3cret\"");
    let e = Identity::load(state.path()).expect_err("truncated");
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    write(
        "{\"agent_id\": \"bad id\", \"secret\": \"x\", \"groups\": [], \
             \"controller_url\": \"http://x\", \"enrolled_at\": \"2026-01-01T00:00:00Z\"}",
    );
    let e = Identity::load(state.path()).expect_err("bad id");
    assert!(e.to_string().contains("agent_id"), "{e}");
    write(
        "{\"agent_id\": \"a\", \"secret\": \"two words\", \"groups\": [], \
             \"controller_url\": \"http://x\", \"enrolled_at\": \"2026-01-01T00:00:00Z\"}",
    );
    let e = Identity::load(state.path()).expect_err("bad secret");
    assert!(e.to_string().contains("printable"), "{e}");
    assert!(!e.to_string().contains("two words"), "{e}");
}
