//! The controller's start with several replicas on one PostgreSQL database.

use std::sync::Arc;

use super::create_admin_token;
use crate::store::Store;
use crate::store::postgres::{PgStore, testutil};

/// Replicas starting together on an empty database all start: the one
/// whose admin token lost the race for the name starts without one (two
/// may still each create one under different names: `init` first avoids
/// that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_on_an_empty_database_all_start() {
    let Some((url, _g)) = testutil::scratch_database().await else {
        return;
    };
    let open = || async {
        let s = PgStore::open(&testutil::options(&url)).await.expect("open");
        Store::new(Arc::new(s))
    };
    let (a, b) = (open().await, open().await);
    for round in 0..10 {
        let (ra, rb) = tokio::join!(
            create_admin_token(&a, "first-start"),
            create_admin_token(&b, "first-start")
        );
        let (ra, rb) = (ra.expect("replica a starts"), rb.expect("replica b starts"));
        assert!(
            ra.is_some() || rb.is_some(),
            "round {round}: no admin token"
        );
        // Again from no active admin token.
        sqlx::query("UPDATE operator_tokens SET revoked_at = 1 WHERE revoked_at IS NULL")
            .execute(&mut *acquire(&url).await)
            .await
            .expect("revoke");
    }
}

async fn acquire(url: &str) -> Box<sqlx::PgConnection> {
    Box::new(
        <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .expect("connect"),
    )
}
