//! Baton's end-to-end harness: real controller and agent processes on
//! loopback, real signals, the real HTTP API.
//!
//! # Layout
//! - [`proc`]: spawning, signalling and restarting `baton-controller` and
//!   `baton-agent` processes, each in its own temp state dir, logs to files.
//! - [`api`]: a small typed operator/agent client over the v1 API.
//! - [`cluster`]: a controller plus N agents in one group, the shape most tests want.
//!
//! Binaries are found next to the running executable (`target/<profile>/`),
//! or in `BATON_BIN_DIR`; build them first with `cargo build --workspace --bins`.
#![forbid(unsafe_code)]

pub mod api;
pub mod cluster;
pub mod proc;

/// Operator token the harness configures.
pub const OPERATOR_TOKEN: &str = "test-operator-token-000000000001";
/// Agent token the harness configures.
pub const AGENT_TOKEN: &str = "test-agent-token-0000000000000001";

/// Install the one rustls crypto provider (aws-lc-rs); call first in every test and binary.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
