use super::*;

#[test]
fn an_end_written_before_its_start_shows_as_the_start() {
    // An attempt started before a restart across a backward clock step
    // and ended after it.
    let a = AttemptRow {
        running_at: None,
        number: 1,
        agent_id: "a1".into(),
        token: 1,
        started_at: 3_600_000,
        ended_at: Some(5_000),
        outcome: Some("lease_expired".into()),
        error: None,
        progress: None,
        log_tail: String::new(),
        result: None,
    };
    let v = a.view().expect("view");
    assert_eq!(v.ended_at, Some(ts(3_600_000)));
    let later = AttemptRow {
        running_at: None,
        ended_at: Some(3_605_000),
        ..a
    };
    assert_eq!(later.view().expect("view").ended_at, Some(ts(3_605_000)));
}
