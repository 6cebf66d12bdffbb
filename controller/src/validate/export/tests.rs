use baton_proto::param::Engine;
use baton_proto::{ExportSpec, JobSpec, ParamValue};

use super::*;

fn sample() -> ExportSpec {
    ExportSpec {
        connection: "erp".into(),
        query: "SELECT id FROM t WHERE d = ?".into(),
        params: vec![ParamValue::Date("2026-12-05".into())],
        format: Default::default(),
        compression: Default::default(),
        prefix: None,
    }
}

fn field(r: Result<(), Error>) -> String {
    r.expect_err("refused").field
}

#[test]
fn a_good_spec_passes_on_both_engines() {
    spec(&sample()).expect("valid");
    params(&sample(), &[]).expect("unplaced");
    params(&sample(), &[Engine::Mysql, Engine::Mssql]).expect("both engines");
}

#[test]
fn each_refusal_names_its_field() {
    let mut s = sample();
    s.query = "  ".into();
    assert_eq!(field(super::spec(&s)), "spec.query");
    s.query = "x".repeat(MAX_QUERY_BYTES + 1);
    assert_eq!(field(super::spec(&s)), "spec.query");
    let mut s = sample();
    s.params = vec![ParamValue::Int(1); MAX_PARAMS + 1];
    assert_eq!(field(super::spec(&s)), "spec.params");
    for bad in ["-x", ".hidden", "a/b", ""] {
        let mut s = sample();
        s.prefix = Some(bad.into());
        assert_eq!(field(super::spec(&s)), "spec.prefix", "{bad}");
    }
    let mut s = sample();
    s.params = vec![ParamValue::Int(1), ParamValue::Decimal("12,5".into())];
    assert_eq!(field(params(&s, &[Engine::Mysql])), "spec.params[1]");
    assert_eq!(field(params(&s, &[])), "spec.params[1]");
    s.params = vec![ParamValue::Date("2026-13-40".into())];
    assert_eq!(field(params(&s, &[Engine::Mssql])), "spec.params[0]");
}

#[test]
fn submission_and_call_reach_the_export_checks() {
    let mut s = sample();
    s.query = String::new();
    let job = JobSpec::Export(s);
    let e = crate::validate::call(&job, &[]).err();
    assert!(e.is_none(), "call checks only params: {e:?}");
    let mut s = sample();
    s.params = vec![ParamValue::Bytes("not base64!".into())];
    let e = crate::validate::call(&JobSpec::Export(s), &[Engine::Mysql]).expect_err("refused");
    assert_eq!(e.field, "spec.params[0]");
}
