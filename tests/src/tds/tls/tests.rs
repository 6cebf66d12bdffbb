use super::*;

#[test]
fn a_forcing_server_answers_every_client_encryption_value() {
    assert_eq!(forced_encryption_reply(ENCRYPT_ON), ENCRYPT_ON);
    assert_eq!(forced_encryption_reply(ENCRYPT_REQ), ENCRYPT_ON);
    assert_eq!(forced_encryption_reply(ENCRYPT_REQ | 0x80), ENCRYPT_ON);
    assert_eq!(forced_encryption_reply(ENCRYPT_OFF), ENCRYPT_REQ);
    assert_eq!(forced_encryption_reply(ENCRYPT_NOT_SUP), ENCRYPT_REQ);
}

#[tokio::test]
async fn handshake_bytes_are_framed_as_prelogin_packets_until_complete() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, mut b) = tokio::io::duplex(65536);
    let mut w = PreloginTls::new(a, 51);
    let big = vec![7u8; 5000];
    w.write_all(&big).await.expect("write");
    w.flush().await.expect("flush");
    let mut first = [0u8; 8];
    b.read_exact(&mut first).await.expect("header");
    assert_eq!(first[0], PRELOGIN);
    assert_eq!(first[1], 0, "a non-final packet");
    assert_eq!(u16::from_be_bytes([first[2], first[3]]), 4096);
    let mut skip = vec![0u8; 4088];
    b.read_exact(&mut skip).await.expect("payload");
    let mut second = [0u8; 8];
    b.read_exact(&mut second).await.expect("header");
    assert_eq!(second[1], 1, "END OF MESSAGE on the last packet");
    assert_eq!(
        usize::from(u16::from_be_bytes([second[2], second[3]])),
        5000 - 4088 + 8
    );
    let mut rest = vec![0u8; 5000 - 4088];
    b.read_exact(&mut rest).await.expect("payload");

    // Reads strip the headers of two packets into one byte stream.
    b.write_all(&[PRELOGIN, 0, 0, 11, 0, 0, 1, 0, 1, 2, 3])
        .await
        .expect("write");
    b.write_all(&[PRELOGIN, 1, 0, 10, 0, 0, 2, 0, 4, 5])
        .await
        .expect("write");
    let mut got = [0u8; 5];
    w.read_exact(&mut got).await.expect("read");
    assert_eq!(got, [1, 2, 3, 4, 5]);

    // Another packet type is refused during the handshake.
    b.write_all(&[0x10, 1, 0, 9, 0, 0, 3, 0, 9])
        .await
        .expect("write");
    let err = w.read_u8().await.expect_err("LOGIN7 refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);

    // After the handshake, bytes pass through unframed.
    w.handshake_complete();
    w.write_all(b"tls").await.expect("write");
    w.flush().await.expect("flush");
    let mut raw = [0u8; 3];
    b.read_exact(&mut raw).await.expect("read");
    assert_eq!(&raw, b"tls");
}
