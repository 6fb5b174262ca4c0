//! The server's limits and timeouts, as chosen on the command line.
//!
//! One plain value shared by every layer: the codec reads `max_line`, the
//! broker `max_queue`, `write_timeout` and `slow_timeout`, the shell
//! `shutdown_timeout`.
//! The defaults are PROTOCOL.md's, and this is their one source: the
//! command line and the load tool read them from here.

use core::time::Duration;

/// Every tunable bound of a running server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Longest accepted line in bytes, terminator not counted.
    pub max_line: usize,
    /// Most bytes queued for one connection before whoever sends it more is
    /// paused (see `slow_timeout`).
    pub max_queue: usize,
    /// How long a connection may have more than `max_queue` bytes queued
    /// before it is cut as a slow consumer.
    pub slow_timeout: Duration,
    /// How long a connection with data queued may have its socket accept no
    /// bytes before it is closed as a dead peer.
    pub write_timeout: Duration,
    /// How long after the shutdown signal the server exits, drained or not.
    pub shutdown_timeout: Duration,
    /// Most connections open at once; one more is told and closed.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_address: usize,
    /// How long a connection may stay open without logging in.
    pub login_timeout: Duration,
    /// Most rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Most members one room may have.
    pub max_room_members: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line: 8192,
            max_queue: 1024 * 1024,
            slow_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
            // The command line derives both from the descriptor limit; these
            // are for callers that have none (tests, the simulator).
            max_connections: 10_000,
            max_connections_per_address: 2_500,
            login_timeout: Duration::from_secs(30),
            max_rooms_per_connection: 64,
            max_room_members: 1000,
        }
    }
}
