//! The broker task: runs the pure [`Broker`] on its event queue.
//!
//! It is the single serialization point of the server: every connection's
//! events are processed here one at a time, in the order they were queued,
//! and each output goes straight to the writer of the connection it names.
//! It never waits on anything but its own queue.
//!
//! Being the one serial step, its cost per event bounds the whole server's
//! throughput, so the hot path avoids what it can: a reader queues the
//! lines of one read together as one event (a few dozen at most), and
//! outboxes are found by hash.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::{self, PollNext};
use tracing::{debug, info};

use crate::broker::{Broker, CloseReason, ConnId, Input, Output};
use crate::codec::Frame;

/// What the broker task sends one connection's writer.
#[derive(Debug)]
pub enum Outbound {
    /// A line to write, terminator included.
    Line(std::sync::Arc<str>),
    /// Nothing more will follow; close the connection for this reason.
    Close(CloseReason),
}

/// A connection's writer queue. Unbounded as a channel, but bounded in
/// bytes: the broker never queues more than `max_queue` unflushed bytes.
pub(super) type Outbox = mpsc::UnboundedSender<Outbound>;

/// Writers' reports of their progress (flushed, stalled, failed). Kept apart
/// from the bounded queue and read before it, so the broker's account of
/// queued bytes is not held up behind a flood of input. Bounded in practice
/// by the queue bound: each report covers bytes the broker queued.
pub(super) type Reports = mpsc::UnboundedSender<Input>;

/// What connections send the broker task.
pub(super) enum ToBroker {
    /// A new connection and the queue to its writer; becomes `Input::Opened`.
    Open {
        conn: ConnId,
        outbox: Outbox,
    },
    /// Frames of one read, in order; each becomes `Input::Line`. One queue
    /// message for several lines instead of one per line: under load a read
    /// holds many lines, and each queue message costs a wake-up. The reader
    /// caps how many go into one event (see `connection.rs`).
    Lines {
        conn: ConnId,
        frames: Vec<Frame>,
    },
    Input(Input),
}

/// Writers by connection. Only ever looked up, never iterated, so hash order
/// cannot reach an output; the fixed seed keeps runs identical anyway.
type Outboxes = HashMap<ConnId, Outbox, FixedState>;

/// Sees every input the broker processes, with the outputs it produced, in
/// processing order. The simulator records this as its witness log;
/// production passes `()`.
pub trait Observer: Send + 'static {
    fn processed(&mut self, input: &Input, outputs: &[Output]);
}

impl Observer for () {
    fn processed(&mut self, _: &Input, _: &[Output]) {}
}

/// Processes events until every sender is gone, writers' reports first.
pub(super) async fn run_broker(
    mut broker: Broker,
    queue: mpsc::Receiver<ToBroker>,
    reports: mpsc::UnboundedReceiver<Input>,
    mut observer: impl Observer,
) {
    let reports = reports.map(ToBroker::Input);
    let mut events = stream::select_with_strategy(reports, queue, |_: &mut ()| PollNext::Left);
    let mut outboxes = Outboxes::default();
    let mut outputs = Vec::new();
    let mut process = |input: Input, outboxes: &mut Outboxes| {
        broker.handle(&input, &mut outputs);
        observer.processed(&input, &outputs);
        for output in outputs.drain(..) {
            route(output, outboxes);
        }
    };
    while let Some(event) = events.next().await {
        match event {
            ToBroker::Open { conn, outbox } => {
                outboxes.insert(conn, outbox);
                process(Input::Opened { conn }, &mut outboxes);
            }
            ToBroker::Lines { conn, frames } => {
                for frame in frames {
                    process(Input::Line { conn, frame }, &mut outboxes);
                }
            }
            ToBroker::Input(input) => process(input, &mut outboxes),
        }
    }
}

fn route(output: Output, outboxes: &mut Outboxes) {
    match output {
        Output::Send { conn, line } => {
            if let Some(outbox) = outboxes.get(&conn) {
                // A writer that has already exited has closed its socket;
                // its Closed report is on the way, so the line has nowhere to go.
                let _ = outbox.unbounded_send(Outbound::Line(line));
            }
        }
        Output::Close { conn, reason } => {
            match reason {
                CloseReason::SlowConsumer => info!(%conn, "closing slow consumer"),
                CloseReason::DeadPeer => info!(%conn, "closing dead peer: writes stalled"),
                CloseReason::PeerClosed | CloseReason::ShuttingDown => {
                    debug!(%conn, ?reason, "connection closed")
                }
            }
            if let Some(outbox) = outboxes.remove(&conn) {
                let _ = outbox.unbounded_send(Outbound::Close(reason));
            }
        }
    }
}
