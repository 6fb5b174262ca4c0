//! chinwag: a deterministic, simulation-tested chat server.
//!
//! The layers, from the wire inwards (ARCHITECTURE.md has the whole map):
//!
//! ```text
//! bytes --> [codec] --> Input --> [broker] --> Output --> [shell] --> bytes
//!             pure                  pure                  runtime seam
//! ```
//!
//! - [`codec`], [`protocol`], [`broker`], [`config`] and [`time`] are the
//!   pure core, with [`irc`], the IRC grammar a front end will use. They live in the `chinwag-core` crate (`src/core/`), which is
//!   `no_std` and depends on no runtime, so the build proves they do no
//!   I/O, read no clock and draw no random numbers; they are re-exported
//!   here under their usual names.
//! - [`shell`] runs the broker behind sockets, written once for any runtime;
//!   [`server`] plugs in async-std for production (with [`tcp`], its
//!   sockets as the shell needs them), [`journal_file`] records the
//!   broker's inputs for `--journal`, and [`client`] is the interactive
//!   client. The simulator in `sim/` plugs in turmoil instead.

pub use chinwag_core::{broker, codec, config, irc, journal, news, protocol, time};

pub mod client;
pub mod journal_file;
pub mod server;
pub mod shell;
pub mod tcp;
