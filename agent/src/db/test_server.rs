//! For the tests that need a real MariaDB/MySQL server
//! (`mysql/server_tests.rs`, `dump/server_tests.rs`): whether one is
//! given (`BATON_TEST_MYSQL_SOCKET`). Without it those tests skip with a
//! one-line reason, so plain `cargo test --workspace` passes on a machine
//! without MariaDB; `scripts/test` starts a server and sets
//! `BATON_TEST_REQUIRE_MYSQL=1`, which turns a skip into a failure.

/// The socket variable.
pub const ENV: &str = "BATON_TEST_MYSQL_SOCKET";

/// Whether the server tests can run; says why not (or fails when the
/// server is required).
pub fn available() -> bool {
    if std::env::var(ENV).is_ok_and(|s| !s.is_empty()) {
        return true;
    }
    let why = format!(
        "{ENV} is not set: start a server with `scripts/mariadb start DIR` and export \
         {ENV}=<its socket> (root must log in over the socket without a password)"
    );
    assert!(
        std::env::var("BATON_TEST_REQUIRE_MYSQL").as_deref() != Ok("1"),
        "{why}"
    );
    eprintln!("SKIPPED: {why}");
    false
}
