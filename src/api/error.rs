//! The API's one error shape: `{"error": "<code>", "message": "<sentence>", "details": [...]}`.

use serde::Serialize;
use serde_json::Value;

/// Most entries in a 422's `details` (docs/architecture.md, "REST API").
pub const MAX_DETAILS: usize = 50;

#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    #[serde(skip)]
    pub status: u16,
    #[serde(rename = "error")]
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    /// For 405: the methods the path takes (sent as `Allow`).
    #[serde(skip)]
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), details: Vec::new(), allow: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    pub fn malformed_json(e: &serde_json::Error) -> Self {
        Self::new(400, "malformed_json", format!("the body is not valid JSON: {e}"))
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(404, "not_found", what)
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Self {
        let mut e = Self::new(405, "method_not_allowed", format!("{method} is not allowed on {path}; allowed: {allow}"));
        e.allow = Some(allow);
        e
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(413, "payload_too_large", format!("the body is larger than {limit} bytes (API_MAX_BODY_BYTES)"))
    }

    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        Self::new(
            415,
            "unsupported_media_type",
            format!("send the body as Content-Type: application/json (got {})", got.map_or("none".into(), |g| format!("'{g}'"))),
        )
    }

    /// A 422 with one `details` entry per problem, at most [`MAX_DETAILS`] of them (the
    /// message gives the full count), so a body of a million bad values gets a small reply.
    pub fn validation(total: usize, mut details: Vec<Value>) -> Self {
        details.truncate(MAX_DETAILS);
        let message = if total > details.len() {
            format!("{total} invalid field(s), the first {} listed; nothing was changed", details.len())
        } else {
            format!("{total} invalid field(s); nothing was changed")
        };
        let mut e = Self::new(422, "validation_failed", message);
        e.details = details;
        e
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "send 'Authorization: Bearer <API_TOKEN>'; the token is missing or wrong")
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "internal", message)
    }
}
