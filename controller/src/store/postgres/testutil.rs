//! Fresh PostgreSQL stores for tests: one scratch database per case,
//! created from `BATON_TEST_PG_URL` (a superuser URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`, as `scripts/test` sets)
//! and dropped when the guard goes. Without the variable the cases skip,
//! saying so, unless `BATON_TEST_REQUIRE_PG=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::{PgOptions, PgStore};
use crate::store::Store;

/// Drops its scratch database when dropped.
#[derive(Debug)]
pub struct Scratch {
    admin_url: String,
    name: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut c)
                    .await;
                }
            });
        })
        .join();
    }
}

/// The admin URL, or `None` (and a printed reason) when the tests must
/// skip; panics when `BATON_TEST_REQUIRE_PG=1` and it is missing.
pub fn admin_url() -> Option<String> {
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

/// A fresh, empty scratch database; its URL and the guard that drops it.
pub async fn scratch_database() -> Option<(String, Scratch)> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin_url = admin_url()?;
    let name = format!(
        "baton_t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut c = PgConnection::connect(&admin_url)
        .await
        .expect("connect to BATON_TEST_PG_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut c)
        .await
        .expect("create scratch database");
    let _ = c.close().await;
    let url = with_database(&admin_url, &name);
    Some((url, Scratch { admin_url, name }))
}

/// `url` with its database replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

/// Options for a scratch database (small pool).
pub fn options(url: &str) -> PgOptions {
    PgOptions {
        url: url.to_owned(),
        password: None,
        ca_file: None,
        pool_size: 8,
        poll_only: false,
    }
}

/// A PostgreSQL store on a fresh scratch database, or `None` to skip.
pub async fn pg() -> Option<(Arc<PgStore>, Scratch)> {
    let (url, guard) = scratch_database().await?;
    let s = PgStore::open(&options(&url)).await.expect("open");
    Some((Arc::new(s), guard))
}

/// Two replicas (two stores, two pools) on one fresh scratch database, or
/// `None` to skip.
pub async fn two_replicas() -> Option<(Arc<PgStore>, Arc<PgStore>, Scratch)> {
    let (url, guard) = scratch_database().await?;
    let a = PgStore::open(&options(&url)).await.expect("open a");
    let b = PgStore::open(&options(&url)).await.expect("open b");
    Some((Arc::new(a), Arc::new(b), guard))
}

/// A [`Store`] on a fresh scratch database (the conformance suite's
/// opener), or `None` to skip.
pub async fn store() -> Option<(Store, Scratch)> {
    let (s, guard) = pg().await?;
    Some((Store::new(s), guard))
}
