use baton_proto::JobKind;

use super::*;

fn want(agent: &str, groups: &[&str], kinds: &[JobKind], conns: &[&str], max: u32) -> OwnedGrant {
    OwnedGrant {
        agent_id: agent.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        kinds: kinds.to_vec(),
        connections: conns.iter().map(|c| c.to_string()).collect(),
        stores: Vec::new(),
        max,
    }
}

/// The first parked poll that can run the job is taken — by group, kind and
/// connection — and a taken poll is gone from every group it parked in.
#[test]
fn take_finds_the_first_able_poll_of_the_group() {
    let h = Handoffs::default();
    let _a = h.park(want("a", &["g"], &[JobKind::Sql], &["db1"], 1));
    let _b = h.park(want(
        "b",
        &["g", "h"],
        &[JobKind::Sql, JobKind::Noop],
        &["db2"],
        1,
    ));
    let _c = h.park(want("c", &["g"], &[JobKind::Noop], &[], 1));
    assert_eq!(h.len(), 3);
    assert!(
        h.take("x", JobKind::Noop, None, None).is_none(),
        "another group"
    );
    assert!(
        h.take("g", JobKind::Dump, None, None).is_none(),
        "nobody runs dumps"
    );
    assert!(
        h.take("g", JobKind::Sql, Some("db3"), None).is_none(),
        "no db3"
    );
    let t = h
        .take("g", JobKind::Sql, Some("db2"), None)
        .expect("b has db2");
    assert_eq!(t.want.agent_id, "b");
    // b left group h too.
    assert!(h.take("h", JobKind::Noop, None, None).is_none());
    let t = h.take("g", JobKind::Noop, None, None).expect("c runs noop");
    assert_eq!(t.want.agent_id, "c");
    let t = h.take("g", JobKind::Sql, Some("db1"), None).expect("a");
    assert_eq!(t.want.agent_id, "a");
    assert!(h.is_empty());
}

/// A job naming an object store goes only to a poll whose agent has it.
#[test]
fn a_job_naming_a_store_is_taken_only_by_a_poll_having_it() {
    let h = Handoffs::default();
    let with = |agent: &str, stores: &[&str]| OwnedGrant {
        stores: stores.iter().map(|s| s.to_string()).collect(),
        ..want(agent, &["g"], &[JobKind::Upload], &[], 1)
    };
    let _a = h.park(with("a", &[]));
    let _b = h.park(with("b", &["offsite"]));
    assert!(
        h.take("g", JobKind::Upload, None, Some("archive"))
            .is_none(),
        "nobody has archive"
    );
    let t = h
        .take("g", JobKind::Upload, None, Some("offsite"))
        .expect("b has offsite");
    assert_eq!(t.want.agent_id, "b");
    let t = h
        .take("g", JobKind::Upload, None, None)
        .expect("a job naming no store: a");
    assert_eq!(t.want.agent_id, "a");
}

/// Parking order decides among able polls: first parked, first taken.
#[test]
fn polls_are_taken_in_parking_order() {
    let h = Handoffs::default();
    let tickets: Vec<_> = ["p1", "p2", "p3"]
        .iter()
        .map(|a| h.park(want(a, &["g"], &[JobKind::Noop], &[], 2)))
        .collect();
    let order: Vec<String> = (0..3)
        .map(|_| {
            h.take("g", JobKind::Noop, None, None)
                .expect("poll")
                .want
                .agent_id
        })
        .collect();
    assert_eq!(order, ["p1", "p2", "p3"]);
    drop(tickets);
}

/// A dropped ticket leaves; a poll with no free slot or whose request ended
/// is never taken.
#[test]
fn gone_full_and_closed_polls_are_not_taken() {
    let h = Handoffs::default();
    drop(h.park(want("gone", &["g"], &[JobKind::Noop], &[], 1)));
    assert!(h.is_empty());
    let _full = h.park(want("full", &["g"], &[JobKind::Noop], &[], 0));
    let mut closed = h.park(want("closed", &["g"], &[JobKind::Noop], &[], 1));
    closed.rx.close();
    assert!(h.take("g", JobKind::Noop, None, None).is_none());
}

/// Withdrawing a ticket nobody took says so; once a submit took it,
/// withdrawing says it was taken and the poll gets the submit's grants.
#[tokio::test]
async fn a_taken_ticket_is_answered_through_handed() {
    let h = Handoffs::default();
    let mut free = h.park(want("a", &["g"], &[JobKind::Noop], &[], 1));
    assert!(free.withdraw(), "nobody took it");
    assert!(h.is_empty());

    let mut ticket = h.park(want("b", &["g"], &[JobKind::Noop], &[], 1));
    let taken = h.take("g", JobKind::Noop, None, None).expect("taken");
    assert!(!ticket.withdraw(), "it was taken");
    let granted = Granted {
        next_ready_at: Some(42),
        ..Granted::default()
    };
    assert!(taken.hand(Some(granted)));
    let got = ticket.handed().await.expect("handed");
    assert_eq!(got.next_ready_at, Some(42));

    // A failed submit hands nothing; a gone poll is reported.
    let mut ticket = h.park(want("c", &["g"], &[JobKind::Noop], &[], 1));
    let taken = h.take("g", JobKind::Noop, None, None).expect("taken");
    assert!(taken.hand(None));
    assert!(ticket.handed().await.is_none());
    let ticket = h.park(want("d", &["g"], &[JobKind::Noop], &[], 1));
    let taken = h.take("g", JobKind::Noop, None, None).expect("taken");
    drop(ticket);
    assert!(!taken.hand(None), "the poll was gone");
}
