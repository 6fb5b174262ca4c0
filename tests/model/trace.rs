//! A recorded run of the broker, and what an observer learns from it.
//!
//! A [`Trace`] is every input the broker was given with the outputs it
//! produced. [`Observed`] replays a trace one step at a time and tracks only
//! what the inputs and outputs themselves show: which connections the shell
//! opened, which the broker closed, who was welcomed under which name, and
//! how many bytes each connection has queued and not yet flushed. The
//! guarantee checks read a trace through it, and the generators use it to
//! keep their inputs within what the shell can really report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chinwag::broker::{ConnId, Input, Output};
use chinwag::config::Config;
use chinwag::time::Time;

/// One processed input, the time it came with, and the outputs it
/// produced, in order.
#[derive(Clone, Debug)]
pub struct TraceStep {
    pub time: Time,
    pub input: Input,
    pub outputs: Vec<Output>,
}

/// A whole run of one broker.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The limits and timeouts the broker ran with.
    pub config: Config,
    pub steps: Vec<TraceStep>,
}

/// The state of a run as seen from outside the broker, between two steps.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    opened: BTreeSet<ConnId>,
    /// Connections the broker said it closed.
    closed: BTreeSet<ConnId>,
    /// Connections whose peer the shell reported gone.
    peer_gone: BTreeSet<ConnId>,
    /// Connections whose socket the shell let go of.
    released: BTreeSet<ConnId>,
    /// The name each open connection was welcomed as.
    names: BTreeMap<ConnId, String>,
    /// Bytes sent to each connection minus bytes flushed.
    unflushed: BTreeMap<ConnId, usize>,
    /// When each connection's socket last made progress: its last flush,
    /// or when its queue last went from empty to not.
    progress_at: BTreeMap<ConnId, Time>,
    /// When each connection was opened.
    opened_at: BTreeMap<ConnId, Time>,
    /// The time of the latest step.
    now: Time,
    shutdown: bool,
}

impl Observed {
    /// Whether the shell could report `input` now: connection ids are fresh
    /// when opened and never reused, nothing comes before a connection's
    /// `Opened` or after its `Closed`, `Flushed` never exceeds what is
    /// queued, the shutdown comes once, and time never goes backwards.
    pub fn permits(&self, time: Time, input: &Input) -> bool {
        let held = |conn| self.opened.contains(conn) && !self.released.contains(conn);
        let reportable = |conn| held(conn) && !self.peer_gone.contains(conn);
        time >= self.now
            && match input {
                Input::Opened { conn, .. } => !self.opened.contains(conn),
                Input::Line { conn, .. } | Input::Closed { conn } => reportable(conn),
                Input::Flushed { conn, bytes } => held(conn) && *bytes <= self.unflushed(*conn),
                // The shell lets go of a socket once the broker or the peer
                // has closed the connection, and once only.
                Input::Released { conn } => {
                    held(conn) && (self.closed.contains(conn) || self.peer_gone.contains(conn))
                }
                Input::Shutdown => !self.shutdown,
                Input::Timeout => true,
            }
    }

    /// Moves past one step.
    pub fn advance(&mut self, step: &TraceStep) {
        self.now = step.time;
        match &step.input {
            Input::Opened { conn, .. } => {
                self.opened.insert(*conn);
                self.opened_at.insert(*conn, step.time);
            }
            Input::Flushed { conn, bytes } => {
                *self.unflushed.entry(*conn).or_default() -= bytes;
                self.progress_at.insert(*conn, step.time);
            }
            Input::Closed { conn } => {
                self.peer_gone.insert(*conn);
            }
            Input::Released { conn } => {
                self.released.insert(*conn);
            }
            Input::Shutdown => self.shutdown = true,
            Input::Line { .. } | Input::Timeout => {}
        }
        for output in &step.outputs {
            match output {
                Output::Send { conn, line } => {
                    let unflushed = self.unflushed.entry(*conn).or_default();
                    if *unflushed == 0 {
                        self.progress_at.insert(*conn, step.time);
                    }
                    *unflushed += line.len();
                    if let Some(name) = line.as_str().strip_prefix("welcome ") {
                        self.names
                            .insert(*conn, name.trim_end_matches('\n').to_string());
                    }
                }
                Output::Close { conn, .. } => {
                    self.closed.insert(*conn);
                    self.names.remove(conn);
                }
            }
        }
    }

    /// Opened by the shell and not yet closed by the broker.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.opened.contains(&conn) && !self.closed.contains(&conn)
    }

    pub fn was_opened(&self, conn: ConnId) -> bool {
        self.opened.contains(&conn)
    }

    pub fn was_closed(&self, conn: ConnId) -> bool {
        self.closed.contains(&conn)
    }

    /// The connections open now, in id order.
    pub fn open_connections(&self) -> Vec<ConnId> {
        let open = self.opened.iter().copied();
        open.filter(|conn| !self.closed.contains(conn)).collect()
    }

    /// The name `conn` was welcomed as, while it is open.
    pub fn name(&self, conn: ConnId) -> Option<&str> {
        self.names.get(&conn).map(String::as_str)
    }

    /// The open connection that was welcomed as `name`, if any.
    pub fn holder(&self, name: &str) -> Option<ConnId> {
        let mut holders = self.names.iter().filter(|(_, held)| *held == name);
        holders.next().map(|(conn, _)| *conn)
    }

    pub fn unflushed(&self, conn: ConnId) -> usize {
        self.unflushed.get(&conn).copied().unwrap_or(0)
    }

    /// Since when `conn` has had data queued and its socket has accepted
    /// none of it, if it has data queued.
    pub fn stalled_since(&self, conn: ConnId) -> Option<Time> {
        if self.unflushed(conn) == 0 {
            return None;
        }
        self.progress_at.get(&conn).copied()
    }

    /// When `conn` was opened, if it was.
    pub fn opened_at(&self, conn: ConnId) -> Option<Time> {
        self.opened_at.get(&conn).copied()
    }

    /// The time of the latest step.
    pub fn now(&self) -> Time {
        self.now
    }

    /// Every connection ever opened, in id order.
    pub fn every_connection(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.opened.iter().copied()
    }

    pub fn shutdown_seen(&self) -> bool {
        self.shutdown
    }
}

/// Calls `check` with each step's index, the state before it, and the step.
pub fn walk<E>(
    trace: &Trace,
    mut check: impl FnMut(usize, &Observed, &TraceStep) -> Result<(), E>,
) -> Result<(), E> {
    let mut observed = Observed::default();
    for (index, step) in trace.steps.iter().enumerate() {
        check(index, &observed, step)?;
        observed.advance(step);
    }
    Ok(())
}

/// The trace as a story: each input, and under it what the broker did.
impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the broker, with {:?}:", self.config)?;
        for (index, step) in self.steps.iter().enumerate() {
            let happened = match &step.input {
                Input::Opened { conn, address } => format!("{conn} opens from {address}"),
                Input::Line {
                    conn,
                    frame: Ok(line),
                } => format!("{conn} sends {line:?}"),
                Input::Line {
                    conn,
                    frame: Err(error),
                } => format!("{conn} sends a line: {error}"),
                Input::Flushed { conn, bytes } => format!("{conn} reads {bytes} bytes"),
                Input::Closed { conn } => format!("{conn} disconnects"),
                Input::Released { conn } => format!("{conn}'s socket is let go"),
                Input::Shutdown => "the server shuts down".to_string(),
                Input::Timeout => "the broker's timer fires".to_string(),
            };
            writeln!(f, "  step {index}, at {}: {happened}", step.time)?;
            for output in &step.outputs {
                match output {
                    Output::Send { conn, line } => writeln!(f, "      -> {conn} is sent {line:?}")?,
                    Output::Close { conn, reason, .. } => {
                        writeln!(f, "      -> {conn} is closed: {reason:?}")?
                    }
                }
            }
        }
        Ok(())
    }
}
