use super::*;

#[test]
fn concurrency_is_bounded_per_address_and_globally() {
    let l = Limits::new(10, 3, 2);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.2".parse().expect("ip");
    let a1 = l.admit(Some(a)).expect("a1");
    let _a2 = l.admit(Some(a)).expect("a2");
    assert_eq!(l.admit(Some(a)).expect_err("a3"), Busy::Address);
    let _b1 = l.admit(Some(b)).expect("b1");
    assert_eq!(l.admit(Some(b)).expect_err("global"), Busy::Global);
    assert_eq!(l.in_flight(), 3);
    drop(a1);
    assert_eq!(l.in_flight(), 2);
    let _b2 = l.admit(Some(b)).expect("a slot came free");
    assert_eq!(l.refused_busy.load(Ordering::Relaxed), 2);
}

#[test]
fn ipv6_addresses_share_their_64() {
    let l = Limits::new(10, 100, 1);
    let x: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
    let y: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
    let z: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
    let _x = l.admit(Some(x)).expect("x");
    assert_eq!(l.admit(Some(y)).expect_err("same /64"), Busy::Address);
    let _z = l.admit(Some(z)).expect("another /64");
}

#[test]
fn enrollment_bursts_then_waits_per_address() {
    let l = Limits::new(2, 10, 10);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.2".parse().expect("ip");
    assert!(l.enroll(a).is_ok());
    assert!(l.enroll(a).is_ok());
    let wait = l.enroll(a).expect_err("limited");
    assert!((1..=30).contains(&wait), "{wait}");
    assert!(l.enroll(b).is_ok(), "other addresses are not affected");
}

#[test]
fn refused_anonymous_audit_rows_are_rate_limited() {
    let l = Limits::new(10, 10, 10);
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let written = (0..100)
        .filter(|_| l.audit_refused_anonymous(Some(a)))
        .count();
    assert_eq!(written, AUDIT_PER_ADDRESS as usize);
    assert_eq!(l.audit_suppressed.load(Ordering::Relaxed), 70);
}
