//! The checker: judges a finished run against PROTOCOL.md's guarantees.
//!
//! It works from two kinds of evidence. The broker's witness log (what it
//! processed, in order, and what it decided) is replayed by the reference
//! [`Model`], which checks every decision. Then what the clients actually
//! sent and received is held against that log, connection by connection,
//! so bugs in the shell between the broker and the sockets show up too:
//!
//! - the frames the broker processed from a connection are a prefix of the
//!   lines its client sent, in order (guarantee 2);
//! - every `from X: <id>` a client received is a message the broker
//!   processed from the connection holding X, received once, in the
//!   broker's processing order (guarantees 1 to 4);
//! - every received stream is a prefix of what the broker wrote for that
//!   connection (guarantee 5; with the model, nothing after a disconnect);
//! - after the faults stop, each client's final session is welcomed, has
//!   every line it sent processed, and receives everything the broker wrote
//!   for it, ending with the shutdown notice and a clean end of stream
//!   (guarantees 6 and 8).
//!
//! Client connections are matched to broker connection ids through the
//! accept order each server incarnation recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use chinwag::broker::{CloseReason, ConnId};
use chinwag::codec::{Frame, LineDecoder};

use crate::model::{MessageSeen, Model, Replay};
use crate::record::{ClientConnection, End, Records};
use crate::scenario::{Scenario, final_name};

/// The guarantees of PROTOCOL.md (and DESIGN.md's list), plus the rest of
/// the protocol's decisions and the server staying up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    /// 1: delivered to exactly the names online, once each.
    ExactDelivery,
    /// 2: lines from one connection processed, and delivered, in send order.
    SenderFifo,
    /// 3: any two recipients see two messages in the same order.
    SameOrder,
    /// 4: nothing after a disconnect; `from X` only from X's connection.
    NothingAfterDisconnect,
    /// 5: each connection's output leaves in broker order.
    ConnectionOrder,
    /// 6: nothing accepted is lost; after healing, everything arrives.
    NoSilentLoss,
    /// 7: no connection's queue exceeds `max_queue`.
    MemoryBound,
    /// 8: shutdown delivers what was processed, tells everyone, closes.
    CleanShutdown,
    /// Any other decision PROTOCOL.md makes (replies, errors).
    Protocol,
    /// The server panicked or a host's software failed.
    Crash,
}

impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Guarantee::ExactDelivery => "guarantee 1: delivery to exactly the names online, once",
            Guarantee::SenderFifo => "guarantee 2: per-sender FIFO",
            Guarantee::SameOrder => "guarantee 3: same relative order at every recipient",
            Guarantee::NothingAfterDisconnect => {
                "guarantee 4: nothing after disconnect, `from X` only from X"
            }
            Guarantee::ConnectionOrder => "guarantee 5: per-connection output in broker order",
            Guarantee::NoSilentLoss => "guarantee 6: no silent loss (liveness after healing)",
            Guarantee::MemoryBound => "guarantee 7: queued bytes within max-queue",
            Guarantee::CleanShutdown => "guarantee 8: clean shutdown",
            Guarantee::Protocol => "protocol: a PROTOCOL.md decision",
            Guarantee::Crash => "the server crashed",
        })
    }
}

/// A broken guarantee, with the trace line where it shows.
#[derive(Debug)]
pub struct Violation {
    pub guarantee: Guarantee,
    pub detail: String,
    pub trace_index: Option<usize>,
}

/// What a passing check covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    /// Events the broker processed, all checked against the model.
    pub events: usize,
    /// Message lines the broker processed.
    pub messages: usize,
    /// Deliveries clients received and checked.
    pub deliveries: usize,
    /// Client connections checked.
    pub connections: usize,
}

/// Where a message was processed: its incarnation and event number.
#[derive(Clone, Debug)]
struct Processing {
    incarnation: usize,
    event: usize,
    trace_index: usize,
    seen: MessageSeen,
}

/// Checks every guarantee over the records of a finished run.
pub fn check(scenario: &Scenario, records: &Records) -> Result<Coverage, Violation> {
    if let Some(panic) = records.panics.first() {
        let detail = format!("a server task panicked: {panic}");
        return Err(violation(Guarantee::Crash, detail, None));
    }
    let mut coverage = Coverage::default();
    let (replays, messages) = replay_logs(scenario, records, &mut coverage)?;
    let ids = connection_ids(records);
    let mut final_sessions = vec![false; scenario.clients];
    for (index, connection) in records.connections.iter().enumerate() {
        let Some(&(incarnation, conn)) = ids.get(&connection.local) else {
            let detail = format!("k{index}: no server accepted {}", connection.local);
            return Err(violation(Guarantee::Protocol, detail, None));
        };
        let judged = Judged {
            index,
            connection,
            incarnation,
            conn,
            replay: &replays[incarnation],
            messages: &messages,
        };
        judged.lines_in_send_order(scenario.config.max_line)?;
        coverage.deliveries += judged.deliveries()?;
        judged.stream_in_broker_order()?;
        if connection.final_session {
            final_sessions[connection.client] = true;
            judged.complete_after_healing(scenario.config.max_line)?;
        }
        coverage.connections += 1;
    }
    if let Some(client) = final_sessions.iter().position(|connected| !connected) {
        let detail = format!("client{client} never connected after the network healed");
        return Err(violation(Guarantee::NoSilentLoss, detail, None));
    }
    Ok(coverage)
}

/// Replays each incarnation's witness log through the model; returns what
/// each replay established and where every tracked message was processed.
fn replay_logs(
    scenario: &Scenario,
    records: &Records,
    coverage: &mut Coverage,
) -> Result<(Vec<Replay>, BTreeMap<String, Processing>), Violation> {
    let mut replays = Vec::new();
    let mut messages: BTreeMap<String, Processing> = BTreeMap::new();
    for (incarnation, log) in records.incarnations.iter().enumerate() {
        let mut model = Model::new(scenario.config.max_queue);
        for (event, processed) in log.events.iter().enumerate() {
            let at = Some(processed.trace_index);
            let seen = model
                .step(&processed.input, &processed.outputs)
                .map_err(|mismatch| {
                    let detail =
                        format!("server#{incarnation} event #{event}: {}", mismatch.detail);
                    violation(mismatch.guarantee, detail, at)
                })?;
            coverage.events += 1;
            let Some(seen) = seen else { continue };
            coverage.messages += 1;
            if !is_tracked(&seen.id) {
                continue;
            }
            let processing = Processing {
                incarnation,
                event,
                trace_index: processed.trace_index,
                seen,
            };
            if let Some(earlier) = messages.insert(processing.seen.id.clone(), processing) {
                let detail = format!(
                    "message {} processed twice (first at server#{} event #{})",
                    earlier.seen.id, earlier.incarnation, earlier.event
                );
                return Err(violation(Guarantee::SenderFifo, detail, at));
            }
        }
        replays.push(model.into_replay());
    }
    Ok((replays, messages))
}

/// Each accepted peer's incarnation and connection id: the shell numbers
/// connections in accept order, from 1, afresh in each incarnation.
fn connection_ids(records: &Records) -> BTreeMap<SocketAddr, (usize, ConnId)> {
    let mut ids = BTreeMap::new();
    for (incarnation, log) in records.incarnations.iter().enumerate() {
        for (i, peer) in log.accepted.iter().enumerate() {
            ids.insert(*peer, (incarnation, ConnId(i as u64 + 1)));
        }
    }
    ids
}

/// One client connection held against the broker's view of it.
struct Judged<'a> {
    index: usize,
    connection: &'a ClientConnection,
    incarnation: usize,
    conn: ConnId,
    replay: &'a Replay,
    messages: &'a BTreeMap<String, Processing>,
}

impl Judged<'_> {
    fn name(&self) -> String {
        format!(
            "k{} (client{}, {} of server#{})",
            self.index, self.connection.client, self.conn, self.incarnation
        )
    }

    fn written(&self) -> &[u8] {
        self.replay
            .written
            .get(&self.conn)
            .map_or(&[], Vec::as_slice)
    }

    fn processed(&self) -> &[Frame] {
        self.replay
            .frames
            .get(&self.conn)
            .map_or(&[], Vec::as_slice)
    }

    /// The trace line of the read that brought byte `offset`.
    fn read_at(&self, offset: usize) -> Option<usize> {
        let reads = &self.connection.reads;
        let i = reads.partition_point(|&(end, _)| end <= offset);
        reads.get(i).or(reads.last()).map(|&(_, line)| line)
    }

    /// Guarantee 2, input side: the broker processed a prefix of the lines
    /// the client sent, in order.
    fn lines_in_send_order(&self, max_line: usize) -> Result<(), Violation> {
        let sent = sent_frames(&self.connection.sent, max_line);
        let processed = self.processed();
        let agree = processed.len() <= sent.len() && sent[..processed.len()] == *processed;
        if agree {
            return Ok(());
        }
        let at = sent
            .iter()
            .zip(processed)
            .take_while(|(a, b)| a == b)
            .count();
        let detail = format!(
            "{}: broker processed {:?} as line {at}, client sent {:?}",
            self.name(),
            processed.get(at),
            sent.get(at)
        );
        Err(violation(Guarantee::SenderFifo, detail, self.read_at(0)))
    }

    /// Guarantees 1 to 4 from the client's side: each delivery it received
    /// was processed, from the name it claims, once, in processing order.
    fn deliveries(&self) -> Result<usize, Violation> {
        let mut received: BTreeMap<String, usize> = BTreeMap::new();
        let mut last: Option<&Processing> = None;
        let mut count = 0;
        let mut offset = 0;
        for line in self.connection.received.split_inclusive(|&b| b == b'\n') {
            offset += line.len();
            let at = self.read_at(offset - 1);
            // An unfinished last line is judged by the prefix check alone.
            let Some(body) = line
                .strip_suffix(b"\n")
                .and_then(|line| line.strip_prefix(b"from "))
            else {
                continue;
            };
            let body = String::from_utf8_lossy(body);
            let Some((sender, text)) = body.split_once(": ") else {
                continue;
            };
            let id = text.split_whitespace().next().unwrap_or("");
            if !is_tracked(id) {
                continue;
            }
            let fail = |guarantee, what: String| {
                Err(violation(guarantee, format!("{}: {what}", self.name()), at))
            };
            let Some(processing) = self.messages.get(id) else {
                return fail(
                    Guarantee::NothingAfterDisconnect,
                    format!(
                        "received `from {sender}` message {id:?} that the broker never processed"
                    ),
                );
            };
            if processing.incarnation != self.incarnation {
                return fail(
                    Guarantee::NothingAfterDisconnect,
                    format!(
                        "received {id} processed by server#{}",
                        processing.incarnation
                    ),
                );
            }
            if processing.seen.sender_name != sender {
                return fail(
                    Guarantee::NothingAfterDisconnect,
                    format!(
                        "received {id} as `from {sender}` but it was sent by {} holding {}",
                        processing.seen.sender, processing.seen.sender_name
                    ),
                );
            }
            if let Some(first) = received.insert(id.to_string(), offset) {
                return fail(
                    Guarantee::ExactDelivery,
                    format!("received {id} twice (first ending at byte {first})"),
                );
            }
            if let Some(previous) = last
                && previous.event > processing.event
            {
                let guarantee = if previous.seen.sender == processing.seen.sender {
                    Guarantee::SenderFifo
                } else {
                    Guarantee::SameOrder
                };
                return fail(
                    guarantee,
                    format!(
                        "received {} (processed #{}) before {id} (processed #{}, trace line {})",
                        previous.seen.id, previous.event, processing.event, processing.trace_index
                    ),
                );
            }
            last = Some(processing);
            count += 1;
        }
        Ok(count)
    }

    /// Guarantee 5: the client received a prefix of what the broker wrote.
    fn stream_in_broker_order(&self) -> Result<(), Violation> {
        let received = &self.connection.received;
        let written = self.written();
        if written.starts_with(received) {
            return Ok(());
        }
        let at = received
            .iter()
            .zip(written)
            .take_while(|(a, b)| a == b)
            .count();
        let detail = format!(
            "{}: from byte {at} received {:?}, broker wrote {:?}",
            self.name(),
            line_at(received, at),
            line_at(written, at)
        );
        Err(violation(
            Guarantee::ConnectionOrder,
            detail,
            self.read_at(at),
        ))
    }

    /// Guarantees 6 and 8 for a final session on the healed network: all of
    /// its lines processed, all the broker wrote received, then the
    /// shutdown notice and a clean end of stream.
    fn complete_after_healing(&self, max_line: usize) -> Result<(), Violation> {
        let name = self.name();
        let last_read = self.connection.reads.last().map(|&(_, line)| line);
        let fail = |guarantee, what: String| {
            Err(violation(guarantee, format!("{name}: {what}"), last_read))
        };
        let welcome = format!("welcome {}\n", final_name(self.connection.client));
        if !self.written().starts_with(welcome.as_bytes()) {
            return fail(
                Guarantee::NoSilentLoss,
                format!(
                    "final session not welcomed; broker wrote {:?}",
                    line_at(self.written(), 0)
                ),
            );
        }
        let sent = sent_frames(&self.connection.sent, max_line);
        if self.processed().len() != sent.len() {
            return fail(
                Guarantee::NoSilentLoss,
                format!(
                    "{} of {} lines sent were processed",
                    self.processed().len(),
                    sent.len()
                ),
            );
        }
        match self.replay.closed.get(&self.conn) {
            Some(CloseReason::ShuttingDown) => {}
            Some(reason) => {
                return fail(
                    Guarantee::NoSilentLoss,
                    format!("closed as {reason:?} on a healthy network"),
                );
            }
            None => {
                return fail(
                    Guarantee::CleanShutdown,
                    "never closed by the shutdown".into(),
                );
            }
        }
        let (received, written) = (self.connection.received.len(), self.written().len());
        if received != written {
            return fail(
                Guarantee::CleanShutdown,
                format!("received {received} of the {written} bytes the broker wrote"),
            );
        }
        if self.connection.end != Some(End::EndOfStream) {
            return fail(
                Guarantee::CleanShutdown,
                format!(
                    "stream ended {:?}, not with a clean end of stream",
                    self.connection.end
                ),
            );
        }
        Ok(())
    }
}

/// Whether `id` is a whole message id. A line cut short by a crash or a
/// reset can still be processed (the server decodes an unfinished last
/// line); its truncated id names no message and is left to the prefix
/// checks.
fn is_tracked(id: &str) -> bool {
    id.len() > 2 && id.starts_with('<') && id.ends_with('>')
}

/// The frames a server would decode from `sent`, an unfinished last line
/// included (the server decodes it if the stream ends there).
fn sent_frames(sent: &[u8], max_line: usize) -> Vec<Frame> {
    let mut decoder = LineDecoder::new(max_line);
    let mut frames = Vec::new();
    decoder.decode(sent, &mut frames);
    decoder.finish(&mut frames);
    frames
}

/// The line of `bytes` that starts at or before `offset`, for messages.
fn line_at(bytes: &[u8], offset: usize) -> String {
    let start = bytes[..offset.min(bytes.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |lf| lf + 1);
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |lf| start + lf + 1);
    bytes[start..end].escape_ascii().to_string()
}

fn violation(guarantee: Guarantee, detail: String, trace_index: Option<usize>) -> Violation {
    Violation {
        guarantee,
        detail,
        trace_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_frames_include_an_unfinished_last_line() {
        let frames = sent_frames(b"ann\nbob: hi\r\nhalf", 64);
        let lines: Vec<_> = frames.into_iter().map(Result::unwrap).collect();
        assert_eq!(lines, ["ann", "bob: hi", "half"]);
    }

    #[test]
    fn line_at_finds_the_line_around_an_offset() {
        assert_eq!(line_at(b"one\ntwo\nthree", 5), "two\\n");
        assert_eq!(line_at(b"one\ntwo\n", 0), "one\\n");
        assert_eq!(line_at(b"", 0), "");
    }
}
