//! The broker task: runs the pure [`Broker`] on its event queue.
//!
//! It is the single serialization point of the server: every connection's
//! events are processed here one at a time, in the order they were queued,
//! and each output goes straight to the writer of the connection it names.
//! The one exception to "in the order queued": lines of a connection the
//! broker has paused wait here, in order, until it resumes it.
//! Each input is handed over with the runtime's current time, and when the
//! broker asks to be woken (`poll_timeout`) the task sets one timer and
//! hands it an `Input::Timeout` when it fires. It never waits on anything
//! but its queues and that timer.
//!
//! Being the one serial step, its cost per event bounds the whole server's
//! throughput, so the hot path avoids what it can: a reader queues the
//! lines of one read together as one event (a few dozen at most), a burst
//! of waiting events shares one clock reading, and links are found by hash.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};

use foldhash::fast::FixedState;

use futures::channel::mpsc;
use futures::future::{BoxFuture, Fuse, OptionFuture};
use futures::stream::{self, PollNext};
use futures::{FutureExt, StreamExt, select_biased};
use tracing::{debug, info};

use super::outbox::Outbox;
use super::runtime::Runtime;
use crate::broker::{Broker, CloseReason, ConnId, Input, Output};
use crate::codec::Frame;
use crate::news::Dialect;
use crate::protocol::Line;
use crate::time::Time;

/// The most events taken in one burst under one clock reading, so that a
/// steady flood still lets the timer and the clock be looked at.
const BURST_EVENTS_MAX: usize = 64;

/// What the broker task sends one connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// A line to write, terminator included.
    Line(Line),
    /// Nothing more will follow; close the connection for this reason.
    Close(CloseReason),
    /// Stop reading from the socket (and queueing lines for the broker)
    /// until `Resume`: a line of this connection took some queue past
    /// `max_queue`, so TCP pushes back on this sender alone.
    Pause,
    /// Read from the socket again.
    Resume,
}

/// What a writer tells the broker about its socket.
#[derive(Debug)]
pub(super) enum Report {
    /// The socket accepted `bytes` more of what was queued.
    Flushed { conn: ConnId, bytes: usize },
    /// A write failed: the connection is gone.
    Failed { conn: ConnId },
    /// The connection task has ended and dropped its socket.
    Released { conn: ConnId },
}

/// Writers' reports. Kept apart from the bounded queue and read before it,
/// so the broker's account of queued bytes is not held up behind a flood of
/// input. Bounded in practice by the queue bound: each report covers bytes
/// the broker queued.
pub(super) type Reports = mpsc::UnboundedSender<Report>;

/// What connections and the accept loop send the broker task.
pub(super) enum ToBroker {
    /// A new connection and the queue to its writer; becomes `Input::Opened`.
    Open {
        conn: ConnId,
        peer: SocketAddr,
        dialect: Dialect,
        outbox: Outbox,
    },
    /// Frames of one read, in order; each becomes `Input::Line`. One queue
    /// message for several lines instead of one per line: under load a read
    /// holds many lines, and each queue message costs a wake-up. The reader
    /// caps how many go into one event (see `connection.rs`).
    Lines { conn: ConnId, frames: Vec<Frame> },
    /// The peer finished sending, or the read failed.
    Closed { conn: ConnId },
    /// The server is shutting down.
    Shutdown,
}

/// One event off either queue.
enum Event {
    Report(Report),
    Queued(ToBroker),
}

/// What the broker task keeps of one connection: where its lines go, who
/// is at the other end (for the logs), and, while the broker has it
/// paused, what its reader had already queued.
struct Link {
    outbox: Outbox,
    peer: SocketAddr,
    /// `Some` while the broker has the connection paused (so an idle link
    /// holds only a null pointer).
    held: Option<Box<Held>>,
    /// The reader has been told to stop and not yet to read again. It is
    /// told to read again only once what it held back has been handed over
    /// without pausing it anew: resumed earlier, it could queue more behind
    /// lines that are about to pause it again, and `held` would grow past
    /// what one stop can leave behind.
    stopped: bool,
}

/// What a paused connection's reader queued before it saw the pause: held
/// back, in order, until the broker resumes it. The broker never sees a
/// line from a paused connection, so a queue goes past `max_queue` by at
/// most what the one line that paused each sender causes. Bounded by what
/// one reader
/// can have queued before it saw the pause (at worst the whole broker
/// queue, its own slot in it and the event it was queueing, each at most
/// 64 frames), since a paused reader queues nothing more.
#[derive(Default)]
struct Held {
    frames: VecDeque<Frame>,
    /// The reader's end of stream came after them.
    closed: bool,
}

/// Links by connection: the shell's whole per-connection state in the
/// broker task. Only ever looked up, never iterated, so hash order cannot
/// reach an output; the fixed seed keeps runs identical anyway.
type Links = HashMap<ConnId, Link, FixedState>;

/// Sees every input the broker processes, with its time, in processing
/// order. The simulator records inputs and outputs as its witness log; the
/// production journal (`--journal`) records each input before the broker
/// sees it, so the input a broker panics on is on record too; without
/// either, production passes `()`.
pub trait Observer: Send + 'static {
    /// `input` is about to be handed to the broker at `now`.
    fn handing(&mut self, _now: Time, _input: &Input) {}
    /// The broker processed `input` at `now` and decided `outputs`.
    fn processed(&mut self, _now: Time, _input: &Input, _outputs: &[Output]) {}
    /// The broker panicked on the input last handed to it. The panic goes
    /// on unwinding once this returns (and production then aborts).
    fn broker_panicked(&mut self) {}
}

impl Observer for () {}

/// The broker with what it needs around it: its writers, its observer and
/// an output buffer reused for every input.
struct Core<O> {
    broker: Broker,
    links: Links,
    observer: O,
    outputs: Vec<Output>,
    /// What connections resumed by the last inputs had held back, still to
    /// hand the broker.
    resumed: Vec<(ConnId, Box<Held>)>,
}

impl<O: Observer> Core<O> {
    /// Hands one input to the broker and routes what it decides. Returns
    /// whether the input was a line that paused its own connection.
    fn process(&mut self, now: Time, input: Input) -> bool {
        let sender = match input {
            Input::Line { conn, .. } => Some(conn),
            _ => None,
        };
        self.observer.handing(now, &input);
        // Catching the panic costs nothing until one happens; it lets the
        // observer (the journal) save what led to it before it goes on.
        let handled = panic::catch_unwind(AssertUnwindSafe(|| {
            self.broker.handle(now, &input, &mut self.outputs);
        }));
        if let Err(panic) = handled {
            self.observer.broker_panicked();
            panic::resume_unwind(panic);
        }
        self.observer.processed(now, &input, &self.outputs);
        let mut paused = false;
        for output in self.outputs.drain(..) {
            paused |= matches!(output, Output::Pause { conn } if Some(conn) == sender);
            route(output, &mut self.links, &self.broker, &mut self.resumed);
        }
        paused
    }

    /// Hands the broker `conn`'s lines, then its end of stream if
    /// `then_closed`, until one of them pauses it: the rest is held back
    /// (`route` has just made room for it) until it is resumed.
    fn feed(
        &mut self,
        now: Time,
        conn: ConnId,
        frames: impl IntoIterator<Item = Frame>,
        then_closed: bool,
    ) {
        let mut frames = frames.into_iter();
        while let Some(frame) = frames.next() {
            if self.process(now, Input::Line { conn, frame }) {
                if let Some(held) = self.held(conn) {
                    held.frames.extend(frames);
                    held.closed |= then_closed;
                }
                return;
            }
        }
        if then_closed {
            self.process(now, Input::Closed { conn });
        }
    }

    /// What `conn` is holding back, if it is paused.
    fn held(&mut self, conn: ConnId) -> Option<&mut Held> {
        self.links.get_mut(&conn)?.held.as_deref_mut()
    }

    /// Hands the broker what resumed connections held back, in the order
    /// they were resumed (doing so may resume or pause others), and lets
    /// each read again unless its held lines paused it anew.
    fn release_held(&mut self, now: Time) {
        while !self.resumed.is_empty() {
            for (conn, held) in std::mem::take(&mut self.resumed) {
                let Held { frames, closed } = *held;
                self.feed(now, conn, frames, closed);
                if let Some(link) = self.links.get_mut(&conn)
                    && link.held.is_none()
                {
                    read_again(link);
                }
            }
        }
    }

    fn event(&mut self, now: Time, event: Event) {
        match event {
            Event::Report(Report::Flushed { conn, bytes }) => {
                self.process(now, Input::Flushed { conn, bytes });
            }
            // Not held back: the socket failed, so what the reader queued
            // before is stale however it is ordered.
            Event::Report(Report::Failed { conn }) => {
                self.process(now, Input::Closed { conn });
            }
            Event::Report(Report::Released { conn }) => {
                self.process(now, Input::Released { conn });
            }
            Event::Queued(ToBroker::Open {
                conn,
                peer,
                dialect,
                outbox,
            }) => {
                let link = Link {
                    outbox,
                    peer,
                    held: None,
                    stopped: false,
                };
                self.links.insert(conn, link);
                let address = peer.ip();
                let opened = Input::Opened {
                    conn,
                    address,
                    dialect,
                };
                self.process(now, opened);
            }
            // A paused connection's lines, and its end of stream after
            // them, wait for its resume.
            Event::Queued(ToBroker::Lines { conn, frames }) => match self.held(conn) {
                Some(held) => held.frames.extend(frames),
                None => self.feed(now, conn, frames, false),
            },
            Event::Queued(ToBroker::Closed { conn }) => match self.held(conn) {
                Some(held) => held.closed = true,
                None => self.feed(now, conn, [], true),
            },
            Event::Queued(ToBroker::Shutdown) => {
                self.process(now, Input::Shutdown);
            }
        }
        self.release_held(now);
    }
}

/// Processes events until every sender is gone, writers' reports first,
/// and wakes the broker when it asks to be woken.
pub(super) async fn run_broker<R: Runtime>(
    runtime: R,
    broker: Broker,
    queue: mpsc::Receiver<ToBroker>,
    reports: mpsc::UnboundedReceiver<Report>,
    observer: impl Observer,
) {
    let reports = reports.map(Event::Report);
    let queue = queue.map(Event::Queued);
    let mut events = stream::select_with_strategy(reports, queue, |_: &mut ()| PollNext::Left);
    let mut core = Core {
        broker,
        links: Links::default(),
        observer,
        outputs: Vec::new(),
        resumed: Vec::new(),
    };
    // The timer for the broker's next timeout, and the time it is set for.
    let mut timer: Option<(Time, Fuse<BoxFuture<'static, ()>>)> = None;
    loop {
        let due = core.broker.poll_timeout();
        if due != timer.as_ref().map(|(at, _)| *at) {
            timer = due.map(|at| {
                let wait = at.saturating_since(runtime.now());
                (at, runtime.sleep(wait).fuse())
            });
        }
        let mut alarm = OptionFuture::from(timer.as_mut().map(|(_, sleep)| sleep));
        select_biased! {
            // First, so a flood of events cannot hold a timeout back.
            _ = alarm => {
                timer = None;
                let now = runtime.now();
                core.process(now, Input::Timeout);
                core.release_held(now);
            }
            event = events.next() => {
                let Some(event) = event else { return };
                let now = runtime.now();
                core.event(now, event);
                // Take what is already waiting too, under the same clock
                // reading: under load the events of one wake-up come as a
                // burst, and reading the clock, re-arming the timer and
                // re-entering the select for each would cost more than the
                // event. (A burst is at most `BURST_EVENTS_MAX` events, so
                // the time it hands the broker is late by at most that
                // much work: microseconds for chat lines, longer for lines
                // naming thousands of destinations.)
                for _ in 1..BURST_EVENTS_MAX {
                    match events.next().now_or_never() {
                        Some(Some(event)) => core.event(now, event),
                        Some(None) => return,
                        None => break,
                    }
                }
            }
        }
    }
}

/// Carries out one output; `broker` is asked only for names, for the logs.
/// A resumed connection's held-back lines go to `resumed`, for the caller
/// to hand the broker once this input's outputs are all routed.
fn route(
    output: Output,
    links: &mut Links,
    broker: &Broker,
    resumed: &mut Vec<(ConnId, Box<Held>)>,
) {
    match output {
        Output::Send { conn, line } => {
            if let Some(link) = links.get(&conn) {
                // A writer that has already exited has closed its socket;
                // its Closed report is on the way, so the line has nowhere to go.
                link.outbox.send(Outbound::Line(line));
            }
        }
        Output::Close { conn, reason, name } => {
            let Some(link) = links.remove(&conn) else {
                return;
            };
            let peer = link.peer;
            let name = name.as_deref().unwrap_or("(not logged in)");
            match reason {
                CloseReason::SlowConsumer => {
                    info!(%conn, %peer, name, "closing slow consumer: its queue stayed full")
                }
                CloseReason::DeadPeer => {
                    info!(%conn, %peer, name, "closing dead peer: its socket accepts nothing")
                }
                CloseReason::Refused => {
                    debug!(%conn, %peer, "refused a connection over a connection limit")
                }
                CloseReason::LoginTimeout => {
                    info!(%conn, %peer, "closing a connection that did not log in in time")
                }
                CloseReason::PingTimeout => {
                    info!(%conn, %peer, name, "closing an IRC client that answered no PING")
                }
                CloseReason::PeerClosed | CloseReason::ShuttingDown | CloseReason::Quit => {
                    debug!(%conn, %peer, name, ?reason, "connection closed")
                }
            }
            link.outbox.send(Outbound::Close(reason));
        }
        // The writer carries these out (it shares a task with the reader;
        // see `connection.rs`), so they travel in order with the lines.
        Output::Pause { conn } => {
            if let Some(link) = links.get_mut(&conn) {
                let name = broker.name_of(conn).unwrap_or("(not logged in)");
                debug!(%conn, peer = %link.peer, name, "pausing: a queue it filled is full");
                link.held.get_or_insert_default();
                if !link.stopped {
                    link.stopped = true;
                    link.outbox.send(Outbound::Pause);
                }
            }
        }
        Output::Resume { conn } => {
            if let Some(link) = links.get_mut(&conn) {
                let name = broker.name_of(conn).unwrap_or("(not logged in)");
                debug!(%conn, peer = %link.peer, name, "resuming: the queues it filled drained or closed");
                match link.held.take() {
                    Some(held) if !held.frames.is_empty() || held.closed => {
                        resumed.push((conn, held))
                    }
                    _ => read_again(link),
                }
            }
        }
    }
}

/// Lets a stopped reader read again.
fn read_again(link: &mut Link) {
    if link.stopped {
        link.stopped = false;
        link.outbox.send(Outbound::Resume);
    }
}
