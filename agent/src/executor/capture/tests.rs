use super::*;

#[test]
fn bounded_keeps_the_first_bytes() {
    let mut b = Bounded::new(5);
    b.push(b"abc");
    assert!(!b.truncated());
    b.push(b"defg");
    b.push(b"h");
    assert!(b.truncated());
    assert_eq!(b.to_string_lossy(), "abcde");
    let mut exact = Bounded::new(3);
    exact.push(b"abc");
    assert!(!exact.truncated());
}

fn decoded(e: &Encoded) -> Vec<u8> {
    assert_eq!(e.encoding, Some(OutputEncoding::Base64));
    base64::engine::general_purpose::STANDARD
        .decode(&e.text)
        .expect("base64")
}

#[test]
fn utf8_output_is_sent_as_itself() {
    let e = encode("line 1\nlíne 2 \"quoted\"\n".as_bytes(), 100);
    assert_eq!(e.text, "line 1\nlíne 2 \"quoted\"\n");
    assert_eq!(e.encoding, None);
    assert!(!e.cut);
}

#[test]
fn a_character_split_by_the_limit_is_left_out() {
    let mut b = Bounded::new(2);
    b.push("aé".as_bytes()); // 'é' is 2 bytes: only its first is kept
    let e = b.encode();
    assert_eq!((e.text.as_str(), e.encoding, e.cut), ("a", None, true));
}

#[test]
fn bytes_that_are_not_utf8_go_as_base64_within_the_limit() {
    // The reproduction: 400,000 bytes of 0xFF, limit 1 MiB.
    let raw = vec![0xFFu8; 400_000];
    let e = encode(&raw, 1 << 20);
    assert!(!e.cut);
    assert!(e.text.len() <= 1 << 20);
    assert_eq!(decoded(&e), raw);
    // More than fits: the first 3/4 of the limit, whole, and cut.
    let mut b = Bounded::new(1000);
    b.push(&[0xFE; 5000]);
    let e = b.encode();
    assert!(e.cut);
    assert!(e.text.len() <= 1000, "{}", e.text.len());
    assert_eq!(decoded(&e), vec![0xFE; 750]);
}

#[test]
fn control_characters_go_as_base64_when_escaping_would_grow_them() {
    let raw = vec![1u8; 100]; // valid UTF-8, but 6 bytes each in JSON
    let e = encode(&raw, 100);
    assert_eq!(decoded(&e), vec![1u8; 75]);
    assert!(e.cut);
    let e = encode(b"\x01ok", 100);
    assert_eq!((e.text.as_str(), e.encoding), ("\u{1}ok", None));
}

#[test]
fn tail_keeps_the_last_bytes() {
    let mut t = LogTail::new(4);
    t.push(b"ab");
    assert_eq!(t.to_string_lossy(), "ab");
    t.push(b"cdef");
    assert_eq!(t.to_string_lossy(), "cdef");
    t.push(b"0123456789");
    assert_eq!(t.to_string_lossy(), "6789");
    t.push(b"x");
    assert_eq!(t.to_string_lossy(), "789x");
    let mut none = LogTail::new(0);
    none.push(b"abc");
    assert_eq!(none.to_string_lossy(), "");
}

#[test]
fn a_tail_of_invalid_bytes_stays_within_its_limit() {
    let mut t = LogTail::new(10);
    t.push(&[0xFF; 100]);
    let text = t.to_string_lossy();
    assert_eq!(text, "\u{FFFD}".repeat(3), "3 x 3 bytes <= 10");
}

#[test]
fn tail_starts_on_a_char_boundary() {
    let mut t = LogTail::new(4);
    t.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the tail cuts into 'é'
    assert_eq!(t.to_string_lossy(), "€");
}

#[tokio::test]
async fn drain_reads_past_the_limit() {
    let data = vec![b'x'; 100_000];
    let progress = ProgressHandle::new(10);
    let sink = SharedBounded::new(10);
    drain(&data[..], sink.clone(), progress.clone()).await;
    let out = sink.get();
    assert!(out.truncated());
    assert_eq!(out.to_string_lossy(), "x".repeat(10));
    assert_eq!(progress.snapshot().1, "x".repeat(10));
}
