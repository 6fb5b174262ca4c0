//! chinwag-core: everything chinwag decides, and nothing it does.
//!
//! ```text
//! bytes --> [codec] --> Input --> [broker] --> Output --> shell
//!              \                     |
//!               `--- [protocol] <----'   (grammar and rendering)
//! ```
//!
//! - [`codec`] splits a byte stream into bounded lines.
//! - [`protocol`] parses and renders PROTOCOL.md's line grammar.
//! - [`broker`] is the state machine that makes every decision, with time
//!   as an argument ([`time`]) and limits from [`config`].
//! - [`irc`] parses IRC client lines and renders IRC server lines, for the
//!   broker's IRC front end.
//! - [`news`] is what the broker tells connections, rendered once per
//!   dialect (line protocol or IRC).
//! - [`journal`] writes and reads its inputs as bytes, for a recorded run
//!   to replay.
//!
//! The crate is `no_std` (with `alloc`) and its only dependencies are data
//! structures, so the build itself proves that nothing here can open a
//! socket, spawn a task, read a clock or draw a random number: the same
//! inputs always give the same outputs. That is what lets the property
//! tests, the fuzzers and the simulator check it, and a recorded run replay
//! exactly. The server's shell (`chinwag::shell`) runs it behind sockets.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod broker;
pub mod codec;
pub mod config;
pub mod irc;
pub mod journal;
pub mod news;
pub mod protocol;
pub mod time;
