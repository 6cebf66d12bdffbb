use std::time::Duration;

use super::*;

#[test]
fn xml_fields_are_read() {
    let t = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
    assert_eq!(xml_field(t, "Code").as_deref(), Some("AccessDenied"));
    assert_eq!(xml_field(t, "Message").as_deref(), Some("no"));
    assert_eq!(xml_field(t, "UploadId"), None);
}

#[test]
fn only_server_errors_and_lost_answers_are_retried() {
    let status = |status: u16, code: &str| Error::Status {
        op: "UploadPart",
        key: "k".into(),
        status,
        code: code.into(),
        message: String::new(),
    };
    assert!(status(500, "InternalError").retryable());
    assert!(status(503, "SlowDown").retryable());
    assert!(status(429, "").retryable());
    assert!(!status(403, "SignatureDoesNotMatch").retryable());
    assert!(status(403, "SignatureDoesNotMatch").bad_credentials());
    assert!(!status(404, "NoSuchBucket").retryable());
    let lost = Error::Transport {
        op: "UploadPart",
        key: "k".into(),
        message: "connection refused".into(),
    };
    assert!(lost.retryable());
}

/// A store at `127.0.0.1:port` with keys in `dir` and `read_timeout`.
fn store(dir: &std::path::Path, port: u16, read_timeout: Duration) -> S3Store {
    let w = |n: &str, t: &str| crate::secret::tests::write_secret(&dir.join(n), t);
    w("ak", "AKIAEXAMPLE\n");
    w("sk", "secret/example\n");
    S3Store {
        name: "offsite".into(),
        endpoint: format!("http://127.0.0.1:{port}"),
        region: "us-east-1".into(),
        bucket: "backups".into(),
        prefix: String::new(),
        path_style: true,
        keys: crate::config::store::KeySource::Files {
            access: dir.join("ak"),
            secret: dir.join("sk"),
        },
        ca_file: None,
        sse: None,
        storage_class: None,
        part_size: crate::config::store::DEFAULT_PART_SIZE,
        concurrency: 1,
        read_timeout,
    }
}

/// A listener with a small receive buffer (what a stopped server's socket
/// takes fills quickly).
fn listener() -> tokio::net::TcpListener {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.set_recv_buffer_size(4096).expect("rcvbuf");
    s.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    s.listen(16).expect("listen")
}

/// A server that stopped: it accepts connections, reads nothing and
/// answers nothing (as a SIGSTOPped one whose kernel still accepts). A
/// part PUT's body write blocks, is seen stalled after `read_timeout`, and
/// is tried again on a new connection, [`ATTEMPTS`] times in all.
#[tokio::test]
async fn a_part_the_server_stops_taking_is_stalled_and_tried_again() {
    let dir = tempfile::tempdir().expect("dir");
    let l = listener();
    let port = l.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(sock);
        }
    });
    let client = Client::new(&store(dir.path(), port, Duration::from_secs(1))).expect("client");
    let data = bytes::Bytes::from(vec![7u8; 8 * 1024 * 1024]);
    let e = client
        .upload_part("db/x.sql.zst", "upload-1", 1, data, Checksum::Md5)
        .await
        .expect_err("stalled");
    server.abort();
    assert!(
        matches!(&e, Error::Stalled { op: "UploadPart", key, idle }
            if key == "db/x.sql.zst" && *idle == Duration::from_secs(1)),
        "{e:?}"
    );
    assert!(e.retryable());
    assert_eq!(
        e.to_string(),
        "UploadPart db/x.sql.zst: stalled: the server sent nothing for 1s (the store's \
         read_timeout)"
    );
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        ATTEMPTS,
        "each try on a new connection"
    );
}

/// An answer whose body stops coming: the chunk read is stalled (the caller
/// starts over); chunks that keep coming are read however long it takes.
#[tokio::test]
async fn a_download_whose_bytes_stop_is_stalled_one_that_trickles_is_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let l = listener();
    let port = l.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = l.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let trickle = String::from_utf8_lossy(&head).contains("/trickle");
            // 12 chunks of 1 KiB: all of them 250 ms apart (3 s, three
            // times the read_timeout), or 2 and then nothing.
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12288\r\n\r\n")
                .await;
            let sent = if trickle { 12 } else { 2 };
            for _ in 0..sent {
                let _ = sock.write_all(&[b'x'; 1024]).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            held.push(sock);
        }
    });
    let client = Client::new(&store(dir.path(), port, Duration::from_secs(1))).expect("client");

    let mut body = client.get("stuck").await.expect("head");
    assert_eq!(body.size, Some(12288));
    let mut got = 0;
    let e = loop {
        match body.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => panic!("ended after {got} bytes"),
            Err(e) => break e,
        }
    };
    assert_eq!(got, 2048, "what came before the stop");
    assert!(
        matches!(&e, Error::Stalled { op: "GetObject", key, .. } if key == "stuck"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("the server sent nothing for 1s"),
        "{e}"
    );

    let mut body = client.get("trickle").await.expect("head");
    let mut got = 0;
    while let Some(c) = body.chunk().await.expect("bytes keep coming") {
        got += c.len();
    }
    assert_eq!(got, 12288);
    server.abort();
}

#[test]
fn a_refused_time_is_retried_and_is_not_bad_keys() {
    let skewed = Error::Status {
        op: "PutObject",
        key: "k".into(),
        status: 403,
        code: "RequestTimeTooSkewed".into(),
        message: "The difference between the request time and the server's time is too large."
            .into(),
    };
    assert!(skewed.clock_skewed());
    assert!(!skewed.bad_credentials());
    assert!(skewed.retryable());
    let denied = Error::Status {
        op: "PutObject",
        key: "k".into(),
        status: 403,
        code: "AccessDenied".into(),
        message: String::new(),
    };
    assert!(!denied.clock_skewed());
    assert!(denied.bad_credentials());
    for message in ["Request has expired", "Request is not valid yet"] {
        let presigned = Error::Status {
            op: "PutObject",
            key: "k".into(),
            status: 403,
            code: "AccessDenied".into(),
            message: message.into(),
        };
        assert!(presigned.clock_skewed(), "{message}");
        assert!(!presigned.bad_credentials(), "{message}");
    }
}
