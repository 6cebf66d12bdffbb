use super::*;

#[test]
fn round_trip_skips_own_signals() {
    let sent = [
        Signal::Work(vec!["etl".into(), "db-1".into()]),
        Signal::Cancel(vec!["agt_1".into()]),
        Signal::Revoke,
    ];
    let payloads = encode("a1", &sent);
    assert_eq!(payloads, ["a1|w:etl,db-1", "a1|c:agt_1", "r"]);
    let got: Vec<Signal> = payloads.iter().filter_map(|p| decode("b2", p)).collect();
    assert_eq!(got, sent);
    // The sender skips its own (a revoke names no sender: everyone acts).
    let own: Vec<Signal> = payloads.iter().filter_map(|p| decode("a1", p)).collect();
    assert_eq!(own, [Signal::Revoke]);
}

#[test]
fn a_heartbeat_is_heard_by_its_sender_only() {
    let h = heartbeat("a1", 42);
    assert_eq!(h, "a1|h:42");
    assert_eq!(heartbeat_of("a1", &h), Some(42));
    assert_eq!(heartbeat_of("b2", &h), None);
    // No replica takes it for a signal, its sender included.
    assert_eq!(decode("b2", &h), None);
    assert_eq!(decode("a1", &h), None);
    assert_eq!(heartbeat_of("a1", "a1|w:etl"), None);
    assert_eq!(heartbeat_of("a1", "a1|h:x"), None);
    assert_eq!(heartbeat_of("a1", "r"), None);
}

#[test]
fn long_lists_are_split_under_the_limit() {
    let groups: Vec<String> = (0..200).map(|i| format!("{i:0>120}")).collect();
    let payloads = encode("s", &[Signal::Work(groups.clone())]);
    assert!(payloads.len() > 1, "{} payloads", payloads.len());
    assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD));
    let back: Vec<String> = payloads
        .iter()
        .filter_map(|p| match decode("other", p) {
            Some(Signal::Work(g)) => Some(g),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(back, groups);
}

#[test]
fn empty_lists_send_nothing_and_junk_is_ignored() {
    assert!(encode("s", &[Signal::Work(vec![]), Signal::Cancel(vec![])]).is_empty());
    assert_eq!(decode("me", "nonsense"), None);
    assert_eq!(decode("me", "x|q:a"), None);
}

#[test]
fn work_items_carry_a_count_and_a_bare_group_wakes_every_poll() {
    assert_eq!(work_item("etl", Some(3)), "etl*3");
    assert_eq!(work_item("db-1.x", None), "db-1.x");
    assert_eq!(parse_work_item("etl*3"), ("etl", Some(3)));
    assert_eq!(parse_work_item("etl*0"), ("etl", Some(1)));
    // What replicas before counts sent, and a count not understood.
    assert_eq!(parse_work_item("etl"), ("etl", None));
    assert_eq!(parse_work_item("etl*x"), ("etl", None));
    let payloads = encode("s", &[Signal::Work(vec![work_item("g", Some(2))])]);
    assert_eq!(
        decode("other", &payloads[0]),
        Some(Signal::Work(vec!["g*2".into()]))
    );
    let counted = GroupWork {
        group: "g".into(),
        fingerprint: "7:28:9".into(),
    };
    assert_eq!(counted.count(), 7);
}
