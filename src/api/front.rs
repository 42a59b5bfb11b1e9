//! The front door: what happens to a request between hyper's parser and a route.
//!
//! hyper has already framed the message (RFC 9112: `Transfer-Encoding` only on HTTP/1.1 and
//! with `chunked` last, one valid `Content-Length`, header bytes validated, `Content-Length`
//! dropped and the connection closed after a message that had both). On the head alone, before
//! any body byte is read (so no `100 Continue` is sent either: hyper sends it only when the
//! body is first polled), this module then refuses, each in the error shape:
//!
//! 1. a transfer coding other than exactly `chunked` (501; RFC 9112 section 6.1);
//! 2. an HTTP/1.1 request without exactly one `Host`, or an HTTP/1.0 one with several (400;
//!    RFC 9112 section 3.2);
//! 3. an `Expect` other than `100-continue` (417; RFC 9110 section 10.1.1);
//! 4. a missing or wrong bearer token on a route that needs one (401);
//! 5. a `Content-Length` over `API_MAX_BODY_BYTES` (413).
//!
//! A refused request whose body was not read closes the connection after the reply. Then the
//! body is read under the same limit (a chunked body is cut off at it: 413) and a deadline
//! (408), and the route runs: the probes inline, the others on the blocking pool behind
//! permits (health has its own), so a slow handler never blocks the reactor and busy handlers
//! never delay a probe. A handler panic is a 500; the server goes on.

use super::error::ApiError;
use super::reply::{Reply, Request};
use super::routes::{self, Lane};
use super::state::AppState;
use super::wire::ConnState;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, EXPECT, HOST, TRANSFER_ENCODING};
use http::{Method, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The door's settings and its handler permits, shared by every connection.
pub struct Front {
    pub state: Arc<AppState>,
    pub max_body: usize,
    /// Time allowed for a whole request body (408 past it).
    pub body_timeout: Duration,
    /// Most requests on one keep-alive connection; the last one's reply closes it.
    pub max_requests_per_connection: u32,
    /// How long a request may wait for a handler permit (503 past it).
    pub handler_wait: Duration,
    pub handlers: Arc<Semaphore>,
    pub health: Arc<Semaphore>,
}

/// hyper's service function: never fails, every outcome is a reply.
pub async fn serve(
    front: Arc<Front>,
    conn: Arc<ConnState>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let n = conn.requests.fetch_add(1, Relaxed) + 1;
    let head_only = req.method() == Method::HEAD;
    let mut reply = answer(&front, req).await;
    if n >= front.max_requests_per_connection {
        reply.close = true;
    }
    if reply.status >= 500 {
        front.state.http.server_errors.fetch_add(1, Relaxed);
    }
    conn.replying(if head_only { 0 } else { reply.body.len() as u64 });
    Ok(reply.into_response())
}

async fn answer(front: &Front, req: http::Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let has_body = parts.headers.contains_key(TRANSFER_ENCODING) || parts.headers.get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    if let Err(e) = check_head(front, &parts) {
        front.state.http.rejected_requests.fetch_add(1, Relaxed);
        let reply = Reply::error(&e);
        // a body left unread cannot be told from the next request: close
        return if has_body || e.status != 401 { reply.closing() } else { reply };
    }
    let body = if has_body {
        match tokio::time::timeout(front.body_timeout, Limited::new(body, front.max_body).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(e)) => {
                front.state.http.rejected_requests.fetch_add(1, Relaxed);
                let e = if e.downcast_ref::<LengthLimitError>().is_some() {
                    ApiError::payload_too_large(front.max_body)
                } else {
                    ApiError::bad_request(format!("the request body is malformed or ended early: {e}"))
                };
                return Reply::error(&e).closing();
            }
            Err(_) => {
                front.state.http.rejected_requests.fetch_add(1, Relaxed);
                let e = ApiError::new(408, "request_timeout", "the request body did not arrive in time; the connection is closed");
                return Reply::error(&e).closing();
            }
        }
    } else {
        Bytes::new()
    };
    let lane = routes::lane(&parts.method, parts.uri.path());
    let query = parts.uri.query().unwrap_or("").to_string();
    let req = Request { method: parts.method, path: parts.uri.path().to_string(), query, headers: parts.headers, body };
    front.state.http.requests.fetch_add(1, Relaxed);
    match lane {
        Lane::Inline => routes::handle(&front.state, &req),
        Lane::Health => run_blocking(front, &front.health, req).await,
        Lane::Handler => run_blocking(front, &front.handlers, req).await,
    }
}

/// The checks on the head alone (the module doc's list, in that order).
fn check_head(front: &Front, parts: &http::request::Parts) -> Result<(), ApiError> {
    let h = &parts.headers;
    let te: Vec<&[u8]> = h.get_all(TRANSFER_ENCODING).iter().map(|v| v.as_bytes()).collect();
    let plain_chunked = te.len() == 1 && te[0].eq_ignore_ascii_case(b"chunked");
    if !te.is_empty() && !plain_chunked {
        return Err(ApiError::new(501, "not_implemented", "only 'Transfer-Encoding: chunked' is supported"));
    }
    let hosts = h.get_all(HOST).iter().count();
    if (parts.version == Version::HTTP_11 && hosts != 1) || hosts > 1 {
        return Err(ApiError::bad_request("an HTTP/1.1 request needs exactly one Host header (RFC 9112 section 3.2)"));
    }
    if let Some(e) = h.get(EXPECT) {
        if !e.as_bytes().eq_ignore_ascii_case(b"100-continue") || h.get_all(EXPECT).iter().count() > 1 {
            return Err(ApiError::new(417, "expectation_failed", "only 'Expect: 100-continue' is supported"));
        }
    }
    if routes::needs_token(&parts.method, parts.uri.path()) && !routes::authorised(&front.state, h) {
        return Err(ApiError::unauthorized());
    }
    // hyper has checked it is one valid number
    let length = h.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    if length > front.max_body as u64 {
        return Err(ApiError::payload_too_large(front.max_body));
    }
    Ok(())
}

/// Runs a route on the blocking pool once a permit is free; a panic is a 500.
async fn run_blocking(front: &Front, permits: &Arc<Semaphore>, req: Request) -> Reply {
    let permit = match tokio::time::timeout(front.handler_wait, permits.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => return Reply::error(&ApiError::unavailable("the service is busy; retry shortly")),
    };
    let state = front.state.clone();
    let (method, path) = (req.method.clone(), req.path.clone());
    let done = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        routes::handle(&state, &req)
    })
    .await;
    done.unwrap_or_else(|e| {
        front.state.http.handler_panics.fetch_add(1, Relaxed);
        log::error!("api: the handler of {method} {} failed: {e}", path.chars().take(128).collect::<String>());
        Reply::error(&ApiError::internal("the request failed inside the service; it was logged"))
    })
}
