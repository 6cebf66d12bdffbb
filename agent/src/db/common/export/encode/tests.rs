use serde_json::json;

use super::*;

fn csv(names: &[&str], rows: &[Vec<Json>]) -> String {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let e = Encoder::new(ExportFormat::Csv, &names);
    let mut out = Vec::new();
    e.header(&mut out, &names);
    for r in rows {
        e.row(&mut out, r);
    }
    String::from_utf8(out).expect("utf-8")
}

fn jsonl(names: &[&str], rows: &[Vec<Json>]) -> String {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let e = Encoder::new(ExportFormat::Jsonl, &names);
    let mut out = Vec::new();
    e.header(&mut out, &names);
    for r in rows {
        e.row(&mut out, r);
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn csv_quotes_only_what_needs_it_and_keeps_null_apart_from_empty() {
    let text = csv(
        &["id", "name", "note"],
        &[
            vec![json!(1), json!("plain"), Json::Null],
            vec![json!(2), json!(""), json!("a,b")],
            vec![json!(3), json!("say \"hi\""), json!("line1\nline2\r\n")],
        ],
    );
    assert_eq!(
        text,
        "id,name,note\r\n\
         1,plain,\r\n\
         2,\"\",\"a,b\"\r\n\
         3,\"say \"\"hi\"\"\",\"line1\nline2\r\n\"\r\n"
    );
}

#[test]
fn csv_header_names_are_quoted_like_values() {
    assert_eq!(csv(&["a,b", "", "c"], &[]), "\"a,b\",\"\",c\r\n");
}

#[test]
fn csv_keeps_decimals_dates_binary_and_booleans_as_given() {
    let text = csv(
        &["d", "dt", "t", "bin", "b", "f"],
        &[vec![
            json!("12345678901234567890.0100"),
            json!("2026-12-06 01:02:03.450"),
            json!("-838:59:59"),
            json!("AAEC/w=="),
            json!(true),
            json!(1.5),
        ]],
    );
    assert_eq!(
        text.lines().nth(1),
        Some("12345678901234567890.0100,2026-12-06 01:02:03.450,-838:59:59,AAEC/w==,true,1.5")
    );
}

#[test]
fn jsonl_rows_are_objects_in_column_order_with_null() {
    let text = jsonl(
        &["z", "a", "q\"uote"],
        &[
            vec![json!(1), Json::Null, json!("")],
            vec![json!("0.10"), json!("x\ny"), json!("AA==")],
        ],
    );
    assert_eq!(
        text,
        "{\"z\":1,\"a\":null,\"q\\\"uote\":\"\"}\n{\"z\":\"0.10\",\"a\":\"x\\ny\",\"q\\\"uote\":\"AA==\"}\n"
    );
    for line in text.lines() {
        let v: Json = serde_json::from_str(line).expect("each line is JSON");
        assert!(v.is_object());
    }
}

#[test]
fn a_row_longer_than_its_columns_still_gives_valid_json() {
    let text = jsonl(&["a"], &[vec![json!(1), json!(2)]]);
    assert_eq!(text, "{\"a\":1,\"column2\":2}\n");
}
