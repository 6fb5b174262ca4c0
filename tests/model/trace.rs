//! A recorded run of the broker, and what an observer learns from it.
//!
//! A [`Trace`] is every input the broker was given with the outputs it
//! produced. [`Observed`] replays a trace one step at a time and tracks only
//! what the inputs and outputs themselves show: which connections the shell
//! opened, which the broker closed, who was welcomed or renamed under which
//! name, which rooms each is in (from the `joined` and `left` lines it was
//! sent about itself), how
//! many bytes each connection has queued and not yet flushed, since when a
//! queue has been past `max_queue`, which senders' lines went into it since
//! (the senders blocked on it), and whom the broker told the shell to pause.
//! The guarantee checks read a trace through it, and the generators use it
//! to keep their inputs within what the shell can really report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chinwag::broker::{ConnId, Input, Output};
use chinwag::config::Config;
use chinwag::time::Time;

use chinwag::news::Dialect;

use super::grammar::irc::{self, Heard};
use super::grammar::{self, Departure, RoomNews};

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

/// The state of a run as seen from outside the broker, between two steps
/// (or, through [`Observed::enter`] and [`Observed::emit`], between two
/// outputs of one step).
#[derive(Clone, Debug)]
pub struct Observed {
    /// The queue bound the run had: a queue is over when its unflushed
    /// bytes exceed it.
    max_queue: usize,
    opened: BTreeSet<ConnId>,
    /// The connections opened on the IRC listener.
    irc: BTreeSet<ConnId>,
    /// Connections the broker said it closed.
    closed: BTreeSet<ConnId>,
    /// Connections whose peer the shell reported gone.
    peer_gone: BTreeSet<ConnId>,
    /// Connections whose socket the shell let go of.
    released: BTreeSet<ConnId>,
    /// The name each open connection was welcomed as, or last renamed to.
    names: BTreeMap<ConnId, String>,
    /// The rooms each open connection is in: from the `joined` line it
    /// was sent about itself to the `left (parted)` or `everyone left` one,
    /// or its close.
    rooms: BTreeMap<ConnId, BTreeSet<String>>,
    /// Bytes sent to each connection minus bytes flushed.
    unflushed: BTreeMap<ConnId, usize>,
    /// When each connection's socket last made progress: its last flush,
    /// or when its queue last went from empty to not.
    progress_at: BTreeMap<ConnId, Time>,
    /// When each connection was opened.
    opened_at: BTreeMap<ConnId, Time>,
    /// For each open connection whose queue is over `max_queue`, the time of
    /// the step whose `Send` took it over.
    over_since: BTreeMap<ConnId, Time>,
    /// For each open connection whose queue is over, the open connections
    /// whose lines sent it something that left it over since it went over:
    /// they are blocked on it until it drains back to `max_queue` or closes.
    blocked_on: BTreeMap<ConnId, BTreeSet<ConnId>>,
    /// The open connections the broker said to pause and has not resumed.
    paused: BTreeSet<ConnId>,
    /// The time of the latest step.
    now: Time,
    shutdown: bool,
}

/// An observer that knows no queue bound: no queue is ever over, so it
/// tracks no blocked senders (only what `Pause` and `Resume` say). Enough
/// for what the shell may report next; the guarantee checks use
/// [`Observed::new`].
impl Default for Observed {
    fn default() -> Self {
        Observed::with_max_queue(usize::MAX)
    }
}

impl Observed {
    /// An observer of a run with `config`'s queue bound, before its first step.
    pub fn new(config: &Config) -> Self {
        Observed::with_max_queue(config.max_queue)
    }

    fn with_max_queue(max_queue: usize) -> Self {
        Observed {
            max_queue,
            opened: BTreeSet::new(),
            irc: BTreeSet::new(),
            closed: BTreeSet::new(),
            peer_gone: BTreeSet::new(),
            released: BTreeSet::new(),
            names: BTreeMap::new(),
            rooms: BTreeMap::new(),
            unflushed: BTreeMap::new(),
            progress_at: BTreeMap::new(),
            opened_at: BTreeMap::new(),
            over_since: BTreeMap::new(),
            blocked_on: BTreeMap::new(),
            paused: BTreeSet::new(),
            now: Time::ZERO,
            shutdown: false,
        }
    }

    /// Whether the shell could report `input` now: connection ids are fresh
    /// when opened and never reused, nothing comes before a connection's
    /// `Opened` or after its `Closed`, no line comes from a paused one, `Flushed` never exceeds what is
    /// queued, the shutdown comes once, and time never goes backwards.
    pub fn permits(&self, time: Time, input: &Input) -> bool {
        let held = |conn| self.opened.contains(conn) && !self.released.contains(conn);
        let reportable = |conn| held(conn) && !self.peer_gone.contains(conn);
        time >= self.now
            && match input {
                Input::Opened { conn, .. } => !self.opened.contains(conn),
                // The shell holds a paused connection's lines back.
                Input::Line { conn, .. } => reportable(conn) && !self.paused.contains(conn),
                // Not its end of stream, if it comes from a failed write.
                Input::Closed { conn } => reportable(conn),
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
        self.enter(step);
        for output in &step.outputs {
            self.emit(step, output);
        }
    }

    /// Moves past `step`'s input, before any of its outputs.
    pub fn enter(&mut self, step: &TraceStep) {
        self.now = step.time;
        match &step.input {
            Input::Opened { conn, dialect, .. } => {
                self.opened.insert(*conn);
                if *dialect == Dialect::Irc {
                    self.irc.insert(*conn);
                }
                self.opened_at.insert(*conn, step.time);
            }
            Input::Flushed { conn, bytes } => {
                let unflushed = self.unflushed.entry(*conn).or_default();
                *unflushed -= bytes;
                if *unflushed <= self.max_queue {
                    self.over_since.remove(conn);
                    self.blocked_on.remove(conn);
                }
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
    }

    /// Moves past one output of `step`, after its input and the outputs
    /// before this one.
    pub fn emit(&mut self, step: &TraceStep, output: &Output) {
        match output {
            Output::Send { conn, line } => {
                let unflushed = self.unflushed.entry(*conn).or_default();
                if *unflushed == 0 {
                    self.progress_at.insert(*conn, step.time);
                }
                *unflushed += line.len();
                if *unflushed > self.max_queue {
                    self.over_since.entry(*conn).or_insert(step.time);
                    // A sender the line closed (an IRC QUIT) is no sender to
                    // pause: its leave news, like any close's, has no payer.
                    let sender = line_sender(&step.input).filter(|s| !self.closed.contains(s));
                    if let Some(sender) = sender {
                        let blocked = self.blocked_on.entry(*conn).or_default();
                        blocked.insert(sender);
                    }
                }
                if self.irc.contains(conn) {
                    self.learn_from_irc(*conn, line.as_str());
                } else {
                    if let Some(name) = line.as_str().strip_prefix("welcome ") {
                        self.names
                            .insert(*conn, name.trim_end_matches('\n').to_string());
                    }
                    self.learn_from(*conn, line.as_str());
                }
            }
            Output::Close { conn, .. } => {
                self.closed.insert(*conn);
                self.names.remove(conn);
                self.rooms.remove(conn);
                self.over_since.remove(conn);
                self.blocked_on.remove(conn);
                for senders in self.blocked_on.values_mut() {
                    senders.remove(conn);
                }
                self.paused.remove(conn);
            }
            Output::Pause { conn } => {
                self.paused.insert(*conn);
            }
            Output::Resume { conn } => {
                self.paused.remove(conn);
            }
        }
    }

    /// What `line`, sent to `conn`, says about `conn` itself: only the
    /// renamer holds the old name of a `renamed` line, and only the one
    /// who joined or parted holds the name in that news.
    fn learn_from(&mut self, conn: ConnId, line: &str) {
        let Some(held) = self.names.get(&conn) else {
            return;
        };
        if let Some((old, new)) = grammar::read_renamed(line) {
            if old == held {
                self.names.insert(conn, new.to_string());
            }
            return;
        }
        let Some((room, news)) = grammar::read_room_news(line) else {
            return;
        };
        let rooms = self.rooms.entry(conn).or_default();
        match news {
            RoomNews::Joined(name) if name == *held => {
                rooms.insert(room.to_string());
            }
            RoomNews::Left(name, Departure::Parted) if name == *held => {
                rooms.remove(room);
            }
            RoomNews::EveryoneLeft => {
                rooms.remove(room);
            }
            RoomNews::Joined(_) | RoomNews::Left(..) => {}
        }
    }

    /// What an IRC line sent to `conn` says about `conn` itself: its
    /// registration (`001`), and its own NICK, JOIN and PART. (IRC has no
    /// `everyone left` line: the shutdown closes it.)
    fn learn_from_irc(&mut self, conn: ConnId, line: &str) {
        let heard = irc::read(line);
        if let Some(Heard::Welcome(nick)) = heard {
            self.names.insert(conn, nick.to_string());
            return;
        }
        let Some(held) = self.names.get(&conn).cloned() else {
            return;
        };
        let rooms = self.rooms.entry(conn).or_default();
        match heard {
            Some(Heard::Renamed(old, new)) if old == held => {
                self.names.insert(conn, new.to_string());
            }
            Some(Heard::Joined(name, room)) if name == held => {
                rooms.insert(room.to_string());
            }
            Some(Heard::Parted(name, room)) if name == held => {
                rooms.remove(room);
            }
            _ => {}
        }
    }

    /// Whether `conn` came in on the IRC listener.
    pub fn is_irc(&self, conn: ConnId) -> bool {
        self.irc.contains(&conn)
    }

    /// The rooms `conn` is in, in room order.
    pub fn rooms_of(&self, conn: ConnId) -> Vec<&str> {
        let rooms = self.rooms.get(&conn).into_iter().flatten();
        rooms.map(String::as_str).collect()
    }

    /// The members of `room`, in id order.
    pub fn members(&self, room: &str) -> Vec<ConnId> {
        let member = |(_, rooms): &(&ConnId, &BTreeSet<String>)| rooms.contains(room);
        self.rooms
            .iter()
            .filter(member)
            .map(|(conn, _)| *conn)
            .collect()
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

    /// Whether `conn`'s queue is past `max_queue`.
    pub fn is_over(&self, conn: ConnId) -> bool {
        self.unflushed(conn) > self.max_queue
    }

    /// Since when `conn`'s queue has been past `max_queue` (the time of the
    /// step whose `Send` took it over), while it is open and over.
    pub fn over_since(&self, conn: ConnId) -> Option<Time> {
        self.over_since.get(&conn).copied()
    }

    /// The open connections whose queues are past `max_queue`, with since
    /// when, in id order.
    pub fn over_queues(&self) -> impl Iterator<Item = (ConnId, Time)> + '_ {
        self.over_since.iter().map(|(conn, since)| (*conn, *since))
    }

    /// The open, over connections `sender` is blocked on: those its lines
    /// sent something that left them over since they went over.
    pub fn blocked_on(&self, sender: ConnId) -> Vec<ConnId> {
        let blocking = self.blocked_on.iter();
        let blocking = blocking.filter(|(_, senders)| senders.contains(&sender));
        blocking.map(|(full, _)| *full).collect()
    }

    /// The open connections blocked on some queue, in id order: those the
    /// broker should have paused.
    pub fn blocked(&self) -> BTreeSet<ConnId> {
        self.blocked_on.values().flatten().copied().collect()
    }

    /// Whether the broker said to pause `conn` and has not resumed it since
    /// (and it is open).
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.paused.contains(&conn)
    }

    /// The connections paused now, in id order.
    pub fn paused(&self) -> &BTreeSet<ConnId> {
        &self.paused
    }

    /// When `conn` was opened, if it was.
    pub fn opened_at(&self, conn: ConnId) -> Option<Time> {
        self.opened_at.get(&conn).copied()
    }

    /// The time of the latest step.
    pub fn now(&self) -> Time {
        self.now
    }

    pub fn shutdown_seen(&self) -> bool {
        self.shutdown
    }
}

/// The connection whose line `input` is, if it is one: every line a step
/// with that input sends was caused by it.
pub fn line_sender(input: &Input) -> Option<ConnId> {
    match input {
        Input::Line { conn, .. } => Some(*conn),
        _ => None,
    }
}

/// Calls `check` with each step's index, the state before it, and the step.
pub fn walk<E>(
    trace: &Trace,
    mut check: impl FnMut(usize, &Observed, &TraceStep) -> Result<(), E>,
) -> Result<(), E> {
    let mut observed = Observed::new(&trace.config);
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
                Input::Opened { conn, address, .. } => format!("{conn} opens from {address}"),
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
                    Output::Pause { conn } => writeln!(f, "      -> {conn} is paused")?,
                    Output::Resume { conn } => writeln!(f, "      -> {conn} is resumed")?,
                }
            }
        }
        Ok(())
    }
}
