use super::*;
use std::io::Write;

fn write(src: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    f.write_all(src.as_bytes()).expect("write");
    f
}

const TOKENS: &str = "allow_plain_http = true\n";

#[test]
fn layering_file_env_flag() {
    let f = write(&format!(
        "listen = \"127.0.0.1:9000\"\npoll_hold = \"5s\"\n{TOKENS}"
    ));
    let mut env = BTreeMap::new();
    let c = Config::load(Some(f.path()), &env, &Flags::default()).expect("load");
    assert_eq!(c.listen.port(), 9000);
    assert_eq!(c.poll_hold, Duration::from_secs(5));
    env.insert("BATON_CONTROLLER_LISTEN".into(), "127.0.0.1:9001".into());
    let c = Config::load(Some(f.path()), &env, &Flags::default()).expect("load");
    assert_eq!(c.listen.port(), 9001);
    let flags = Flags {
        listen: Some("127.0.0.1:9002".into()),
        state_dir: None,
    };
    let c = Config::load(Some(f.path()), &env, &flags).expect("load");
    assert_eq!(c.listen.port(), 9002);
}

#[test]
fn bad_value_names_key_and_line() {
    let f = write(&format!("# x\nlisten = \"nowhere\"\n{TOKENS}"));
    let e =
        Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect_err("bad listen");
    assert_eq!(e.key, "listen");
    assert_eq!(e.line, Some(2));
    let f = write(&format!("default_lease_ttl = \"1s\"\n{TOKENS}"));
    let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
        .expect_err("ttl below floor");
    assert_eq!(e.key, "default_lease_ttl");
    assert_eq!(e.line, Some(1));
}

#[test]
fn retention_keeps_default_forever_and_bad_values() {
    let load = |src: &str, env: &[(&str, &str)]| {
        let f = write(&format!("{TOKENS}{src}"));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(Some(f.path()), &env, &Flags::default())
    };
    let c = load("", &[]).expect("defaults");
    assert_eq!(c.job_keep, Some(Duration::from_secs(30 * 86_400)));
    assert_eq!(c.audit_keep, Some(Duration::from_secs(90 * 86_400)));
    let c = load("job_keep = \"forever\"\naudit_keep = \"7d\"\n", &[]).expect("load");
    assert_eq!(c.job_keep, None);
    assert_eq!(c.audit_keep, Some(Duration::from_secs(7 * 86_400)));
    let c = load("", &[("BATON_CONTROLLER_JOB_KEEP", "2h")]).expect("env");
    assert_eq!(c.job_keep, Some(Duration::from_secs(7200)));
    let e = load("\njob_keep = \"soon\"\n", &[]).expect_err("bad");
    assert_eq!((e.key.as_str(), e.line), ("job_keep", Some(3)));
    let e = load("audit_keep = \"10ms\"\n", &[]).expect_err("too short");
    assert_eq!(e.key, "audit_keep");
    let e = load("", &[("BATON_CONTROLLER_AUDIT_KEEP", "x")]).expect_err("bad env");
    assert_eq!(e.origin, Source::Env("BATON_CONTROLLER_AUDIT_KEEP".into()));
}

#[test]
fn unknown_key_refused() {
    let f = write(&format!("{TOKENS}\ncolour = 1\n"));
    let e =
        Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect_err("unknown key");
    assert_eq!(e.line, Some(3));
}

#[test]
fn drills_section_allows_the_controller_crash_only_when_set() {
    let load =
        |src: &str| Config::load(Some(write(src).path()), &BTreeMap::new(), &Flags::default());
    let c = load(TOKENS).expect("default");
    assert!(!c.drills.allow_controller_crash, "off by default");
    let c = load(&format!(
        "{TOKENS}[drills]\nallow_controller_crash = true\n"
    ))
    .expect("set");
    assert!(c.drills.allow_controller_crash);
    let e = load(&format!("{TOKENS}[drills]\nallow_crash = true\n")).expect_err("unknown key");
    assert_eq!(e.line, Some(3), "{e}");
}

#[test]
fn tls_or_explicit_plain_http_required() {
    let e = Config::load(None, &BTreeMap::new(), &Flags::default()).expect_err("no tls");
    assert_eq!(e.key, "tls");
    let f = write(
        "[tls]\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"/nonexistent/key.pem\"\n",
    );
    let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default())
        .expect_err("missing cert");
    assert_eq!(e.key, "tls.cert_file");
    assert_eq!(e.line, Some(2));
    let env = BTreeMap::from([(
        "BATON_CONTROLLER_ALLOW_PLAIN_HTTP".to_string(),
        "true".to_string(),
    )]);
    let c = Config::load(None, &env, &Flags::default()).expect("plain");
    assert!(c.tls.is_none());
}

#[test]
fn boundary_limits_have_defaults_and_are_checked() {
    let c = Config::load(
        Some(write(TOKENS).path()),
        &BTreeMap::new(),
        &Flags::default(),
    )
    .expect("defaults");
    assert_eq!(c.body_read_timeout, Duration::from_secs(30));
    assert_eq!(
        (c.max_unauthenticated, c.max_unauthenticated_per_address),
        (256, 16)
    );
    assert_eq!(c.max_spec_bytes, 256 << 10);
    assert_eq!(c.worker_threads, super::default_worker_threads());
    assert!(c.worker_threads >= 1);
    let f = write(&format!("{TOKENS}worker_threads = 3\n"));
    let c = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect("3");
    assert_eq!(c.worker_threads, 3);
    for (line, key) in [
        ("worker_threads = 0", "worker_threads"),
        ("worker_threads = 257", "worker_threads"),
        ("body_read_timeout = \"50ms\"", "body_read_timeout"),
        ("max_unauthenticated = 0", "max_unauthenticated"),
        (
            "max_unauthenticated = 8\nmax_unauthenticated_per_address = 9",
            "max_unauthenticated_per_address",
        ),
        ("max_spec_bytes = 5000000", "max_spec_bytes"),
    ] {
        let f = write(&format!("{TOKENS}{line}\n"));
        let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect_err(line);
        assert_eq!(e.key, key, "{line}");
    }
}

#[test]
fn log_format_is_layered_and_validated() {
    let none = Flags::default();
    let mut env = BTreeMap::new();
    let f = write(TOKENS);
    let c = Config::load(Some(f.path()), &env, &none).expect("default");
    assert_eq!(c.log_format, LogFormat::Text);
    let f = write(&format!("{TOKENS}log_format = \"json\"\n"));
    let c = Config::load(Some(f.path()), &env, &none).expect("file");
    assert_eq!(c.log_format, LogFormat::Json);
    env.insert("BATON_CONTROLLER_LOG_FORMAT".into(), "text".into());
    let c = Config::load(Some(f.path()), &env, &none).expect("env wins");
    assert_eq!(c.log_format, LogFormat::Text);

    env.insert("BATON_CONTROLLER_LOG_FORMAT".into(), "yaml".into());
    let e = Config::load(Some(f.path()), &env, &none).expect_err("bad env");
    assert_eq!(e.origin, Source::Env("BATON_CONTROLLER_LOG_FORMAT".into()));
    assert_eq!(e.key, "log_format");
    assert!(e.message.contains("\"text\" or \"json\""), "{e}");
    let f = write(&format!("{TOKENS}\nlog_format = \"xml\"\n"));
    let e = Config::load(Some(f.path()), &BTreeMap::new(), &none).expect_err("bad file");
    assert_eq!((e.key.as_str(), e.line), ("log_format", Some(3)));
    assert_eq!(e.origin, Source::File(f.path().display().to_string()));
    assert!(e.message.contains("`json`"), "{e}");
}

#[test]
fn old_names_are_not_applied_and_warn_naming_the_new_one() {
    let f = write(TOKENS);
    let env = BTreeMap::from([
        ("BATON_LISTEN".to_string(), "127.0.0.1:9001".to_string()),
        ("BATON_LOG".to_string(), "debug".to_string()),
        // batonctl's and the agent's names: ignored, silently.
        ("BATON_URL".to_string(), "not a url".to_string()),
        ("BATON_TOKEN_FILE".to_string(), "/nonexistent".to_string()),
        (
            "BATON_AGENT_STATE_DIR".to_string(),
            "/nonexistent".to_string(),
        ),
    ]);
    let c = Config::load(Some(f.path()), &env, &Flags::default()).expect("load");
    assert_eq!(c.listen.port(), baton_proto::DEFAULT_PORT);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(
        c.warnings[0].contains("BATON_CONTROLLER_"),
        "{:?}",
        c.warnings
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("BATON_CONTROLLER_LISTEN"))
    );
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("BATON_CONTROLLER_LOG "))
    );
}

#[test]
fn a_tls_key_open_to_group_or_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, "cert").expect("cert");
    std::fs::write(&key, "key").expect("key");
    let f = write(&format!(
        "listen = \"127.0.0.1:1\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let chmod = |mode| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    for ok in [0o600, 0o400] {
        chmod(ok);
        Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect("private key");
    }
    chmod(0o644);
    let e = Config::load(Some(f.path()), &BTreeMap::new(), &Flags::default()).expect_err("0644");
    assert_eq!((e.key.as_str(), e.line), ("tls.key_file", Some(4)));
    let msg = e.to_string();
    for part in ["mode 0644", &format!("chmod 600 {}", key.display())] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
}
