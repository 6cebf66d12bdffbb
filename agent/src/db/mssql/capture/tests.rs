use super::*;
use tiberius::ColumnType;

fn row(values: Vec<ColumnData<'static>>) -> Row {
    let mut b = Row::builder();
    for (i, v) in values.into_iter().enumerate() {
        b = b.column(format!("c{i}"), ColumnType::Int4, v);
    }
    b.build()
}

fn cols(n: usize) -> Vec<Column> {
    (0..n)
        .map(|i| Column::new(format!("c{i}"), ColumnType::Int4))
        .collect()
}

#[test]
fn rows_are_bounded_per_set_and_counts_skip_selects() {
    let mut c = Capture::new(Limits {
        max_rows: 2,
        ..Limits::default()
    });
    c.begin_set(&cols(1));
    for i in 0..3 {
        c.push_row(row(vec![ColumnData::I32(Some(i))]));
    }
    c.statement_done(3);
    c.statement_done(4);
    c.set_return_status(-4);
    c.set_out("total", &ColumnData::I64(Some(9)));
    let j = c.to_json();
    assert_eq!(
        j["result_sets"],
        json!([{"columns": ["c0"], "types": ["int"], "rows": [[0], [1]], "truncated": true}])
    );
    assert_eq!(j["affected_rows"], json!(4));
    assert_eq!(j["return_status"], json!(-4));
    assert_eq!(j["out"], json!({"total": 9}));
    assert_eq!(j["truncated"], json!(true));
    assert!(c.truncated());
}

#[test]
fn byte_bound_omits_later_sets() {
    let mut c = Capture::new(Limits {
        max_rows: 1000,
        max_bytes: 200,
        max_warnings: 0,
    });
    c.begin_set(&cols(1));
    for i in 0..100 {
        c.push_row(row(vec![ColumnData::I32(Some(i))]));
    }
    c.begin_set(&cols(1));
    let j = c.to_json();
    let kept = j["result_sets"][0]["rows"].as_array().map_or(0, Vec::len);
    assert!(kept > 0 && kept < 100, "{j}");
    assert_eq!(j["result_sets"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["result_sets_omitted"], json!(1));
    assert!(crate::db::result_sets::json_len(&j) < 400, "{j}");
    assert_eq!(j["affected_rows"], Json::Null);
}
