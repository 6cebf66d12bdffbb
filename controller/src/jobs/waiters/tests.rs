use std::time::Duration;

use super::*;

fn group() -> Arc<Group> {
    Arc::new(Group::new("g"))
}

fn noop_poller(agent: &str) -> Arc<Poller> {
    Poller::new(agent, &[JobKind::Noop], &[], &[])
}

/// Whether `p` was woken (its wait resolves at once).
async fn is_woken(p: &Poller) -> bool {
    tokio::time::timeout(Duration::from_millis(20), p.woken())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_wake_for_one_job_wakes_one_of_a_hundred_polls_the_longest_held() {
    let g = group();
    let polls: Vec<_> = (0..100).map(|i| noop_poller(&format!("a{i}"))).collect();
    let regs: Vec<_> = polls
        .iter()
        .map(|p| p.register(std::slice::from_ref(&g)))
        .collect();
    assert!(regs.iter().all(|(_, gens, woken)| gens == &[0] && !woken));
    assert_eq!(g.waiting(), 100);
    assert_eq!(g.wake(1, &Need::Any), 1);
    assert_eq!(g.generation(), 1, "every wake bumps the generation");
    assert_eq!(g.woken_total(), 1);
    assert!(is_woken(&polls[0]).await, "the longest-held poll is woken");
    for p in &polls[1..] {
        assert!(!is_woken(p).await, "{} was woken", p.agent);
    }
    let handed = polls[0].take_handed();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].group.name(), "g");
    assert_eq!(g.waiting(), 99, "a woken poll leaves the queue");
    // Three jobs: the next three polls.
    assert_eq!(g.wake(3, &Need::Any), 3);
    assert_eq!(g.woken_total(), 4);
    drop(regs);
    assert_eq!(g.waiting(), 0, "a dropped registration leaves the queue");
}

#[tokio::test]
async fn a_wake_skips_polls_that_cannot_take_the_job() {
    let g = group();
    let no_conn = noop_poller("plain");
    let drained = Poller::new("drained", &[JobKind::Sql], &["db".to_string()], &[]);
    drained.set_drained(true);
    let other_conn = Poller::new("other", &[JobKind::Sql], &["dw".to_string()], &[]);
    let able = Poller::new("able", &[JobKind::Sql], &["db".to_string()], &[]);
    let all = [&no_conn, &drained, &other_conn, &able];
    let _regs: Vec<_> = all
        .iter()
        .map(|p| p.register(std::slice::from_ref(&g)))
        .collect();
    let need = Need::Job {
        kind: JobKind::Sql,
        connection: Some("db".into()),
        store: None,
    };
    assert_eq!(g.wake(5, &need), 1, "only one poll can take it");
    assert!(is_woken(&able).await);
    for p in &all[..3] {
        assert!(!is_woken(p).await, "{} was woken", p.agent);
    }
    // Drained polls get no work wake even when the need is unknown; a
    // drain or resume wakes the agent's own polls.
    assert_eq!(g.wake(5, &Need::Any), 2);
    assert!(!is_woken(&drained).await);
    assert_eq!(g.wake_agent("drained"), 1);
    assert!(is_woken(&drained).await);
}

#[tokio::test]
async fn a_wake_for_a_job_naming_a_store_skips_polls_without_it() {
    let g = group();
    let up = |agent: &str, stores: &[&str]| {
        let stores: Vec<String> = stores.iter().map(|s| s.to_string()).collect();
        Poller::new(agent, &[JobKind::Upload], &[], &stores)
    };
    let (none, other, able) = (up("none", &[]), up("other", &["b"]), up("able", &["a"]));
    let all = [&none, &other, &able];
    let _regs: Vec<_> = all
        .iter()
        .map(|p| p.register(std::slice::from_ref(&g)))
        .collect();
    let need = Need::Job {
        kind: JobKind::Upload,
        connection: None,
        store: Some("a".into()),
    };
    assert_eq!(g.wake(3, &need), 1, "only one poll has store a");
    assert!(is_woken(&able).await);
    assert!(!is_woken(&none).await && !is_woken(&other).await);
}

#[tokio::test]
async fn a_wake_handed_on_reaches_only_polls_that_have_not_looked_since_and_ends() {
    let g = group();
    let (a, b, c) = (noop_poller("a"), noop_poller("b"), noop_poller("c"));
    let ra = a.register(std::slice::from_ref(&g));
    let _rb = b.register(std::slice::from_ref(&g));
    assert_eq!(g.wake(1, &Need::Any), 1);
    assert!(is_woken(&a).await);
    // `c` registered after the wake: it read the new generation, so it
    // looks after the commit the wake announced and is never handed it.
    let _rc = c.register(std::slice::from_ref(&g));
    drop(ra);
    // `a` looked and could not take it: it registers again (reading the
    // new generation) and hands the wake on — to `b`, not to itself or `c`.
    let (_ra, gens, was_woken) = a.register(std::slice::from_ref(&g));
    assert!(was_woken);
    assert_eq!(gens, vec![1]);
    let handed = a.take_handed();
    assert_eq!(handed.len(), 1);
    handed.into_iter().for_each(Handed::pass_on);
    assert!(is_woken(&b).await);
    assert!(!is_woken(&c).await && !is_woken(&a).await);
    assert_eq!(g.generation(), 1, "handing on does not bump the generation");
    // `b` hands it on too: every poll has looked since the wake, it ends.
    for h in b.take_handed() {
        h.pass_on();
    }
    assert!(!is_woken(&c).await && !is_woken(&a).await);
    assert_eq!(g.woken_total(), 2);
}

#[tokio::test]
async fn a_poll_in_two_groups_is_woken_once() {
    let (g1, g2) = (group(), Arc::new(Group::new("h")));
    let (p, q) = (noop_poller("p"), noop_poller("q"));
    let both = [g1.clone(), g2.clone()];
    let _rp = p.register(&both);
    let _rq = q.register(&both);
    assert_eq!(g1.wake(1, &Need::Any), 1);
    // `p` is woken by g1 and still listed in g2: g2's wake goes to `q`.
    assert_eq!(g2.wake(1, &Need::Any), 1);
    assert!(is_woken(&p).await && is_woken(&q).await);
    assert_eq!(p.take_handed().len(), 1);
    assert_eq!(q.take_handed().len(), 1);
}
