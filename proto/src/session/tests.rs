//! The allow-list and the value checks.
use super::*;

fn text(s: &str) -> SessionValue {
    SessionValue::Text(s.into())
}

#[test]
fn mysql_values_are_checked_and_normalised() {
    let ok = |k: &str, v: SessionValue| check(Engine::Mysql, k, &v).expect("ok");
    assert_eq!(
        ok("time_zone", text("+05:30")),
        Checked::Text("+05:30".into())
    );
    assert_eq!(
        ok("time_zone", text("Europe/Paris")),
        Checked::Text("Europe/Paris".into())
    );
    assert_eq!(
        ok("time_zone", text("SYSTEM")),
        Checked::Text("SYSTEM".into())
    );
    assert_eq!(
        ok("sql_mode", text("strict_trans_tables, NO_ZERO_DATE")),
        Checked::Text("STRICT_TRANS_TABLES,NO_ZERO_DATE".into())
    );
    assert_eq!(ok("sql_mode", text("")), Checked::Text(String::new()));
    assert_eq!(
        ok("timestamp", SessionValue::Int(1_795_651_200)),
        Checked::Int(1_795_651_200)
    );
    assert_eq!(
        ok("timestamp", text("1795651200")),
        Checked::Int(1_795_651_200)
    );
    assert_eq!(
        ok("timestamp", text("2026-11-26T00:00:00Z")),
        Checked::Int(1_795_651_200)
    );
    assert_eq!(
        ok("timestamp", text("2026-11-26T02:00:00+02:00")),
        Checked::Int(1_795_651_200)
    );
    assert_eq!(ok("lock_wait_timeout", text("5")), Checked::Int(5));
    let bad = |k: &str, v: SessionValue| check(Engine::Mysql, k, &v).expect_err("refused");
    for (k, v) in [
        ("time_zone", text("+05:30'; DROP TABLE x; --")),
        ("time_zone", text("+25:00")),
        ("time_zone", SessionValue::Int(5)),
        ("sql_mode", text("ANSI'")),
        ("timestamp", SessionValue::Int(0)),
        ("timestamp", text("2026-11-26T00:00:00.5Z")),
        ("timestamp", text("2026-11-26")),
        ("timestamp", text("2100-01-01T00:00:00Z")),
        ("lock_wait_timeout", SessionValue::Int(0)),
        ("lock_wait_timeout", SessionValue::Bool(true)),
    ] {
        assert!(
            matches!(bad(k, v.clone()), Error::BadValue { .. }),
            "{k} = {v}"
        );
    }
}

#[test]
fn mssql_values_become_literals() {
    let lit = |k: &str, v: SessionValue| check(Engine::Mssql, k, &v).expect("ok").to_tsql();
    assert_eq!(lit("DATEFORMAT", text("DMY")), "dmy");
    assert_eq!(lit("LANGUAGE", text("us_english")), "N'us_english'");
    assert_eq!(lit("LANGUAGE", text("Français")), "N'Français'");
    assert_eq!(lit("LOCK_TIMEOUT", SessionValue::Int(-1)), "-1");
    assert_eq!(lit("DATEFIRST", text("1")), "1");
    assert_eq!(lit("DEADLOCK_PRIORITY", text("low")), "LOW");
    assert_eq!(lit("DEADLOCK_PRIORITY", SessionValue::Int(-5)), "-5");
    assert_eq!(lit("ARITHABORT", SessionValue::Bool(true)), "ON");
    for (k, v) in [
        ("DATEFORMAT", text("dd/mm/yyyy")),
        ("LANGUAGE", text("x'; SHUTDOWN --")),
        ("LOCK_TIMEOUT", text("5 ; SHUTDOWN")),
        ("DATEFIRST", SessionValue::Int(8)),
        ("DEADLOCK_PRIORITY", SessionValue::Int(11)),
        ("ARITHABORT", SessionValue::Int(1)),
    ] {
        assert!(check(Engine::Mssql, k, &v).is_err(), "{k} = {v}");
    }
    assert_eq!(Checked::Text("O'Brien".into()).to_tsql(), "N'O''Brien'");
}

#[test]
fn keys_are_per_engine_and_unknown_keys_are_named() {
    assert!(matches!(
        check(Engine::Mssql, "time_zone", &text("+00:00")),
        Err(Error::OtherEngine {
            engine: "mssql",
            ..
        })
    ));
    assert!(matches!(
        check(Engine::Mysql, "autocommit", &text("0")),
        Err(Error::UnknownKey { .. })
    ));
    assert!(check_any("DATEFIRST", &SessionValue::Int(1)).is_ok());
    assert!(check_any("time_zone", &text("+00:00")).is_ok());
    assert!(matches!(
        check_any("time_zone", &text("nope!")),
        Err(Error::BadValue { .. })
    ));
    assert!(matches!(
        check_any("autocommit", &text("0")),
        Err(Error::UnknownKey { .. })
    ));
    assert_eq!(keys(Engine::Mysql).len(), 7);
    assert_eq!(Engine::parse("mssql"), Some(Engine::Mssql));
}

#[test]
fn values_round_trip_as_json() {
    let s: Session = serde_json::from_str(
        r#"{"time_zone": "+00:00", "lock_wait_timeout": 5, "ARITHABORT": true}"#,
    )
    .expect("ok");
    assert_eq!(s["lock_wait_timeout"], SessionValue::Int(5));
    assert_eq!(s["ARITHABORT"], SessionValue::Bool(true));
    crate::roundtrip::check(&s);
    let many: Session = (0..=MAX_SETTINGS)
        .map(|i| (format!("k{i}"), SessionValue::Int(1)))
        .collect();
    assert!(check_all(Engine::Mysql, &many).is_err());
}
