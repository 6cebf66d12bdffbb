use super::*;

#[test]
fn names() {
    assert!(valid_name("db-hosts_1.eu"));
    assert!(!valid_name(""));
    assert!(!valid_name("a b"));
    assert!(!valid_name("x;drop"));
    assert!(!valid_name(&"a".repeat(129)));
}
