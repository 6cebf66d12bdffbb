use super::*;

/// Every type written as a ROW value reads back as an RPC value.
#[test]
fn values_round_trip_through_the_wire_format() {
    crate::init_crypto();
    let dt = NaiveDate::from_ymd_opt(2024, 2, 29)
        .and_then(|d| d.and_hms_nano_opt(23, 59, 58, 123_456_700))
        .expect("datetime");
    let cases = [
        (SqlType::TinyInt, Value::Int(255)),
        (SqlType::SmallInt, Value::Int(-32768)),
        (SqlType::Int, Value::Int(-7)),
        (SqlType::BigInt, Value::Int(i64::MIN)),
        (SqlType::Bit, Value::Bit(true)),
        (SqlType::Real, Value::Float(0.5)),
        (SqlType::Float, Value::Float(-1e300)),
        (
            SqlType::decimal(38, 4),
            Value::decimal(-12_345_678_901_234_567_890_123, 4),
        ),
        (SqlType::numeric(5, 2), Value::decimal(99_999, 2)),
        (SqlType::NVarChar(Some(10)), Value::from("ünï €")),
        (SqlType::NVarChar(None), Value::from("x".repeat(9000))),
        (SqlType::VarBinary(Some(3)), Value::Binary(vec![1, 2, 3])),
        (SqlType::VarBinary(None), Value::Binary(Vec::new())),
        (SqlType::DateTime2(7), Value::DateTime2(dt)),
        (SqlType::Date, Value::Date(dt.date())),
        (SqlType::Int, Value::Null),
        (SqlType::NVarChar(None), Value::Null),
        (SqlType::VarBinary(Some(5)), Value::Null),
    ];
    for (ty, v) in cases {
        let mut buf = Vec::new();
        write_type_info(&mut buf, ty).expect("type info");
        write_value(&mut buf, ty, &v).expect("value");
        let mut c = Cursor::new(&buf);
        let read_ty = read_type_info(&mut c).expect("read type");
        assert_eq!(read_ty, ty);
        assert_eq!(read_value(&mut c, ty).expect("read value"), v, "{ty}");
        assert!(c.is_empty(), "{ty}: trailing bytes");
    }
    // Values that do not fit their column are refused, not truncated.
    let mut buf = Vec::new();
    assert!(write_value(&mut buf, SqlType::TinyInt, &Value::Int(256)).is_err());
    assert!(write_value(&mut buf, SqlType::numeric(3, 1), &Value::decimal(1000, 1)).is_err());
    assert!(write_value(&mut buf, SqlType::NVarChar(Some(2)), &Value::from("abc")).is_err());
    assert!(write_value(&mut buf, SqlType::Int, &Value::from("1")).is_err());
}
