//! The broker: the pure state machine at the heart of chinwag.
//!
//! Every fact about every connection (opened, a line read, bytes flushed, a
//! write stalled, closed) and the shutdown request arrive here as one
//! [`Input`] at a time, in one total order. For each, the broker decides
//! everything PROTOCOL.md decides and appends [`Output`]s (lines to queue
//! for a connection, connections to close) to a buffer its caller owns.
//!
//! It owns who is logged in (by connection id; names are only a lookup
//! table) and how many bytes are queued for each connection, so slow
//! consumers and dead peers are decided here, from facts the shell reports.
//! It does no I/O, reads no clock and draws no random numbers, so the same
//! inputs always give the same outputs: that is what lets property tests
//! and the simulator check it. Its maps are hash maps for speed (every
//! message looks up each destination's name and connection), hashed with a
//! fixed seed rather than a random one, and the one place that walks a map
//! to produce outputs (shutdown) sorts first, so no hash order ever reaches
//! an output.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::FixedState;

use crate::codec::Frame;
use crate::protocol::{self, ErrorReply};

/// Names one connection for its whole life. Chosen by the shell, never
/// reused, never derived from a login name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One fact the shell reports to the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted.
    Opened { conn: ConnId },
    /// A connection sent a line (or a line the codec refused).
    Line { conn: ConnId, frame: Frame },
    /// The socket accepted `bytes` more of what was queued for `conn`.
    Flushed { conn: ConnId, bytes: usize },
    /// Data is queued for `conn` but its socket has accepted no bytes for
    /// the write timeout.
    WriteStalled { conn: ConnId },
    /// The peer closed the connection or it failed.
    Closed { conn: ConnId },
    /// The server is shutting down.
    Shutdown,
}

/// One decision the shell carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Queue this line (terminator included) for `conn`. One delivery is one
    /// shared allocation, however many recipients it has.
    Send { conn: ConnId, line: Arc<str> },
    /// The broker is done with `conn`: it sends nothing more to it and its
    /// name, if any, is free. The shell closes the socket.
    Close { conn: ConnId, reason: CloseReason },
}

/// Why the broker let go of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side or the connection failed.
    PeerClosed,
    /// A delivery would have pushed its queue past `max_queue`.
    SlowConsumer,
    /// Its socket accepted no bytes for the write timeout.
    DeadPeer,
    /// The server is shutting down.
    ShuttingDown,
}

impl CloseReason {
    /// Whether the shell should still try to write what is queued before
    /// closing. A slow or dead peer is cut at once: waiting on it is what the
    /// limit exists to prevent.
    pub fn flushes_queue(self) -> bool {
        matches!(self, CloseReason::PeerClosed | CloseReason::ShuttingDown)
    }
}

/// What the broker knows about one open connection.
#[derive(Debug)]
struct Connection {
    /// The login name, once a login is accepted.
    name: Option<Arc<str>>,
    /// Bytes sent to the shell for this connection and not yet flushed.
    queued: usize,
}

/// foldhash with a fixed seed: fast on short names and deterministic (no OS
/// randomness, unlike std's `RandomState`).
type FixedHash = FixedState;

/// The chat broker. See the module documentation.
#[derive(Debug)]
pub struct Broker {
    max_queue: usize,
    connections: HashMap<ConnId, Connection, FixedHash>,
    /// Who holds each name. Always the inverse of `Connection::name`.
    holders: HashMap<Arc<str>, ConnId, FixedHash>,
    shutting_down: bool,
}

impl Broker {
    /// A broker that lets at most `max_queue` bytes queue up for any one
    /// connection before cutting it as a slow consumer.
    pub fn new(max_queue: usize) -> Self {
        assert!(max_queue >= 1, "max_queue must be at least 1");
        Broker {
            max_queue,
            connections: HashMap::default(),
            holders: HashMap::default(),
            shutting_down: false,
        }
    }

    /// Processes one input, appending its outputs to `out`.
    ///
    /// Facts about a connection the broker has already closed are stale (the
    /// shell reports them before it learns of the close) and are ignored.
    pub fn handle(&mut self, input: &Input, out: &mut Vec<Output>) {
        match *input {
            Input::Opened { conn } => self.open(conn, out),
            Input::Line { conn, ref frame } => self.line(conn, frame, out),
            Input::Flushed { conn, bytes } => self.flushed(conn, bytes),
            Input::WriteStalled { conn } => self.close(conn, CloseReason::DeadPeer, out),
            Input::Closed { conn } => self.close(conn, CloseReason::PeerClosed, out),
            Input::Shutdown => self.shutdown(out),
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// The name `conn` is logged in as, if any.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.connections.get(&conn)?.name.as_deref()
    }

    /// Bytes queued for `conn` and not yet flushed, if it is open.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        Some(self.connections.get(&conn)?.queued)
    }

    /// How many connections the broker holds open.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    fn open(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        debug_assert!(
            !self.connections.contains_key(&conn),
            "the shell reused connection id {conn}"
        );
        self.connections.insert(
            conn,
            Connection {
                name: None,
                queued: 0,
            },
        );
        if self.shutting_down {
            // Accepted just before the listener stopped: told and closed
            // like every other connection, under the same queue bound.
            self.say_goodbye(conn, &render(&ErrorReply::ShuttingDown), out);
        }
    }

    fn line(&mut self, conn: ConnId, frame: &Frame, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.get(&conn) else {
            return;
        };
        let sender = connection.name.clone();
        let line = match frame {
            Ok(line) => line,
            Err(error) => return self.reply_error(conn, &ErrorReply::Frame(*error), out),
        };
        if protocol::is_blank(line) {
            return;
        }
        match sender {
            None => self.login(conn, line, out),
            Some(sender) => self.message(conn, &sender, line, out),
        }
    }

    fn login(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        let Some(name) = protocol::parse_login(line) else {
            return self.reply_error(conn, &ErrorReply::InvalidName, out);
        };
        if self.holders.contains_key(name) {
            let error = ErrorReply::NameTaken(name.to_string());
            return self.reply_error(conn, &error, out);
        }
        let name: Arc<str> = Arc::from(name);
        let welcome = Arc::from(protocol::render_welcome(&name));
        self.holders.insert(name.clone(), conn);
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.name = Some(name);
        }
        self.enqueue(conn, welcome, out);
    }

    fn message(&mut self, conn: ConnId, sender: &str, line: &str, out: &mut Vec<Output>) {
        let message = match protocol::parse_message(line) {
            Ok(message) => message,
            Err(why) => return self.reply_error(conn, &ErrorReply::Malformed(why), out),
        };
        // Rendered once; every recipient shares the same allocation.
        let delivery: Arc<str> = Arc::from(protocol::render_delivery(sender, message.text));
        for destination in message.destinations {
            match self.holders.get(destination) {
                Some(&recipient) => self.enqueue(recipient, delivery.clone(), out),
                None => {
                    let error = ErrorReply::NoSuchPeer(destination.to_string());
                    self.reply_error(conn, &error, out);
                }
            }
        }
    }

    fn flushed(&mut self, conn: ConnId, bytes: usize) {
        if let Some(connection) = self.connections.get_mut(&conn) {
            // The shell can only flush what was queued.
            debug_assert!(
                bytes <= connection.queued,
                "{conn} flushed more than queued"
            );
            connection.queued = connection.queued.saturating_sub(bytes);
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Output>) {
        self.shutting_down = true;
        // In connection id order: hash order must not reach the outputs.
        let mut open: Vec<ConnId> = self.connections.keys().copied().collect();
        open.sort_unstable();
        let notice = render(&ErrorReply::ShuttingDown);
        for conn in open {
            self.say_goodbye(conn, &notice, out);
        }
    }

    /// Tells `conn` the server is shutting down and closes it after what is
    /// queued. If even the notice does not fit in its queue, the notice is
    /// skipped rather than the bound broken, and the connection still gets
    /// every delivery the broker had processed for it: the close tells it.
    fn say_goodbye(&mut self, conn: ConnId, notice: &Arc<str>, out: &mut Vec<Output>) {
        let fits = self
            .connections
            .get(&conn)
            .is_some_and(|connection| connection.queued + notice.len() <= self.max_queue);
        if fits {
            self.enqueue(conn, notice.clone(), out);
        }
        self.close(conn, CloseReason::ShuttingDown, out);
    }

    fn reply_error(&mut self, conn: ConnId, error: &ErrorReply, out: &mut Vec<Output>) {
        self.enqueue(conn, render(error), out);
    }

    /// Queues `line` for `conn`, or cuts `conn` as a slow consumer if the
    /// line would push its queue past `max_queue`.
    fn enqueue(&mut self, conn: ConnId, line: Arc<str>, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        let queued = connection.queued + line.len();
        if queued > self.max_queue {
            return self.close(conn, CloseReason::SlowConsumer, out);
        }
        connection.queued = queued;
        out.push(Output::Send { conn, line });
    }

    /// Forgets `conn`, frees its name and tells the shell, once.
    fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.remove(&conn) else {
            return;
        };
        if let Some(name) = connection.name {
            let holder = self.holders.remove(&name);
            debug_assert_eq!(holder, Some(conn), "{name} was held by another connection");
        }
        out.push(Output::Close { conn, reason });
    }

    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        for (name, conn) in &self.holders {
            let holder = self.connections.get(conn).and_then(|c| c.name.as_ref());
            assert_eq!(
                holder,
                Some(name),
                "holders and connections disagree on {name}"
            );
        }
        let named = self
            .connections
            .values()
            .filter(|c| c.name.is_some())
            .count();
        assert_eq!(
            named,
            self.holders.len(),
            "a name is held twice or not indexed"
        );
        for (conn, connection) in &self.connections {
            assert!(
                connection.queued <= self.max_queue,
                "{conn} queue over its bound"
            );
        }
        if self.shutting_down {
            assert!(
                self.connections.is_empty(),
                "a connection outlived shutdown"
            );
        }
    }
}

fn render(error: &ErrorReply) -> Arc<str> {
    Arc::from(protocol::render_error(error))
}

#[cfg(test)]
mod tests;
