use std::pin::Pin;
use std::task::{Context, Poll};

use async_compression::tokio::bufread::ZstdDecoder;
use tokio::io::{AsyncReadExt, ReadBuf};

use super::*;

const DUMP: &str = "-- MariaDB dump 10.19\n\
    CREATE TABLE `t` (`a` int);\n\
    INSERT INTO `t` VALUES (1),(2);\n\
    /*!40111 SET SQL_NOTES=@OLD_SQL_NOTES */;\n\
    \n\
    -- Dump completed on 2025-01-01  0:00:00\n";

/// Feeds the bytes in chunks of the given sizes (cycling), one per read.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Chunked {
    fn new(data: &[u8], sizes: &[usize]) -> Self {
        Chunked {
            data: data.to_vec(),
            pos: 0,
            sizes: sizes.to_vec(),
            turn: 0,
        }
    }
}

impl tokio::io::AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()].max(1);
        self.turn += 1;
        let end = (self.pos + size)
            .min(self.data.len())
            .min(self.pos + buf.remaining());
        let start = self.pos;
        buf.put_slice(&self.data[start..end]);
        self.pos = end;
        Poll::Ready(Ok(()))
    }
}

fn edges_of(data: &[u8], split: &[usize]) -> Edges {
    let mut e = Edges::default();
    let mut last = 0;
    for &cut in split {
        e.push(&data[last..cut]);
        last = cut;
    }
    e.push(&data[last..]);
    e
}

#[test]
fn trailer_is_found_whatever_the_chunk_boundaries() {
    let data = DUMP.as_bytes();
    for cut in 0..=data.len() {
        assert!(edges_of(data, &[cut]).ends_with_trailer(), "split at {cut}");
        for cut2 in cut..=data.len() {
            assert!(
                edges_of(data, &[cut, cut2]).ends_with_trailer(),
                "split at {cut},{cut2}"
            );
        }
    }
    // Byte by byte.
    let mut e = Edges::default();
    for b in data {
        e.push(std::slice::from_ref(b));
    }
    assert!(e.ends_with_trailer());
}

#[test]
fn a_missing_or_misplaced_trailer_is_noticed() {
    let cut = DUMP.find("-- Dump completed").expect("trailer");
    assert!(!ends_with_trailer(&DUMP.as_bytes()[..cut]));
    assert!(
        !ends_with_trailer(&DUMP.as_bytes()[..cut + 10]),
        "a cut-off trailer"
    );
    let more = format!("{DUMP}INSERT INTO `t` VALUES (3);\n");
    assert!(!ends_with_trailer(more.as_bytes()), "SQL after the trailer");
    assert!(!ends_with_trailer(b""));
    assert!(
        ends_with_trailer(b"-- Dump completed\n\n  \r\n"),
        "--skip-dump-date, blank lines after"
    );
    assert!(
        !ends_with_trailer(b"x -- Dump completed on y\n"),
        "must start the line"
    );
}

#[test]
fn trailer_is_found_after_megabytes() {
    let mut big = Vec::new();
    while big.len() < 3 * EDGE + 1234 {
        big.extend_from_slice(b"INSERT INTO `t` VALUES (1),(2),(3);\n");
    }
    big.extend_from_slice(b"-- Dump completed on 2025-01-01  0:00:00\n");
    for sizes in [[1000usize, 65536], [65536, 65536], [7, 100_000]] {
        let mut e = Edges::default();
        let mut pos = 0;
        let mut turn = 0;
        while pos < big.len() {
            let end = (pos + sizes[turn % 2]).min(big.len());
            e.push(&big[pos..end]);
            pos = end;
            turn += 1;
        }
        assert!(e.ends_with_trailer(), "{sizes:?}");
        assert_eq!(e.head(), &big[..EDGE]);
        assert_eq!(e.tail(), &big[big.len() - EDGE..]);
    }
}

#[test]
fn replication_position_comes_from_the_dump_comments() {
    let head = "-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
        -- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000002', MASTER_LOG_POS=2821;\n";
    let tail = "-- Preferably use GTID to start replication from GTID position:\n\
        -- SET GLOBAL gtid_slave_pos='0-1-13';\n-- Dump completed on x\n";
    let pos = dump_position(&edges_of(
        format!("{head}SELECT 1;\n{tail}").as_bytes(),
        &[],
    ))
    .expect("pos");
    assert_eq!(pos.file, Some(("binlog.000002".into(), 2821)));
    assert_eq!(pos.gtid.as_deref(), Some("0-1-13"));
    let mysql = "-- CHANGE REPLICATION SOURCE TO SOURCE_LOG_FILE='b.000009', SOURCE_LOG_POS=4;\n";
    let pos = dump_position(&edges_of(mysql.as_bytes(), &[])).expect("pos");
    assert_eq!(pos.file, Some(("b.000009".into(), 4)));
    assert_eq!(pos.gtid, None);
    assert_eq!(dump_position(&edges_of(DUMP.as_bytes(), &[])), None);
}

#[tokio::test]
async fn pump_compresses_and_hashes_both_sides() {
    let mut sql = Vec::new();
    for i in 0..20_000 {
        sql.extend_from_slice(format!("INSERT INTO `t` VALUES ({i},'row {i}');\n").as_bytes());
    }
    sql.extend_from_slice(b"-- Dump completed on 2025-01-01  0:00:00\n");
    let mut file = Vec::new();
    let mut reports = 0;
    let tally = pump(
        Chunked::new(&sql, &[CHUNK, 1, 4096, 70_000]),
        &mut file,
        3,
        Duration::ZERO,
        |read, written| {
            reports += 1;
            assert!(read <= sql.len() as u64 && written <= read);
        },
    )
    .await
    .expect("pump");
    assert!(reports > 1);
    assert_eq!(tally.read, sql.len() as u64);
    assert_eq!(tally.written, file.len() as u64);
    assert!(
        tally.written < tally.read / 4,
        "{} → {}",
        tally.read,
        tally.written
    );
    assert_eq!(tally.sha256, hex::encode(Sha256::digest(&file)));
    assert_eq!(tally.sha256_sql, hex::encode(Sha256::digest(&sql)));
    assert!(tally.edges.ends_with_trailer());
    let mut back = Vec::new();
    ZstdDecoder::new(&file[..])
        .read_to_end(&mut back)
        .await
        .expect("decode");
    assert_eq!(back, sql);
}

#[tokio::test]
async fn pump_of_nothing_is_an_empty_frame() {
    let mut file = Vec::new();
    let tally = pump(&b""[..], &mut file, 3, Duration::from_secs(1), |_, _| {})
        .await
        .expect("pump");
    assert_eq!(tally.read, 0);
    assert!(!file.is_empty(), "a valid zstd frame");
    assert!(!tally.edges.ends_with_trailer());
}

#[test]
fn sizes_read_well() {
    assert_eq!(human_bytes(0), "0 B");
    assert_eq!(human_bytes(1023), "1023 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
}
