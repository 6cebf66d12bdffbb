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
        Json::from("2026-03-01 04:05:06.2500000"),
        "datetime2(7), as sqlcmd shows it"
    );
    assert_eq!(to_json(&dt.date().into_sql()), Json::from("2026-03-01"));
    assert_eq!(
        to_json(&dt.time().into_sql()),
        Json::from("04:05:06.2500000")
    );
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

#[test]
fn date_times_print_as_the_tools_show_them() {
    use tiberius::time::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
    // 2006-02-14: days since 1900-01-01 (legacy) and since 0001-01-01.
    let days_1900 = 38_760;
    let date = Date::new(732_355);
    // 22:04:36.997 is 23_843_099 1/300-s ticks (.996666…): shown rounded.
    let legacy = ColumnData::DateTime(Some(DateTime::new(days_1900, 23_843_099)));
    assert_eq!(to_json(&legacy), Json::from("2006-02-14 22:04:36.997"));
    let small = ColumnData::SmallDateTime(Some(SmallDateTime::new(38_760, 22 * 60 + 5)));
    assert_eq!(to_json(&small), Json::from("2006-02-14 22:05:00"));
    let secs = 22 * 3600 + 4 * 60 + 36;
    let t3 = Time::new(secs * 1000 + 123, 3);
    let dt3 = ColumnData::DateTime2(Some(DateTime2::new(date, t3)));
    assert_eq!(to_json(&dt3), Json::from("2006-02-14 22:04:36.123"));
    let dt0 = ColumnData::DateTime2(Some(DateTime2::new(date, Time::new(secs, 0))));
    assert_eq!(to_json(&dt0), Json::from("2006-02-14 22:04:36"));
    assert_eq!(
        to_json(&ColumnData::Time(Some(Time::new(secs * 100 + 5, 2)))),
        Json::from("22:04:36.05")
    );
    // datetimeoffset keeps UTC date and time plus the offset in minutes.
    let utc = DateTime2::new(date, Time::new((secs - 3600) * 1000 + 123, 3));
    let off = ColumnData::DateTimeOffset(Some(DateTimeOffset::new(utc, 60)));
    assert_eq!(to_json(&off), Json::from("2006-02-14 22:04:36.123 +01:00"));
}
