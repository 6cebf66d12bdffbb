//! The conformance suite against the PostgreSQL backend (skips without
//! `BATON_TEST_PG_URL`; `scripts/test` starts a server and sets it).

crate::store::conformance::suite!(crate::store::postgres::testutil::store);
