//! The REST API (docs/architecture.md, "REST API"): `http` is a small HTTP/1.1 server built to survive
//! any client (limits, deadlines, a connection cap; why not tiny_http is in its doc); `routes`
//! maps requests to the registry and health; `error` is the one error shape.

pub mod error; // ApiError: {"error", "message", "details"} with its status
pub mod http; // the hardened HTTP/1.1 layer: connections, framing, limits, timeouts
pub mod routes; // path + method -> handler, bearer token
pub mod server; // AppState, start/stop
pub mod strict_json; // JSON that refuses duplicate keys

pub use server::{ApiServer, AppState};
