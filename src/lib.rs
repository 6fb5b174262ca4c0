//! chinwag: a deterministic, simulation-tested chat server.
//!
//! The layers, from the wire inwards (see DESIGN.md):
//!
//! ```text
//! bytes --> [codec] --> Input --> [broker] --> Output --> [shell] --> bytes
//!             pure                  pure                  runtime
//! ```
//!
//! - [`codec`] splits bytes into bounded lines; [`protocol`] parses and
//!   renders the line grammar. Both are pure functions of their input.
//! - [`broker`] is the state machine that makes every decision.
//! - [`shell`] runs the broker behind sockets, written once for any runtime;
//!   [`server`] plugs in async-std for production and [`client`] is the
//!   interactive client. The simulator in `sim/` plugs in turmoil instead.

pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod protocol;
pub mod server;
pub mod shell;
