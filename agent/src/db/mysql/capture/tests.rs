//! Capture bounds, without a server.

use mysql_async::consts::ColumnType;
use mysql_async::{Column, Value};
use serde_json::json;

use super::*;

fn cols() -> Vec<Column> {
    vec![
        Column::new(ColumnType::MYSQL_TYPE_LONG)
            .with_name(b"id")
            .with_character_set(63),
        Column::new(ColumnType::MYSQL_TYPE_VAR_STRING)
            .with_name(b"name")
            .with_character_set(45),
    ]
}

fn row(i: i64) -> Vec<Value> {
    vec![Value::Int(i), Value::Bytes(format!("n{i}").into_bytes())]
}

#[test]
fn sets_rows_and_counts() {
    let mut c = Capture::new(Limits::default());
    c.begin_set(&cols());
    c.push_values(row(1), &cols());
    c.push_values(row(2), &cols());
    c.add_affected(3);
    c.push_warning(Warning {
        level: "Note".into(),
        code: 1051,
        message: "Unknown table".into(),
    });
    c.set_out("total", json!("12.50"));
    assert!(!c.truncated());
    assert_eq!(
        c.to_json(),
        json!({
            "result_sets": [{
                "columns": ["id", "name"],
                "types": ["int", "string"],
                "rows": [[1, "n1"], [2, "n2"]],
                "truncated": false,
            }],
            "out": {"total": "12.50"},
            "affected_rows": 3,
            "warnings": [{"level": "Note", "code": 1051, "message": "Unknown table"}],
            "truncated": false,
        })
    );
}

#[test]
fn rows_per_set_are_bounded() {
    let mut c = Capture::new(Limits {
        max_rows: 2,
        ..Limits::default()
    });
    c.begin_set(&cols());
    for i in 0..5 {
        c.push_values(row(i), &cols());
    }
    c.begin_set(&cols());
    c.push_values(row(9), &cols());
    let d = c.to_json();
    assert!(c.truncated());
    assert_eq!(d["truncated"], true);
    assert_eq!(d["result_sets"][0]["rows"], json!([[0, "n0"], [1, "n1"]]));
    assert_eq!(d["result_sets"][0]["truncated"], true);
    assert_eq!(d["result_sets"][1]["rows"], json!([[9, "n9"]]));
    assert_eq!(d["result_sets"][1]["truncated"], false);
}

#[test]
fn bytes_are_bounded_over_all_sets() {
    let mut c = Capture::new(Limits {
        max_bytes: 400,
        ..Limits::default()
    });
    c.begin_set(&cols());
    for i in 0..100 {
        c.push_values(row(i), &cols());
    }
    c.begin_set(&cols());
    c.push_values(row(1), &cols());
    let d = c.to_json();
    assert!(json_len(&d["result_sets"]) <= 400, "{d}");
    assert_eq!(d["result_sets"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["result_sets"][0]["truncated"], true);
    assert_eq!(d["result_sets_omitted"], 1);
    assert_eq!(d["truncated"], true);
}

#[test]
fn warnings_are_bounded() {
    let mut c = Capture::new(Limits {
        max_warnings: 1,
        ..Limits::default()
    });
    for code in [1, 2, 3] {
        c.push_warning(Warning {
            level: "Warning".into(),
            code,
            message: String::new(),
        });
    }
    let d = c.to_json();
    assert_eq!(d["warnings"].as_array().map(Vec::len), Some(1));
    assert_eq!(d["warnings_omitted"], 2);
}
