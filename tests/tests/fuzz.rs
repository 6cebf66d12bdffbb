//! Fuzzing the wire types and the identifier and value parsers (issue 13).
//!
//! proptest, not cargo-fuzz: cargo-fuzz needs a nightly toolchain, and this
//! machine has only stable. Each target runs for a time budget instead of a
//! fixed number of cases: `BATON_FUZZ_SECS` per target (default 1 s inside
//! `cargo test`; `scripts/test` gives each 15 s) and prints how many inputs
//! it ran. Inputs come from seeds of every message, mutated by a proptest
//! strategy (values replaced by hostile ones: wrong types, extremes,
//! injection strings, deep nesting); a failure is shrunk by proptest and
//! printed with the seed to replay it (`BATON_FUZZ_SEED`). The seed is fixed
//! unless `BATON_FUZZ_SEED=random`, so a test run is repeatable; explore
//! with `BATON_FUZZ_SEED=random BATON_FUZZ_SECS=300`.
//!
//! Properties:
//! - every wire message: a parse never panics, and whatever parses survives
//!   serialize → parse unchanged (no asymmetric serde attributes, untagged
//!   variants that turn into others, numbers that change);
//! - the controller's submission check never panics on any accepted body;
//! - identifiers: MySQL and SQL Server procedure/schema quoting accepts only
//!   names whose every part is enclosed, with no quote character inside;
//!   `SqlType` parses back from its own text;
//! - values: the MySQL binder never panics; its base64 codec round-trips.

use std::time::{Duration, Instant};

use baton_proto::lease::BatchCompleteRequest;
use baton_proto::{
    CompleteRequest, HeartbeatRequest, JobSubmit, PollRequest, SqlType, drill::DrillStart,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The seed when `BATON_FUZZ_SEED` is not set.
const DEFAULT_SEED: u64 = 0x0BA7_0F0C_5EED_2026;

/// Run `test` on values of `strategy` until the time budget is spent, in
/// chunks of 512 cases, each chunk seeded from the base seed; prints the
/// number of executions. Panics with the seed on a failure.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let secs: f64 = std::env::var("BATON_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    // A fixed seed by default, so that `scripts/test` (and CI) explores the
    // same inputs each run; `BATON_FUZZ_SEED=random` explores new ones.
    let base: u64 = match std::env::var("BATON_FUZZ_SEED").ok().as_deref() {
        Some("random") => rand::random(),
        Some(v) => v.parse().unwrap_or(DEFAULT_SEED),
        None => DEFAULT_SEED,
    };
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut runs = 0u64;
    let mut chunk = 0u64;
    while Instant::now() < end {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&base.to_le_bytes());
        seed[8..16].copy_from_slice(&chunk.to_le_bytes());
        let config = Config {
            cases: 512,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner =
            TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
        match runner.run(&strategy, &test) {
            Ok(()) => {}
            Err(TestError::Fail(why, value)) => panic!(
                "fuzz {name}: {why}\nminimal input: {value:?}\nreplay: BATON_FUZZ_SEED={base} (chunk {chunk})"
            ),
            Err(TestError::Abort(why)) => panic!("fuzz {name} aborted: {why}"),
        }
        runs += 512;
        chunk += 1;
    }
    println!("fuzz {name}: {runs} executions in {secs} s (BATON_FUZZ_SEED={base})");
}

/// Hostile replacement values.
fn hostile() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(json!(-1)),
            Just(json!(0)),
            Just(json!(u64::MAX)),
            Just(json!(i64::MIN)),
            Just(json!(1e308)),
            Just(json!(-0.0)),
            Just(json!(0.1)),
        ],
        any::<String>().prop_map(Value::String),
        prop_oneof![
            Just("".to_owned()),
            Just("`; DROP TABLE jobs; --".to_owned()),
            Just("a]; SELECT 1 --".to_owned()),
            Just("a.b.c.d".to_owned()),
            Just("\u{0}\u{ffff}\u{10ffff}".to_owned()),
            Just("x".repeat(70_000)),
            Just("procedure".to_owned()),
            Just("int".to_owned()),
            Just("decimal(38,10)".to_owned()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,12}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every place in a JSON tree, as a path of keys and indexes.
fn paths(v: &Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                here.push(Step::Key(k.clone()));
                paths(child, here, out);
                here.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                here.push(Step::Index(i));
                paths(child, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn at<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// What a mutation does at its place.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, Value),
    Remove(usize),
    AddKey(usize, String, Value),
    Nest(usize, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        4 => (any::<usize>(), hostile()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<usize>().prop_map(Mutation::Remove),
        1 => (any::<usize>(), "[a-z_]{1,10}", hostile()).prop_map(|(i, k, v)| Mutation::AddKey(i, k, v)),
        1 => (any::<usize>(), 1usize..200).prop_map(|(i, d)| Mutation::Nest(i, d)),
    ];
    prop::collection::vec(one, 1..4)
}

/// Apply mutations to a copy of `seed`.
fn mutate(seed: &Value, ms: &[Mutation]) -> Value {
    let mut v = seed.clone();
    for m in ms {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let pick = |i: usize| all[i % all.len()].clone();
        match m {
            Mutation::Replace(i, new) => {
                if let Some(slot) = at(&mut v, &pick(*i)) {
                    *slot = new.clone();
                }
            }
            Mutation::Remove(i) => {
                let p = pick(*i);
                if let Some((Step::Key(k), parent)) = p.split_last()
                    && let Some(Value::Object(m)) = at(&mut v, parent)
                {
                    m.remove(k);
                }
            }
            Mutation::AddKey(i, k, new) => {
                if let Some(Value::Object(m)) = at(&mut v, &pick(*i)) {
                    m.insert(k.clone(), new.clone());
                }
            }
            Mutation::Nest(i, depth) => {
                if let Some(slot) = at(&mut v, &pick(*i)) {
                    let mut deep = slot.take();
                    for _ in 0..*depth {
                        deep = Value::Array(vec![deep]);
                    }
                    *slot = deep;
                }
            }
        }
    }
    v
}

/// Whatever parses as `T` must survive serialize → parse unchanged.
fn round_trips<T>(v: &Value) -> Result<Option<T>, TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = v.to_string();
    let Ok(first) = serde_json::from_str::<T>(&text) else {
        return Ok(None);
    };
    let again = serde_json::to_string(&first).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let second: T = serde_json::from_str(&again)
        .map_err(|e| TestCaseError::fail(format!("own output does not parse: {e}: {again}")))?;
    prop_assert_eq!(&second, &first, "changed through JSON: {}", again);
    Ok(Some(first))
}

fn submit_seeds() -> Vec<Value> {
    vec![
        json!({"group": "g", "spec": {"kind": "command", "program": "/bin/echo", "args": ["a"], "env": {"A": "1"}},
               "priority": 3, "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "jitter": 0.5},
               "timeout_ms": 1000, "lease_ttl_ms": 5000, "labels": {"team": "dba"}}),
        json!({"group": "g", "spec": {"kind": "procedure", "connection": "main", "procedure": "app.close_day",
               "params": [{"name": "d", "value": {"type": "date", "value": "2026-11-26"}},
                          {"name": "n", "mode": "out", "sql_type": "int", "value": {"type": "null"}}],
               "exactly_once": true}}),
        json!({"group": "g", "spec": {"kind": "sql", "connection": "main", "sql": "SELECT 1"}}),
        json!({"group": "g", "spec": {"kind": "dump", "connection": "main", "database": "shop", "verify": true}}),
        json!({"group": "g", "spec": {"kind": "noop", "sleep_ms": 10}}),
        json!({"group": "g", "spec": {"kind": "restore", "connection": "main",
               "source": {"file": "/d/x.sql.zst"}, "database": "copy", "replace": true}}),
    ]
}

#[test]
fn fuzz_job_submissions_parse_round_trip_and_validate() {
    let seeds = submit_seeds();
    for s in &seeds {
        serde_json::from_value::<JobSubmit>(s.clone()).expect("the seeds are valid");
    }
    let strategy = (0..seeds.len(), mutations());
    fuzz("job submissions", strategy, |(i, ms)| {
        let v = mutate(&seeds[i], &ms);
        if let Some(job) = round_trips::<JobSubmit>(&v)? {
            // The controller's check answers, whatever it is given.
            let _ = baton_controller::validate::submission(&job, 15_000, 256 << 10);
        }
        Ok(())
    });
}

#[test]
fn fuzz_agent_messages_parse_and_round_trip() {
    let seeds = [
        json!({"groups": ["g"], "free_slots": 2, "version": "0.1.0", "os": "linux",
               "capabilities": {"kinds": ["command", "sql"], "connections": [{"name": "main", "kind": "mysql"}]},
               "metrics": {"cpu_percent": 1.5}, "wait_ms": 25000}),
        json!({"token": 3, "progress": {"percent": 50.0, "message": "half"}, "log_tail": "x"}),
        json!({"token": 1, "completion": "succeeded", "error": "e",
               "result": {"exit_code": 0, "stdout": "out", "stderr": "", "data": {"rows": [[1, "a", null]]}}}),
        json!({"items": [{"job_id": 1, "token": 1, "completion": "failed", "result": {"stdout": "x"}}]}),
        json!({"group": "g", "method": "crash", "duration_ms": 10000, "rto_ms": 20000, "lease_ttl_ms": 5000}),
    ];
    let strategy = (0..seeds.len(), mutations());
    fuzz("agent messages", strategy, |(i, ms)| {
        let v = mutate(&seeds[i], &ms);
        match i {
            0 => round_trips::<PollRequest>(&v).map(|_| ()),
            1 => round_trips::<HeartbeatRequest>(&v).map(|_| ()),
            2 => round_trips::<CompleteRequest>(&v).map(|_| ()),
            3 => round_trips::<BatchCompleteRequest>(&v).map(|_| ()),
            _ => round_trips::<DrillStart>(&v).map(|_| ()),
        }
    });
}

/// Identifier-ish text: mostly name characters, with quotes, dots and
/// anything else mixed in.
fn ident() -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => prop::sample::select(
            "abcXYZ019_$@#.`[]\"' -;\\/\u{e9}\u{0}".chars().collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ];
    prop::collection::vec(c, 0..140).prop_map(|v| v.into_iter().collect())
}

#[test]
fn fuzz_identifier_quoting() {
    use baton_agent::db::{mssql, mysql};
    fuzz("identifiers", ident(), |name| {
        if let Ok(q) = mysql::call::quote_procedure(&name) {
            let parts: Vec<&str> = q.split('.').collect();
            prop_assert!(parts.len() <= 2, "{q}");
            for p in &parts {
                let inner = p.strip_prefix('`').and_then(|p| p.strip_suffix('`'));
                prop_assert!(
                    inner.is_some_and(|i| !i.is_empty() && !i.contains('`')),
                    "{q}"
                );
            }
            prop_assert_eq!(q.replace('`', ""), name.clone());
        }
        if let Ok(q) = mysql::call::quote_schema(&name) {
            prop_assert_eq!(q, format!("`{name}`"));
            prop_assert!(!name.contains('`') && !name.contains('.'));
        }
        if let Ok(q) = mssql::params::quote_procedure(&name) {
            let parts: Vec<&str> = q.split('.').collect();
            prop_assert!(parts.len() <= 3, "{q}");
            for p in &parts {
                let inner = p.strip_prefix('[').and_then(|p| p.strip_suffix(']'));
                prop_assert!(
                    inner.is_some_and(|i| !i.is_empty() && !i.contains(['[', ']'])),
                    "{q}"
                );
            }
            prop_assert_eq!(q.replace(['[', ']'], ""), name.clone());
        }
        let routine = baton_controller::validate::valid_routine_name(&name);
        if routine {
            prop_assert!(
                !name.contains(['`', '[', ']', ';', '\'', '"', ' ']),
                "{name}"
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_sql_types_parse_back_from_their_text() {
    let words = prop::sample::select(vec![
        "int",
        "bigint",
        "decimal",
        "numeric",
        "varchar",
        "nvarchar",
        "datetime2",
        "bit",
        "max",
        "(",
        ")",
        ",",
        " ",
        "18",
        "2",
        "38",
        "-1",
        "99999999999",
        "uniqueidentifier",
        "float",
    ]);
    let strategy = prop_oneof![
        prop::collection::vec(words, 1..7).prop_map(|w| w.concat()),
        ident(),
    ];
    fuzz("sql types", strategy, |text| {
        if let Ok(t) = SqlType::parse(&text) {
            let shown = t.to_string();
            let back = SqlType::parse(&shown)
                .map_err(|e| TestCaseError::fail(format!("{text:?} -> {shown:?}: {e}")))?;
            prop_assert_eq!(back, t);
        }
        Ok(())
    });
}

#[test]
fn fuzz_mysql_values_bind_and_base64_round_trips() {
    use baton_agent::db::mysql::value;
    use baton_proto::ParamValue;
    let seeds = [
        json!({"type": "int", "value": 1}),
        json!({"type": "decimal", "value": "12.50"}),
        json!({"type": "float", "value": 0.5}),
        json!({"type": "string", "value": "x"}),
        json!({"type": "bytes", "value": "AAEC"}),
        json!({"type": "date", "value": "2026-11-26"}),
        json!({"type": "date_time", "value": "2026-11-26T10:00:00"}),
        json!({"type": "bool", "value": true}),
        json!({"type": "null"}),
    ];
    let strategy = (0..seeds.len(), mutations(), any::<Vec<u8>>());
    fuzz("mysql values", strategy, |(i, ms, bytes)| {
        let v = mutate(&seeds[i], &ms);
        if let Some(p) = round_trips::<ParamValue>(&v)? {
            let _ = value::bind(&p);
        }
        let text = value::base64::encode(&bytes);
        prop_assert_eq!(value::base64::decode(&text), Ok(bytes));
        Ok(())
    });
}
