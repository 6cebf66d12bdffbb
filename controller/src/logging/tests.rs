use std::sync::{Arc, Mutex, PoisonError};

use tracing::info;

use super::*;

/// A writer that keeps what was written (also used by `api::trace`'s tests).
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written, as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(format: LogFormat) -> String {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber =
        tracing_subscriber::registry().with(lines(format, move || writer.clone(), false));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info_span!("request", route = "/v1/jobs").in_scope(|| {
            info!(job_id = 5, "Job submitted");
        });
    });
    out.text()
}

#[test]
fn json_lines_carry_event_and_span_fields() {
    let text = logged(LogFormat::Json);
    let line: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(line["fields"]["message"], "Job submitted");
    assert_eq!(line["fields"]["job_id"], 5);
    assert_eq!(line["span"]["route"], "/v1/jobs");
    assert_eq!(line["spans"][0]["name"], "request");
    assert!(text.contains("\"job_id\":5"), "{text}");
}

#[test]
fn text_lines_keep_the_span_and_the_job_id() {
    let text = logged(LogFormat::Text);
    assert!(
        text.contains("request{route=\"/v1/jobs\"}") && text.contains("Job submitted job_id=5"),
        "{text}"
    );
}
