use std::path::Path;

use chrono::TimeZone;
use serde_json::json;

use super::*;

#[test]
fn manifest_json_has_every_field_and_the_paths() {
    let started = Utc
        .with_ymd_and_hms(2026, 3, 4, 5, 6, 7)
        .single()
        .expect("time");
    let m = Manifest {
        format: FORMAT,
        kind: KIND.into(),
        file: "20260304T050607Z-job42.bak".into(),
        connection: "sql".into(),
        database: "shop".into(),
        recovery_model: Some("FULL".into()),
        server: ServerInfo {
            product_version: Some("16.0.4135.4".into()),
            edition: Some("Developer Edition (64-bit)".into()),
            banner: Some("Microsoft SQL Server 2022".into()),
        },
        size_bytes: 4096,
        sha256: None,
        sha256_error: Some("Permission denied".into()),
        started_at: started,
        finished_at: started + chrono::Duration::milliseconds(2500),
        duration_ms: 2500,
        compression: true,
        checksum: true,
        copy_only: true,
        verify: Verdict {
            ok: true,
            message: "verified".into(),
        },
        job_id: 42,
        attempt: 2,
        token: 7,
    };
    let v = result_data(
        &m,
        Path::new("/b/sql/shop/20260304T050607Z-job42.bak"),
        Path::new("/b/sql/shop/20260304T050607Z-job42.manifest.json"),
    );
    assert_eq!(
        v,
        json!({
            "format": 1,
            "kind": "mssql_native_backup",
            "file": "20260304T050607Z-job42.bak",
            "connection": "sql",
            "database": "shop",
            "recovery_model": "FULL",
            "server": {
                "product_version": "16.0.4135.4",
                "edition": "Developer Edition (64-bit)",
                "banner": "Microsoft SQL Server 2022"
            },
            "size_bytes": 4096,
            "sha256": null,
            "sha256_error": "Permission denied",
            "started_at": "2026-03-04T05:06:07.000Z",
            "finished_at": "2026-03-04T05:06:09.500Z",
            "duration_ms": 2500,
            "compression": true,
            "checksum": true,
            "copy_only": true,
            "verify": {"ok": true, "message": "verified"},
            "job_id": 42,
            "attempt": 2,
            "token": 7,
            "path": "/b/sql/shop/20260304T050607Z-job42.bak",
            "manifest_path": "/b/sql/shop/20260304T050607Z-job42.manifest.json"
        })
    );
    let readable = Manifest {
        sha256: Some("ab".repeat(32)),
        sha256_error: None,
        ..m
    };
    let v = serde_json::to_value(&readable).expect("json");
    assert_eq!(v["sha256"], json!("ab".repeat(32)));
    assert!(v.get("sha256_error").is_none(), "{v}");
}
