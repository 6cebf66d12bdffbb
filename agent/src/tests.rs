use super::placeholder_url;

#[test]
fn the_packaged_placeholder_url_is_recognised() {
    assert!(placeholder_url("https://baton-controller.invalid:8420"));
    assert!(placeholder_url("https://x.invalid/"));
    assert!(!placeholder_url("https://controller:8420"));
    assert!(!placeholder_url("https://invalid.example.com:8420"));
}
