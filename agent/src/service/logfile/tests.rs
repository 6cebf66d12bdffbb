use super::*;

#[test]
fn a_large_log_is_moved_aside_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("agent.log");
    assert_eq!(rotated(&log), tmp.path().join("agent.log.1"));
    assert!(!rotate_if_large(&log, 4).expect("missing is fine"));
    std::fs::write(&log, "1234").expect("write");
    assert!(!rotate_if_large(&log, 4).expect("small"));
    std::fs::write(&log, "12345").expect("write");
    std::fs::write(rotated(&log), "older").expect("write");
    assert!(rotate_if_large(&log, 4).expect("large"));
    assert!(!log.exists());
    assert_eq!(
        std::fs::read_to_string(rotated(&log)).expect("read"),
        "12345"
    );
}
