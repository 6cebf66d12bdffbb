//! The JSON error body: `{"error": {"code": "...", "message": "...", "field": "..."}}`.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or a field is invalid.
    BadRequest,
    /// 401: no or unknown credentials.
    Unauthorized,
    /// 403: credentials are valid but not allowed to do this.
    Forbidden,
    /// 404: no such object.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 408: the request body did not arrive in time.
    RequestTimeout,
    /// 409: the object is not in a state that allows this.
    Conflict,
    /// 422: the body parses but a definition is refused (a schedule's
    /// trigger, a pipeline's graph or references, a job no agent can run);
    /// `field` names the path at fault.
    Unprocessable,
    /// 409: the fencing token is stale; stop the work and never report it.
    LeaseLost,
    /// 409: the idempotency key was used with a different request.
    IdempotencyConflict,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 429: slow down.
    RateLimited,
    /// 503: not ready (starting, shutting down).
    NotReady,
    /// 503: too many requests without credentials are in flight.
    Overloaded,
    /// 503: the store cannot commit (disk full, read-only, I/O error); the
    /// message names the cause. Nothing of the request was kept: retry later.
    StoreUnavailable,
    /// 500: a bug or an unexpected store failure.
    Internal,
}

impl ErrorCode {
    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::Conflict | ErrorCode::LeaseLost | ErrorCode::IdempotencyConflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unprocessable => 422,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::NotReady | ErrorCode::Overloaded | ErrorCode::StoreUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// The inside of an error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault (dotted path), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Every non-2xx answer of the API carries this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"error": {"code": "bad_request", "message": "must be between 1 and 1000", "field": "limit"}})))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// Build an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>, field: Option<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                field,
            },
        }
    }
}

#[cfg(test)]
mod tests;
