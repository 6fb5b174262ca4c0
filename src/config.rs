//! The server's limits and timeouts, as chosen on the command line.
//!
//! One plain value shared by every layer: the codec reads `max_line`, the
//! broker `max_queue`, the shell the timeouts. Defaults are PROTOCOL.md's.

use std::time::Duration;

/// Every tunable bound of a running server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Longest accepted line in bytes, terminator not counted.
    pub max_line: usize,
    /// Most bytes queued for one connection before it is cut as a slow consumer.
    pub max_queue: usize,
    /// How long a socket with data queued may accept no bytes before its
    /// connection is closed as a dead peer.
    pub write_timeout: Duration,
    /// How long after the shutdown signal the server exits, drained or not.
    pub shutdown_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_line: 8192,
            max_queue: 1024 * 1024,
            write_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}
