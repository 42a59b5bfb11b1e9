//! The REST API (DESIGN.md section 1) on tiny_http: a few threads take requests from one
//! listener; `routes` maps them to the registry and health; `error` is the one error shape.

pub mod error; // ApiError: {"error", "message", "details"} with its status
pub mod routes; // path + method -> handler
pub mod server; // listener, worker threads, shutdown

pub use server::{ApiServer, AppState};
