use super::*;

/// Write a secret file as an operator should: mode 0600.
pub(crate) fn write_secret(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create secret file");
    f.write_all(text.as_bytes()).expect("write secret file");
}

#[test]
fn secrets_do_not_show() {
    let s = Secret::new("baton_agt_hidden");
    assert_eq!(format!("{s:?}"), "Secret(***)");
    assert_eq!(s.expose(), "baton_agt_hidden");
}

#[test]
fn enrollment_tokens_are_checked() {
    assert_eq!(check_enrollment_token("baton_enr_abc"), Ok("baton_enr_abc"));
    assert!(check_enrollment_token("").is_err());
    assert!(check_enrollment_token("baton_enr_a b").is_err());
    let e = check_enrollment_token("baton_agt_abc").expect_err("an agent secret");
    assert!(e.contains("baton_enr_") && !e.contains("abc"), "{e}");
}

#[test]
fn token_files_are_read_trimmed_and_errors_name_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    write_secret(&path, "  baton_enr_xyz\n");
    let source = EnrollmentToken::File {
        path: path.clone(),
        origin: Source::File("/etc/baton/agent.toml".into()),
        key: "enrollment_token_file".into(),
        line: Some(4),
    };
    assert_eq!(source.read().expect("token").expose(), "baton_enr_xyz");
    std::fs::remove_file(&path).expect("rm");
    let e = source.read().expect_err("gone");
    assert_eq!((e.key.as_str(), e.line), ("enrollment_token_file", Some(4)));
    assert!(e.message.contains("cannot read"), "{e}");
    let value = EnrollmentToken::Value(Secret::new("nope"));
    let e = value.read().expect_err("no prefix");
    assert_eq!(e.origin, Source::Env(ENV_ENROLLMENT_TOKEN.into()));
    assert!(!e.to_string().contains("nope"), "{e}");
}
