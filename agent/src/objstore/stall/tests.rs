use std::task::{Context, Waker};

use http_body::Body as _;

use super::*;

/// Every frame of `body`, polled by hand.
fn frames(mut body: Chunked) -> Vec<Bytes> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
        out.push(f.into_data().expect("data"));
    }
    assert!(body.is_end_stream());
    out
}

#[test]
fn a_body_is_handed_over_in_chunks_of_its_exact_length() {
    let data: Bytes = (0..CHUNK * 2 + 10).map(|i| (i % 251) as u8).collect();
    let body = Chunked {
        data: data.clone(),
        progress: Progress::new(),
    };
    assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
    let got = frames(body);
    let lens: Vec<usize> = got.iter().map(Bytes::len).collect();
    assert_eq!(lens, [CHUNK, CHUNK, 10]);
    assert_eq!(got.concat(), data.to_vec(), "the bytes, in order");
}

#[tokio::test]
async fn each_chunk_taken_is_progress() {
    let p = Progress::new();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = p.idle();
    let body = Chunked {
        data: Bytes::from_static(b"part"),
        progress: p.clone(),
    };
    assert_eq!(frames(body).len(), 1);
    assert!(
        p.idle() < before,
        "the chunk taken moved it: {:?} then {:?}",
        before,
        p.idle()
    );
}
