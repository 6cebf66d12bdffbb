//! Tests of config layering and validation.

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        crate::secret::tests::write_secret(&dir.path().join("token"), "  baton_enr_s3cret\n");
        Fixture { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("agent.toml")
    }

    /// Load with `toml` as the file, plus env and flags.
    fn load(&self, toml: &str, env: &[(&str, &str)], flags: &Flags) -> Result<Config, Error> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_from(flags, &env, Some((&self.path(), toml)))
    }

    fn base(&self) -> String {
        format!(
            "agent_id = \"file-agent\"\nenrollment_token_file = \"token\"\nstate_dir = \"{}\"\n",
            self.dir.path().join("state").display()
        )
    }
}

fn invalid(e: Error) -> ConfigError {
    match e {
        Error::Invalid(c) => c,
    }
}

#[test]
fn defaults_apply() {
    let f = Fixture::new();
    let c = f.load(&f.base(), &[], &Flags::default()).expect("valid");
    assert_eq!(c.agent_id, "file-agent");
    assert_eq!(c.controller_urls, ["https://127.0.0.1:8420"]);
    let token = c.enrollment_token.as_ref().expect("token source");
    assert!(
        matches!(token, EnrollmentToken::File { path, line: Some(2), .. } if *path == f.dir.path().join("token")),
        "relative to the file: {token:?}"
    );
    assert_eq!(
        token.read().expect("token").expose(),
        "baton_enr_s3cret",
        "read from the file, trimmed"
    );
    assert!(c.groups.is_empty(), "the enrolled groups");
    assert_eq!(c.tls, TlsConfig::default());
    assert_eq!(c.slots, 1);
    assert_eq!(c.poll_wait, Duration::from_secs(25));
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.log_level, "info");
    assert_eq!(c.command, CommandConfig::default());
    assert_eq!(c.command.max_output_bytes, 1024 * 1024);
    assert_eq!(c.command.log_tail_bytes, 4096);
    assert!(c.connections.is_empty());
    assert_eq!(
        c.state_dir,
        f.dir.path().join("state"),
        "relative to the file"
    );
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the token never shows"
    );
    assert!(c.summary().contains("agent_id=file-agent"));
}

#[test]
fn file_then_env_then_flag() {
    let f = Fixture::new();
    let toml = format!(
        "{}controller_url = \"http://file:1\"\ngroups = [\"f1\", \"f2\"]\nslots = 2\n",
        f.base()
    );
    let none = Flags::default();
    let c = f.load(&toml, &[], &none).expect("file");
    assert_eq!((c.agent_id.as_str(), c.slots), ("file-agent", 2));
    assert_eq!(c.groups, ["f1", "f2"]);
    assert_eq!(c.controller_urls, ["http://file:1"]);

    let env = [
        ("BATON_AGENT_ID", "env-agent"),
        ("BATON_AGENT_SLOTS", "3"),
        ("BATON_AGENT_GROUPS", "e1, e2"),
        ("BATON_AGENT_CONTROLLER_URL", "https://env:2/"),
        ("BATON_AGENT_LOG", "debug"),
    ];
    let c = f.load(&toml, &env, &none).expect("env");
    assert_eq!((c.agent_id.as_str(), c.slots), ("env-agent", 3));
    assert_eq!(c.groups, ["e1", "e2"]);
    assert_eq!(c.controller_urls, ["https://env:2"]);
    assert_eq!(c.log_level, "debug");

    let flags = Flags {
        agent_id: Some("flag-agent".into()),
        slots: Some("4".into()),
        groups: vec!["g1".into()],
        controller_url: Some("http://flag:3".into()),
        controller_urls: None,
        state_dir: Some(f.dir.path().join("flag-state")),
        config: None,
    };
    let c = f.load(&toml, &env, &flags).expect("flags");
    assert_eq!((c.agent_id.as_str(), c.slots), ("flag-agent", 4));
    assert_eq!(c.groups, ["g1"]);
    assert_eq!(c.controller_urls, ["http://flag:3"]);
    assert_eq!(c.state_dir, f.dir.path().join("flag-state"));
}

#[test]
fn several_controllers_from_file_env_and_flag() {
    let f = Fixture::new();
    let toml = format!(
        "{}controller_urls = [\"https://a:8420\", \"https://b:8420/\"]\n",
        f.base()
    );
    let none = Flags::default();
    let c = f.load(&toml, &[], &none).expect("file");
    assert_eq!(c.controller_urls, ["https://a:8420", "https://b:8420"]);
    assert!(
        c.summary()
            .contains("controller=https://a:8420,https://b:8420")
    );

    let env = [("BATON_AGENT_CONTROLLER_URLS", "http://e1:1, http://e2:2")];
    let c = f.load(&toml, &env, &none).expect("env");
    assert_eq!(c.controller_urls, ["http://e1:1", "http://e2:2"]);
    // One URL in a higher layer replaces the list of a lower one.
    let env_one = [("BATON_AGENT_CONTROLLER_URL", "http://lb:8420")];
    let c = f.load(&toml, &env_one, &none).expect("env one");
    assert_eq!(c.controller_urls, ["http://lb:8420"]);

    let flags = Flags {
        controller_urls: Some("http://f1:1,http://f2:2,http://f3:3".into()),
        ..Flags::default()
    };
    let c = f.load(&toml, &env, &flags).expect("flag");
    assert_eq!(
        c.controller_urls,
        ["http://f1:1", "http://f2:2", "http://f3:3"]
    );
}

#[test]
fn both_controller_keys_are_refused() {
    let f = Fixture::new();
    let toml = format!(
        "{}controller_url = \"https://a:8420\"\ncontroller_urls = [\"https://b:8420\"]\n",
        f.base()
    );
    let e = f.load(&toml, &[], &Flags::default()).expect_err("both");
    assert_eq!(e.exit_code(), 78);
    let c = invalid(e);
    assert_eq!(c.key, "controller_urls");
    assert_eq!(c.line, Some(5), "{c}");
    assert!(c.to_string().contains("controller_url is set too"), "{c}");

    let env = [
        ("BATON_AGENT_CONTROLLER_URL", "http://a:1"),
        ("BATON_AGENT_CONTROLLER_URLS", "http://b:1"),
    ];
    let c = invalid(f.load(&f.base(), &env, &Flags::default()).expect_err("env"));
    assert_eq!(c.origin, Source::Env("BATON_AGENT_CONTROLLER_URLS".into()));
    let flags = Flags {
        controller_url: Some("http://a:1".into()),
        controller_urls: Some("http://b:1".into()),
        ..Flags::default()
    };
    let c = invalid(f.load(&f.base(), &[], &flags).expect_err("flags"));
    assert_eq!(c.origin, Source::Flag("controller-urls".into()));
}

#[test]
fn bad_controller_urls_name_the_item() {
    let f = Fixture::new();
    let toml = format!(
        "{}controller_urls = [\n  \"https://a:8420\",\n  \"ftp://b\",\n]\n",
        f.base()
    );
    let c = invalid(f.load(&toml, &[], &Flags::default()).expect_err("scheme"));
    assert_eq!(c.key, "controller_urls[1]");
    assert_eq!(c.line, Some(6), "{c}");
    let twice = format!(
        "{}controller_urls = [\"https://a:8420\", \"https://a:8420/\"]\n",
        f.base()
    );
    let c = invalid(f.load(&twice, &[], &Flags::default()).expect_err("twice"));
    assert_eq!(c.key, "controller_urls[1]");
    assert!(c.to_string().contains("listed twice"), "{c}");
    let empty = format!("{}controller_urls = []\n", f.base());
    let c = invalid(f.load(&empty, &[], &Flags::default()).expect_err("empty"));
    assert_eq!(c.key, "controller_urls");
    let env = [("BATON_AGENT_CONTROLLER_URLS", "http://a:1,")];
    let c = invalid(
        f.load(&f.base(), &env, &Flags::default())
            .expect_err("trailing comma"),
    );
    assert_eq!(c.key, "controller_urls[1]");
}

#[test]
fn enrollment_token_from_env_wins_over_the_file() {
    let f = Fixture::new();
    let c = f
        .load(
            &f.base(),
            &[("BATON_AGENT_ENROLLMENT_TOKEN", "baton_enr_env")],
            &Flags::default(),
        )
        .expect("valid");
    let token = c.enrollment_token.as_ref().expect("token");
    assert_eq!(token.read().expect("read").expose(), "baton_enr_env");
    assert!(!format!("{c:?}").contains("baton_enr_env"), "never shown");

    let c = f
        .load(
            &f.base(),
            &[("BATON_AGENT_ENROLLMENT_TOKEN_FILE", "/run/secrets/enroll")],
            &Flags::default(),
        )
        .expect("valid");
    assert!(matches!(
        c.enrollment_token,
        Some(EnrollmentToken::File { ref path, ref origin, .. })
            if path == Path::new("/run/secrets/enroll")
                && *origin == Source::Env("BATON_AGENT_ENROLLMENT_TOKEN_FILE".into())
    ));

    let e = invalid(
        f.load(
            &f.base(),
            &[("BATON_AGENT_ENROLLMENT_TOKEN", "baton_agt_oops")],
            &Flags::default(),
        )
        .expect_err("an agent secret"),
    );
    assert_eq!(e.origin, Source::Env("BATON_AGENT_ENROLLMENT_TOKEN".into()));
    assert!(!e.to_string().contains("oops"), "{e}");
}

#[test]
fn the_token_file_is_read_only_when_enrolling() {
    let f = Fixture::new();
    let toml = f.base().replace("\"token\"", "\"gone\"");
    let c = f
        .load(&toml, &[], &Flags::default())
        .expect("valid without the file");
    let e = c
        .enrollment_token
        .expect("configured")
        .read()
        .expect_err("missing");
    assert_eq!((e.key.as_str(), e.line), ("enrollment_token_file", Some(2)));
    assert!(e.message.contains("cannot read"), "{e}");

    let toml = "agent_id = \"a\"\nstate_dir = \"s\"\n";
    let c = f.load(toml, &[], &Flags::default()).expect("valid");
    assert!(c.enrollment_token.is_none());
}

#[test]
fn the_static_token_was_removed() {
    let f = Fixture::new();
    let toml = format!("{}token_file = \"/etc/baton/agent.token\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("removed"));
    assert_eq!((e.key.as_str(), e.line), ("token_file", Some(4)));
    assert!(e.message.contains("removed"), "{e}");
    assert!(e.message.contains("baton-agent enroll"), "{e}");
    assert!(e.message.contains("enrollment_token_file"), "{e}");

    let var = "BATON_AGENT_TOKEN";
    let e = invalid(
        f.load(&f.base(), &[(var, "x")], &Flags::default())
            .expect_err("removed"),
    );
    assert_eq!(e.origin, Source::Env(var.into()));
    assert!(e.message.contains("enroll"), "{e}");
}

#[test]
fn batonctl_and_controller_variables_are_ignored() {
    let f = Fixture::new();
    let others = [
        ("BATON_TOKEN_FILE", "/nonexistent/token"),
        ("BATON_URL", "not a url"),
        ("BATON_CA_FILE", "/nonexistent/ca.pem"),
        ("BATON_TOKEN", "x"),
        ("BATON_CONTROLLER_LOG", "not a [filter"),
        ("BATON_CONTROLLER_STATE_DIR", "/nonexistent"),
    ];
    let c = f
        .load(&f.base(), &others, &Flags::default())
        .expect("ignored");
    let plain = f.load(&f.base(), &[], &Flags::default()).expect("plain");
    assert_eq!(c.summary(), plain.summary());
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn an_old_name_is_not_applied_and_warns_once_naming_the_new_one() {
    let f = Fixture::new();
    let old = [
        ("BATON_STATE_DIR", "/elsewhere"),
        ("BATON_SLOTS", "7"),
        ("BATON_LOG", "debug"),
    ];
    let c = f.load(&f.base(), &old, &Flags::default()).expect("valid");
    assert_eq!(c.slots, 1);
    assert_eq!(c.log_level, "info");
    assert_ne!(c.state_dir, PathBuf::from("/elsewhere"));
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    for (name, new) in [
        ("BATON_STATE_DIR", "BATON_AGENT_STATE_DIR"),
        ("BATON_SLOTS", "BATON_AGENT_SLOTS"),
        ("BATON_LOG", "BATON_AGENT_LOG"),
    ] {
        let w: Vec<_> = c.warnings.iter().filter(|w| w.contains(name)).collect();
        assert!(w.iter().any(|w| w.contains(new)), "{name}: {w:?}");
    }
}

#[test]
fn agent_id_defaults_to_the_host_name() {
    let f = Fixture::new();
    let toml = format!("state_dir = \"{}\"\n", f.dir.path().join("state").display());
    let env = [("HOSTNAME", "Fallback_Host.example")];
    let c = f.load(&toml, &env, &Flags::default()).expect("valid");
    assert!(valid_name(&c.agent_id), "{:?}", c.agent_id);
    assert_eq!(c.agent_id, c.agent_id.to_lowercase());
    let host = crate::identity::system_hostname().unwrap_or("Fallback_Host.example".into());
    assert_eq!(c.hostname, host);
    assert_eq!(
        Some(c.agent_id.clone()),
        crate::identity::name_from_hostname(&host)
    );
}

#[test]
fn plain_http_to_another_host_is_noticed() {
    let f = Fixture::new();
    let c = f
        .load(
            &format!("{}controller_url = \"http://ctl.example:8420\"\n", f.base()),
            &[],
            &Flags::default(),
        )
        .expect("valid: a warning only");
    assert!(plain_http_remote(&c.controller_urls[0]));
    let c = f.load(&f.base(), &[], &Flags::default()).expect("valid");
    assert!(!plain_http_remote(&c.controller_urls[0]));
}

#[test]
fn file_errors_name_path_key_and_line() {
    let f = Fixture::new();
    let path = f.path().display().to_string();

    let toml = format!("{}\n\nslots = 0\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("slots"));
    assert_eq!(e.origin, Source::File(path.clone()));
    assert_eq!((e.key.as_str(), e.line), ("slots", Some(6)));
    assert!(
        e.to_string()
            .contains(&format!("{path}, line 6, key `slots`")),
        "{e}"
    );

    let toml = format!("{}groups = [\"ok\",\n  \"not ok\"]\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("group"));
    assert_eq!((e.key.as_str(), e.line), ("groups[1]", Some(5)));

    let toml = format!("{}poll_wait = \"soon\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("duration"));
    assert_eq!((e.key.as_str(), e.line), ("poll_wait", Some(4)));

    let toml = format!(
        "{}[command]\nallow = [\"/bin/true\", \"bin/x\"]\n",
        f.base()
    );
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("allow"));
    assert_eq!((e.key.as_str(), e.line), ("command.allow[1]", Some(5)));

    let toml = format!("{}[command]\nallow_env = [\"TZ\", \"A=B\"]\n", f.base());
    let e = invalid(
        f.load(&toml, &[], &Flags::default())
            .expect_err("allow_env"),
    );
    assert_eq!(e.key.as_str(), "command.allow_env", "{e}");
    let toml = format!("{}[command]\nallow_env = [\"TZ\"]\n", f.base());
    let c = f.load(&toml, &[], &Flags::default()).expect("allow_env");
    assert_eq!(c.command.allow_env, ["TZ"]);

    let toml = format!("{}controller_url = \"ftp://x\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("url"));
    assert_eq!((e.key.as_str(), e.line), ("controller_url", Some(4)));

    let toml = format!("{}log_level = \"info,[bad\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("log"));
    assert_eq!((e.key.as_str(), e.line), ("log_level", Some(4)));
}

#[test]
fn unknown_keys_are_errors() {
    let f = Fixture::new();
    let toml = format!("{}colour = \"blue\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("unknown"));
    assert_eq!(e.line, Some(4));
    assert!(e.message.contains("colour"), "{e}");

    let toml = format!("{}[command]\nallow = []\nshell = true\n", f.base());
    let e = invalid(
        f.load(&toml, &[], &Flags::default())
            .expect_err("unknown nested"),
    );
    assert_eq!(e.line, Some(6), "{e}");
}

#[test]
fn wrong_types_name_key_and_line() {
    let f = Fixture::new();
    let toml = format!("{}slots = \"many\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("type"));
    assert_eq!((e.key.as_str(), e.line), ("slots", Some(4)));
}

#[test]
fn env_and_flag_errors_name_their_source() {
    let f = Fixture::new();
    let e = invalid(
        f.load(
            &f.base(),
            &[("BATON_AGENT_SLOTS", "lots")],
            &Flags::default(),
        )
        .expect_err("env"),
    );
    assert_eq!(e.origin, Source::Env("BATON_AGENT_SLOTS".into()));
    assert_eq!((e.key.as_str(), e.line), ("slots", None));
    assert!(
        e.to_string()
            .contains("environment variable BATON_AGENT_SLOTS"),
        "{e}"
    );

    let e = invalid(
        f.load(
            &f.base(),
            &[("BATON_AGENT_GROUPS", "a,,b")],
            &Flags::default(),
        )
        .expect_err("env groups"),
    );
    assert_eq!(e.origin, Source::Env("BATON_AGENT_GROUPS".into()));
    assert_eq!(e.key, "groups[1]");

    let flags = Flags {
        slots: Some("999".into()),
        ..Flags::default()
    };
    let e = invalid(f.load(&f.base(), &[], &flags).expect_err("flag"));
    assert_eq!(e.origin, Source::Flag("slots".into()));
    assert!(e.to_string().contains("flag --slots"), "{e}");

    let flags = Flags {
        agent_id: Some("bad id!".into()),
        ..Flags::default()
    };
    let e = invalid(f.load(&f.base(), &[], &flags).expect_err("id"));
    assert_eq!(
        (e.origin, e.key.as_str()),
        (Source::Flag("agent-id".into()), "agent_id")
    );
}

#[test]
fn required_keys_are_reported() {
    let f = Fixture::new();
    let e = invalid(
        f.load("agent_id = \"a\"\n", &[], &Flags::default())
            .expect_err("no state dir"),
    );
    assert_eq!(e.key, "state_dir");
    let e = invalid(
        f.load(
            "agent_id = \"a\"\nstate_dir = \"s\"\ngroups = []\n",
            &[],
            &Flags::default(),
        )
        .expect_err("explicitly no group"),
    );
    assert_eq!((e.key.as_str(), e.line), ("groups", Some(3)));
}

#[test]
fn mysql_connections_are_parsed_and_checked_with_key_and_line() {
    let f = Fixture::new();
    let toml = format!(
        "{}[connections.main]\nkind = \"mysql\"\nhost = \"db\"\nport = 3307\nuser = \"baton\"\npassword_env = \"PATH\"\n\n[connections.mss]\nkind = \"mssql\"\nhost = \"x\"\nuser = \"sa\"\npassword_env = \"PATH\"\nencrypt = \"off\"\n",
        f.base()
    );
    let c = f.load(&toml, &[], &Flags::default()).expect("valid");
    let ConnectionConfig::Mysql(main) = &c.connections["main"] else {
        panic!("mysql connection expected");
    };
    assert_eq!(
        main.endpoint,
        crate::config::mysql::Endpoint::Tcp {
            host: "db".into(),
            port: 3307
        }
    );
    assert_eq!(c.connections["mss"].kind(), "mssql");
    let ConnectionConfig::Mssql(mss) = &c.connections["mss"] else {
        panic!("mssql connection expected");
    };
    assert_eq!(
        (mss.host.as_str(), &mss.endpoint),
        ("x", &crate::config::mssql::MssqlEndpoint::Port(1433))
    );
    let toml = format!(
        "{}[connections.mss]\nkind = \"mssql\"\nhost = \"x\"\nuser = \"sa\"\npassword_env = \"PATH\"\n",
        f.base()
    );
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("no trust"));
    assert_eq!(e.key, "connections.mss.ca_file");

    let toml = format!("{}[connections.\"bad name\"]\nkind = \"mysql\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("name"));
    assert_eq!(e.key, "connections.bad name");

    let toml = format!("{}[connections.main]\nurl = \"x\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("kind"));
    assert!(e.message.contains("kind"), "{e}");
    assert_eq!(e.line, Some(4), "{e}");

    // A password inline is refused, naming the key and its line.
    let toml = format!(
        "{}[connections.main]\nkind = \"mysql\"\nhost = \"db\"\nuser = \"u\"\npassword = \"hunter2\"\n",
        f.base()
    );
    let e = invalid(
        f.load(&toml, &[], &Flags::default())
            .expect_err("inline password"),
    );
    assert_eq!(e.key, "connections.main.password");
    assert_eq!(e.line, Some(8), "{e}");
    assert!(
        !e.to_string().contains("hunter2"),
        "the password is not echoed: {e}"
    );
}

#[test]
fn missing_file_and_exit_code() {
    let flags = Flags {
        config: Some("/baton/no/such/agent.toml".into()),
        ..Flags::default()
    };
    let e = load(&flags, &BTreeMap::new()).expect_err("no file");
    assert_eq!(e.exit_code(), 78);
    assert_eq!(Error::EXIT_CODE, baton_proto::config::EX_CONFIG);
    let c = invalid(e);
    assert_eq!(c.origin, Source::Flag("config".into()));
    assert!(c.message.contains("/baton/no/such/agent.toml"));
}

#[test]
fn config_path_from_env_and_state_dir_creation() {
    let f = Fixture::new();
    std::fs::write(f.path(), f.base()).expect("write");
    let env = BTreeMap::from([(ENV_CONFIG.to_owned(), f.path().display().to_string())]);
    let c = load(&Flags::default(), &env).expect("valid");
    assert_eq!(c.config_file.as_deref(), Some(f.path().as_path()));
    assert!(!c.state_dir.exists(), "validation does not create it");
    c.prepare_state_dir().expect("create");
    assert!(c.state_dir.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&c.state_dir)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn state_dir_must_not_be_a_file() {
    let f = Fixture::new();
    let toml = f.base().replace("/state\"", "/token\"");
    let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err("file"));
    assert_eq!((e.key.as_str(), e.line), ("state_dir", Some(3)));
}

#[test]
fn log_format_is_layered_and_validated() {
    let f = Fixture::new();
    let none = Flags::default();
    let c = f.load(&f.base(), &[], &none).expect("default");
    assert_eq!(c.log_format, LogFormat::Text);
    let toml = format!("{}log_format = \"json\"\n", f.base());
    let c = f.load(&toml, &[], &none).expect("file");
    assert_eq!(c.log_format, LogFormat::Json);
    let c = f
        .load(&toml, &[("BATON_AGENT_LOG_FORMAT", "text")], &none)
        .expect("env wins");
    assert_eq!(c.log_format, LogFormat::Text);

    let toml = format!("{}log_format = \"xml\"\n", f.base());
    let e = invalid(f.load(&toml, &[], &none).expect_err("bad in the file"));
    assert_eq!((e.key.as_str(), e.line), ("log_format", Some(4)));
    assert_eq!(e.origin, Source::File(f.path().display().to_string()));
    assert!(e.message.contains("`json`"), "{e}");
    let e = invalid(
        f.load(&f.base(), &[("BATON_AGENT_LOG_FORMAT", "yaml")], &none)
            .expect_err("bad in the env"),
    );
    assert_eq!(e.origin, Source::Env("BATON_AGENT_LOG_FORMAT".into()));
    assert_eq!(e.key, "log_format");
    assert!(e.message.contains("\"text\" or \"json\""), "{e}");
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every kind of secret file: group/other bits refused (naming key, line and
/// mode, saying how to fix), 0600 and 0400 accepted.
#[test]
fn secret_files_open_to_group_or_others_are_refused() {
    let f = Fixture::new();
    let d = f.dir.path();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["a1.test".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(d.join("agent.crt"), cert.pem()).expect("cert");
    crate::secret::tests::write_secret(&d.join("agent.key"), &key.serialize_pem());
    crate::secret::tests::write_secret(&d.join("pw"), "s3cret\n");
    let mysql =
        "[connections.my]\nkind = \"mysql\"\nhost = \"db\"\nuser = \"u\"\npassword_file = \"pw\"\n";
    let mssql = "[connections.ms]\nkind = \"mssql\"\nhost = \"db\"\nuser = \"u\"\npassword_file = \"pw\"\nencrypt = \"off\"\n";
    let tls = "[tls]\nclient_cert_file = \"agent.crt\"\nclient_key_file = \"agent.key\"\n";
    let cases = [
        ("token", "enrollment_token_file", ""),
        ("pw", "connections.my.password_file", mysql),
        ("pw", "connections.ms.password_file", mssql),
        ("agent.key", "tls.client_key_file", tls),
    ];
    for (file, key, extra) in cases {
        let toml = format!("{}{extra}", f.base());
        for ok in [0o600, 0o400] {
            chmod(&d.join(file), ok);
            f.load(&toml, &[], &Flags::default())
                .unwrap_or_else(|e| panic!("{key} at {ok:o}: {e}"));
        }
        chmod(&d.join(file), 0o644);
        let e = invalid(f.load(&toml, &[], &Flags::default()).expect_err(key));
        assert_eq!(e.key, key, "{e}");
        assert!(e.line.is_some(), "{e}");
        let shown = d.join(file).display().to_string();
        for part in [
            "mode 0644",
            &format!("chmod 600 {shown}"),
            "group or others",
        ] {
            assert!(e.to_string().contains(part), "{part}: {e}");
        }
        chmod(&d.join(file), 0o600);
    }
    // The same for a file named by the environment.
    chmod(&d.join("token"), 0o640);
    let toml = f.base().replace("enrollment_token_file = \"token\"\n", "");
    let path = d.join("token").display().to_string();
    let env = [("BATON_AGENT_ENROLLMENT_TOKEN_FILE", path.as_str())];
    let e = invalid(f.load(&toml, &env, &Flags::default()).expect_err("env"));
    assert_eq!(e.origin, Source::Env(env[0].0.into()));
    assert!(e.message.contains("mode 0640"), "{e}");
}
