use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use serde_json::json;
use tokio::io::AsyncReadExt;

use super::*;

fn target(root: &Path) -> Target {
    Target {
        root: root.to_path_buf(),
        connection: "erp".into(),
        keep_last: None,
        max_age: None,
        reserve: 0,
    }
}

fn spec(format: ExportFormat, compression: ExportCompression) -> ExportSpec {
    ExportSpec {
        connection: "erp".into(),
        query: "SELECT id, name FROM t WHERE id > ?".into(),
        params: vec![ParamValue::Int(0)],
        format,
        compression,
        prefix: Some("orders".into()),
    }
}

fn columns() -> Vec<Column> {
    vec![
        Column {
            name: "id".into(),
            kind: "int".into(),
        },
        Column {
            name: "name".into(),
            kind: "string".into(),
        },
    ]
}

async fn decompress(path: &Path, c: ExportCompression) -> Vec<u8> {
    let bytes = tokio::fs::read(path).await.expect("read");
    let mut out = Vec::new();
    match c {
        ExportCompression::Zstd => ZstdDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .await
            .map(drop),
        ExportCompression::Gzip => GzipDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .await
            .map(drop),
        ExportCompression::None => {
            out = bytes;
            Ok(())
        }
    }
    .expect("decompress");
    out
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn every_format_and_compression_round_trips_with_sha256_and_manifest() {
    for format in [ExportFormat::Csv, ExportFormat::Jsonl] {
        for compression in [
            ExportCompression::Zstd,
            ExportCompression::Gzip,
            ExportCompression::None,
        ] {
            let tmp = tempfile::tempdir().expect("tmp");
            let spec = spec(format, compression);
            let mut file = ExportFile::create(
                &target(tmp.path()),
                &spec,
                42,
                columns(),
                ProgressHandle::new(1024),
            )
            .await
            .expect("create");
            // Enough rows to cross several chunks.
            for i in 0..20_000 {
                let name = if i % 3 == 0 {
                    Json::Null
                } else {
                    json!(format!("n,{i}"))
                };
                file.push(&[json!(i), name]).await.expect("push");
            }
            let done = file
                .finish(Some("10.11".into()), vec![], 7)
                .await
                .expect("finish");
            let m = &done.manifest;
            assert_eq!(m.rows, 20_000);
            assert_eq!(
                (m.file_format, m.compression),
                (format.as_str(), compression.as_str())
            );
            let on_disk = tokio::fs::read(&done.path).await.expect("read");
            assert_eq!(m.bytes, on_disk.len() as u64);
            assert_eq!(m.sha256, hex::encode(Sha256::digest(&on_disk)));
            let text = String::from_utf8(decompress(&done.path, compression).await).expect("utf8");
            assert_eq!(m.uncompressed_bytes, text.len() as u64);
            match format {
                ExportFormat::Csv => {
                    assert!(
                        text.starts_with("id,name\r\n0,\r\n1,\"n,1\"\r\n"),
                        "{}",
                        &text[..40]
                    );
                    assert_eq!(text.matches("\r\n").count(), 20_001);
                }
                ExportFormat::Jsonl => {
                    assert!(
                        text.starts_with("{\"id\":0,\"name\":null}\n{\"id\":1,\"name\":\"n,1\"}\n")
                    );
                    assert_eq!(text.lines().count(), 20_000);
                }
            }
            let dir = tmp.path().join("erp").join("orders");
            let manifest: Json =
                serde_json::from_slice(&std::fs::read(&done.manifest_path).expect("manifest"))
                    .expect("json");
            assert_eq!(manifest["rows"], 20_000);
            assert_eq!(manifest["sha256"], m.sha256.as_str());
            assert_eq!(manifest["columns"][0], json!({"name": "id", "type": "int"}));
            assert_eq!(manifest["params"][0], json!({"type": "int", "value": 0}));
            let data = done.data();
            assert_eq!(data["path"], done.path.display().to_string());
            assert_eq!(
                data["manifest_path"],
                done.manifest_path.display().to_string()
            );
            // The file and its manifest, nothing partial.
            let names = listing(&dir);
            assert_eq!(names.len(), 2, "{names:?}");
            assert!(
                names
                    .iter()
                    .all(|n| !n.ends_with(".partial") && !n.ends_with(".tmp"))
            );
        }
    }
}

#[tokio::test]
async fn a_dropped_export_leaves_no_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let spec = spec(ExportFormat::Csv, ExportCompression::Zstd);
    let mut file = ExportFile::create(
        &target(tmp.path()),
        &spec,
        5,
        columns(),
        ProgressHandle::new(64),
    )
    .await
    .expect("create");
    for i in 0..50_000 {
        file.push(&[json!(i), json!("x")]).await.expect("push");
    }
    let partial = file.partial();
    assert!(partial.exists(), "written while running");
    drop(file);
    assert!(!partial.exists());
    assert_eq!(
        listing(&tmp.path().join("erp").join("orders")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_reserve_that_does_not_fit_is_refused_before_writing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut t = target(tmp.path());
    t.reserve = u64::MAX;
    let spec = spec(ExportFormat::Csv, ExportCompression::None);
    match ExportFile::create(&t, &spec, 5, columns(), ProgressHandle::new(64)).await {
        Err(e @ Error::NoSpace { .. }) => assert!(!e.retryable()),
        // sysinfo does not see every filesystem (tmpfs): then nothing is checked.
        Ok(_) if space::free_space(tmp.path()).is_none() => {}
        other => panic!("expected NoSpace: {other:?}"),
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_per_suffix_and_never_the_new_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("erp").join("orders");
    std::fs::create_dir_all(&dir).expect("dir");
    for old in ["20200101T000000Z-job1", "20200102T000000Z-job2"] {
        std::fs::write(dir.join(format!("{old}.csv.zst")), b"x").expect("old");
        std::fs::write(dir.join(format!("{old}.manifest.json")), b"{}").expect("old");
    }
    std::fs::write(dir.join("20200101T000000Z-job3.jsonl.gz"), b"x").expect("other kind");
    let mut t = target(tmp.path());
    t.keep_last = Some(2);
    let spec = spec(ExportFormat::Csv, ExportCompression::Zstd);
    let file = ExportFile::create(&t, &spec, 9, columns(), ProgressHandle::new(64))
        .await
        .expect("create");
    let done = file.finish(None, vec![], 1).await.expect("finish");
    assert_eq!(
        done.retention_deleted,
        vec!["20200101T000000Z-job1.csv.zst".to_owned()]
    );
    let names = listing(&dir);
    assert!(
        names.contains(&"20200101T000000Z-job3.jsonl.gz".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"20200101T000000Z-job1.manifest.json".to_owned()));
    assert!(done.path.exists());
}

#[test]
fn suffixes_name_format_and_compression() {
    let s = suffixes(ExportFormat::Jsonl, ExportCompression::Gzip);
    assert_eq!((s.finished, s.partial), (".jsonl.gz", ".jsonl.gz.partial"));
    let s = suffixes(ExportFormat::Csv, ExportCompression::None);
    assert_eq!((s.finished, s.partial), (".csv", ".csv.partial"));
}
