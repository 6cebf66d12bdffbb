use super::*;

#[test]
fn messages_show_at_most_one_decimal() {
    assert_eq!(message("shop", 40.0), "backing up shop: 40 %");
    assert_eq!(message("shop", 37.5), "backing up shop: 37.5 %");
    assert_eq!(message("shop", 12.345_67), "backing up shop: 12.3 %");
    assert_eq!(message("shop", 100.0), "backing up shop: 100 %");
}
