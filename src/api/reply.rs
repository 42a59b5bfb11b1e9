//! What a route sees and returns: [`Request`] (head and the whole body, already read under the
//! limits by [`super::front`]) and [`Reply`] (status, content type, body), turned into a hyper
//! response in one place so that every reply carries a `Content-Type` (the [`super::wire`]
//! filter relies on it to tell the routes' replies from hyper's own).

use super::error::ApiError;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderMap, Method};
use http_body_util::Full;

/// One request with its body read in full.
#[derive(Debug)]
pub struct Request {
    pub method: Method,
    /// The path as sent, without the query (`/api/cameras/x`).
    pub path: String,
    /// The query string without the `?` (empty when none).
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Request {
    /// The first header named `name` as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of query parameter `name`, decoded (`application/x-www-form-urlencoded`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }
}

/// A reply to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Bytes,
    /// Close the connection after this reply (a body left unread, a framing error, the
    /// connection's request cap).
    pub close: bool,
}

impl Reply {
    pub fn json(status: u16, v: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec(v) {
            Ok(body) => Reply { status, content_type: "application/json", headers: Vec::new(), body: body.into(), close: false },
            Err(e) => Reply::error(&ApiError::internal(format!("cannot encode the reply: {e}"))),
        }
    }

    pub fn text(status: u16, content_type: &'static str, body: String) -> Reply {
        Reply { status, content_type, headers: Vec::new(), body: body.into(), close: false }
    }

    /// The API's error shape as a reply (`Allow` on a 405, `WWW-Authenticate` on a 401).
    pub fn error(e: &ApiError) -> Reply {
        let body =
            serde_json::to_vec(e).unwrap_or_else(|_| br#"{"error":"internal","message":"cannot encode error","details":[]}"#.to_vec());
        let mut headers = Vec::new();
        if let Some(allow) = e.allow {
            headers.push((ALLOW, allow.to_string()));
        }
        if e.status == 401 {
            headers.push((WWW_AUTHENTICATE, "Bearer".to_string()));
        }
        Reply { status: e.status, content_type: "application/json", headers, body: body.into(), close: false }
    }

    /// The same reply, asking hyper to close the connection after it.
    pub fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    /// The hyper response (hyper adds `Content-Length`, and leaves the body out for `HEAD`).
    pub fn into_response(self) -> http::Response<Full<Bytes>> {
        let mut r = http::Response::new(Full::new(self.body));
        *r.status_mut() = http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        // every reply is what its Content-Type says: browsers must not guess (the operator page)
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        if self.close {
            h.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
