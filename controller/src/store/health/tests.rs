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
