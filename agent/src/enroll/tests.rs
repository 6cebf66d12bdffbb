//! Enrollment against the fake controller: real HTTP, real files.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::http::StatusCode;
use baton_proto::ErrorCode;

use super::*;
use crate::agent::tests::{config, spawn_agent};
use crate::fake_controller::{Enroll, Fake};
use crate::tls::TlsConfig;

const LIMIT: Duration = Duration::from_secs(10);
const TOKEN: &str = "baton_enr_single-use-token";

struct Setup {
    fake: Fake,
    dir: tempfile::TempDir,
    config: Config,
    transport: Transport,
}

impl Setup {
    /// A fake controller and a config whose enrollment token is in a file.
    async fn new() -> Setup {
        let fake = Fake::start().await;
        fake.script().enroll_groups = vec!["g".into(), "h".into()];
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("enroll.token");
        crate::secret::tests::write_secret(&token_file, &format!("{TOKEN}\n"));
        let mut config = config(&fake.url, &dir.path().join("state"), LIMIT);
        config.enrollment_token = Some(EnrollmentToken::File {
            path: token_file,
            origin: Source::File("agent.toml".into()),
            key: "enrollment_token_file".into(),
            line: Some(2),
        });
        let transport = Transport::new(&fake.url, &TlsConfig::default()).expect("transport");
        Setup {
            fake,
            dir,
            config,
            transport,
        }
    }

    fn identity_path(&self) -> PathBuf {
        identity::path(&self.config.state_dir)
    }

    async fn run_identity(&self, patience: Duration) -> Result<Identity, Error> {
        identity_for_run(
            &self.config,
            &self.transport,
            patience,
            &CancellationToken::new(),
        )
        .await
    }
}

#[tokio::test]
async fn run_enrolls_writes_a_private_identity_and_polls_with_the_secret() {
    let t = Setup::new().await;
    let id = t.run_identity(LIMIT).await.expect("enrolled");
    assert_eq!(id.agent_id, "a1");
    assert_eq!(id.groups, ["g", "h"]);
    assert_eq!(id.controller_url, t.fake.url);
    let secret = t
        .fake
        .script()
        .secret
        .clone()
        .expect("the fake issued a secret");
    assert_eq!(id.secret.expose(), secret);
    {
        let s = t.fake.script();
        assert_eq!(s.enrolls.len(), 1);
        let (req, auth) = &s.enrolls[0];
        assert_eq!(req.token, TOKEN, "read from the file, trimmed");
        assert_eq!(req.agent_id, "a1");
        assert_eq!(req.hostname, "host-1");
        assert_eq!(req.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(auth, "", "no Authorization header on enroll");
    }

    let path = t.identity_path();
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "identity.json is private");
    let on_disk = Identity::load(&t.config.state_dir)
        .expect("load")
        .expect("some");
    assert_eq!(on_disk, id);

    // The next start uses the file and does not enroll again.
    let again = t.run_identity(LIMIT).await.expect("loaded");
    assert_eq!(again, id);
    assert_eq!(t.fake.script().enrolls.len(), 1);

    // The secret is the bearer of the agent's calls.
    let (task, shutdown) = spawn_agent(t.config.clone(), &id);
    assert!(t.fake.until(LIMIT, |s| !s.polls.is_empty()).await);
    shutdown.cancel();
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("stops")
        .expect("no panic");
    let s = t.fake.script();
    assert_eq!(
        s.poll_auth[0],
        (format!("Bearer {secret}"), "a1".to_owned())
    );
    assert_eq!(
        s.polls[0].groups,
        ["g", "h"],
        "the enrolled groups are served"
    );
    assert_eq!(s.unauthorized, 0);
}

#[tokio::test]
async fn refusal_surfaces_the_controllers_message_and_writes_nothing() {
    let t = Setup::new().await;
    t.fake.script().enroll = Enroll::Refuse(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "enrollment token expired",
    );
    let e = command(&t.config, &t.transport, None, LIMIT)
        .await
        .expect_err("refused");
    assert!(matches!(e, Error::Refused { status: 401, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("enrollment token expired"), "{msg}");
    assert!(!msg.contains(TOKEN));
    assert_eq!(e.exit_code(), 1);
    assert!(!t.identity_path().exists());
    assert_eq!(t.fake.script().enrolls.len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn conflict_names_the_agent_id() {
    let t = Setup::new().await;
    t.fake.script().enroll = Enroll::Refuse(
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
        "an active agent already has this id",
    );
    let e = t.run_identity(LIMIT).await.expect_err("conflict");
    assert!(matches!(e, Error::Refused { status: 409, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("already has this id") && msg.contains("\"a1\""),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 1);
}

#[tokio::test]
async fn rate_limited_enrollment_waits_for_retry_after() {
    let t = Setup::new().await;
    t.fake.script().enroll_rate_limited = 1;
    let started = std::time::Instant::now();
    let id = t.run_identity(LIMIT).await.expect("enrolled on the retry");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was not respected ({:?})",
        started.elapsed()
    );
    assert_eq!(t.fake.script().enrolls.len(), 2);
    assert_eq!(id.agent_id, "a1");
}

#[tokio::test]
async fn the_command_takes_the_token_file_flag() {
    let t = Setup::new().await;
    let flag_file = t.dir.path().join("other.token");
    crate::secret::tests::write_secret(&flag_file, "baton_enr_from-the-flag");
    let id = command(&t.config, &t.transport, Some(&flag_file), LIMIT)
        .await
        .expect("enrolled");
    assert_eq!(
        t.fake.script().enrolls[0].0.token,
        "baton_enr_from-the-flag"
    );
    assert_eq!(id.groups, ["g", "h"]);

    // Enrolled now: refused before the token is even read.
    let e = command(
        &t.config,
        &t.transport,
        Some(Path::new("/no/such/token")),
        LIMIT,
    )
    .await
    .expect_err("already enrolled");
    assert_eq!(
        e.to_string(),
        format!(
            "already enrolled as a1; delete {} to enroll again",
            t.identity_path().display()
        )
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(t.fake.script().enrolls.len(), 1);
}

#[tokio::test]
async fn bad_tokens_are_config_errors() {
    let t = Setup::new().await;
    let bad = t.dir.path().join("bad.token");
    crate::secret::tests::write_secret(&bad, "baton_agt_not-an-enrollment-token");
    let e = command(&t.config, &t.transport, Some(&bad), LIMIT)
        .await
        .expect_err("bad token");
    assert!(matches!(&e, Error::Token(c) if c.origin == Source::Flag("token-file".into())));
    assert_eq!(e.exit_code(), 78);
    assert!(!e.to_string().contains("not-an-enrollment-token"), "{e}");

    let mut cfg = t.config.clone();
    cfg.enrollment_token = None;
    let e = command(&cfg, &t.transport, None, LIMIT)
        .await
        .expect_err("no token");
    assert!(matches!(e, Error::NoToken), "{e:?}");
    assert_eq!(e.exit_code(), 78);

    // A configured token file that is gone names the key and line.
    std::fs::remove_file(t.dir.path().join("enroll.token")).expect("rm");
    let e = t.run_identity(LIMIT).await.expect_err("gone");
    let Error::Token(c) = &e else { panic!("{e:?}") };
    assert_eq!((c.key.as_str(), c.line), ("enrollment_token_file", Some(2)));
    assert!(t.fake.script().enrolls.is_empty());
}

#[tokio::test]
async fn run_without_identity_or_token_is_not_enrolled() {
    let mut t = Setup::new().await;
    t.config.enrollment_token = None;
    let e = t.run_identity(LIMIT).await.expect_err("not enrolled");
    assert!(matches!(e, Error::NotEnrolled));
    assert_eq!(e.exit_code(), 78);
    assert_eq!(
        e.to_string(),
        "not enrolled: run `baton-agent enroll --token-file FILE` or set enrollment_token_file"
    );
}

#[tokio::test]
async fn enrolling_with_several_controllers_keeps_them_all() {
    let mut t = Setup::new().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    t.config.controller_urls = vec![format!("http://{dead}"), t.fake.url.clone()];
    t.transport =
        Transport::with_urls(&t.config.controller_urls, &TlsConfig::default()).expect("t");
    let id = t
        .run_identity(LIMIT)
        .await
        .expect("enrolled through the live one");
    assert_eq!(id.controller_url, t.fake.url, "the one that answered");
    assert_eq!(id.controller_urls, t.config.controller_urls);
    assert_eq!(t.fake.script().enrolls.len(), 1);
    // Loaded again with the list in another order: the same installation.
    t.config.controller_urls.reverse();
    let again = t.run_identity(LIMIT).await.expect("loaded");
    assert_eq!(again, id);
    assert_eq!(t.fake.script().enrolls.len(), 1, "no second enrollment");
}

#[tokio::test]
async fn the_identity_wins_over_the_config() {
    let t = Setup::new().await;
    let id = Identity {
        agent_id: "enrolled-id".into(),
        secret: Secret::new("baton_agt_x"),
        groups: vec!["g".into()],
        controller_url: "https://elsewhere.test".into(),
        controller_urls: Vec::new(),
        enrolled_at: Utc::now(),
        fleet: String::new(),
    };
    crate::config::create_private_dir(&t.config.state_dir).expect("state");
    id.save(&t.config.state_dir).expect("save");
    let got = t.run_identity(LIMIT).await.expect("loaded");
    assert_eq!(got.agent_id, "enrolled-id", "not the configured a1");
    assert!(
        t.fake.script().enrolls.is_empty(),
        "a token is configured, but no enrollment is needed"
    );
}

#[tokio::test]
async fn an_insecure_identity_file_stops_the_start() {
    let t = Setup::new().await;
    let id = t.run_identity(LIMIT).await.expect("enrolled");
    std::fs::set_permissions(t.identity_path(), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    let e = t.run_identity(LIMIT).await.expect_err("insecure");
    assert!(
        matches!(e, Error::Identity(identity::Error::Insecure { .. })),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 78);
    assert!(!e.to_string().contains(id.secret.expose()));
}

#[tokio::test]
async fn an_unreachable_controller_is_retried_then_given_up() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let mut t = Setup::new().await;
    t.config.controller_urls = vec![format!("http://{addr}")];
    t.transport =
        Transport::with_urls(&t.config.controller_urls, &TlsConfig::default()).expect("t");
    let started = std::time::Instant::now();
    let e = t
        .run_identity(Duration::from_millis(600))
        .await
        .expect_err("unreachable");
    assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("cannot connect"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.exit_code(), 1);

    // A shutdown request ends the wait.
    let stop = CancellationToken::new();
    stop.cancel();
    let e = identity_for_run(&t.config, &t.transport, LIMIT, &stop)
        .await
        .expect_err("stopped");
    assert!(matches!(e, Error::Stopped), "{e:?}");
}
