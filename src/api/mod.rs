//! The REST API (docs/architecture.md, "REST API"; docs/security.md).
//!
//! Why hyper on tokio: the API used to run on an HTTP/1.1 layer of its own, and a parser of
//! our own is a liability (it was found to let an HTTP/1.0 chunked request smuggle further
//! requests, and to be locked out by idle connections, one thread each). hyper is the most
//! used and fuzzed HTTP implementation in Rust; its HTTP/1.1 server frames messages by RFC
//! 9112, and on tokio an idle connection costs a task instead of a thread. The runtime belongs
//! to the API alone (two worker threads, see [`server`]); the pipeline stays OS threads and
//! crossbeam channels, and the routes stay synchronous, run on tokio's blocking pool.
//!
//! Layers, outermost first: [`server`] (runtime, accept, connection cap and lifetimes) ->
//! [`wire`] (the socket under hyper: hyper's own error replies in the error shape, write
//! timeout) -> hyper -> [`front`] (checks on the head before any body byte, token, body
//! limit, handler permits) -> [`routes`] -> [`health`], [`feed`], [`page`] and the registry.

pub mod error; // ApiError: {"error", "message", "details"} with its status
pub mod feed; // GET /api/events: the stream read back with XREVRANGE
pub mod front; // between hyper and the routes: head checks, token, body, permits
pub mod health; // /api/health, /livez, /readyz
pub mod images; // latest.jpg, object snapshots and thumbnails (from Redis)
pub mod page; // GET / and /assets/*: the operator page, compiled in from web/
pub mod reply; // Request and Reply, and the hyper response
pub mod routes; // path + method -> handler, bearer token
pub mod server; // runtime, accept loop, connections, start/stop
pub mod snapshot; // Redis as health sees it: cached, one connection
pub mod state; // AppState
pub mod stats; // the HTTP layer's counters
pub mod strict_json; // JSON that refuses duplicate keys
pub mod wire; // the socket under hyper

pub use server::ApiServer;
pub use state::AppState;
