//! Databases next to the agent: connections configured on this host, and the
//! executors that run `procedure`, `sql` and `dump` jobs on them.
//!
//! - [`connection`]: `[connections.<name>]` settings (password from a file or
//!   the environment, never inline).

pub mod connection;
