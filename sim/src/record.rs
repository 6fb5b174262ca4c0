//! What a run records: the broker's witness log and what every client did.
//!
//! Everything the checker later judges is written here while the run goes
//! on, by the server's observer (every input the broker processed, with the
//! time it was handed and the outputs it produced, per server incarnation:
//! a `model::trace::Trace`, the same kind of record the property tests
//! check), by the accept loop (which peer got which connection id) and by
//! the clients (every byte they sent and received on every connection).
//! Each record also goes into the run's [`Trace`] as a line, so a failure
//! can point at the lines before it.
//!
//! A sweep records untraced ([`Recorder::untraced`]): the hot records
//! (bytes sent and received, broker steps) then build no text at all.
//!
//! One [`Recorder`] is shared by all hosts. The simulation runs on one
//! thread, but the shell demands `Send` observers, so it is an `Arc<Mutex>`.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chinwag::broker::{ConnId, Input, Output};
use chinwag::config::Config;
use chinwag::shell::Observer;
use chinwag::time::Time;

use crate::model::trace::{self as witness, TraceStep};
use crate::net::{Cause, Side};
use crate::trace::Trace;

/// Shared handle to the records of one run.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Records>>);

/// Everything recorded in one run.
#[derive(Default)]
pub struct Records {
    pub trace: Trace,
    /// One per server start, in order; all state is lost between them.
    pub incarnations: Vec<Incarnation>,
    /// Every connection any client opened, in the order they were opened.
    pub connections: Vec<ClientConnection>,
    /// Messages of tasks that panicked inside the server.
    pub panics: Vec<String>,
    /// Every reset the network model saw sent, in order.
    pub resets: Vec<ResetSent>,
    /// Every read of the server's that took bytes, by the connecting end's
    /// address, at each simulated time, in order: what the server read
    /// from a client while the broker had it paused shows here.
    pub server_reads: BTreeMap<SocketAddr, Vec<Duration>>,
}

/// A reset sent on a connection, as the network model ([`crate::net`])
/// saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResetSent {
    /// The connecting end's address: the client's, which the server
    /// accepted.
    pub connector: SocketAddr,
    /// The end whose doing it was.
    pub by: Side,
    /// What it did.
    pub cause: Cause,
    /// When (simulated time).
    pub at: Duration,
    /// When the other end had closed its socket, if it had: for a write to
    /// a closed peer, when the peer closed.
    pub peer_closed_at: Option<Duration>,
}

/// One life of the server, from start to crash or shutdown.
pub struct Incarnation {
    /// Peers in accept order: the shell numbers them, so `accepted[i]` is
    /// `ConnId(i + 1)`.
    pub accepted: Vec<SocketAddr>,
    /// The witness log: what the broker processed, in order, with its
    /// limits. Its times are the incarnation's own (from its start).
    pub log: witness::Trace,
    /// The run's trace line of each step of `log`.
    pub lines: Vec<usize>,
    /// The simulated time it started at: its log's times count from here.
    pub started_at: Duration,
}

/// One connection as its client saw it.
pub struct ClientConnection {
    pub client: usize,
    /// The client's address: the peer address the server accepted.
    pub local: SocketAddr,
    /// What the client opened it for.
    pub role: Role,
    /// Every byte the socket accepted, in order.
    pub sent: Vec<u8>,
    /// How many bytes of `sent` the broker owes processing, if the client
    /// marked it: a final session marks what it sent before it started
    /// typing into the shutdown.
    pub owed: Option<usize>,
    /// Every byte read, in order.
    pub received: Vec<u8>,
    /// For each read, the length of `received` after it and its trace line.
    pub reads: Vec<(usize, usize)>,
    /// How the client saw the stream end, if it did.
    pub end: Option<End>,
    /// Whether the client shut its write side down (a half-close) after
    /// sending all of `sent`: the server must process every line of it
    /// before the end of stream.
    pub half_closed: bool,
    /// When the client opened it (simulated time).
    pub connected_at: Duration,
    /// How it read, if steadily: a reader owed never being cut.
    pub steady: Option<Steady>,
    /// Whether it was opened to the IRC port and speaks IRC.
    pub irc: bool,
    /// When its reading loop stopped (ended, or dropped with the session),
    /// if it did.
    pub reading_until: Option<Duration>,
}

/// A steady reader's pace: every `pause` (plus at most a tick) it reads
/// all that has arrived, up to `budget` bytes. `budget` is
/// `scenario::steady_budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steady {
    pub budget: usize,
    pub pause: Duration,
}

/// What a client opened a connection for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A session of the churn phase, under faults.
    Churn,
    /// A connection of the churn phase that never logs in.
    ChurnNeverLogin,
    /// The final session, on the healed network.
    Final,
    /// A connection that never logs in, next to the final session.
    FinalNeverLogin,
}

impl Role {
    /// Opened in the final, fault-free phase.
    pub fn is_final(self) -> bool {
        matches!(self, Role::Final | Role::FinalNeverLogin)
    }

    /// Never sends a login name.
    pub fn never_logs_in(self) -> bool {
        matches!(self, Role::ChurnNeverLogin | Role::FinalNeverLogin)
    }
}

/// How a client saw its connection end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed its side: end of stream after the last byte.
    EndOfStream,
    /// The read failed: the connection was reset.
    Reset,
}

impl Recorder {
    pub fn new() -> Self {
        Recorder::default()
    }

    /// A recorder whose trace keeps no text, only the count of lines (see
    /// [`Trace::untraced`]); everything else is recorded as usual.
    pub fn untraced() -> Self {
        let records = Records {
            trace: Trace::untraced(),
            ..Records::default()
        };
        Recorder(Arc::new(Mutex::new(records)))
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        // A panic while holding the lock already fails the run.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a trace line stamped with the current host's simulated time.
    pub fn note(&self, source: &str, text: &str) -> usize {
        let time = turmoil::sim_elapsed().unwrap_or_default();
        self.note_at(time, source, text)
    }

    /// Adds a trace line stamped with `time`, for code outside the hosts.
    pub fn note_at(&self, time: Duration, source: &str, text: &str) -> usize {
        self.lock().trace.push(time, source, text)
    }

    /// Starts a new server incarnation running with `config`; returns its
    /// number.
    pub fn begin_incarnation(&self, config: &Config) -> usize {
        let started_at = turmoil::sim_elapsed().unwrap_or_default();
        let number = {
            let mut records = self.lock();
            records.incarnations.push(Incarnation {
                accepted: Vec::new(),
                log: witness::Trace {
                    config: *config,
                    steps: Vec::new(),
                },
                lines: Vec::new(),
                started_at,
            });
            records.incarnations.len() - 1
        };
        self.note(&server_source(number), "start: listening");
        number
    }

    /// The shell accepted `peer` in `incarnation`.
    pub fn accepted(&self, incarnation: usize, peer: SocketAddr) {
        let conn = {
            let mut records = self.lock();
            let accepted = &mut records.incarnations[incarnation].accepted;
            accepted.push(peer);
            ConnId(accepted.len() as u64)
        };
        self.note(
            &server_source(incarnation),
            &format!("accept {conn} from {peer}"),
        );
    }

    /// An observer for the broker of `incarnation`.
    pub fn observer(&self, incarnation: usize) -> WitnessObserver {
        WitnessObserver {
            recorder: self.clone(),
            incarnation,
        }
    }

    /// A client opened a connection from `local`; returns its index.
    pub fn connected(&self, client: usize, local: SocketAddr, role: Role) -> usize {
        let connected_at = turmoil::sim_elapsed().unwrap_or_default();
        let index = {
            let mut records = self.lock();
            records.connections.push(ClientConnection {
                client,
                local,
                role,
                sent: Vec::new(),
                owed: None,
                received: Vec::new(),
                reads: Vec::new(),
                end: None,
                half_closed: false,
                connected_at,
                steady: None,
                irc: false,
                reading_until: None,
            });
            records.connections.len() - 1
        };
        let phase = match role {
            Role::Churn => "",
            Role::ChurnNeverLogin => " (never logs in)",
            Role::Final => " (final session)",
            Role::FinalNeverLogin => " (final, never logs in)",
        };
        self.note(
            &client_source(client),
            &format!("connected k{index} from {local}{phase}"),
        );
        index
    }

    /// The client's socket accepted `bytes` on connection `index`.
    pub fn sent(&self, index: usize, bytes: &[u8]) {
        let client = {
            let mut records = self.lock();
            let connection = &mut records.connections[index];
            connection.sent.extend_from_slice(bytes);
            connection.client
        };
        let time = turmoil::sim_elapsed().unwrap_or_default();
        self.lock()
            .trace
            .push_with(time, Source::Client(client), || {
                format!("k{index} send {}", show(bytes))
            });
    }

    /// The client marks everything it sent on connection `index` so far as
    /// owed: the broker must process all of it.
    pub fn mark_owed(&self, index: usize) {
        let (client, owed) = {
            let mut records = self.lock();
            let connection = &mut records.connections[index];
            connection.owed = Some(connection.sent.len());
            (connection.client, connection.sent.len())
        };
        let text = format!("k{index} owed: the {owed} bytes sent so far");
        self.note(&client_source(client), &text);
    }

    /// The client read `bytes` on connection `index`.
    pub fn received(&self, index: usize, bytes: &[u8]) {
        let time = turmoil::sim_elapsed().unwrap_or_default();
        let mut records = self.lock();
        let client = records.connections[index].client;
        let line = records.trace.push_with(time, Source::Client(client), || {
            format!("k{index} recv {}", show(bytes))
        });
        let connection = &mut records.connections[index];
        connection.received.extend_from_slice(bytes);
        connection.reads.push((connection.received.len(), line));
    }

    /// Connection `index` reads steadily at `steady`'s pace.
    /// Connection `index` was opened to the IRC port: it speaks IRC.
    pub fn speaks_irc(&self, index: usize) {
        let client = {
            let mut records = self.lock();
            records.connections[index].irc = true;
            records.connections[index].client
        };
        self.note(&client_source(client), &format!("k{index} speaks IRC"));
    }

    pub fn reads_steadily(&self, index: usize, steady: Steady) {
        self.lock().connections[index].steady = Some(steady);
    }

    /// The reading loop of connection `index` stopped.
    /// Outside a host (the simulation being torn down) nothing is recorded:
    /// it read to the end.
    pub fn stopped_reading(&self, index: usize) {
        let Some(time) = turmoil::sim_elapsed() else {
            return;
        };
        let client = {
            let mut records = self.lock();
            let connection = &mut records.connections[index];
            connection.reading_until.get_or_insert(time);
            connection.client
        };
        self.note(&client_source(client), &format!("k{index} stops reading"));
    }

    /// The client shut the write side of connection `index` down: it
    /// sends nothing more.
    pub fn half_closed(&self, index: usize) {
        let (client, sent) = {
            let mut records = self.lock();
            let connection = &mut records.connections[index];
            connection.half_closed = true;
            (connection.client, connection.sent.len())
        };
        let text = format!("k{index} half-closed after {sent} bytes");
        self.note(&client_source(client), &text);
    }

    /// The client saw connection `index` end.
    pub fn ended(&self, index: usize, end: End) {
        let client = {
            let mut records = self.lock();
            let connection = &mut records.connections[index];
            connection.end = Some(end);
            connection.client
        };
        self.note(&client_source(client), &format!("k{index} {end:?}"));
    }

    /// A server task panicked.
    pub fn panicked(&self, message: &str) {
        self.note("server", &format!("PANIC: {message}"));
        self.lock().panics.push(message.to_string());
    }

    /// Whether a server task has panicked.
    pub fn has_panicked(&self) -> bool {
        !self.lock().panics.is_empty()
    }

    /// The network model saw a reset sent; `text` says what for the trace.
    pub fn reset_sent(&self, reset: ResetSent, text: &str) {
        self.lock().resets.push(reset);
        self.note("net", text);
    }

    /// The server read bytes from the connection `connector` opened.
    pub fn server_read(&self, connector: SocketAddr) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.lock()
            .server_reads
            .entry(connector)
            .or_default()
            .push(at);
    }

    /// Takes the records out, leaving empty ones.
    pub fn take(&self) -> Records {
        std::mem::take(&mut *self.lock())
    }
}

/// Records every event one incarnation's broker processes.
pub struct WitnessObserver {
    recorder: Recorder,
    incarnation: usize,
}

impl Observer for WitnessObserver {
    fn processed(&mut self, now: Time, input: &Input, outputs: &[Output]) {
        let time = turmoil::sim_elapsed().unwrap_or_default();
        let mut records = self.recorder.lock();
        let number = records.incarnations[self.incarnation].log.steps.len();
        let line = records
            .trace
            .push_with(time, Source::Server(self.incarnation), || {
                format!("#{number} {}", describe(now, input, outputs))
            });
        let incarnation = &mut records.incarnations[self.incarnation];
        incarnation.lines.push(line);
        incarnation.log.steps.push(TraceStep {
            time: now,
            input: input.clone(),
            outputs: outputs.to_vec(),
        });
    }
}

/// Who a trace line is from, rendered only if the trace keeps text: the
/// same text as [`server_source`] and [`client_source`].
#[derive(Clone, Copy)]
enum Source {
    Server(usize),
    Client(usize),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so the trace's column width applies.
        f.pad(&match *self {
            Source::Server(number) => server_source(number),
            Source::Client(index) => client_source(index),
        })
    }
}

/// The trace's name for server incarnation `number`.
pub fn server_source(number: usize) -> String {
    format!("server#{number}")
}

/// The trace's name for client `index`.
pub fn client_source(index: usize) -> String {
    format!("client{index}")
}

/// Bytes as a quoted string when they are UTF-8, else escaped byte by byte.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => format!("{text:?}"),
        Err(_) => format!("b\"{}\"", bytes.escape_ascii()),
    }
}

/// A compact rendering of one broker step, e.g.
/// `c3 line "bob: hi" -> c4 "from ann: hi\n"`. Only a timeout shows the
/// time the broker was handed (since the incarnation started): it is the
/// one input whose outputs the time decides.
pub fn describe(now: Time, input: &Input, outputs: &[Output]) -> String {
    let mut text = match input {
        Input::Opened {
            conn,
            address,
            dialect,
        } => format!("{conn} opened from {address} ({dialect:?})"),
        Input::Line { conn, frame } => match frame {
            Ok(line) => format!("{conn} line {line:?}"),
            Err(error) => format!("{conn} line refused: {error}"),
        },
        Input::Flushed { conn, bytes } => format!("{conn} flushed {bytes}"),
        Input::Closed { conn } => format!("{conn} closed"),
        Input::Released { conn } => format!("{conn} released"),
        Input::Shutdown => "shutdown".to_string(),
        Input::Timeout => format!("timeout at {now}"),
    };
    for (i, output) in outputs.iter().enumerate() {
        text.push_str(if i == 0 { " -> " } else { ", " });
        let _ = match output {
            Output::Send { conn, line } => write!(text, "{conn} {line:?}"),
            Output::Close { conn, reason, .. } => write!(text, "{conn} close {reason:?}"),
            Output::Pause { conn } => write!(text, "{conn} pause"),
            Output::Resume { conn } => write!(text, "{conn} resume"),
        };
    }
    text
}
