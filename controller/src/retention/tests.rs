use super::*;

#[test]
fn the_period_follows_the_shortest_keep() {
    let d = |s| Some(Duration::from_secs(s));
    assert_eq!(Policy::default().period(), None);
    let p = Policy {
        job_keep: d(30 * 86_400),
        audit_keep: d(90 * 86_400),
    };
    assert_eq!(p.period(), d(300));
    let p = Policy {
        job_keep: None,
        audit_keep: d(2),
    };
    assert_eq!(p.period(), d(1));
    let p = Policy {
        job_keep: d(60),
        audit_keep: None,
    };
    assert_eq!(p.period(), d(15));
}
