//! Names and values by engine: what the agent binds and the controller checks.

use super::*;
use crate::job::{ParamMode, ProcedureParam};

fn spec(procedure: &str, params: Vec<(&str, ParamValue, Option<&str>)>) -> ProcedureSpec {
    ProcedureSpec {
        connection: "main".into(),
        procedure: procedure.into(),
        params: params
            .into_iter()
            .map(|(name, value, ty)| ProcedureParam {
                name: name.into(),
                mode: ParamMode::In,
                value: Some(value),
                sql_type: ty.map(str::to_owned),
            })
            .collect(),
        exactly_once: false,
        session: Default::default(),
    }
}

fn field(spec: &ProcedureSpec, engine: Engine) -> Option<String> {
    check_call(spec, engine).err().map(|r| r.field)
}

#[test]
fn three_part_names_are_sql_server_only() {
    let s = spec("shop.dbo.usp_x", vec![]);
    assert_eq!(field(&s, Engine::Mssql), None);
    assert_eq!(field(&s, Engine::Mysql).as_deref(), Some("spec.procedure"));
    let two = spec("shop.usp_x", vec![]);
    assert_eq!(field(&two, Engine::Mysql), None);
    assert_eq!(field(&two, Engine::Mssql), None);
    // MySQL: 64 per part, `$` first is fine; SQL Server: 128, no digit or `$` first.
    let long = spec(&"a".repeat(65), vec![]);
    assert_eq!(
        field(&long, Engine::Mysql).as_deref(),
        Some("spec.procedure")
    );
    assert_eq!(field(&long, Engine::Mssql), None);
    let dollar = spec("$x", vec![]);
    assert_eq!(field(&dollar, Engine::Mysql), None);
    assert_eq!(
        field(&dollar, Engine::Mssql).as_deref(),
        Some("spec.procedure")
    );
    let at = spec("usp@x", vec![]);
    assert_eq!(field(&at, Engine::Mysql).as_deref(), Some("spec.procedure"));
}

#[test]
fn param_names_by_engine() {
    let long = spec("p", vec![(&"p".repeat(65), ParamValue::Int(1), None)]);
    assert_eq!(
        field(&long, Engine::Mysql).as_deref(),
        Some("spec.params[0].name")
    );
    assert_eq!(field(&long, Engine::Mssql), None);
}

#[test]
fn values_by_type_on_both_engines() {
    use ParamValue as V;
    let bad = [
        V::Date("2026-13-45".into()),
        V::Date("2026-02-30".into()),
        V::Date("05/12/2026".into()),
        V::DateTime("2026-02-28T25:00:00".into()),
        V::DateTime("2026-02-28T10:00:00Z".into()),
        V::Decimal("1,5".into()),
        V::Decimal("1e5".into()),
        V::Decimal(".".into()),
        V::Bytes("***".into()),
        V::Bytes("a".into()),
    ];
    for v in bad {
        let s = spec("p", vec![("x", v.clone(), None)]);
        for e in Engine::ALL {
            assert_eq!(
                field(&s, e).as_deref(),
                Some("spec.params[0].value"),
                "{v:?} on {e:?}"
            );
        }
    }
    let good = [
        V::Date("2026-02-28".into()),
        V::DateTime("2026-02-28 10:00:00.5".into()),
        V::Decimal("-12.50".into()),
        V::Bytes("AP8B".into()),
        V::Int(i64::MAX),
        V::Null,
    ];
    for v in good {
        let s = spec("p", vec![("x", v.clone(), None)]);
        for e in Engine::ALL {
            assert_eq!(field(&s, e), None, "{v:?} on {e:?}");
        }
    }
}

#[test]
fn fraction_digits_differ_by_engine() {
    let s = spec(
        "p",
        vec![(
            "x",
            ParamValue::DateTime("2026-02-28T10:00:00.1234567".into()),
            None,
        )],
    );
    assert_eq!(field(&s, Engine::Mssql), None);
    assert_eq!(
        field(&s, Engine::Mysql).as_deref(),
        Some("spec.params[0].value")
    );
}

#[test]
fn sql_types_check_ranges_and_forms_on_sql_server() {
    use ParamValue as V;
    let cases: [(V, &str, bool); 16] = [
        (V::Int(255), "tinyint", true),
        (V::Int(256), "tinyint", false),
        (V::Int(1 << 40), "int", false),
        (V::Int(-32768), "smallint", true),
        (V::Decimal("123.45".into()), "decimal(5,2)", true),
        (V::Decimal("1234.5".into()), "decimal(5,2)", false),
        (V::Decimal("1.234".into()), "decimal(5,2)", false),
        (V::String("12:30:00.5".into()), "time", true),
        (V::String("25:30:00".into()), "time", false),
        (V::String("2026-13-01".into()), "date", false),
        (V::String("1700-01-01T00:00:00".into()), "datetime", false),
        (V::String("2026-01-01 00:00:00".into()), "datetime2", true),
        (
            V::String("6f9619ff-8b86-d011-b42d-00c04fc964ff".into()),
            "uniqueidentifier",
            true,
        ),
        (V::String("not-a-uuid".into()), "uniqueidentifier", false),
        (V::Bytes("AAAA".into()), "varbinary(2)", false),
        (V::String("abc".into()), "nvarchar(2)", false),
    ];
    for (v, ty, ok) in cases {
        let s = spec("p", vec![("x", v.clone(), Some(ty))]);
        let got = field(&s, Engine::Mssql);
        if ok {
            assert_eq!(got, None, "{v:?} as {ty}");
        } else {
            assert_eq!(
                got.as_deref(),
                Some("spec.params[0].value"),
                "{v:?} as {ty}"
            );
        }
    }
    // MySQL does not use sql_type: the value's own type decides.
    let s = spec("p", vec![("x", V::Int(256), Some("tinyint"))]);
    assert_eq!(field(&s, Engine::Mysql), None);
}

#[test]
fn mysql_decimals_are_bounded() {
    let s = spec(
        "p",
        vec![(
            "x",
            ParamValue::Decimal(format!("-{}", "9".repeat(100))),
            None,
        )],
    );
    assert_eq!(field(&s, Engine::Mysql), None);
    let s = spec("p", vec![("x", ParamValue::Decimal("9".repeat(101)), None)]);
    assert_eq!(
        field(&s, Engine::Mysql).as_deref(),
        Some("spec.params[0].value")
    );
}
