//! A completion the controller refuses for its size (413) is never dropped:
//! it is cut down step by step and sent again, so a job that ran is reported
//! (with `truncated: true` and the reason in `error`) instead of running again
//! after its lease expires. The agent bounds what it sends to the controller's
//! default limits; this covers a controller configured lower, JSON escaping,
//! and large `data`.

use baton_proto::{CompleteRequest, CompleteResponse, JobId};
use tracing::warn;

use crate::transport::{self, MAX_CALL_TIMEOUT, Transport};

/// What is kept of each output stream (and of `error`) after a first refusal.
pub const KEPT_BYTES: usize = 4096;

/// Whether the controller refused the call for the size of what was sent.
pub fn too_large(e: &transport::Error) -> bool {
    e.is_too_large()
}

/// `result.data` nesting deeper than the controller accepts
/// ([`baton_proto::limits::MAX_DATA_DEPTH`]) would be refused with 400 and
/// the finished job run again: it is replaced by a note before the
/// completion is written or sent (`truncated`, reason in `error`).
pub fn bound_data_depth(req: &mut CompleteRequest) {
    use baton_proto::limits::{MAX_DATA_DEPTH, nesting_at_most};
    let Some(data) = &req.result.data else {
        return;
    };
    if nesting_at_most(data, MAX_DATA_DEPTH) {
        return;
    }
    warn!(
        max = MAX_DATA_DEPTH,
        "Result data nests too deep for the controller; sent without it"
    );
    req.result.data = Some(serde_json::json!({
        "omitted": format!("result data nested deeper than {MAX_DATA_DEPTH} levels")
    }));
    req.result.truncated = true;
    let note = format!("result data nested deeper than {MAX_DATA_DEPTH} levels was left out");
    req.error = Some(match req.error.take() {
        Some(e) if !e.is_empty() => format!("{e}; {note}"),
        _ => note,
    });
}

/// Cut `req` down one step: outputs and error to [`KEPT_BYTES`], then `data`
/// dropped, then the outputs dropped. Marks it truncated and says why in
/// `error`. Returns false when nothing was left to cut.
pub fn shrink(req: &mut CompleteRequest, refusal: &str) -> bool {
    let r = &mut req.result;
    let long = |s: &String| s.len() > KEPT_BYTES;
    let error_long = req.error.as_ref().is_some_and(long);
    let what = if long(&r.stdout) || long(&r.stderr) || error_long {
        let (out_b64, err_b64) = (r.stdout_encoding.is_some(), r.stderr_encoding.is_some());
        cut(&mut r.stdout, KEPT_BYTES, out_b64);
        cut(&mut r.stderr, KEPT_BYTES, err_b64);
        if let Some(e) = &mut req.error {
            cut(e, KEPT_BYTES, false);
        }
        format!("output cut to {KEPT_BYTES} bytes per stream")
    } else if r.data.is_some() {
        r.data = None;
        "structured data dropped".to_owned()
    } else if !r.stdout.is_empty() || !r.stderr.is_empty() {
        r.stdout.clear();
        r.stderr.clear();
        r.stdout_encoding = None;
        r.stderr_encoding = None;
        "output dropped".to_owned()
    } else {
        return false;
    };
    r.truncated = true;
    let note = format!("the controller refused the full result as too large ({refusal}): {what}");
    req.error = Some(match req.error.take() {
        Some(e) if !e.is_empty() => format!("{e}; {note}"),
        _ => note,
    });
    true
}

/// Keep at most `max` bytes of `text`: at a character boundary, or at a
/// multiple of 4 for base64 (so it still decodes).
fn cut(text: &mut String, max: usize, base64: bool) {
    if text.len() <= max {
        return;
    }
    let mut end = if base64 { max / 4 * 4 } else { max };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// `POST /v1/jobs/{id}/complete`, cutting the completion down and sending it
/// again while the controller refuses it for size.
pub async fn complete_fitting(
    transport: &Transport,
    job_id: JobId,
    req: &CompleteRequest,
) -> Result<CompleteResponse, transport::Error> {
    let mut answer = transport.complete(job_id, req, MAX_CALL_TIMEOUT).await;
    let mut smaller: Option<CompleteRequest> = None;
    while let Err(e) = &answer
        && too_large(e)
    {
        let next = smaller.get_or_insert_with(|| req.clone());
        if !shrink(next, &e.to_string()) {
            break;
        }
        warn!(refusal = %e, "Completion refused as too large; sending it again cut down");
        answer = transport.complete(job_id, next, MAX_CALL_TIMEOUT).await;
    }
    answer
}

#[cfg(test)]
mod tests;
