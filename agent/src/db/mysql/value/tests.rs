//! Value conversion both ways, without a server.

use baton_proto::ParamValue;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::{Column, Value};
use serde_json::json;

use super::*;

fn col(t: ColumnType) -> Column {
    Column::new(t).with_character_set(45)
}

fn bin(t: ColumnType) -> Column {
    Column::new(t).with_character_set(63)
}

#[test]
fn text_protocol_values_follow_the_column_type() {
    let b = |s: &str| Value::Bytes(s.as_bytes().to_vec());
    assert_eq!(
        to_json(b("42"), &bin(ColumnType::MYSQL_TYPE_LONG)),
        json!(42)
    );
    assert_eq!(
        to_json(b("-7"), &bin(ColumnType::MYSQL_TYPE_LONGLONG)),
        json!(-7)
    );
    assert_eq!(
        to_json(
            b("18446744073709551615"),
            &bin(ColumnType::MYSQL_TYPE_LONGLONG).with_flags(ColumnFlags::UNSIGNED_FLAG)
        ),
        json!(18446744073709551615u64)
    );
    assert_eq!(
        to_json(b("2024"), &bin(ColumnType::MYSQL_TYPE_YEAR)),
        json!(2024)
    );
    assert_eq!(
        to_json(b("12.50"), &bin(ColumnType::MYSQL_TYPE_NEWDECIMAL)),
        json!("12.50")
    );
    assert_eq!(
        to_json(b("1.5"), &bin(ColumnType::MYSQL_TYPE_DOUBLE)),
        json!(1.5)
    );
    assert_eq!(
        to_json(b("2024-02-29"), &bin(ColumnType::MYSQL_TYPE_DATE)),
        json!("2024-02-29")
    );
    assert_eq!(
        to_json(
            b("2024-02-29 13:14:15.250000"),
            &bin(ColumnType::MYSQL_TYPE_DATETIME)
        ),
        json!("2024-02-29 13:14:15.250000")
    );
    assert_eq!(
        to_json(b("-838:59:59"), &bin(ColumnType::MYSQL_TYPE_TIME)),
        json!("-838:59:59")
    );
    assert_eq!(
        to_json(b("héllo"), &col(ColumnType::MYSQL_TYPE_VAR_STRING)),
        json!("héllo")
    );
    assert_eq!(
        to_json(
            Value::Bytes(vec![0, 255, 1]),
            &bin(ColumnType::MYSQL_TYPE_BLOB)
        ),
        json!("AP8B")
    );
    assert_eq!(
        to_json(Value::Bytes(vec![1, 2]), &bin(ColumnType::MYSQL_TYPE_BIT)),
        json!(258)
    );
    assert_eq!(
        to_json(Value::NULL, &col(ColumnType::MYSQL_TYPE_LONG)),
        json!(null)
    );
}

#[test]
fn binary_protocol_values_keep_their_type() {
    assert_eq!(
        to_json(Value::Int(5), &bin(ColumnType::MYSQL_TYPE_LONG)),
        json!(5)
    );
    assert_eq!(
        to_json(Value::UInt(u64::MAX), &bin(ColumnType::MYSQL_TYPE_LONGLONG)),
        json!(u64::MAX)
    );
    assert_eq!(
        to_json(Value::Float(1.1), &bin(ColumnType::MYSQL_TYPE_FLOAT)),
        json!(1.1)
    );
    assert_eq!(
        to_json(Value::Double(f64::NAN), &bin(ColumnType::MYSQL_TYPE_DOUBLE)),
        json!("NaN")
    );
    assert_eq!(
        to_json(
            Value::Date(2024, 1, 2, 0, 0, 0, 0),
            &bin(ColumnType::MYSQL_TYPE_DATE)
        ),
        json!("2024-01-02")
    );
    assert_eq!(
        to_json(
            Value::Date(2024, 1, 2, 3, 4, 5, 0),
            &bin(ColumnType::MYSQL_TYPE_DATETIME)
        ),
        json!("2024-01-02 03:04:05")
    );
    assert_eq!(
        to_json(
            Value::Date(2024, 1, 2, 3, 4, 5, 120_000),
            &bin(ColumnType::MYSQL_TYPE_TIMESTAMP).with_decimals(3)
        ),
        json!("2024-01-02 03:04:05.120")
    );
    assert_eq!(
        to_json(
            Value::Time(true, 1, 2, 3, 4, 0),
            &bin(ColumnType::MYSQL_TYPE_TIME)
        ),
        json!("-26:03:04")
    );
}

#[test]
fn type_names() {
    assert_eq!(type_name(&bin(ColumnType::MYSQL_TYPE_TINY)), "int");
    assert_eq!(
        type_name(&bin(ColumnType::MYSQL_TYPE_NEWDECIMAL)),
        "decimal"
    );
    assert_eq!(type_name(&bin(ColumnType::MYSQL_TYPE_BLOB)), "bytes");
    assert_eq!(type_name(&col(ColumnType::MYSQL_TYPE_BLOB)), "string");
    assert_eq!(
        type_name(&bin(ColumnType::MYSQL_TYPE_DATETIME2)),
        "datetime"
    );
    assert_eq!(
        type_name(&bin(ColumnType::MYSQL_TYPE_TIMESTAMP2)),
        "timestamp"
    );
}

#[test]
fn params_bind_typed_values() {
    assert_eq!(bind(&ParamValue::Null), Ok(Value::NULL));
    assert_eq!(bind(&ParamValue::Bool(true)), Ok(Value::Int(1)));
    assert_eq!(bind(&ParamValue::Int(-3)), Ok(Value::Int(-3)));
    assert_eq!(
        bind(&ParamValue::Decimal("-12.50".into())),
        Ok(Value::Bytes(b"-12.50".to_vec()))
    );
    assert_eq!(bind(&ParamValue::Float(0.5)), Ok(Value::Double(0.5)));
    assert_eq!(
        bind(&ParamValue::String("it's; DROP".into())),
        Ok(Value::Bytes(b"it's; DROP".to_vec()))
    );
    assert_eq!(
        bind(&ParamValue::Bytes("AP8B".into())),
        Ok(Value::Bytes(vec![0, 255, 1]))
    );
    assert_eq!(
        bind(&ParamValue::Date("2024-02-29".into())),
        Ok(Value::Bytes(b"2024-02-29".to_vec()))
    );
    assert_eq!(
        bind(&ParamValue::DateTime("2024-02-29T01:02:03.5".into())),
        Ok(Value::Bytes(b"2024-02-29 01:02:03.500000".to_vec()))
    );
    assert_eq!(
        bind(&ParamValue::DateTime("2024-02-29 01:02:03".into())),
        Ok(Value::Bytes(b"2024-02-29 01:02:03".to_vec()))
    );
}

#[test]
fn bad_params_are_refused() {
    for bad in ["", "1e5", "1.2.3", "12a", "--1", "."] {
        assert!(bind(&ParamValue::Decimal(bad.into())).is_err(), "{bad}");
    }
    assert!(bind(&ParamValue::Float(f64::INFINITY)).is_err());
    assert!(bind(&ParamValue::Bytes("a".into())).is_err());
    assert!(bind(&ParamValue::Bytes("ab$=".into())).is_err());
    assert!(bind(&ParamValue::Date("2023-02-29".into())).is_err());
    assert!(bind(&ParamValue::Date("29/02/2024".into())).is_err());
    let e = bind(&ParamValue::DateTime("2024-02-29T01:02:03+02:00".into())).expect_err("zone");
    assert!(e.contains("time zone"), "{e}");
    assert!(bind(&ParamValue::DateTime("2024-02-29T01:02:03.1234567".into())).is_err());
}

#[test]
fn decimals() {
    for ok in ["0", "-1", "+2.5", "3.", ".5", "12345678901234567890.123"] {
        assert!(is_decimal(ok), "{ok}");
    }
}

#[test]
fn out_hints_shape_values() {
    assert_eq!(apply_hint(json!(1), &ParamValue::Bool(false)), json!(true));
    assert_eq!(
        apply_hint(json!("0"), &ParamValue::Bool(false)),
        json!(false)
    );
    assert_eq!(apply_hint(json!("42"), &ParamValue::Int(0)), json!(42));
    assert_eq!(
        apply_hint(json!(3), &ParamValue::Decimal("0".into())),
        json!("3")
    );
    assert_eq!(
        apply_hint(
            json!("2024-01-02 03:04:05"),
            &ParamValue::DateTime(String::new())
        ),
        json!("2024-01-02 03:04:05"),
        "the server's text form is kept"
    );
    assert_eq!(
        apply_hint(json!("Man"), &ParamValue::Bytes(String::new())),
        json!("TWFu")
    );
    assert_eq!(apply_hint(json!(null), &ParamValue::Int(0)), json!(null));
    assert_eq!(apply_hint(json!("x"), &ParamValue::Null), json!("x"));
}
