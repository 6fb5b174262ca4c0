//! The reference model: the simplest description of PROTOCOL.md that is
//! obviously correct, to hold the broker's every output against.
//!
//! It keeps, for each open connection, the name it holds and the bytes
//! queued for it, and for each input says what the server must send and
//! close. Names are found by scanning the connections, never through an
//! index that could drift out of step with them.

use std::collections::BTreeMap;
use std::sync::Arc;

use chinwag::broker::{CloseReason, ConnId, Input, Output};

use super::grammar::{self, Message};

/// What the protocol remembers about one open connection.
struct Connection {
    name: Option<String>,
    queued: usize,
}

/// The protocol as a plain state machine over the broker's inputs.
pub struct Model {
    max_queue: usize,
    open: BTreeMap<ConnId, Connection>,
    shutting_down: bool,
}

impl Model {
    pub fn new(max_queue: usize) -> Self {
        Model {
            max_queue,
            open: BTreeMap::new(),
            shutting_down: false,
        }
    }

    /// What the server must do for `input`, in the order it must do it.
    pub fn step(&mut self, input: &Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Opened { conn } => self.open(*conn, &mut out),
            Input::Line { conn, frame } => {
                if self.open.contains_key(conn) {
                    match frame {
                        Err(error) => self.send(*conn, grammar::frame_error(*error), &mut out),
                        Ok(line) => self.line(*conn, line, &mut out),
                    }
                }
            }
            Input::Flushed { conn, bytes } => {
                if let Some(connection) = self.open.get_mut(conn) {
                    connection.queued -= bytes;
                }
            }
            Input::WriteStalled { conn } => self.close(*conn, CloseReason::DeadPeer, &mut out),
            Input::Closed { conn } => self.close(*conn, CloseReason::PeerClosed, &mut out),
            Input::Shutdown => self.shutdown(&mut out),
        }
        out
    }

    fn open(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let connection = Connection {
            name: None,
            queued: 0,
        };
        self.open.insert(conn, connection);
        if self.shutting_down {
            // Accepted as the listener stopped: told and closed like the rest.
            self.tell_shutdown_and_close(conn, out);
        }
    }

    fn line(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        if grammar::is_blank(line) {
            return;
        }
        match self.open[&conn].name.clone() {
            None => self.login(conn, line, out),
            Some(sender) => self.message(conn, &sender, line, out),
        }
    }

    fn login(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        match grammar::login_name(line) {
            None => self.send(conn, grammar::invalid_name(), out),
            Some(name) if self.holder(name).is_some() => {
                self.send(conn, grammar::name_taken(name), out)
            }
            Some(name) => {
                self.open.get_mut(&conn).unwrap().name = Some(name.to_string());
                self.send(conn, grammar::welcome(name), out);
            }
        }
    }

    fn message(&mut self, sender: ConnId, sender_name: &str, line: &str, out: &mut Vec<Output>) {
        let Message { destinations, text } = match grammar::parse_message(line) {
            Ok(message) => message,
            Err(why) => return self.send(sender, grammar::refusal(why), out),
        };
        // Who is logged in is decided once, at the point the message is
        // processed; a cut it causes along the way changes nothing.
        let holders: Vec<Option<ConnId>> = destinations.iter().map(|d| self.holder(d)).collect();
        let delivery = grammar::delivery(sender_name, &text);
        for (destination, holder) in destinations.iter().zip(holders) {
            match holder {
                Some(recipient) => self.send(recipient, delivery.clone(), out),
                None => self.send(sender, grammar::no_such_peer(destination), out),
            }
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Output>) {
        self.shutting_down = true;
        let open: Vec<ConnId> = self.open.keys().copied().collect();
        for conn in open {
            self.tell_shutdown_and_close(conn, out);
        }
    }

    /// Tells `conn` the server is shutting down and closes it in a way that
    /// still writes what was queued. A connection with no room left for
    /// the notice is closed the same way, without the notice: the queue
    /// bound holds, and what was already processed still goes out.
    fn tell_shutdown_and_close(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let notice = grammar::SHUTTING_DOWN;
        let fits = self
            .open
            .get(&conn)
            .is_some_and(|c| c.queued + notice.len() <= self.max_queue);
        if fits {
            self.send(conn, notice.to_string(), out);
        }
        self.close(conn, CloseReason::ShuttingDown, out);
    }

    /// Queues `line` for `conn`, or cuts `conn` as a slow consumer if it
    /// does not fit. Nothing is sent to a connection that is not open.
    fn send(&mut self, conn: ConnId, line: String, out: &mut Vec<Output>) {
        let Some(connection) = self.open.get_mut(&conn) else {
            return;
        };
        if connection.queued + line.len() > self.max_queue {
            return self.close(conn, CloseReason::SlowConsumer, out);
        }
        connection.queued += line.len();
        let line = Arc::from(line);
        out.push(Output::Send { conn, line });
    }

    /// Forgets an open connection (freeing its name) and says so, once.
    fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) {
        if self.open.remove(&conn).is_some() {
            out.push(Output::Close { conn, reason });
        }
    }

    /// The connection logged in as `name`, if any.
    fn holder(&self, name: &str) -> Option<ConnId> {
        let holds = |(_, c): &(&ConnId, &Connection)| c.name.as_deref() == Some(name);
        self.open.iter().find(holds).map(|(conn, _)| *conn)
    }
}
