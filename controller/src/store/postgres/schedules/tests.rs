//! Multi-replica tests of schedules on PostgreSQL.
