//! Lock names.

use super::*;

#[test]
fn lock_names_are_namespaced_by_fleet() {
    assert_eq!(lock_name("", 7), "baton:job:7");
    assert_eq!(
        lock_name("0a1b2c3d4e5f6a7b", 7),
        "baton:0a1b2c3d4e5f6a7b:job:7"
    );
    assert!(lock_name("0a1b2c3d4e5f6a7b", i64::MAX).len() <= 64);
}
