//! Name checks, quoting and the statements of a call, without a server.

use baton_proto::{ParamMode, ParamValue, ProcedureParam, ProcedureSpec};
use mysql_async::Value;

use super::*;

fn spec(name: &str, params: Vec<ProcedureParam>) -> ProcedureSpec {
    ProcedureSpec {
        connection: "main".into(),
        procedure: name.into(),
        params,
        exactly_once: false,
        session: Default::default(),
    }
}

fn param(name: &str, mode: ParamMode, value: ParamValue) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode,
        value: Some(value),
        sql_type: None,
    }
}

#[test]
fn names_are_checked_and_quoted() {
    assert_eq!(quote_procedure("nightly"), Ok("`nightly`".into()));
    assert_eq!(
        quote_procedure("app.nightly_$1"),
        Ok("`app`.`nightly_$1`".into())
    );
    let long = "a".repeat(64);
    assert!(quote_procedure(&format!("{long}.{long}")).is_ok());
    for bad in [
        "",
        "a.b.c",
        ".p",
        "p.",
        "p`; DROP TABLE t; --",
        "p(1)",
        "sch ema.p",
        "p-q",
        "é",
        &"a".repeat(65),
    ] {
        assert!(quote_procedure(bad).is_err(), "{bad:?}");
    }
    assert_eq!(quote_schema("shop_1"), Ok("`shop_1`".into()));
    assert!(quote_schema("sh`op").is_err());
    assert!(valid_param_name("total_2"));
    assert!(!valid_param_name("to$tal"));
    assert!(!valid_param_name(""));
    assert!(!valid_param_name(&"p".repeat(65)));
}

#[test]
fn call_binds_in_and_uses_variables_for_out() {
    let plan = plan(&spec(
        "app.p",
        vec![
            param("a", ParamMode::In, ParamValue::Int(1)),
            param("b", ParamMode::Out, ParamValue::Decimal("0".into())),
            param("c", ParamMode::InOut, ParamValue::String("x".into())),
            param("d", ParamMode::In, ParamValue::Null),
        ],
    ))
    .expect("plan");
    assert_eq!(
        plan.call,
        "CALL `app`.`p`(?, @baton_out_2, @baton_out_3, ?)"
    );
    assert_eq!(plan.params, vec![Value::Int(1), Value::NULL]);
    assert_eq!(
        plan.set,
        Some((
            "SET @baton_out_3 = ?".into(),
            vec![Value::Bytes(b"x".to_vec())]
        ))
    );
    assert_eq!(
        plan.select_out.as_deref(),
        Some("SELECT @baton_out_2, @baton_out_3")
    );
    assert_eq!(
        plan.outs
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
}

#[test]
fn call_without_params() {
    let plan = plan(&spec("p", Vec::new())).expect("plan");
    assert_eq!(plan.call, "CALL `p`()");
    assert!(plan.set.is_none() && plan.select_out.is_none() && plan.params.is_empty());
}

#[test]
fn bad_params_are_refused_with_their_index() {
    let e = plan(&spec(
        "p",
        vec![param("a b", ParamMode::In, ParamValue::Int(1))],
    ))
    .expect_err("name");
    assert!(e.starts_with("params[0].name"), "{e}");
    let e = plan(&spec(
        "p",
        vec![
            param("a", ParamMode::In, ParamValue::Int(1)),
            param("a", ParamMode::Out, ParamValue::Int(1)),
        ],
    ))
    .expect_err("dup");
    assert!(e.contains("twice"), "{e}");
    let e = plan(&spec(
        "p",
        vec![param("a", ParamMode::In, ParamValue::Decimal("x".into()))],
    ))
    .expect_err("value");
    assert!(e.starts_with("params[0].value (a)"), "{e}");
    let mut missing = param("c", ParamMode::InOut, ParamValue::Int(1));
    missing.value = None;
    let e = plan(&spec("p", vec![missing])).expect_err("inout without a value");
    assert!(e.starts_with("params[0].value (c): required"), "{e}");
}

#[test]
fn an_out_param_needs_no_value() {
    let mut out = param("total", ParamMode::Out, ParamValue::Null);
    out.value = None;
    let planned = plan(&spec(
        "p",
        vec![param("a", ParamMode::In, ParamValue::Int(1)), out],
    ))
    .expect("plan");
    assert_eq!(planned.call, "CALL `p`(?, @baton_out_2)");
    assert_eq!(planned.outs, vec![("total".to_owned(), None)]);
}

#[test]
fn session_settings_are_one_set_with_bound_values() {
    use baton_proto::SessionValue;
    let session = [
        ("time_zone", SessionValue::Text("+05:00".into())),
        (
            "timestamp",
            SessionValue::Text("2026-11-26T00:00:00Z".into()),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (sql, values) = session_set(&session).expect("checked").expect("some");
    assert_eq!(sql, "SET SESSION time_zone = ?, SESSION timestamp = ?");
    assert_eq!(
        values,
        vec![Value::Bytes(b"+05:00".to_vec()), Value::Int(1_795_651_200)]
    );
    assert_eq!(session_set(&Default::default()), Ok(None));
    let other = [("DATEFORMAT".to_owned(), SessionValue::Text("dmy".into()))].into();
    let e = session_set(&other).expect_err("a SQL Server key");
    assert!(e.contains("not allowed on mysql"), "{e}");
}
