//! A small HTTP/1.1 server that no request can hurt (docs/architecture.md, "REST API").
//!
//! Why not tiny_http (the design card's first choice): tiny_http 0.12 reads header lines of any
//! length into memory, trusts `Content-Length` enough to allocate it (one `GET` with
//! `Content-Length: 9223372036854775807` aborts the process, `18446744073709551615` panics the
//! thread that drops the request), hands bodies to a fixed pool of handler threads that a few
//! trickling clients can hold for ever, has no read/write timeouts nor connection cap, and
//! deadlocks a connection on an `HTTP/2.0` request line. Making it safe meant patching its
//! connection handling, parser and threading, i.e. most of it; the part the API needs is this
//! file. It is deliberately plain:
//!
//! - one accept thread; one short-lived thread per connection, at most `max_connections` of
//!   them (past the cap a connection gets an immediate 503 and is closed), so a slow client
//!   only ever holds its own thread;
//! - everything is read under limits *before* anything is allocated for it: request line and
//!   each header line (`max_line`, 431), number of headers and their total size (431), body
//!   (`max_body`, 413 without reading it); `Content-Length` must be one plain decimal number,
//!   `Transfer-Encoding: chunked` is decoded under the same limit;
//! - a deadline for the whole head and another for the whole body (a client trickling one byte
//!   a second is cut off with 408), a per-read idle timeout and a write timeout (a client that
//!   never reads is dropped);
//! - a handler panic becomes a 500 in the error shape, logged and counted; the connection
//!   thread lives on;
//! - every reply the server makes itself (400, 408, 413, 417, 431, 503, 505) is in the API's
//!   error shape.
//!
//! Keep-alive is supported (HTTP/1.1 default, `Connection: close` honoured); pipelined requests
//! are answered in order because one thread reads and answers a connection sequentially.

use super::error::ApiError;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server accepts from a client.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest request line or header line, bytes (431 past it).
    pub max_line: usize,
    /// Most header lines (431 past it).
    pub max_headers: usize,
    /// Most bytes of the whole head (431 past it).
    pub max_head_bytes: usize,
    /// Largest body, bytes (413 past it, before reading it).
    pub max_body: usize,
    /// Time allowed for a whole request head, from its first byte (408 past it).
    pub head_timeout: Duration,
    /// Time allowed for a whole body (408 past it).
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection is kept open.
    pub idle_timeout: Duration,
    /// Time allowed for one write (a client that does not read is dropped).
    pub write_timeout: Duration,
    /// Most open connections; past it a new one gets 503 and is closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 8 * 1024,
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            max_body: 1 << 20,
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
            max_connections: 128,
        }
    }
}

/// One parsed request, body read in full.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The request target as sent (`/api/cameras?x=1`).
    pub target: String,
    /// Header names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote: Option<SocketAddr>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A reply.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The API's error shape as a reply.
    pub fn error(e: &ApiError) -> Response {
        let body =
            serde_json::to_vec(e).unwrap_or_else(|_| br#"{"error":"internal","message":"cannot encode error","details":[]}"#.to_vec());
        let mut headers = Vec::new();
        if let Some(allow) = e.allow {
            headers.push(("Allow", allow.to_string()));
        }
        if e.status == 401 {
            headers.push(("WWW-Authenticate", "Bearer".to_string()));
        }
        Response { status: e.status, content_type: "application/json", headers, body }
    }
}

/// What a connection thread calls for each request.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// Counters the server keeps (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests read in full and handed to the handler.
    pub requests: AtomicU64,
    /// Replies with a 5xx status (handler or HTTP layer).
    pub server_errors: AtomicU64,
    pub open_connections: AtomicUsize,
    pub refused_connections: AtomicU64,
    pub handler_panics: AtomicU64,
    /// Requests the server answered itself with a 4xx/5xx before any handler (bad framing,
    /// limits, timeouts).
    pub rejected_requests: AtomicU64,
}

/// The running server.
pub struct HttpServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// False once the accept loop has ended for any reason other than shutdown.
    accepting: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    pub stats: Arc<HttpStats>,
}

impl HttpServer {
    /// Binds `host:port` (port 0 picks one) and starts the accept thread.
    pub fn start(host: &str, port: u16, limits: Limits, handler: Arc<Handler>, stats: Arc<HttpStats>) -> io::Result<HttpServer> {
        let listener = TcpListener::bind((host, port))?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let accepting = Arc::new(AtomicBool::new(true));
        let (s, a, st) = (stopping.clone(), accepting.clone(), stats.clone());
        let limits = Arc::new(limits);
        let accept = std::thread::Builder::new().name("api-accept".into()).spawn(move || {
            // The loop itself never panics on a client; if it ends anyway, `accepting` says so
            // and the process supervisor (main) exits non-zero rather than living on deaf.
            let r = catch_unwind(AssertUnwindSafe(|| accept_loop(&listener, &limits, &handler, &s, &st)));
            if r.is_err() {
                log::error!("api: the accept loop panicked");
            }
            a.store(false, Ordering::SeqCst);
        })?;
        Ok(HttpServer { addr, stopping, accepting, accept: Some(accept), stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the accept loop is alive (false after a crash or after shutdown).
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Stops accepting; open connections finish their current request and close.
    pub fn shutdown(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // wake the blocking accept()
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, limits: &Arc<Limits>, handler: &Arc<Handler>, stopping: &AtomicBool, stats: &Arc<HttpStats>) {
    let mut backoff = Duration::from_millis(10);
    for conn in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => {
                backoff = Duration::from_millis(10);
                s
            }
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning; never give up.
                log::warn!("api: accept failed: {e}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        if stats.open_connections.load(Ordering::SeqCst) >= limits.max_connections {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            refuse(stream, limits.max_connections);
            continue;
        }
        stats.open_connections.fetch_add(1, Ordering::SeqCst);
        let (limits, handler, stats2) = (limits.clone(), handler.clone(), stats.clone());
        let spawned = std::thread::Builder::new().name("api-conn".into()).stack_size(512 * 1024).spawn(move || {
            let _open = OpenGuard(&stats2);
            serve_connection(stream, &limits, &*handler, &stats2);
        });
        if let Err(e) = spawned {
            stats.open_connections.fetch_sub(1, Ordering::SeqCst);
            log::warn!("api: cannot start a connection thread: {e}");
        }
    }
}

/// Decrements the open-connection count however the connection thread ends.
struct OpenGuard<'a>(&'a HttpStats);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Past the connection cap: a 503 in the error shape, written without blocking, then close.
fn refuse(stream: TcpStream, cap: usize) {
    let e = ApiError::unavailable(format!("too many open connections (the limit is {cap}); retry shortly"));
    let _ = stream.set_nonblocking(true);
    let _ = write_response(&stream, &Response::error(&e), false, "HTTP/1.1");
    let _ = stream.shutdown(Shutdown::Both);
}

/// Why reading a request stopped.
enum ReadOutcome {
    Request(Request, bool),
    /// The client closed (or went idle) between requests: close quietly.
    Closed,
    /// Answer with this error, then close.
    Reject(ApiError),
}

fn serve_connection(stream: TcpStream, limits: &Limits, handler: &Handler, stats: &HttpStats) {
    let _ = stream.set_write_timeout(Some(limits.write_timeout));
    let _ = stream.set_nodelay(true);
    let remote = stream.peer_addr().ok();
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::with_capacity(8 * 1024, read_half);
    loop {
        match read_request(&mut reader, &stream, limits, remote) {
            ReadOutcome::Closed => break,
            ReadOutcome::Reject(e) => {
                stats.rejected_requests.fetch_add(1, Ordering::Relaxed);
                log::debug!("api: rejected a request from {remote:?}: {} {}", e.status, e.message);
                let _ = write_response(&stream, &Response::error(&e), false, "HTTP/1.1");
                linger(&stream, &mut reader);
                break;
            }
            ReadOutcome::Request(req, keep_alive) => {
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let resp = match catch_unwind(AssertUnwindSafe(|| handler(&req))) {
                    Ok(r) => r,
                    Err(panic) => {
                        stats.handler_panics.fetch_add(1, Ordering::Relaxed);
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        log::error!("api: handler panicked on {} {}: {what}", req.method, path_only(&req.target));
                        Response::error(&ApiError::internal("the request failed inside the service; it was logged"))
                    }
                };
                if resp.status >= 500 {
                    stats.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                let version = "HTTP/1.1";
                let head_only = req.method == "HEAD";
                let resp = if head_only { Response { body: Vec::new(), ..resp } } else { resp };
                if write_response(&stream, &resp, keep_alive, version).is_err() || !keep_alive {
                    break;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// Closes after an early reply (e.g. a 413 sent before the body was read) the way RFC 9112
/// section 9.6 asks: stop writing, then read and discard what the client is still sending for
/// a moment, so the kernel does not answer it with a reset that destroys our reply in flight.
fn linger(stream: &TcpStream, reader: &mut BufReader<TcpStream>) {
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + Duration::from_secs(1);
    let mut left: usize = 4 << 20;
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let wait = until.saturating_duration_since(Instant::now());
        if wait.is_zero() || stream.set_read_timeout(Some(wait)).is_err() {
            break;
        }
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The path of a target without the query (queries may carry secrets; never log them).
fn path_only(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or("")
}

/// A reader deadline: sets the socket's read timeout to what is left before each read.
struct Deadline<'a> {
    stream: &'a TcpStream,
    until: Instant,
    idle: Duration,
}

impl Deadline<'_> {
    fn arm(&self) -> io::Result<()> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        self.stream.set_read_timeout(Some(left.min(self.idle)))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

fn timeout_error(what: &str) -> ApiError {
    ApiError::new(408, "request_timeout", format!("the {what} did not arrive in time; the connection is closed"))
}

/// Reads one CRLF- (or LF-) terminated line of at most `max` bytes, without the terminator.
/// `Ok(None)` on a clean EOF before any byte.
fn read_line(reader: &mut BufReader<TcpStream>, d: &Deadline, max: usize) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    loop {
        d.arm().map_err(LineError::Io)?;
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if buf.is_empty() {
            return if line.is_empty() { Ok(None) } else { Err(LineError::Io(io::ErrorKind::UnexpectedEof.into())) };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 2 {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > max {
                return Err(LineError::TooLong);
            }
            return Ok(Some(line));
        }
    }
}

enum LineError {
    TooLong,
    Io(io::Error),
}

/// RFC 9110 token characters (methods, header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// One line of the request head (`what` names it in the 431), or why reading stopped: `None`
/// for a clean end or a dead client (close quietly), else the error to answer with.
fn head_line(reader: &mut BufReader<TcpStream>, d: &Deadline, limits: &Limits, what: &str) -> Result<Vec<u8>, Option<ApiError>> {
    match read_line(reader, d, limits.max_line) {
        Ok(Some(l)) => Ok(l),
        Ok(None) => Err(None),
        Err(LineError::TooLong) => {
            Err(Some(ApiError::new(431, "header_too_large", format!("{what} is longer than {} bytes", limits.max_line))))
        }
        Err(LineError::Io(e)) if is_timeout(&e) => Err(Some(timeout_error("request head"))),
        Err(LineError::Io(_)) => Err(None),
    }
}

fn read_request(reader: &mut BufReader<TcpStream>, stream: &TcpStream, limits: &Limits, remote: Option<SocketAddr>) -> ReadOutcome {
    // Wait for the first byte of the next request under the idle timeout, then time the head.
    let idle = Deadline { stream, until: Instant::now() + limits.idle_timeout, idle: limits.idle_timeout };
    loop {
        if idle.arm().is_err() {
            return ReadOutcome::Closed;
        }
        match reader.fill_buf() {
            Ok([]) => return ReadOutcome::Closed,
            // tolerate empty lines between requests (RFC 9112 section 2.2)
            Ok([b'\r' | b'\n', ..]) => reader.consume(1),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return ReadOutcome::Closed,
        }
    }
    let d = Deadline { stream, until: Instant::now() + limits.head_timeout, idle: limits.head_timeout };
    let line = match head_line(reader, &d, limits, "the request line") {
        Ok(l) => l,
        Err(e) => return e.map_or(ReadOutcome::Closed, ReadOutcome::Reject),
    };
    let Ok(line) = String::from_utf8(line) else {
        return ReadOutcome::Reject(ApiError::bad_request("the request line is not valid UTF-8"));
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return ReadOutcome::Reject(ApiError::bad_request("malformed request line; expected 'METHOD /path HTTP/1.1'"));
    };
    // any well-formed method reaches the routes, which answer 405 with `Allow` for ones they lack
    if method.is_empty() || method.len() > 32 || !method.bytes().all(is_tchar) {
        return ReadOutcome::Reject(ApiError::bad_request("malformed request method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b.is_ascii_control()) {
        return ReadOutcome::Reject(ApiError::bad_request("the request target must be an absolute path such as /api/cameras"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => {
            return ReadOutcome::Reject(ApiError::new(505, "http_version_not_supported", "this server speaks HTTP/1.0 and HTTP/1.1 only"))
        }
        _ => return ReadOutcome::Reject(ApiError::bad_request("malformed request line; expected 'METHOD /path HTTP/1.1'")),
    };

    let mut headers: Vec<(String, String)> = Vec::new();
    let mut head_bytes = line.len();
    loop {
        let l = match head_line(reader, &d, limits, "a header line") {
            Ok(l) => l,
            Err(e) => return e.map_or(ReadOutcome::Closed, ReadOutcome::Reject),
        };
        if l.is_empty() {
            break;
        }
        head_bytes += l.len() + 2;
        if headers.len() >= limits.max_headers || head_bytes > limits.max_head_bytes {
            return ReadOutcome::Reject(ApiError::new(
                431,
                "header_too_large",
                format!("too many headers (at most {} lines, {} bytes)", limits.max_headers, limits.max_head_bytes),
            ));
        }
        if l[0] == b' ' || l[0] == b'\t' {
            return ReadOutcome::Reject(ApiError::bad_request("obsolete header line folding is not accepted"));
        }
        let Ok(l) = String::from_utf8(l) else {
            return ReadOutcome::Reject(ApiError::bad_request("a header is not valid UTF-8"));
        };
        let Some((name, value)) = l.split_once(':') else {
            return ReadOutcome::Reject(ApiError::bad_request("a header line has no ':'"));
        };
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return ReadOutcome::Reject(ApiError::bad_request("a header has an invalid name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    fn all<'h>(headers: &'h [(String, String)], n: &'h str) -> impl Iterator<Item = &'h str> {
        headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str())
    }
    let get_all = |n: &'static str| all(&headers, n);

    // Framing: one Content-Length (plain digits) or chunked, never both (request smuggling).
    let lengths: Vec<&str> = get_all("Content-Length").collect();
    let encodings: Vec<&str> = get_all("Transfer-Encoding").collect();
    if lengths.len() > 1 {
        return ReadOutcome::Reject(ApiError::bad_request("more than one Content-Length header"));
    }
    if !lengths.is_empty() && !encodings.is_empty() {
        return ReadOutcome::Reject(ApiError::bad_request("both Content-Length and Transfer-Encoding are set"));
    }
    let chunked = match encodings.as_slice() {
        [] => false,
        [te] if te.eq_ignore_ascii_case("chunked") => true,
        _ => return ReadOutcome::Reject(ApiError::new(501, "not_implemented", "only Transfer-Encoding: chunked is supported")),
    };
    let content_length = match lengths.first() {
        None => 0usize,
        Some(v) if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) => {
            return ReadOutcome::Reject(ApiError::bad_request("Content-Length must be a non-negative decimal number"))
        }
        // any number past the limit is refused without reading (and without allocating) it
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= limits.max_body as u64 => n as usize,
            _ => return ReadOutcome::Reject(ApiError::payload_too_large(limits.max_body)),
        },
    };
    let mut keep_alive = http11;
    if let Some(c) = get_all("Connection").next() {
        let c = c.to_ascii_lowercase();
        if c.contains("close") {
            keep_alive = false;
        } else if c.contains("keep-alive") {
            keep_alive = true;
        }
    }
    match get_all("Expect").next() {
        None => {}
        // the client waits for this before sending a body that could have been refused
        Some(e) if e.eq_ignore_ascii_case("100-continue") && (content_length > 0 || chunked) => {
            let _ = (&*stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        Some(e) if e.eq_ignore_ascii_case("100-continue") => {}
        Some(_) => return ReadOutcome::Reject(ApiError::new(417, "expectation_failed", "only 'Expect: 100-continue' is supported")),
    }

    let d = Deadline { stream, until: Instant::now() + limits.body_timeout, idle: limits.body_timeout };
    let body = if chunked {
        match read_chunked(reader, &d, limits) {
            Ok(b) => b,
            Err(e) => return ReadOutcome::Reject(e),
        }
    } else {
        let mut body = vec![0u8; content_length];
        let mut got = 0;
        while got < content_length {
            if d.arm().is_err() {
                return ReadOutcome::Reject(timeout_error("request body"));
            }
            match reader.read(&mut body[got..]) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return ReadOutcome::Reject(timeout_error("request body")),
                Err(_) => return ReadOutcome::Closed,
            }
        }
        body
    };
    ReadOutcome::Request(Request { method: method.to_string(), target: target.to_string(), headers, body, remote }, keep_alive)
}

/// Decodes a chunked body of at most `max_body` bytes (trailers are read and ignored).
fn read_chunked(reader: &mut BufReader<TcpStream>, d: &Deadline, limits: &Limits) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    let line_err = |e: LineError| match e {
        LineError::TooLong => ApiError::bad_request("a chunk header is too long"),
        LineError::Io(e) if is_timeout(&e) => timeout_error("request body"),
        LineError::Io(_) => ApiError::bad_request("the chunked body ended early"),
    };
    loop {
        let line = read_line(reader, d, 1024).map_err(line_err)?.ok_or_else(|| ApiError::bad_request("the chunked body ended early"))?;
        let size_hex = String::from_utf8_lossy(&line);
        let size_hex = size_hex.split(';').next().unwrap_or("").trim();
        if size_hex.is_empty() || size_hex.len() > 8 || !size_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::bad_request("malformed chunk size"));
        }
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| ApiError::bad_request("malformed chunk size"))?;
        if size == 0 {
            // trailers up to the empty line
            let mut n = 0;
            loop {
                let l = read_line(reader, d, limits.max_line)
                    .map_err(line_err)?
                    .ok_or_else(|| ApiError::bad_request("the chunked body ended early"))?;
                n += 1;
                if l.is_empty() {
                    return Ok(body);
                }
                if n > limits.max_headers {
                    return Err(ApiError::new(431, "header_too_large", "too many trailer lines"));
                }
            }
        }
        if body.len() + size > limits.max_body {
            return Err(ApiError::payload_too_large(limits.max_body));
        }
        let start = body.len();
        body.resize(start + size, 0);
        let mut got = 0;
        while got < size {
            d.arm().map_err(|_| timeout_error("request body"))?;
            match reader.read(&mut body[start + got..]) {
                Ok(0) => return Err(ApiError::bad_request("the chunked body ended early")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(timeout_error("request body")),
                Err(_) => return Err(ApiError::bad_request("the chunked body ended early")),
            }
        }
        let end = read_line(reader, d, 0).map_err(line_err)?;
        if end.is_none() {
            return Err(ApiError::bad_request("the chunked body ended early"));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn write_response(mut stream: &TcpStream, resp: &Response, keep_alive: bool, version: &str) -> io::Result<()> {
    let mut head = format!(
        "{version} {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    for (k, v) in &resp.headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn a_handler_panic_is_a_500_and_the_server_goes_on() {
        let handler: Arc<Handler> = Arc::new(|req: &Request| {
            if req.target == "/boom" {
                panic!("bug in a handler");
            }
            Response { status: 200, content_type: "text/plain", headers: Vec::new(), body: b"fine".to_vec() }
        });
        let stats = Arc::new(HttpStats::default());
        let server = HttpServer::start("127.0.0.1", 0, Limits::default(), handler, stats.clone()).unwrap();
        let addr = server.addr();
        for _ in 0..3 {
            let r = roundtrip(addr, b"GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n");
            assert!(r.starts_with("HTTP/1.1 500"), "{r}");
            assert!(r.contains(r#""error":"internal""#), "{r}");
        }
        // keep-alive: a panic does not end the connection's thread either
        let r = roundtrip(addr, b"GET /boom HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(r.contains("500") && r.ends_with("fine"), "{r}");
        assert_eq!(stats.handler_panics.load(Ordering::SeqCst), 4);
        assert!(server.is_accepting());
        server.shutdown();
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let handler: Arc<Handler> = Arc::new(|req: &Request| Response {
            status: 200,
            content_type: "text/plain",
            headers: Vec::new(),
            body: req.target.clone().into_bytes(),
        });
        let server = HttpServer::start("127.0.0.1", 0, Limits::default(), handler, Arc::default()).unwrap();
        let r = roundtrip(
            server.addr(),
            b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        let a = r.find("/a").unwrap();
        let b = r.find("/b").unwrap();
        let c = r.find("/c").unwrap();
        assert!(a < b && b < c, "{r}");
        server.shutdown();
    }
}
