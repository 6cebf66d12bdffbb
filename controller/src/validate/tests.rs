use super::*;
use baton_proto::{
    CommandSpec, NoopSpec, ParamMode, ParamValue, ProcedureParam, ProcedureSpec, RetryPolicy,
};

const SPEC: usize = 256 << 10;

fn base() -> JobSubmit {
    JobSubmit {
        allow_unplaced: false,
        group: "g".into(),
        spec: JobSpec::Noop(NoopSpec::default()),
        priority: 0,
        retry: RetryPolicy::default(),
        timeout_ms: None,
        lease_ttl_ms: None,
        labels: Default::default(),
    }
}

#[test]
fn routine_names() {
    assert!(valid_routine_name("nightly"));
    assert!(valid_routine_name("app.nightly_$1"));
    assert!(valid_routine_name("shop.dbo.usp_close#2"));
    assert!(valid_routine_name(&"a".repeat(128)));
    assert!(!valid_routine_name("a.b.c.d"));
    assert!(!valid_routine_name("a..b"));
    assert!(!valid_routine_name("x`; DROP TABLE t; --"));
    assert!(!valid_routine_name("[dbo].[x]"));
    assert!(!valid_routine_name(""));
    assert!(!valid_routine_name(&"a".repeat(129)));
}

fn procedure(params: Vec<ProcedureParam>) -> JobSubmit {
    JobSubmit {
        spec: JobSpec::Procedure(ProcedureSpec {
            connection: "main".into(),
            procedure: "dbo.usp_x".into(),
            params,
            exactly_once: false,
            session: Default::default(),
        }),
        ..base()
    }
}

fn param(name: &str, sql_type: Option<&str>) -> ProcedureParam {
    ProcedureParam {
        name: name.into(),
        mode: ParamMode::In,
        value: Some(ParamValue::Int(1)),
        sql_type: sql_type.map(str::to_owned),
    }
}

#[test]
fn procedure_params_and_sql_types_are_checked() {
    let ok = procedure(vec![
        param("id", Some("int")),
        param("amount", Some("decimal(10,2)")),
        param("note", Some("nvarchar(max)")),
        param(&"p".repeat(127), None),
    ]);
    assert_eq!(submission(&ok, 15_000, SPEC), Ok(15_000));
    let field = |s: &JobSubmit| submission(s, 15_000, SPEC).map_err(|e| e.field);
    let bad_type = procedure(vec![param("id", Some("int")), param("x", Some("text"))]);
    assert_eq!(field(&bad_type), Err("spec.params[1].sql_type".into()));
    let e = submission(&bad_type, 15_000, SPEC).expect_err("text");
    assert!(e.message.contains("not a supported SQL type"), "{e}");
    let dup = procedure(vec![param("Id", None), param("id", None)]);
    assert_eq!(field(&dup), Err("spec.params[1].name".into()));
    let long = procedure(vec![param(&"p".repeat(128), None)]);
    assert_eq!(field(&long), Err("spec.params[0].name".into()));
    let at = procedure(vec![param("@id", None)]);
    assert_eq!(field(&at), Err("spec.params[0].name".into()));
    let mut four = procedure(vec![]);
    if let JobSpec::Procedure(p) = &mut four.spec {
        p.procedure = "srv.shop.dbo.usp_x".into();
    }
    assert_eq!(field(&four), Err("spec.procedure".into()));
}

#[test]
fn fields_are_named() {
    assert_eq!(submission(&base(), 15_000, SPEC), Ok(15_000));
    let mut s = base();
    s.lease_ttl_ms = Some(1999);
    assert_eq!(
        submission(&s, 15_000, SPEC).map_err(|e| e.field),
        Err("lease_ttl_ms".into())
    );
    let mut s = base();
    s.group = "bad group".into();
    assert_eq!(
        submission(&s, 15_000, SPEC).map_err(|e| e.field),
        Err("group".into())
    );
    let mut s = base();
    s.retry.max_attempts = 0;
    assert_eq!(
        submission(&s, 15_000, SPEC).map_err(|e| e.field),
        Err("retry.max_attempts".into())
    );
    let mut s = base();
    s.spec = JobSpec::Command(CommandSpec::default());
    assert_eq!(
        submission(&s, 15_000, SPEC).map_err(|e| e.field),
        Err("spec.program".into())
    );
}

#[test]
fn integers_past_what_is_stored_are_refused_naming_the_field() {
    let field = |s: &JobSubmit| submission(s, 15_000, SPEC).map_err(|e| e.field);
    let mut s = base();
    s.timeout_ms = Some(u64::MAX);
    assert_eq!(field(&s), Err("timeout_ms".into()));
    s.timeout_ms = Some(MAX_TIMEOUT_MS);
    assert_eq!(field(&s), Ok(15_000));
    s.timeout_ms = Some(0);
    assert_eq!(field(&s), Err("timeout_ms".into()));
    let mut s = base();
    s.lease_ttl_ms = Some(u64::MAX);
    assert_eq!(field(&s), Err("lease_ttl_ms".into()));
    let mut s = base();
    s.retry.max_backoff_ms = u64::MAX;
    assert_eq!(field(&s), Err("retry.max_backoff_ms".into()));
    let mut s = base();
    s.retry.initial_backoff_ms = u64::MAX;
    assert_eq!(field(&s), Err("retry.initial_backoff_ms".into()));
    // Above the cap but within bounds: taken (every delay is the cap).
    let mut s = base();
    s.retry.initial_backoff_ms = s.retry.max_backoff_ms + 1;
    assert!(field(&s).is_ok());
    let mut s = base();
    s.retry.max_attempts = u32::MAX;
    assert_eq!(field(&s), Err("retry.max_attempts".into()));
    let mut s = base();
    s.retry.retry_codes = vec![1; MAX_RETRY_LIST + 1];
    assert_eq!(field(&s), Err("retry.retry_codes".into()));
    let mut s = base();
    s.spec = JobSpec::Noop(NoopSpec { sleep_ms: u64::MAX });
    assert_eq!(field(&s), Err("spec.sleep_ms".into()));
    let mut s = base();
    s.labels = (0..=MAX_LABELS)
        .map(|i| (format!("k{i}"), "v".into()))
        .collect();
    assert_eq!(field(&s), Err("labels".into()));
}

#[test]
fn a_spec_is_bounded_apart_from_the_body_naming_its_largest_part() {
    let command = |args: Vec<String>, env: Vec<(String, String)>| JobSubmit {
        spec: JobSpec::Command(CommandSpec {
            program: "/bin/true".into(),
            args,
            env: env.into_iter().collect(),
            working_dir: None,
        }),
        ..base()
    };
    let field = |s: &JobSubmit| submission(s, 15_000, 4096).map_err(|e| e.field);
    assert_eq!(
        field(&command(vec!["a".repeat(1000); 3], vec![])),
        Ok(15_000)
    );
    assert_eq!(
        field(&command(vec!["a".repeat(1000); 5], vec![])),
        Err("spec.args".into())
    );
    assert_eq!(
        field(&command(vec![], vec![("A".into(), "b".repeat(5000))])),
        Err("spec.env".into())
    );
    let sql = JobSubmit {
        spec: JobSpec::Sql(baton_proto::SqlSpec {
            session: Default::default(),
            connection: "main".into(),
            sql: "select 1;".repeat(1000),
            exactly_once: false,
        }),
        ..base()
    };
    assert_eq!(field(&sql), Err("spec.sql".into()));
    let e = submission(&sql, 15_000, 4096).expect_err("large");
    assert!(e.message.contains("max_spec_bytes"), "{e}");
}

#[test]
fn nesting_depth_is_measured_without_recursion() {
    use serde_json::json;
    assert!(nesting_at_most(&json!(1), 0));
    assert!(!nesting_at_most(&json!([]), 0));
    assert!(nesting_at_most(&json!({"a": [1, {"b": 2}]}), 3));
    assert!(!nesting_at_most(&json!({"a": [1, {"b": []}]}), 3));
    // Far deeper than serde_json's own parse limit: built by hand.
    let mut deep = json!(0);
    for _ in 0..100_000 {
        deep = serde_json::Value::Array(vec![deep]);
    }
    assert!(!nesting_at_most(&deep, MAX_DATA_DEPTH));
    // Taking it apart level by level: dropping it whole would recurse.
    while let serde_json::Value::Array(mut a) = deep {
        deep = a.pop().unwrap_or_default();
    }
}

fn call_with(name: &str, value: ParamValue, sql_type: Option<&str>) -> JobSpec {
    let mut p = param("p", sql_type);
    p.value = Some(value);
    let mut job = procedure(vec![p]);
    if let JobSpec::Procedure(spec) = &mut job.spec {
        spec.procedure = name.into();
    }
    job.spec
}

/// The refused field of a call on `engines` (`[]`: kind unknown).
fn refused(spec: &JobSpec, engines: &[Engine]) -> Option<String> {
    call(spec, engines).err().map(|e| e.field)
}

#[test]
fn names_by_the_connection_kind() {
    let v = || ParamValue::Int(1);
    let three = call_with("shop.dbo.usp_x", v(), None);
    assert_eq!(
        refused(&three, &[Engine::Mysql]).as_deref(),
        Some("spec.procedure")
    );
    assert_eq!(refused(&three, &[Engine::Mssql]), None);
    // Agents that disagree: checked against each kind.
    assert_eq!(
        refused(&three, &[Engine::Mysql, Engine::Mssql]).as_deref(),
        Some("spec.procedure")
    );
    // Kind unknown: only what every kind refuses.
    assert_eq!(refused(&three, &[]), None);
    for ok in ["usp_x", "app.usp_x", "app.usp_$1"] {
        assert_eq!(
            refused(&call_with(ok, v(), None), &[Engine::Mysql]),
            None,
            "{ok}"
        );
    }
    let at = call_with("usp@x", v(), None);
    assert_eq!(
        refused(&at, &[Engine::Mysql]).as_deref(),
        Some("spec.procedure")
    );
    assert_eq!(refused(&at, &[Engine::Mssql]), None);
    let digit = call_with("dbo.1usp", v(), None);
    assert_eq!(
        refused(&digit, &[Engine::Mssql]).as_deref(),
        Some("spec.procedure")
    );
    assert_eq!(refused(&digit, &[Engine::Mysql]), None);
    let long = call_with(&"a".repeat(65), v(), None);
    assert_eq!(
        refused(&long, &[Engine::Mysql]).as_deref(),
        Some("spec.procedure")
    );
    assert_eq!(refused(&long, &[Engine::Mssql]), None);
}

#[test]
fn values_by_type() {
    use ParamValue as V;
    let value = "spec.params[0].value";
    // Refused by every kind, so also when the kind is unknown.
    for bad in [
        V::Date("2026-13-45".into()),
        V::Date("2026-02-29".into()),
        V::DateTime("2026-01-01T24:00:00".into()),
        V::DateTime("2026-01-01T10:00:00+01:00".into()),
        V::Decimal("1.2.3".into()),
        V::Decimal("12,50".into()),
        V::Bytes("not base64!".into()),
        V::Bytes("QUJD=".into()),
    ] {
        let spec = call_with("usp_x", bad.clone(), None);
        for engines in [&[Engine::Mysql][..], &[Engine::Mssql], &[]] {
            assert_eq!(
                refused(&spec, engines).as_deref(),
                Some(value),
                "{bad:?} {engines:?}"
            );
        }
    }
    // By sql_type (SQL Server): ranges, precision and scale, forms.
    for (v, ty) in [
        (V::Int(300), "tinyint"),
        (V::Int(40_000), "smallint"),
        (V::Int(3_000_000_000), "int"),
        (V::Decimal("123.456".into()), "decimal(10,2)"),
        (V::Decimal("123456789.5".into()), "decimal(10,2)"),
        (V::String("25:00:00".into()), "time"),
        (V::String("2026-02-30 10:00:00".into()), "datetime2"),
        (V::String("1600-01-01 00:00:00".into()), "datetime"),
        (V::String("xyz".into()), "uniqueidentifier"),
        (V::Bytes("AAAAAA==".into()), "varbinary(2)"),
        (V::Bool(true), "date"),
    ] {
        let spec = call_with("usp_x", v.clone(), Some(ty));
        assert_eq!(
            refused(&spec, &[Engine::Mssql]).as_deref(),
            Some(value),
            "{v:?} {ty}"
        );
    }
    for (v, ty) in [
        (V::Int(255), "tinyint"),
        (V::Decimal("12345678.99".into()), "decimal(10,2)"),
        (V::String("23:59:59.1234567".into()), "time"),
        (V::String("2026-02-28T10:00:00".into()), "datetime"),
        (
            V::String("6F9619FF-8B86-D011-B42D-00C04FC964FF".into()),
            "uniqueidentifier",
        ),
        (V::Bytes("AAA=".into()), "varbinary(2)"),
    ] {
        let spec = call_with("usp_x", v.clone(), Some(ty));
        assert_eq!(refused(&spec, &[Engine::Mssql]), None, "{v:?} {ty}");
    }
    // Seven fraction digits: SQL Server only.
    let fine = call_with(
        "usp_x",
        V::DateTime("2026-01-01T10:00:00.1234567".into()),
        None,
    );
    assert_eq!(refused(&fine, &[Engine::Mssql]), None);
    assert_eq!(refused(&fine, &[Engine::Mysql]).as_deref(), Some(value));
    assert_eq!(refused(&fine, &[]), None);
}

#[test]
fn out_params_need_no_value_but_in_params_do() {
    let field = |s: &JobSubmit| submission(s, 15_000, SPEC).map_err(|e| e.field);
    let mut out = param("total", Some("int"));
    out.mode = ParamMode::Out;
    out.value = None;
    assert_eq!(
        field(&procedure(vec![param("a", None), out.clone()])),
        Ok(15_000)
    );
    let mut missing = param("c", None);
    missing.value = None;
    assert_eq!(
        field(&procedure(vec![
            param("a", None),
            out.clone(),
            missing.clone()
        ])),
        Err("spec.params[2].value".into())
    );
    missing.mode = ParamMode::InOut;
    assert_eq!(
        field(&procedure(vec![missing])),
        Err("spec.params[0].value".into())
    );
}

fn sql_with(session: &[(&str, baton_proto::SessionValue)]) -> JobSubmit {
    JobSubmit {
        spec: JobSpec::Sql(baton_proto::SqlSpec {
            connection: "main".into(),
            sql: "select 1".into(),
            exactly_once: false,
            session: session
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }),
        ..base()
    }
}

#[test]
fn session_settings_are_checked_naming_the_key() {
    use baton_proto::SessionValue::{Int, Text};
    let field = |s: &JobSubmit| submission(s, 15_000, SPEC).map_err(|e| e.field);
    let ok = sql_with(&[
        ("time_zone", Text("+00:00".into())),
        ("timestamp", Text("2026-11-26T00:00:00Z".into())),
        ("DATEFORMAT", Text("dmy".into())),
    ]);
    assert_eq!(field(&ok), Ok(15_000));
    let unknown = sql_with(&[("autocommit", Int(0))]);
    assert_eq!(field(&unknown), Err("spec.session.autocommit".into()));
    let e = submission(&unknown, 15_000, SPEC).expect_err("unknown");
    assert!(
        e.message.contains("time_zone"),
        "names the allowed keys: {e}"
    );
    let bad = sql_with(&[("lock_wait_timeout", Int(0))]);
    assert_eq!(field(&bad), Err("spec.session.lock_wait_timeout".into()));
    let mut proc_bad = procedure(vec![]);
    if let JobSpec::Procedure(p) = &mut proc_bad.spec {
        p.session.insert("DATEFIRST".into(), Int(9));
    }
    assert_eq!(field(&proc_bad), Err("spec.session.DATEFIRST".into()));
    let per_engine = session_setting(
        baton_proto::session::Engine::Mssql,
        "time_zone",
        &Text("+00:00".into()),
    );
    assert_eq!(
        per_engine.map_err(|e| e.field),
        Err("spec.session.time_zone".into())
    );
}

#[test]
fn out_params_without_value_and_session_keys_by_the_connection_kind() {
    let mut out = param("total", None);
    out.mode = ParamMode::Out;
    out.value = None;
    let spec = procedure(vec![out.clone()]).spec;
    // MySQL takes an OUT parameter without a value; SQL Server needs its sql_type.
    assert_eq!(refused(&spec, &[Engine::Mysql]), None);
    assert_eq!(
        refused(&spec, &[Engine::Mssql]).as_deref(),
        Some("spec.params[0].value")
    );
    assert_eq!(refused(&spec, &[]), None);
    out.sql_type = Some("int".into());
    assert_eq!(refused(&procedure(vec![out]).spec, &[Engine::Mssql]), None);
    // A session key of the other engine: refused once the kind is known.
    let sql = sql_with(&[(
        "time_zone",
        baton_proto::SessionValue::Text("+00:00".into()),
    )]);
    assert_eq!(refused(&sql.spec, &[Engine::Mysql]), None);
    assert_eq!(
        refused(&sql.spec, &[Engine::Mssql]).as_deref(),
        Some("spec.session.time_zone")
    );
    assert_eq!(refused(&sql.spec, &[]), None);
}

fn restore_job(file: Option<&str>, database: &str) -> JobSubmit {
    let mut s = base();
    s.spec = JobSpec::Restore(RestoreSpec {
        connection: "main".into(),
        source: baton_proto::RestoreSource {
            file: file.map(str::to_owned),
            ..Default::default()
        },
        database: database.into(),
        replace: false,
    });
    s
}

#[test]
fn restore_fields_are_named() {
    let field = |s: &JobSubmit| submission(s, 15_000, SPEC).map(|_| ()).map_err(|e| e.field);
    assert_eq!(field(&restore_job(Some("/d/x.sql.zst"), "copy")), Ok(()));
    assert_eq!(
        field(&restore_job(None, "copy")),
        Err("spec.source.file".into())
    );
    assert_eq!(
        field(&restore_job(Some("/d/../x"), "copy")),
        Err("spec.source.file".into())
    );
    assert_eq!(
        field(&restore_job(Some("/d/x"), "bad name")),
        Err("spec.database".into())
    );
    let system =
        submission(&restore_job(Some("/d/x"), "mysql"), 15_000, SPEC).expect_err("refused");
    assert_eq!(system.field, "spec.database");
    assert!(system.message.contains("system database"), "{system}");
    let mut s = restore_job(Some("/d/x"), "copy");
    if let JobSpec::Restore(r) = &mut s.spec {
        r.connection = "bad name".into();
    }
    assert_eq!(field(&s), Err("spec.connection".into()));
    let mut s = restore_job(None, "copy");
    if let JobSpec::Restore(r) = &mut s.spec {
        r.source.store = Some("offsite".into());
        r.source.key_prefix = Some("main/".into());
    }
    assert_eq!(field(&s), Ok(()));
    if let JobSpec::Restore(r) = &mut s.spec {
        r.source.key = Some("main/x.sql.zst".into());
    }
    assert_eq!(field(&s), Err("spec.source.key".into()));
    if let JobSpec::Restore(r) = &mut s.spec {
        r.source.key_prefix = None;
        r.source.store = None;
    }
    assert_eq!(field(&s), Err("spec.source.store".into()));
}

#[test]
fn refusals_say_whether_the_document_states_them() {
    let kind = |s: &JobSubmit| submission(s, 15_000, SPEC).map_err(|e| (e.field, e.kind));
    // Stated by the document (a pattern, a required value): 400.
    let mut no_value = param("id", None);
    no_value.value = None;
    assert_eq!(
        kind(&procedure(vec![no_value])),
        Err(("spec.params[0].value".into(), Kind::Malformed))
    );
    assert_eq!(
        kind(&procedure(vec![param("a-b", None)])),
        Err(("spec.params[0].name".into(), Kind::Malformed))
    );
    // Valid by the document, refused by a rule it cannot state: 422.
    assert_eq!(
        kind(&procedure(vec![param("Id", None), param("id", None)])),
        Err(("spec.params[1].name".into(), Kind::Unprocessable))
    );
    assert_eq!(
        kind(&procedure(vec![param("id", Some("decimal(10,12)"))])),
        Err(("spec.params[0].sql_type".into(), Kind::Unprocessable))
    );
    // A bad name is named before a duplicate further on.
    assert_eq!(
        kind(&procedure(vec![
            param("id", None),
            param("id", None),
            param("a b", None)
        ])),
        Err(("spec.params[2].name".into(), Kind::Malformed))
    );
    // Label values: 256 characters in the document, 256 bytes on the server.
    let label = |v: String| JobSubmit {
        labels: [("team".to_owned(), v)].into(),
        ..base()
    };
    assert_eq!(kind(&label("é".repeat(128))), Ok(15_000));
    assert_eq!(
        kind(&label("é".repeat(129))),
        Err(("labels.team".into(), Kind::Unprocessable))
    );
    assert_eq!(
        kind(&label("e".repeat(257))),
        Err(("labels.team".into(), Kind::Malformed))
    );
    // The spec past max_spec_bytes: a configured limit.
    assert_eq!(
        submission(&procedure(vec![param("id", None)]), 15_000, 10).map_err(|e| e.kind),
        Err(Kind::Unprocessable)
    );
}
