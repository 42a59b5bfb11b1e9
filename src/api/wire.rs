//! The socket under hyper, with two jobs hyper does not do for a server:
//!
//! - **hyper's own replies in the API's error shape.** When hyper cannot parse a request head
//!   (bad framing, a head over the limits, an invalid header byte) it writes a bare
//!   `400`/`431`/`414` with an empty body and closes; it has no hook to shape that reply. This
//!   filter follows the replies on their way out (it reads only what hyper writes: each head up
//!   to its blank line, then as many body bytes as the route's reply had, as told by
//!   [`ConnState::replying`]), and swaps a head that lacks `content-type` and is not `1xx`,
//!   which only hyper's automatic replies do (every route reply has one, see
//!   [`super::reply::Reply::into_response`]), for the same status with a JSON error body.
//!   Why not a parser of our own instead: this reads only our own output, never a client's.
//! - **A write timeout.** hyper has none; a client that stops reading is dropped after
//!   `write_timeout` without progress.
//!
//! It owns an `Arc` of the socket so that the server can still close it gracefully (RFC 9112
//! section 9.6: half-close, then drain) after hyper has let go of it.

use super::error::ApiError;
use super::stats::HttpStats;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Longest reply head the filter follows; past it (never, for hyper's heads) it steps aside.
const MAX_HEAD: usize = 64 * 1024;

/// What one connection's service tells its wire: the replies it returned, in order.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Requests seen on this connection (for the per-connection cap).
    pub requests: AtomicU32,
    bodies: Mutex<VecDeque<u64>>,
}

impl ConnState {
    /// A route reply is on its way with this many body bytes on the wire (0 for `HEAD`).
    pub fn replying(&self, body_on_wire: u64) {
        self.bodies.lock().push_back(body_on_wire);
    }

    fn next_body(&self) -> Option<u64> {
        self.bodies.lock().pop_front()
    }
}

/// Where the filter is in the outgoing byte stream.
#[derive(Debug)]
enum Stage {
    /// Collecting a reply head up to its blank line.
    Head(Vec<u8>),
    /// Passing this many body bytes of a route reply.
    Body(u64),
    /// An automatic reply was swapped; hyper closes after it, anything more is dropped.
    Done,
    /// Stepped aside (a head it could not follow): bytes pass unchanged.
    Pass,
}

/// Follows the replies hyper writes and swaps its own bare ones (the module doc).
pub struct Filter {
    conn: Arc<ConnState>,
    stats: Arc<HttpStats>,
    stage: Stage,
    /// Quoted in the 431 message.
    max_head: usize,
}

impl Filter {
    pub fn new(conn: Arc<ConnState>, stats: Arc<HttpStats>, max_head: usize) -> Filter {
        Filter { conn, stats, stage: Stage::Head(Vec::new()), max_head }
    }

    /// Runs `input` through the filter, appending what goes out to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            match &mut self.stage {
                Stage::Pass => {
                    out.extend_from_slice(input);
                    return;
                }
                Stage::Done => return,
                Stage::Body(n) => {
                    let k = (*n).min(input.len() as u64) as usize;
                    out.extend_from_slice(&input[..k]);
                    *n -= k as u64;
                    input = &input[k..];
                    if *n == 0 {
                        self.stage = Stage::Head(Vec::new());
                    }
                }
                Stage::Head(buf) => {
                    let old = buf.len();
                    buf.extend_from_slice(input);
                    let from = old.saturating_sub(3);
                    let Some(i) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                        if buf.len() > MAX_HEAD {
                            out.extend_from_slice(buf);
                            self.stage = Stage::Pass;
                        }
                        return;
                    };
                    let end = from + i + 4;
                    let mut head = std::mem::take(buf);
                    head.truncate(end);
                    input = &input[end - old..];
                    self.stage = self.on_head(&head, out);
                }
            }
        }
    }

    /// Decides what a complete reply head is, and what follows it.
    fn on_head(&mut self, head: &[u8], out: &mut Vec<u8>) -> Stage {
        let status: u16 = head.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse().ok()).unwrap_or(0);
        if (100..200).contains(&status) {
            out.extend_from_slice(head);
            return Stage::Head(Vec::new());
        }
        let lower = head.to_ascii_lowercase();
        if lower.windows(15).any(|w| w == b"\r\ncontent-type:") {
            out.extend_from_slice(head);
            return match self.conn.next_body() {
                Some(0) => Stage::Head(Vec::new()),
                Some(n) => Stage::Body(n),
                None => Stage::Pass, // not a route reply after all: step aside
            };
        }
        self.stats.rejected_requests.fetch_add(1, Ordering::Relaxed);
        out.extend_from_slice(&automatic_reply(status, self.max_head));
        Stage::Done
    }
}

/// The socket hyper reads and writes.
pub struct Wire {
    tcp: Arc<TcpStream>,
    filter: Filter,
    /// Filtered bytes not yet on the socket, and how many of them are.
    out: Vec<u8>,
    sent: usize,
    write_timeout: Duration,
    stall: Option<Pin<Box<Sleep>>>,
}

impl Wire {
    pub fn new(tcp: Arc<TcpStream>, conn: Arc<ConnState>, stats: Arc<HttpStats>, write_timeout: Duration, max_head: usize) -> Wire {
        Wire { tcp, filter: Filter::new(conn, stats, max_head), out: Vec::new(), sent: 0, write_timeout, stall: None }
    }

    fn poll_write_raw(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Writes what the filter has let through; fails after `write_timeout` without progress.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match self.poll_write_raw(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.sent += n;
                    self.stall = None;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    let timeout = self.write_timeout;
                    let stall = self.stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                    if stall.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading")));
                    }
                    return Poll::Pending;
                }
            }
        }
        self.out.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

/// hyper's bare reply for `status`, in the API's error shape, closing.
fn automatic_reply(status: u16, max_head: usize) -> Vec<u8> {
    let e = match status {
        431 => ApiError::new(
            431,
            "header_too_large",
            format!("the request head is over the limits ({max_head} bytes, 100 header fields) or declares a Content-Length hyper cannot represent; the connection is closed"),
        ),
        414 => ApiError::new(414, "uri_too_long", "the request target is too long; the connection is closed"),
        s => ApiError::new(
            if (400..600).contains(&s) { s } else { 400 },
            "bad_request",
            "the request is not valid HTTP/1.1 (RFC 9112): a malformed request line, header field, Content-Length or Transfer-Encoding; the connection is closed",
        ),
    };
    let body = serde_json::to_vec(&e).unwrap_or_default();
    let reason = http::StatusCode::from_u16(e.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        e.status,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

impl AsyncRead for Wire {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Wire {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        this.filter.feed(buf, &mut this.out);
        // push it out now if the socket takes it; what stays goes with the next write or flush
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let _ = socket2::SockRef::from(&*this.tcp).shutdown(std::net::Shutdown::Write);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> (Filter, Arc<ConnState>) {
        let conn = Arc::new(ConnState::default());
        (Filter::new(conn.clone(), Arc::default(), 65536), conn)
    }

    fn run(f: &mut Filter, parts: &[&[u8]]) -> String {
        let mut out = Vec::new();
        for p in parts {
            f.feed(p, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    const OURS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
    const BARE_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";

    #[test]
    fn route_replies_pass_unchanged_even_split_anywhere() {
        let (mut f, conn) = filter();
        conn.replying(2);
        conn.replying(2);
        let both = [OURS, OURS].concat();
        for cut in 0..both.len() {
            let (mut f2, conn2) = filter();
            conn2.replying(2);
            conn2.replying(2);
            assert_eq!(run(&mut f2, &[&both[..cut], &both[cut..]]).as_bytes(), &both[..], "cut at {cut}");
        }
        assert_eq!(run(&mut f, &[&both]).as_bytes(), &both[..]);
    }

    #[test]
    fn hypers_bare_error_becomes_the_error_shape_after_a_route_reply() {
        let (mut f, conn) = filter();
        conn.replying(2);
        let out = run(&mut f, &[&[OURS, BARE_400].concat()]);
        let (first, second) = out.split_at(OURS.len());
        assert_eq!(first.as_bytes(), OURS);
        assert!(second.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"), "{second}");
        let body: serde_json::Value = serde_json::from_str(second.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"], "bad_request");
        // and nothing after it
        assert_eq!(run(&mut f, &[b"HTTP/1.1 200 OK\r\n\r\n"]), "");
    }

    #[test]
    fn head_replies_and_interim_replies_have_no_body() {
        let (mut f, conn) = filter();
        conn.replying(0); // HEAD: content-length 2, no body on the wire
        conn.replying(2);
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n";
        let input = [&b"HTTP/1.1 100 Continue\r\n\r\n"[..], head, OURS].concat();
        assert_eq!(run(&mut f, &[&input]).as_bytes(), &input[..]);
    }

    #[test]
    fn a_431_says_so() {
        let (mut f, _) = filter();
        let out = run(&mut f, &[b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n"]);
        assert!(out.starts_with("HTTP/1.1 431 ") && out.contains(r#""error":"header_too_large""#), "{out}");
    }
}
