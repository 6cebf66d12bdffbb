//! The AWS credential chain: its order, the shared credentials file, and
//! errors naming the variable, the file, the profile and the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::config::store::KeySource;
use crate::config::{Error, Flags, load_from};

const CREDENTIALS: &str = "# written by aws configure\n\
    [default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s3cret/def+ault\n\
    \n[prod]\naws_access_key_id=AKIAPROD\naws_secret_access_key=prod\\secret\n\
    aws_session_token = tok\n\
    [assumed]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n";

/// A home directory with `.aws/credentials` (0600) holding `text`.
fn home(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join(".aws")).expect("mkdir");
    let file = dir.path().join(".aws").join("credentials");
    crate::secret::tests::write_secret(&file, text);
    (dir, file)
}

fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn home_env(dir: &Path, more: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut e = env(more);
    e.insert("HOME".into(), dir.display().to_string());
    e
}

fn profile(file: &Path, name: &str) -> Found {
    Found::Profile(Profile {
        file: file.to_path_buf(),
        profile: name.into(),
    })
}

#[test]
fn the_environment_comes_first_then_the_default_profile() {
    let (dir, file) = home(CREDENTIALS);
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIAENV"),
        ("AWS_SECRET_ACCESS_KEY", "e"),
    ];
    assert_eq!(resolve(&home_env(dir.path(), &keys), None), Ok(Found::Env));
    let found = resolve(&home_env(dir.path(), &[]), None).expect("default profile");
    assert_eq!(found, profile(&file, "default"));
    let Found::Profile(p) = found else {
        unreachable!()
    };
    let k = p.read().expect("keys");
    assert!(!format!("{k:?}").contains("s3cret"), "{k:?}");
    assert_eq!(
        (k.access.as_str(), k.secret.as_str(), k.token.as_deref()),
        ("AKIADEFAULT", "s3cret/def+ault", None)
    );
}

#[test]
fn aws_profile_and_the_file_variable_choose_the_profile_and_file() {
    let (dir, file) = home(CREDENTIALS);
    let e = home_env(dir.path(), &[("AWS_PROFILE", "prod")]);
    let found = resolve(&e, None).expect("prod");
    assert_eq!(found, profile(&file, "prod"));
    let Found::Profile(p) = found else {
        unreachable!()
    };
    let k = p.read().expect("keys");
    // No escapes: a backslash in a secret is kept.
    assert_eq!(
        (k.access.as_str(), k.secret.as_str(), k.token.as_deref()),
        ("AKIAPROD", "prod\\secret", Some("tok"))
    );
    // AWS_SHARED_CREDENTIALS_FILE wins over HOME.
    let (other, other_file) = home("[default]\naws_access_key_id=B\naws_secret_access_key=b\n");
    let e = home_env(
        dir.path(),
        &[(
            "AWS_SHARED_CREDENTIALS_FILE",
            &other_file.display().to_string(),
        )],
    );
    assert_eq!(resolve(&e, None), Ok(profile(&other_file, "default")));
    drop(other);
}

#[test]
fn a_store_profile_wins_over_the_environment() {
    let (dir, file) = home(CREDENTIALS);
    let e = home_env(
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "e"),
            ("AWS_PROFILE", "default"),
        ],
    );
    assert_eq!(resolve(&e, Some("prod")), Ok(profile(&file, "prod")));
}

#[test]
fn errors_name_the_variable_file_profile_and_line() {
    let (dir, file) = home(CREDENTIALS);
    let shown = file.display().to_string();
    let err = |e: &BTreeMap<String, String>, p: Option<&str>| resolve(e, p).expect_err("refused");
    // One AWS variable without the other.
    let e = err(&env(&[("AWS_ACCESS_KEY_ID", "AKIA")]), None);
    assert_eq!(e.key, "");
    assert!(e.message.contains("AWS_SECRET_ACCESS_KEY"), "{e:?}");
    // Nothing anywhere.
    let empty = tempfile::tempdir().expect("tempdir");
    let e = err(&home_env(empty.path(), &[]), None);
    assert!(e.message.starts_with("no keys"), "{e:?}");
    assert!(e.message.contains("does not exist"), "{e:?}");
    let e = err(&env(&[]), None);
    assert!(e.message.contains("HOME"), "{e:?}");
    // A profile that is not there lists those that are.
    let e = err(&home_env(dir.path(), &[("AWS_PROFILE", "staging")]), None);
    assert!(e.message.contains(&shown), "{e:?}");
    assert!(
        e.message
            .contains("no profile [staging] (it has: default, prod, assumed)"),
        "{e:?}"
    );
    let e = err(&home_env(dir.path(), &[]), Some("staging"));
    assert_eq!(e.key, "profile");
    // A role is not followed.
    let e = err(&home_env(dir.path(), &[]), Some("assumed"));
    assert!(e.message.contains("role_arn"), "{e:?}");
    assert!(e.message.contains("static keys only"), "{e:?}");
    // A syntax error names its line.
    let (bad, bad_file) = home("[default]\naws_access_key_id = A\n= orphan\n");
    let e = err(&home_env(bad.path(), &[]), None);
    assert!(
        e.message
            .contains(&format!("{}, line 3", bad_file.display())),
        "{e:?}"
    );
    // A named file that is missing.
    let e = err(
        &env(&[("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")]),
        None,
    );
    assert!(
        e.message.contains("/nonexistent/credentials: cannot read"),
        "{e:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_credentials_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, file) = home(CREDENTIALS);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let e = resolve(&home_env(dir.path(), &[]), None).expect_err("refused");
    assert!(e.message.contains(&file.display().to_string()), "{e:?}");
}

/// The agent config with `[stores.b]` holding `store`, and `vars`.
fn load(dir: &Path, store: &str, vars: &BTreeMap<String, String>) -> Result<KeySource, Error> {
    crate::secret::tests::write_secret(&dir.join("token"), "baton_enr_s3cret\n");
    let toml = format!(
        "agent_id = \"a\"\nenrollment_token_file = \"token\"\nstate_dir = \"{}\"\n\
         [stores.b]\nkind = \"s3\"\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"bkt\"\n{store}",
        dir.join("state").display()
    );
    load_from(
        &Flags::default(),
        vars,
        Some((&dir.join("agent.toml"), &toml)),
    )
    .map(|c| c.stores["b"].as_s3().keys.clone())
}

#[test]
fn the_config_takes_the_chain_and_names_the_store_key_and_line() {
    let (dir, file) = home(CREDENTIALS);
    let vars = home_env(dir.path(), &[]);
    assert_eq!(
        load(dir.path(), "", &vars).expect("default"),
        KeySource::Profile(Profile {
            file: file.clone(),
            profile: "default".into(),
        })
    );
    assert_eq!(
        load(dir.path(), "profile = \"prod\"\n", &vars).expect("prod"),
        KeySource::Profile(Profile {
            file,
            profile: "prod".into(),
        })
    );
    let with_keys = home_env(
        dir.path(),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "e"),
        ],
    );
    assert_eq!(
        load(dir.path(), "", &with_keys).expect("env"),
        KeySource::AwsEnv
    );
    let invalid = |store: &str, vars: &BTreeMap<String, String>| match load(dir.path(), store, vars)
    {
        Ok(k) => panic!("accepted: {k:?}"),
        Err(Error::Invalid(e)) => e,
    };
    let e = invalid("profile = \"staging\"\n", &vars);
    assert_eq!(
        (e.key.as_str(), e.line),
        ("stores.b.profile", Some(8)),
        "{e}"
    );
    assert!(e.to_string().contains("agent.toml"), "{e}");
    let e = invalid("profile = \"prod\"\naccess_key_env = \"X\"\n", &vars);
    assert_eq!(e.key, "stores.b.profile", "{e}");
    let e = invalid("", &home_env(dir.path(), &[("AWS_PROFILE", "staging")]));
    assert_eq!((e.key.as_str(), e.line), ("stores.b", Some(4)), "{e}");
    assert!(e.to_string().contains("[staging]"), "{e}");
}
