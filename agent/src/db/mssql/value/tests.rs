use super::*;
use std::borrow::Cow;
use tiberius::IntoSql;

#[test]
fn values_become_json_like_mysql_ones() {
    assert_eq!(to_json(&ColumnData::I32(Some(-7))), Json::from(-7));
    assert_eq!(to_json(&ColumnData::I64(None)), Json::Null);
    assert_eq!(to_json(&ColumnData::F32(Some(0.1))), Json::from(0.1));
    assert_eq!(
        to_json(&ColumnData::F64(Some(f64::INFINITY))),
        Json::from("inf")
    );
    assert_eq!(to_json(&ColumnData::Bit(Some(true))), Json::Bool(true));
    assert_eq!(
        to_json(&ColumnData::Binary(Some(Cow::Owned(vec![0, 255, 1])))),
        Json::from("AP8B")
    );
    for (value, scale, text) in [
        (1250, 2, "12.50"),
        (-5, 2, "-0.05"),
        (7, 0, "7"),
        (-123_456, 3, "-123.456"),
    ] {
        assert_eq!(
            to_json(&ColumnData::Numeric(Some(Numeric::new_with_scale(
                value, scale
            )))),
            Json::from(text)
        );
    }
    let dt = NaiveDate::from_ymd_opt(2026, 3, 1)
        .and_then(|d| d.and_hms_milli_opt(4, 5, 6, 250))
        .expect("date");
    assert_eq!(
        to_json(&dt.into_sql()),
        Json::from("2026-03-01T04:05:06.25")
    );
    assert_eq!(to_json(&dt.date().into_sql()), Json::from("2026-03-01"));
    assert_eq!(to_json(&dt.time().into_sql()), Json::from("04:05:06.25"));
    let u = tiberius::Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").expect("uuid");
    assert_eq!(
        to_json(&ColumnData::Guid(Some(u))),
        Json::from("6F9619FF-8B86-D011-B42D-00C04FC964FF")
    );
}

#[test]
fn column_types_have_one_word_names() {
    assert_eq!(type_name(ColumnType::Intn), "int");
    assert_eq!(type_name(ColumnType::Numericn), "decimal");
    assert_eq!(type_name(ColumnType::NVarchar), "string");
    assert_eq!(type_name(ColumnType::BigVarBin), "bytes");
    assert_eq!(type_name(ColumnType::Datetime2), "datetime");
    assert_eq!(type_name(ColumnType::Guid), "uuid");
}
