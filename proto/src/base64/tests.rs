//! Round trips and refusals.

use super::*;

#[test]
fn base64_roundtrip() {
    for n in 0..20u8 {
        let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        let text = encode(&data);
        assert_eq!(text.len() % 4, 0);
        assert_eq!(decode(&text), Ok(data.clone()));
        assert_eq!(decode(text.trim_end_matches('=')), Ok(data));
    }
    assert_eq!(encode(b"Man"), "TWFu");
    assert_eq!(encode(b"Ma"), "TWE=");
    assert_eq!(decode("TQ=="), Ok(b"M".to_vec()));
    assert!(decode("TQ=").is_err());
    assert!(decode("T===").is_err());
}
