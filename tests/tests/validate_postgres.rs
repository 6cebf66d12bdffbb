//! `baton-controller validate` with `[store] url = "postgres://…"` against a
//! real PostgreSQL (`BATON_TEST_PG_URL`, a superuser URL as `scripts/test`
//! sets; skips without it, saying so, unless `BATON_TEST_REQUIRE_PG=1`):
//! the database is reachable, its migrations are current (none pending,
//! none unknown), `synchronous_commit` is not off, and an asynchronous (or
//! missing) standby is a warning. Errors exit 78.

use std::path::Path;
use std::process::Output;

use baton_tests::proc::bin;
use sqlx::{Connection, PgConnection};

/// The admin URL, or `None` (printed why) when the test must skip.
fn admin_url() -> Option<String> {
    match std::env::var("BATON_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BATON_TEST_REQUIRE_PG").as_deref() != Ok("1"),
                "BATON_TEST_REQUIRE_PG=1 but BATON_TEST_PG_URL is not set"
            );
            eprintln!("skipped: no PostgreSQL (set BATON_TEST_PG_URL, as scripts/test does)");
            None
        }
    }
}

/// `url` (`postgres://u@h:p/db[?q]`) naming database `db` instead.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let q = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{}/{db}{q}", &base[..host_end])
}

async fn exec(url: &str, sql: &str) {
    let mut c = PgConnection::connect(url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
}

/// Run `baton-controller <cmd>` with a config whose store is `url`.
fn controller(dir: &Path, url: &str, cmd: &str) -> Output {
    let cfg = dir.join("controller.toml");
    std::fs::write(
        &cfg,
        format!(
            "allow_plain_http = true\nlisten = \"127.0.0.1:18420\"\nstate_dir = \"{}\"\n\n[store]\nurl = \"{url}\"\n",
            dir.join("state").display()
        ),
    )
    .expect("write");
    std::process::Command::new(bin("baton-controller").expect("bin"))
        .args(["--config", cfg.to_str().expect("path"), cmd])
        .output()
        .expect("run")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn validate_checks_reachability_migrations_and_synchronous_commit() {
    let Some(admin) = admin_url() else {
        return;
    };
    let name = format!("baton_v_{}_{}", std::process::id(), rand::random::<u32>());
    exec(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
    let url = with_database(&admin, &name);
    let dir = tempfile::tempdir().expect("tmp");

    // A fresh database: its migrations are pending.
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("not applied yet"), "{out:?}");

    // Migrated (init): valid, with the warning that there is no
    // synchronous standby (this server has none).
    let out = controller(dir.path(), &url, "init");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("migrations current"), "{stdout}");
    assert!(
        stderr(&out).contains("warning: PostgreSQL: no synchronous standby"),
        "{out:?}"
    );

    // A migration this controller does not know: a newer one ran.
    exec(
        &url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from the future', TRUE, '\\x00', 1)",
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("newer controller"), "{out:?}");
    exec(
        &url,
        "DELETE FROM _sqlx_migrations WHERE version = 99990101000000",
    )
    .await;

    // synchronous_commit = off for the controller's database.
    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" SET synchronous_commit = off"),
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(
        stderr(&out).contains("synchronous_commit is off"),
        "{out:?}"
    );
    exec(
        &admin,
        &format!("ALTER DATABASE \"{name}\" RESET synchronous_commit"),
    )
    .await;
    let out = controller(dir.path(), &url, "validate");
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Nobody listens there: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = controller(
        dir.path(),
        &format!("postgres://postgres@127.0.0.1:{closed}/{name}"),
        "validate",
    );
    assert_eq!(out.status.code(), Some(78), "{out:?}");
    assert!(stderr(&out).contains("no primary reachable"), "{out:?}");

    exec(&admin, &format!("DROP DATABASE \"{name}\" WITH (FORCE)")).await;
}
