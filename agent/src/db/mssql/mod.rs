//! SQL Server (`kind = "mssql"`) through tiberius. Built so far: how a
//! failure is reported and classified ([`failure`]); the connection itself is
//! [`crate::db::mssql_connection::MssqlConnection::connect`]. The `sql` /
//! `procedure` executors are not built yet.

pub mod failure;
