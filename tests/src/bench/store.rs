//! `--store postgres`: each bench controller gets a fresh database on the
//! PostgreSQL server `BATON_BENCH_PG_URL` (or `BATON_TEST_PG_URL`) names —
//! a superuser URL such as `postgres://postgres@127.0.0.1:5432/postgres`,
//! on this host for comparable figures — dropped when the run ends.

use anyhow::{Context, Result, bail};
use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Which store the bench controllers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite, `synchronous=FULL` (the default).
    Sqlite,
    /// PostgreSQL (`synchronous_commit` as the server is configured).
    Postgres,
}

impl StoreKind {
    /// Parse `--store`.
    pub fn parse(s: &str) -> Result<StoreKind> {
        match s {
            "sqlite" => Ok(StoreKind::Sqlite),
            "postgres" => Ok(StoreKind::Postgres),
            other => bail!("--store {other}: expected sqlite, postgres or both"),
        }
    }

    /// Parse `--store`, which may also be `both` (SQLite, then PostgreSQL).
    pub fn parse_many(s: &str) -> Result<Vec<StoreKind>> {
        match s {
            "both" => Ok(vec![StoreKind::Sqlite, StoreKind::Postgres]),
            one => Ok(vec![StoreKind::parse(one)?]),
        }
    }

    /// Short name, for scenario names and column heads.
    pub fn short(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }

    /// For reports.
    pub fn describe(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite synchronous=FULL",
            StoreKind::Postgres => "PostgreSQL (same host)",
        }
    }
}

/// A scratch database, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct PgScratch {
    admin: String,
    name: String,
    /// The URL of the scratch database.
    pub url: String,
}

/// The admin URL from the environment.
pub fn admin_url() -> Result<String> {
    std::env::var("BATON_BENCH_PG_URL")
        .or_else(|_| std::env::var("BATON_TEST_PG_URL"))
        .context("--store postgres needs BATON_BENCH_PG_URL (a superuser URL, e.g. postgres://postgres@127.0.0.1:5432/postgres; `scripts/postgres start DIR` prints one)")
}

impl PgScratch {
    /// Create a fresh database on the server of `admin`.
    pub async fn create(admin: &str) -> Result<PgScratch> {
        let name = format!(
            "baton_bench_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut c = PgConnection::connect(admin)
            .await
            .with_context(|| format!("connect to {admin}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut c)
            .await?;
        let _ = c.close().await;
        let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
        let host_end = base
            .find("://")
            .and_then(|s| base[s + 3..].find('/').map(|i| s + 3 + i))
            .unwrap_or(base.len());
        let mut url = format!("{}/{name}", &base[..host_end]);
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        Ok(PgScratch {
            admin: admin.to_owned(),
            name,
            url,
        })
    }

    /// The controller's `[store]` table for this database.
    pub fn toml(&self) -> String {
        format!("\n[store]\nurl = \"{}\"\n", self.url)
    }
}

impl Drop for PgScratch {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}
