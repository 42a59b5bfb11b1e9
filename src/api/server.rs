//! The API server: a tokio runtime of the API's own (two worker threads, plus the blocking
//! pool that runs the synchronous routes), an accept loop under a connection cap, and one task
//! per connection that hyper serves through [`super::wire::Wire`] and [`super::front`].
//!
//! Limits, all in [`Limits`]: the head must arrive within `header_read_timeout` (also the
//! idle time of a keep-alive connection; hyper closes it past that), within `max_head_bytes`
//! and 100 header fields (431); a body within `API_MAX_BODY_BYTES` (413) and `body_timeout`
//! (408); a client that stops reading is dropped after `write_timeout`; a keep-alive
//! connection ends after `max_requests_per_connection` requests or `connection_lifetime`
//! (gracefully: after the reply in flight). Past `API_MAX_CONNECTIONS` open connections a
//! new one gets a 503 in the error shape and is closed. An idle connection costs a task and
//! hyper's 8 KiB read buffer, no thread, so the cap can be in the thousands: the open-file
//! soft limit is raised to the hard limit at start-up, and the cap is kept under it.
//!
//! Shutdown stops accepting, lets every connection finish the request it is in (5 s at
//! most), then stops the runtime.

use super::error::ApiError;
use super::front::{self, Front};
use super::reply::Reply;
use super::state::AppState;
use super::wire::{ConnState, Wire};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// What the server allows a client (docs/security.md); `docs/security.md` lists them.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time for a whole request head, and the longest idle time between keep-alive requests.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and header fields), bytes.
    pub max_head_bytes: usize,
    pub max_headers: usize,
    /// `API_MAX_BODY_BYTES`.
    pub max_body: usize,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    /// `API_MAX_CONNECTIONS`, kept under the open-file limit.
    pub max_connections: usize,
    pub max_requests_per_connection: u32,
    pub connection_lifetime: Duration,
    /// Concurrent blocking handlers (and, apart, health's).
    pub handler_permits: usize,
    pub health_permits: usize,
    pub handler_wait: Duration,
    /// How long a closed connection is drained (RFC 9112 section 9.6), and how much of it.
    pub linger: Duration,
    pub linger_bytes: usize,
}

impl Limits {
    pub fn from_config(c: &crate::config::Config) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_body: c.api_max_body_bytes,
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: c.api_max_connections,
            max_requests_per_connection: 1000,
            connection_lifetime: Duration::from_secs(300),
            handler_permits: 8,
            health_permits: 2,
            handler_wait: Duration::from_secs(10),
            linger: Duration::from_secs(1),
            linger_bytes: 4 << 20,
        }
    }
}

/// The placeholder token of deploy/kubernetes/base/secret.yaml, refused at start-up so that a
/// Secret applied as shipped cannot leave the API open to anyone who read the repository.
pub const PLACEHOLDER_TOKEN: &str = "CHANGE-ME";

/// Open files kept for everything else (Redis, models, cameras, logs).
const RESERVED_FILES: u64 = 512;

/// How long shutdown waits for connections to finish their request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything a connection task needs.
struct Shared {
    front: Arc<Front>,
    builder: http1::Builder,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

pub struct ApiServer {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    accepting: Arc<AtomicBool>,
    state: Arc<AppState>,
}

/// Connections the kernel queues before `accept` (capped by `net.core.somaxconn`). std's
/// `TcpListener::bind` asks for 128: a burst of clients past that waits for SYN retransmits
/// (a second and more each) while the accept loop is idle.
const BACKLOG: i32 = 4096;

/// A non-blocking listener on `host:port` with [`BACKLOG`].
fn listen(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| std::io::Error::other("no address"))?;
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Raises the open-file soft limit to the hard one; returns the soft limit now in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            log::warn!("api: cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

impl ApiServer {
    /// Binds `host:port` (port 0 picks a free one) and starts serving.
    pub fn start(host: &str, port: u16, state: Arc<AppState>) -> Result<Self, String> {
        if state.config.api_token.as_deref().is_some_and(|t| t.starts_with(PLACEHOLDER_TOKEN)) {
            return Err(
                "API_TOKEN is still the placeholder of deploy/kubernetes/base/secret.yaml; set a real token (openssl rand -hex 32)".into(),
            );
        }
        let mut limits = Limits::from_config(&state.config);
        let files = raise_open_file_limit();
        let fits = files.saturating_sub(RESERVED_FILES).max(16) as usize;
        if limits.max_connections > fits {
            log::warn!(
                "api: API_MAX_CONNECTIONS={} is over what the open-file limit ({files}) allows; using {fits}",
                limits.max_connections
            );
            limits.max_connections = fits;
        }
        let listener = listen(host, port).map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(limits.handler_permits + limits.health_permits)
            .thread_name("api")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the API runtime: {e}"))?;
        let listener = {
            let _in = runtime.enter();
            TcpListener::from_std(listener).map_err(|e| e.to_string())?
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(limits.max_head_bytes)
            .max_buf_size(limits.max_head_bytes.max(8192))
            .max_headers(limits.max_headers)
            .keep_alive(true)
            .half_close(false);
        let front = Arc::new(Front {
            state: state.clone(),
            max_body: limits.max_body,
            body_timeout: limits.body_timeout,
            max_requests_per_connection: limits.max_requests_per_connection,
            handler_wait: limits.handler_wait,
            handlers: Arc::new(Semaphore::new(limits.handler_permits)),
            health: Arc::new(Semaphore::new(limits.health_permits)),
        });
        // the cluster's first tick ran before the API opened: latch what it found
        state.redis.registry_loaded(state.cluster.state().redis_ok);
        let (stop_tx, stop_rx) = watch::channel(false);
        let accepting = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Shared { front, builder, limits: limits.clone(), stop: stop_rx });
        let flag = AcceptingFlag(accepting.clone());
        runtime.spawn(async move {
            let _flag = flag; // false once this loop ends, however it ends
            accept_loop(listener, shared).await;
        });
        log::info!(
            "api: listening on http://{addr} (hyper HTTP/1.1; at most {} connections, {} B bodies)",
            limits.max_connections,
            limits.max_body
        );
        Ok(ApiServer { addr, runtime: Some(runtime), stop: stop_tx, accepting, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the accept loop still runs; `main` exits non-zero when it does not.
    pub fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::SeqCst)
    }

    /// Shutdown has begun: `/readyz` answers 503 from now on.
    pub fn begin_drain(&self) {
        self.state.draining.store(true, Ordering::SeqCst);
    }

    /// Stops taking connections; open ones finish the request they are in.
    pub fn shutdown(mut self) {
        self.begin_drain();
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            let stats = self.state.http.clone();
            rt.block_on(async {
                let until = Instant::now() + SHUTDOWN_GRACE;
                while stats.open_connections.load(Ordering::SeqCst) > 0 && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            let _ = self.stop.send(true);
            rt.shutdown_background();
        }
    }
}

/// Sets the flag to false when dropped (the accept task ended or unwound).
struct AcceptingFlag(Arc<AtomicBool>);

impl Drop for AcceptingFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Decrements the open-connection count however the connection task ends.
struct OpenGuard(Arc<AppState>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.http.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    let stats = shared.front.state.http.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => {
                backoff = Duration::from_millis(10);
                tcp
            }
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning; never give up
                log::warn!("api: accept failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if stats.open_connections.load(Ordering::SeqCst) >= shared.limits.max_connections {
            stats.refused_connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(refuse(tcp, shared.limits.clone()));
            continue;
        }
        stats.open_connections.fetch_add(1, Ordering::SeqCst);
        let guard = OpenGuard(shared.front.state.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            let _open = guard;
            connection(tcp, shared).await;
        });
    }
}

/// Past the cap: a 503 in the error shape, then a lingering close; 2 s at most.
async fn refuse(tcp: TcpStream, limits: Limits) {
    let e = ApiError::unavailable(format!("too many open connections (the limit is {}); retry shortly", limits.max_connections));
    let r = Reply::error(&e);
    let mut bytes = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        r.body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(&r.body);
    let tcp = Arc::new(tcp);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let mut at = 0;
        while at < bytes.len() {
            if tcp.writable().await.is_err() {
                return;
            }
            match tcp.try_write(&bytes[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        linger(&tcp, &limits).await;
    })
    .await;
}

/// One connection: hyper serves it until it ends, its lifetime passes or the server stops;
/// then the socket is closed gracefully.
async fn connection(tcp: TcpStream, shared: Arc<Shared>) {
    let tcp = Arc::new(tcp);
    serve_http(tcp.clone(), &shared).await;
    linger(&tcp, &shared.limits).await;
}

async fn serve_http(tcp: Arc<TcpStream>, shared: &Arc<Shared>) {
    let conn_state = Arc::new(ConnState::default());
    let stats = shared.front.state.http.clone();
    let wire = Wire::new(tcp, conn_state.clone(), stats, shared.limits.write_timeout, shared.limits.max_head_bytes);
    let front = shared.front.clone();
    let service = hyper::service::service_fn(move |req| front::serve(front.clone(), conn_state.clone(), req));
    let conn = shared.builder.serve_connection(TokioIo::new(wire), service);
    tokio::pin!(conn);
    let mut stop = shared.stop.clone();
    let ended = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = tokio::time::sleep(shared.limits.connection_lifetime) => None,
        _ = stop.changed() => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            // after the reply in flight, if any; an idle connection closes at once
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await.unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        log::debug!("api: connection ended: {e}");
    }
}

/// RFC 9112 section 9.6: stop writing, then read and discard what the client is still sending
/// for a moment, so that the kernel does not answer it with a reset that would destroy a
/// reply still in flight (a 413 sent before the body, say).
async fn linger(tcp: &TcpStream, limits: &Limits) {
    let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
    let until = tokio::time::Instant::now() + limits.linger;
    let mut left = limits.linger_bytes;
    let mut buf = vec![0u8; 8 * 1024];
    while left > 0 {
        match tokio::time::timeout_at(until, tcp.readable()).await {
            Ok(Ok(())) => match tcp.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            },
            _ => break,
        }
    }
}
