//! The work taken from a spec, in each engine's words.

use baton_proto::{NoopSpec, SqlSpec};

use super::*;

const WORDS: Wording = Wording {
    engine: "Test",
    empty_batch: "spec.sql: empty",
};

fn sql(text: &str, exactly_once: bool) -> JobSpec {
    JobSpec::Sql(SqlSpec {
        connection: "main".into(),
        sql: text.into(),
        exactly_once,
        session: Default::default(),
    })
}

fn no_plan(_: &ProcedureSpec) -> Result<(), String> {
    Err("not planned".into())
}

#[test]
fn a_batch_keeps_its_connection_text_and_ledger_wish() {
    let spec = sql("SELECT 1", true);
    let p = prepare(&spec, no_plan, WORDS).expect("planned");
    assert_eq!(p.connection, "main");
    assert!(p.exactly_once);
    assert!(matches!(p.work, Work::Batch(s) if s == "SELECT 1"));
}

#[test]
fn an_empty_batch_or_another_kind_is_refused_in_the_engine_s_words() {
    let e = prepare(&sql("  \n", false), no_plan, WORDS).expect_err("empty");
    assert_eq!(e, "spec.sql: empty");
    let noop = JobSpec::Noop(NoopSpec { sleep_ms: 0 });
    let e = prepare(&noop, no_plan, WORDS).expect_err("noop");
    assert_eq!(e, "a Test executor got a noop job");
}
