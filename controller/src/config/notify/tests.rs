use std::collections::BTreeMap;
use std::io::Write;

use crate::config::{Config, Flags};

fn load(src: &str, env: &[(&str, &str)]) -> Result<Config, crate::config::Error> {
    let mut f = tempfile::NamedTempFile::new().expect("tmp");
    f.write_all(format!("allow_plain_http = true\n{src}").as_bytes())
        .expect("write");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::load(Some(f.path()), &env, &Flags::default())
}

const HOOK: &str = "[notifications]\noffline_after = \"2m\"\n[[notifications.webhooks]]\nname = \"ops\"\nurl = \"http://127.0.0.1:9/h\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"job_failed\"]\ngroups = [\"nightly\"]\nlabels = { team = \"db\" }\n";

#[test]
fn a_webhook_loads_with_its_secret_from_the_environment_and_never_shows_it() {
    let c = load(HOOK, &[("HOOK_SECRET", "0123456789abcdef-secret")]).expect("load");
    let n = &c.notifications;
    assert_eq!(n.offline_after.as_secs(), 120);
    assert_eq!(n.webhooks.len(), 1);
    let w = &n.webhooks[0];
    assert_eq!(w.secret.expose(), b"0123456789abcdef-secret");
    assert_eq!(w.groups, vec!["nightly".to_string()]);
    assert_eq!(w.labels.get("team").map(String::as_str), Some("db"));
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("0123456789abcdef"),
        "the secret in Debug: {shown}"
    );
}

#[test]
fn errors_name_the_webhook_key_and_line() {
    let e = load(HOOK, &[]).expect_err("no variable");
    assert_eq!(e.key, "notifications.webhooks[0].secret_env");
    assert_eq!(e.line, Some(7));
    let bad_event = HOOK.replace("job_failed", "job_exploded");
    let e = load(&bad_event, &[("HOOK_SECRET", "0123456789abcdef")]).expect_err("event");
    assert_eq!(e.key, "notifications.webhooks[0].events");
    let bad_url = HOOK.replace("http://127.0.0.1:9/h", "ftp://x/h");
    let e = load(&bad_url, &[("HOOK_SECRET", "0123456789abcdef")]).expect_err("url");
    assert_eq!(e.key, "notifications.webhooks[0].url");
    assert_eq!(e.line, Some(6));
    let inline = HOOK.replace("secret_env = \"HOOK_SECRET\"", "secret = \"x\"");
    let e = load(&inline, &[]).expect_err("inline secret");
    assert!(e.message.contains("secret"), "{e}");
    let twice = format!(
        "{HOOK}[[notifications.webhooks]]\nname = \"ops\"\nurl = \"http://h/\"\nsecret_env = \"HOOK_SECRET\"\n"
    );
    let e = load(&twice, &[("HOOK_SECRET", "0123456789abcdef")]).expect_err("twice");
    assert_eq!(e.key, "notifications.webhooks[1].name");
    let short = load(HOOK, &[("HOOK_SECRET", "short")]).expect_err("short");
    assert!(short.message.contains("16"), "{short}");
}

#[cfg(unix)]
#[test]
fn a_secret_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("hook.secret");
    std::fs::write(&path, "0123456789abcdef-file\n").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let src = HOOK.replace(
        "secret_env = \"HOOK_SECRET\"",
        &format!("secret_file = \"{}\"", path.display()),
    );
    let e = load(&src, &[]).expect_err("mode 644");
    assert_eq!(e.key, "notifications.webhooks[0].secret_file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let c = load(&src, &[]).expect("load");
    assert_eq!(
        c.notifications.webhooks[0].secret.expose(),
        b"0123456789abcdef-file"
    );
}

#[tokio::test]
async fn a_pinned_ca_needs_https_and_a_pem_file() {
    let dir = tempfile::tempdir().expect("dir");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    let env = [("HOOK_SECRET", "0123456789abcdef")];
    let with_ca = |url: &str, ca: &std::path::Path| {
        HOOK.replace("http://127.0.0.1:9/h", url).replace(
            "secret_env",
            &format!("ca_file = \"{}\"\nsecret_env", ca.display()),
        )
    };
    let e = load(&with_ca("http://h/x", &junk), &env).expect_err("http with a CA");
    assert_eq!(e.key, "notifications.webhooks[0].ca_file");
    assert!(e.message.contains("https"), "{e}");
    let e = load(&with_ca("https://h/x", &junk), &env).expect_err("not PEM");
    assert_eq!(e.key, "notifications.webhooks[0].ca_file");
    let ca = rcgen::generate_simple_self_signed(vec!["h".to_string()]).expect("cert");
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, ca.cert.pem()).expect("write");
    let c = load(&with_ca("https://h/x", &pem), &env).expect("a PEM CA");
    assert_eq!(
        c.notifications.webhooks[0].ca_file.as_deref(),
        Some(pem.as_path())
    );
    let (sq, _db) = crate::store::sqlite::SqliteStore::temp().await;
    let n = crate::notify::Notifier::new(sq.store(), &c.notifications, Default::default());
    assert!(n.is_ok(), "a client with the pinned CA: {:?}", n.err());
}
