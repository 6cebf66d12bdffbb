//! The conformance suite against the SQLite backend.

crate::store::conformance::suite!(crate::store::testutil::store);
