use std::borrow::Cow;

use baton_proto::{ParamMode, ParamValue, ProcedureParam, ProcedureSpec, SqlType};
use tiberius::ColumnData;

use super::*;

fn param(name: &str, mode: ParamMode, value: ParamValue, sql_type: Option<&str>) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode,
        value: Some(value),
        sql_type: sql_type.map(str::to_owned),
    }
}

fn spec(procedure: &str, params: Vec<ProcedureParam>) -> ProcedureSpec {
    ProcedureSpec {
        connection: "main".into(),
        procedure: procedure.into(),
        params,
        exactly_once: false,
        session: Default::default(),
    }
}

fn bound(value: ParamValue, ty: &str) -> Result<ColumnData<'static>, String> {
    bind(&value, Some(SqlType::parse(ty).expect("type")))
}

#[test]
fn names_are_checked_and_bracket_quoted() {
    assert_eq!(quote_procedure("usp_x").as_deref(), Ok("[usp_x]"));
    assert_eq!(quote_procedure("dbo.usp_x").as_deref(), Ok("[dbo].[usp_x]"));
    assert_eq!(
        quote_procedure("shop.dbo.usp_#1@x$").as_deref(),
        Ok("[shop].[dbo].[usp_#1@x$]")
    );
    for bad in [
        "",
        "a.b.c.d",
        "dbo.",
        "1usp",
        "dbo.$x",
        "[dbo].[x]",
        "x]; DROP TABLE t; --",
        &"a".repeat(129),
    ] {
        let e = quote_procedure(bad).expect_err(bad);
        assert!(e.starts_with("spec.procedure"), "{bad}: {e}");
    }
    assert!(quote_procedure(&"a".repeat(128)).is_ok());
}

#[test]
fn params_are_named_uniquely_and_marked_output() {
    let plan = plan(&spec(
        "dbo.usp_x",
        vec![
            param("id", ParamMode::In, ParamValue::Int(7), Some("int")),
            param(
                "total",
                ParamMode::Out,
                ParamValue::Null,
                Some("decimal(10,2)"),
            ),
            param(
                "note",
                ParamMode::InOut,
                ParamValue::String("hi".into()),
                None,
            ),
        ],
    ))
    .expect("plan");
    assert_eq!(plan.procedure, "[dbo].[usp_x]");
    let names: Vec<(&str, bool)> = plan
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.output))
        .collect();
    assert_eq!(names, [("@id", false), ("@total", true), ("@note", true)]);
    assert_eq!(plan.params[0].value, ColumnData::I32(Some(7)));
    assert_eq!(plan.params[1].value, ColumnData::Numeric(None));
    assert_eq!(
        plan.params[2].value,
        ColumnData::String(Some(Cow::Borrowed("hi")))
    );
    let dup = spec(
        "x",
        vec![
            param("Id", ParamMode::In, ParamValue::Int(1), None),
            param("iD", ParamMode::In, ParamValue::Int(2), None),
        ],
    );
    let e = super::plan(&dup).expect_err("duplicate");
    assert!(e.starts_with("spec.params[1].name"), "{e}");
    let bad = spec(
        "x",
        vec![param("@id", ParamMode::In, ParamValue::Int(1), None)],
    );
    assert!(
        super::plan(&bad)
            .expect_err("@")
            .starts_with("spec.params[0].name")
    );
    let bad = spec(
        "x",
        vec![param("id", ParamMode::In, ParamValue::Int(1), Some("text"))],
    );
    assert!(
        super::plan(&bad)
            .expect_err("text")
            .starts_with("spec.params[0].sql_type")
    );
    let bad = spec(
        "x",
        vec![param(
            "id",
            ParamMode::In,
            ParamValue::Int(1 << 40),
            Some("int"),
        )],
    );
    let e = super::plan(&bad).expect_err("range");
    assert!(
        e.starts_with("spec.params[0].value (id)") && e.contains("out of range"),
        "{e}"
    );
}

#[test]
fn values_without_sql_type_bind_by_their_own_type() {
    use ParamValue as V;
    assert_eq!(bind(&V::Int(-3), None), Ok(ColumnData::I64(Some(-3))));
    assert_eq!(bind(&V::Bool(true), None), Ok(ColumnData::Bit(Some(true))));
    assert_eq!(bind(&V::Float(1.5), None), Ok(ColumnData::F64(Some(1.5))));
    assert_eq!(
        bind(&V::Decimal("-12.50".into()), None),
        Ok(ColumnData::Numeric(Some(Numeric::new_with_scale(-1250, 2))))
    );
    assert_eq!(
        bind(&V::Bytes("AP8B".into()), None),
        Ok(ColumnData::Binary(Some(Cow::Owned(vec![0, 255, 1]))))
    );
    assert!(matches!(
        bind(&V::Date("2026-02-28".into()), None),
        Ok(ColumnData::Date(Some(_)))
    ));
    assert!(matches!(
        bind(&V::DateTime("2026-02-28T10:00:00.1234567".into()), None),
        Ok(ColumnData::DateTime2(Some(_)))
    ));
    assert_eq!(bind(&V::Null, None), Ok(ColumnData::String(None)));
    for bad in [
        V::Decimal("1e5".into()),
        V::Decimal("1".repeat(39)),
        V::Float(f64::NAN),
        V::Bytes("***".into()),
        V::Date("2026-02-30".into()),
        V::DateTime("2026-02-28T10:00:00Z".into()),
    ] {
        assert!(bind(&bad, None).is_err(), "{bad:?}");
    }
}

#[test]
fn sql_types_convert_and_check_ranges() {
    use ParamValue as V;
    assert_eq!(bound(V::Int(255), "tinyint"), Ok(ColumnData::U8(Some(255))));
    assert!(bound(V::Int(256), "tinyint").is_err());
    assert!(bound(V::Int(-1), "tinyint").is_err());
    assert_eq!(
        bound(V::Int(-32768), "smallint"),
        Ok(ColumnData::I16(Some(-32768)))
    );
    assert!(bound(V::Int(40_000), "smallint").is_err());
    assert_eq!(bound(V::Null, "int"), Ok(ColumnData::I32(None)));
    assert_eq!(bound(V::Null, "bigint"), Ok(ColumnData::I64(None)));
    assert_eq!(bound(V::Int(1), "bit"), Ok(ColumnData::Bit(Some(true))));
    assert!(bound(V::Int(2), "bit").is_err());
    assert_eq!(
        bound(V::Decimal("12.5".into()), "decimal(10,2)"),
        Ok(ColumnData::Numeric(Some(Numeric::new_with_scale(1250, 2))))
    );
    assert_eq!(
        bound(V::Int(12), "numeric(4,1)"),
        Ok(ColumnData::Numeric(Some(Numeric::new_with_scale(120, 1))))
    );
    assert_eq!(
        bound(V::Decimal("1.500".into()), "decimal(3,1)"),
        Ok(ColumnData::Numeric(Some(Numeric::new_with_scale(15, 1))))
    );
    assert!(bound(V::Decimal("1.25".into()), "decimal(3,1)").is_err());
    assert!(bound(V::Decimal("1000".into()), "decimal(5,2)").is_err());
    assert_eq!(bound(V::Float(0.5), "real"), Ok(ColumnData::F32(Some(0.5))));
    assert_eq!(bound(V::Int(2), "float"), Ok(ColumnData::F64(Some(2.0))));
    assert_eq!(
        bound(V::String("abc".into()), "varchar(3)"),
        Ok(ColumnData::String(Some(Cow::Borrowed("abc"))))
    );
    assert!(bound(V::String("abcd".into()), "nvarchar(3)").is_err());
    assert!(bound(V::Bytes("AAAA".into()), "varbinary(2)").is_err());
    assert!(bound(V::Int(1), "nvarchar(max)").is_err());
    assert!(matches!(
        bound(V::String("10:11:12.5".into()), "time"),
        Ok(ColumnData::Time(Some(_)))
    ));
    assert!(matches!(
        bound(V::String("2026-01-01 10:00:00".into()), "datetime2(3)"),
        Ok(ColumnData::DateTime2(Some(_)))
    ));
    assert!(matches!(
        bound(V::DateTime("2026-01-01T10:00:00".into()), "datetime"),
        Ok(ColumnData::DateTime(Some(_)))
    ));
    assert!(bound(V::DateTime("1700-01-01T00:00:00".into()), "datetime").is_err());
    assert!(matches!(
        bound(
            V::String("6F9619FF-8B86-D011-B42D-00C04FC964FF".into()),
            "uniqueidentifier"
        ),
        Ok(ColumnData::Guid(Some(_)))
    ));
    assert!(bound(V::String("nope".into()), "uniqueidentifier").is_err());
}

#[test]
fn legacy_datetime_counts_days_and_three_hundredths() {
    let dt = chrono::NaiveDate::from_ymd_opt(1900, 1, 2)
        .and_then(|d| d.and_hms_milli_opt(0, 0, 1, 0))
        .expect("dt");
    match legacy_datetime(&dt) {
        Ok(ColumnData::DateTime(Some(v))) => {
            assert_eq!(v.days(), 1);
            assert_eq!(v.seconds_fragments(), 300);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_out_param_without_a_value_is_a_typed_null() {
    let mut out = param("total", ParamMode::Out, ParamValue::Null, Some("int"));
    out.value = None;
    let planned = plan(&spec("usp_x", vec![out.clone()])).expect("plan");
    assert!(planned.params[0].output);
    assert_eq!(planned.params[0].value, ColumnData::I32(None));
    out.sql_type = None;
    let e = plan(&spec("usp_x", vec![out.clone()])).expect_err("no type at all");
    assert!(
        e.starts_with("spec.params[0].value (total)") && e.contains("sql_type"),
        "{e}"
    );
    out.mode = ParamMode::In;
    out.sql_type = Some("int".into());
    let e = plan(&spec("usp_x", vec![out])).expect_err("in without a value");
    assert!(e.contains("required for in"), "{e}");
}

#[test]
fn session_settings_are_one_batch_of_checked_literals() {
    use baton_proto::SessionValue;
    let session = [
        ("DATEFORMAT", SessionValue::Text("DMY".into())),
        ("LANGUAGE", SessionValue::Text("Deutsch".into())),
        ("LOCK_TIMEOUT", SessionValue::Int(5000)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(
        session_batch(&session).expect("checked").as_deref(),
        Some("SET LANGUAGE N'Deutsch'; SET DATEFORMAT dmy; SET LOCK_TIMEOUT 5000;")
    );
    let injection = [(
        "LOCK_TIMEOUT".to_owned(),
        SessionValue::Text("1; DROP TABLE t".into()),
    )]
    .into();
    assert!(session_batch(&injection).is_err());
    let other = [("time_zone".to_owned(), SessionValue::Text("+00:00".into()))].into();
    let e = session_batch(&other).expect_err("a MySQL key");
    assert!(e.contains("not allowed on mssql"), "{e}");
}
