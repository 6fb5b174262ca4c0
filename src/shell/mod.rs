//! The connection shell: moves bytes between sockets and the broker.
//!
//! Written once, against `futures::io` traits, `futures::channel` and a
//! queue of its own for each writer (`outbox.rs`), so the production server
//! and the simulator run the very same code. It reports
//! facts to the broker (opened, line read, bytes flushed, closed), each with
//! the runtime's current time, wakes the broker when it asks to be woken,
//! and carries out the broker's outputs; it makes no protocol decision of
//! its own. What differs per runtime is the small [`Runtime`] seam (spawn,
//! sleep, now) plus the stream of accepted connections handed to [`serve`].
//!
//! Tasks, and the channels between them:
//!
//! ```text
//!  reader ──Lines/Closed──┐                        ┌─Send/Close─> writer ──bytes──> socket
//!  reader ──Lines/Closed──┴─> [bounded queue] ──> broker task ─Send/Close─> writer ──> ...
//!  writer ──Flushed/Failed──> [reports, read first] ──┘ │
//!  timer, set for the broker's poll_timeout ──Timeout───┘
//! ```
//!
//! The broker's queue is bounded, so a flood of input slows the readers
//! (and through TCP, their peers) instead of growing memory. Writers' queues
//! are bounded in bytes by the broker's own accounting (`max_queue`): the
//! broker task never waits on a writer, and when a queue passes the bound
//! the broker pauses the readers of the connections filling it (`Pause`,
//! `Resume`, carried by the writer of each), so a slow reader slows only
//! those who send to it, and TCP pushes back on them alone.

mod broker_task;
mod connection;
mod outbox;
mod runtime;
mod serve;

pub use broker_task::{Observer, Outbound};
pub use connection::WRITE_BATCH_BYTES_MAX;
pub use runtime::Runtime;
pub use serve::{Accepted, serve, serve_observed};
