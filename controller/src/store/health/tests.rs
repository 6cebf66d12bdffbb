use super::*;

#[test]
fn health_tracks_failure_and_recovery() {
    let h = Health::default();
    assert!(h.failure().is_none());
    h.failed(Cause::DiskFull, "database or disk is full");
    let (c, d) = h.failure().expect("failing");
    assert_eq!(
        (c, d.as_str()),
        (Cause::DiskFull, "database or disk is full")
    );
    h.failed(Cause::Io, "disk I/O error");
    assert_eq!(h.failure().map(|f| f.0), Some(Cause::Io));
    // A probe right after a failure does not end it: no flapping.
    h.probe_committed();
    assert!(h.is_failing());
    *h.last.lock().expect("lock") =
        Some((Cause::Io, "disk I/O error".into(), Instant::now() - QUIET));
    h.probe_committed();
    assert!(h.failure().is_none());
    assert!(!h.is_failing());
}

#[test]
fn postgres_disk_faults_are_causes_not_internal_errors() {
    // What PostgreSQL 15 sent on a filesystem turned read-only and a full one.
    let ro = "could not open file \"base/16384/16401_fsm\": Read-only file system";
    assert_eq!(Cause::of_pg("42501", false, ro), Some(Cause::ReadOnly));
    let wal = "could not write to log file 000000010000000000000001 at offset 10051584, length 8192: Read-only file system";
    assert_eq!(Cause::of_pg("42501", true, wal), Some(Cause::ReadOnly));
    let full = "could not extend file \"base/16384/16412\": No space left on device";
    assert_eq!(Cause::of_pg("53100", false, full), Some(Cause::DiskFull));
    // A missing privilege stays the request's (an internal error).
    assert_eq!(
        Cause::of_pg("42501", false, "permission denied for table jobs"),
        None
    );
    // A crash or shutdown of the server is its unavailability.
    assert_eq!(
        Cause::of_pg("XX000", true, "something broke"),
        Some(Cause::Unreachable)
    );
    assert_eq!(Cause::of_pg("XX000", false, "something broke"), None);
}
