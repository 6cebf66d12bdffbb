use super::*;
use crate::job::{JobKind, JobSpec};
use crate::roundtrip::check;

#[test]
fn export_spec_round_trips_and_defaults() {
    let full = JobSpec::Export(ExportSpec {
        connection: "erp".into(),
        query: "SELECT * FROM t WHERE d = ?".into(),
        params: vec![ParamValue::Date("2026-12-05".into()), ParamValue::Null],
        format: ExportFormat::Jsonl,
        compression: ExportCompression::Gzip,
        prefix: Some("orders".into()),
    });
    check(&full);
    assert_eq!(full.kind(), JobKind::Export);
    assert_eq!(full.connection(), Some("erp"));
    let minimal: JobSpec =
        serde_json::from_str(r#"{"kind":"export","connection":"c","query":"SELECT 1"}"#)
            .expect("parse");
    let JobSpec::Export(e) = &minimal else {
        panic!("not an export: {minimal:?}");
    };
    assert_eq!(e.format, ExportFormat::Csv);
    assert_eq!(e.compression, ExportCompression::Zstd);
    assert_eq!(e.prefix_or_default(), "export");
    check(&minimal);
    assert_eq!(JobKind::parse("export"), Some(JobKind::Export));
}

#[test]
fn unknown_format_and_fields_are_refused() {
    for bad in [
        r#"{"kind":"export","connection":"c","query":"q","format":"xml"}"#,
        r#"{"kind":"export","connection":"c","query":"q","compression":"lz4"}"#,
        r#"{"kind":"export","connection":"c","query":"q","sql":"x"}"#,
    ] {
        assert!(serde_json::from_str::<JobSpec>(bad).is_err(), "{bad}");
    }
}
