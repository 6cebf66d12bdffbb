use super::*;
use crate::config::{Config, Flags};
use std::collections::BTreeMap;

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("controller.toml");
    std::fs::write(&path, format!("allow_plain_http = true\n{toml}")).expect("write");
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::load(Some(&path), &env, &Flags::default())
}

#[test]
fn sqlite_is_the_default() {
    let c = load("", &[]).expect("load");
    assert!(matches!(c.store, StoreConfig::Sqlite { .. }));
}

#[test]
fn postgres_url_password_file_and_pool_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("pg.password");
    std::fs::write(&pw, "s3cret\n").expect("write");
    let c = load(
        &format!(
            "[store]\nurl = \"postgres://baton@db1:5432,db2:5432/baton\"\npassword_file = \"{}\"\npool_size = 4\npoll_only = true\n",
            pw.display()
        ),
        &[],
    )
    .expect("load");
    let StoreConfig::Postgres(o) = c.store else {
        panic!("not postgres: {:?}", c.store)
    };
    assert_eq!(o.password.as_deref(), Some("s3cret"));
    assert_eq!((o.pool_size, o.poll_only), (4, true));
    assert_eq!(o.url, "postgres://baton@db1:5432,db2:5432/baton");
}

#[test]
fn the_environment_wins_over_the_file() {
    let c = load(
        "[store]\nurl = \"postgres://a@file/baton\"\n",
        &[
            ("BATON_CONTROLLER_STORE_URL", "postgres://a@env/baton"),
            ("BATON_CONTROLLER_STORE_PASSWORD", "pw"),
        ],
    )
    .expect("load");
    let StoreConfig::Postgres(o) = c.store else {
        panic!("not postgres")
    };
    assert_eq!(
        (o.url.as_str(), o.password.as_deref()),
        ("postgres://a@env/baton", Some("pw"))
    );
}

#[test]
fn errors_name_the_key_and_line() {
    let e = load("\n[store]\nurl = \"postgres://baton:pw@db/baton\"\n", &[])
        .expect_err("password in url");
    assert_eq!((e.key.as_str(), e.line), ("store.url", Some(4)));
    assert!(e.message.contains("password_file"), "{}", e.message);
    let e = load("[store]\nurl = \"mysql://db/baton\"\n", &[]).expect_err("scheme");
    assert_eq!(e.key, "store.url");
    let e = load(
        "[store]\nurl = \"postgres://db/b\"\npassword_file = \"/nonexistent/pw\"\n",
        &[],
    )
    .expect_err("missing file");
    assert_eq!((e.key.as_str(), e.line), ("store.password_file", Some(4)));
    let e =
        load("[store]\nurl = \"postgres://db/b\"\npool_size = 1\n", &[]).expect_err("pool size");
    assert_eq!(e.key, "store.pool_size");
}
