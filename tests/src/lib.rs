//! Baton's end-to-end harness: real controller and agent processes on
//! loopback, real signals, the real HTTP API.
//!
//! # Layout
//! - [`proc`]: spawning, signalling and restarting `baton-controller` and
//!   `baton-agent` processes, each in its own temp state dir, logs to files.
//! - [`api`]: a small typed operator/agent client over the v1 API.
//! - [`mod@bench`]: the `baton-bench` measurements (dispatch latency, throughput,
//!   idle fleet, failover, footprint) with their targets.
//! - [`cluster`]: a controller plus N enrolled agents in one group, the shape most tests want.
//! - [`ha`]: several controller replicas on one PostgreSQL database and agents
//!   that know all of them.
//! - [`faketime`]: a steppable wall clock for the controller and agents
//!   (libfaketime), and the sanity check of times shown after a step.
//! - [`faultproxy`]: a TCP proxy between agents and the controller that black-holes,
//!   delays or resets connections on command.
//! - [`loopfs`]: a small loop-mounted ext4 filesystem to fill up or make
//!   read-only (root only).
//! - [`pki`]: a throwaway CA, server and client certificates (rcgen).
//! - [`mariadb`]: a real MariaDB server shared by a test binary's tests
//!   (`scripts/mariadb`), with per-test databases and users.
//! - [`postgres`]: real PostgreSQL servers (`scripts/postgres`): the shared test
//!   server with per-test databases, and primaries + standbys of a test's own.
//! - [`s3`]: a real S3-compatible server (`scripts/s3server`, moto), its
//!   bucket listed through a reference client, SIGSTOP/SIGCONT; the fixtures
//!   the upload and restore tests share (store sections, a fault proxy in
//!   front, a fake dump, the dump → upload pipeline).
//! - [`restore_fixture`]: the restore tests' fixture: a MariaDB database
//!   dumped and uploaded to moto by a real pipeline, a cluster with the
//!   store, the object's key and sha256 (optionally a fault proxy in front
//!   of the server and a faked clock under the processes).
//! - [`sched_store`]: a stopped controller's SQLite store read for schedule
//!   evidence (one job per nominal time, occurrences with no gap).
//! - [`webhook`]: a scripted webhook receiver on loopback (notifications).
//! - [`tds`]: a scripted TDS (SQL Server wire protocol) test server for the
//!   real tiberius client, recording what it receives.
//!
//! Binaries are found next to the running executable (`target/<profile>/`),
//! or in `BATON_BIN_DIR`; build them first with `cargo build --workspace --bins`.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod cluster;
pub mod faketime;
pub mod faultproxy;
pub mod ha;
pub mod loopfs;
pub mod mariadb;
pub mod mssql;
pub mod pki;
pub mod postgres;
pub mod proc;
pub mod restore_fixture;
pub mod s3;
pub mod sched_store;
pub mod sql_browser;
pub mod tds;
pub mod webhook;

/// Install the one rustls crypto provider (aws-lc-rs); call first in every test and binary.
pub fn init_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
