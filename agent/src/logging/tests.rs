use baton_proto::{JobSpec, SqlSpec};
use tracing::info;

use super::capture::Captured;
use super::*;

fn grant() -> Grant {
    Grant {
        job_id: 42,
        attempt: 3,
        token: 7,
        lease_ttl_ms: 15_000,
        held_ms: 0,
        timeout_ms: None,
        group: "g".into(),
        spec: JobSpec::Sql(SqlSpec {
            connection: "orders".into(),
            sql: "select 1".into(),
            exactly_once: false,
            session: Default::default(),
        }),
        retry_codes: Vec::new(),
    }
}

/// Log one line inside the job span (and one outside) with `format`.
fn logged(format: LogFormat) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber =
        tracing_subscriber::registry().with(lines(format, move || writer.clone(), false));
    tracing::subscriber::with_default(subscriber, || {
        job_span(&grant()).in_scope(|| info!(outcome = "succeeded", "Job finished"));
        info!("Poll answered");
    });
    out.text()
}

#[test]
fn json_lines_carry_the_job_span() {
    let text = logged(LogFormat::Json);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let job = &lines[0];
    assert_eq!(job["fields"]["message"], "Job finished");
    assert_eq!(job["fields"]["outcome"], "succeeded");
    let span = &job["span"];
    assert_eq!(span["name"], "job");
    assert_eq!(span["job_id"], 42);
    assert_eq!(span["token"], 7);
    assert_eq!(span["attempt"], 3);
    assert_eq!(span["kind"], "sql");
    assert_eq!(span["connection"], "orders");
    assert_eq!(job["spans"][0]["job_id"], 42);
    assert_eq!(lines[1]["fields"]["message"], "Poll answered");
    assert!(lines[1].get("span").is_none(), "{text}");
}

#[test]
fn text_lines_name_the_job() {
    let text = logged(LogFormat::Text);
    let first = text.lines().next().expect("a line");
    assert!(
        first.contains("job{job_id=42 token=7 attempt=3 kind=sql connection=\"orders\"}")
            && first.contains("Job finished"),
        "{text}"
    );
}

#[test]
fn a_completion_span_names_the_job_without_a_grant() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber =
        tracing_subscriber::registry().with(lines(LogFormat::Json, move || writer.clone(), false));
    tracing::subscriber::with_default(subscriber, || {
        completion_span(9, 2).in_scope(|| info!("Completion delivered"));
    });
    let line: serde_json::Value = serde_json::from_str(out.text().trim()).expect("JSON");
    assert_eq!(line["span"]["job_id"], 9);
    assert_eq!(line["span"]["token"], 2);
    assert!(line["span"].get("kind").is_none(), "{line}");
}
