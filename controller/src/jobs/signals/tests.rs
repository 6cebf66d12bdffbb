use crate::jobs::Jobs;
use crate::jobs::signals::{BACKSTOP_LOOKS, Look};
use crate::store::events::{GroupWork, Looked};
use crate::store::testutil::store;

mod replicas;

fn work(group: &str, fingerprint: &str) -> Looked {
    Looked {
        work: vec![GroupWork {
            group: group.into(),
            fingerprint: fingerprint.into(),
        }],
        ..Looked::default()
    }
}

#[tokio::test]
async fn the_look_wakes_a_group_when_its_ready_queue_changed() {
    let (s, _dir) = store().await;
    let jobs = Jobs::new(s);
    let g = jobs.group("g");
    let mut last = Look::default();
    let gen0 = g.generation();
    jobs.woken_by(&mut last, work("g", "1:5:0"), false);
    assert_eq!(g.generation(), gen0 + 1, "first sight of ready work wakes");
    jobs.woken_by(&mut last, work("g", "1:5:0"), false);
    assert_eq!(g.generation(), gen0 + 1, "unchanged: no wake");
    jobs.woken_by(&mut last, work("g", "1:5:1"), false);
    assert_eq!(g.generation(), gen0 + 2, "requeued: woken");
    // The backstop wakes groups with ready work every BACKSTOP_LOOKS looks.
    let before = g.generation();
    for _ in 0..BACKSTOP_LOOKS {
        jobs.woken_by(&mut last, work("g", "1:5:1"), false);
    }
    assert_eq!(g.generation(), before + 1, "one backstop wake");
    // No ready work: nothing to wake.
    let before = g.generation();
    jobs.woken_by(&mut last, Looked::default(), false);
    assert_eq!(g.generation(), before);
}

#[tokio::test]
async fn the_look_marks_an_agent_once_per_cancelled_lease() {
    let (s, _dir) = store().await;
    let jobs = Jobs::new(s);
    let mut last = Look::default();
    let cancelled = |job| Looked {
        cancels: vec![(job, 2, "a1".to_owned())],
        ..Looked::default()
    };
    assert_eq!(jobs.cancel_mark("a1"), None);
    jobs.woken_by(&mut last, cancelled(7), false);
    let mark = jobs.cancel_mark("a1").expect("marked");
    jobs.woken_by(&mut last, cancelled(7), false);
    assert_eq!(jobs.cancel_mark("a1"), Some(mark), "seen before: not again");
    jobs.woken_by(&mut last, cancelled(8), false);
    assert!(
        jobs.cancel_mark("a1") > Some(mark),
        "a new cancel marks again"
    );
}

#[tokio::test]
async fn the_look_wakes_the_groups_of_agents_drained_or_resumed() {
    let (s, _dir) = store().await;
    let jobs = Jobs::new(s);
    let (g, h) = (jobs.group("g"), jobs.group("h"));
    let mut last = Look::default();
    let drained = |ids: &[&str]| Looked {
        drained: ids
            .iter()
            .map(|a| ((*a).to_owned(), vec!["g".to_owned()]))
            .collect(),
        ..Looked::default()
    };
    jobs.woken_by(&mut last, drained(&["a1"]), true);
    let (g0, h0) = (g.generation(), h.generation());
    assert_eq!((g0, h0), (0, 0), "the first read only learns");
    jobs.woken_by(&mut last, drained(&["a1", "a2"]), true);
    assert_eq!(g.generation(), g0 + 1, "a2 drained: its group woken");
    // Not read (the listener hears drains): nothing changes.
    jobs.woken_by(&mut last, Looked::default(), false);
    assert_eq!(g.generation(), g0 + 1);
    jobs.woken_by(&mut last, drained(&["a2"]), true);
    assert_eq!(g.generation(), g0 + 2, "a1 resumed: its group woken");
    assert_eq!(h.generation(), h0, "other groups untouched");
}
