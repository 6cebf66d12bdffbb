//! The conformance suite against the PostgreSQL backend (skips without
//! `BATON_TEST_PG_URL`; `scripts/test` starts a server and sets it).

crate::store::conformance::suite!(crate::store::postgres::testutil::store);

/// The pool's connections plan once (generic plans: the hot statements'
/// planning cost more than running them); a browse transaction plans per
/// call, for the operator reads whose filters decide the plan.
#[tokio::test]
async fn pooled_connections_use_generic_plans_and_browsing_plans_per_call() {
    let Some((s, _guard)) = crate::store::postgres::testutil::pg().await else {
        return;
    };
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(s.pool())
        .await
        .expect("show");
    assert_eq!(mode, "force_generic_plan");
    let mut tx = s.browse().await.expect("browse");
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut *tx)
        .await
        .expect("show");
    assert_eq!(mode, "auto");
    tx.commit().await.expect("commit");
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(s.pool())
        .await
        .expect("show");
    assert_eq!(
        mode, "force_generic_plan",
        "SET LOCAL ends with its transaction"
    );
}
