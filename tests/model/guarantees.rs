//! PROTOCOL.md's guarantees 1-10, each an invariant over a whole [`Trace`],
//! and [`Guarantee`], the names every check of them uses.
//!
//! Every check reads only the trace (what the shell reported and what the
//! broker answered), through [`Observed`], and PROTOCOL.md's grammar from
//! [`grammar`]. None of them consults the reference model, so they hold on
//! their own in the fuzz target too, and a failure names the guarantee that
//! broke and the step where it did.

// Shared with crates on Rust 1.85, which has no let chains: the nested
// `if let`s stay, though clippy on the chinwag package's Rust would
// collapse them.
#![allow(clippy::collapsible_if)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chinwag::broker::{CloseReason, ConnId, Input, Output};
use chinwag::news::Dialect;

use super::grammar::irc::{self, Heard};
use super::grammar::{self, Departure, Message, RoomNews};
use super::trace::{Observed, Trace, TraceStep, line_sender, walk};

/// PROTOCOL.md's guarantees, numbered as its "Ordering and delivery
/// guarantees" number them: 1-6 ordering and delivery, 7 the memory bound
/// of its flow control, 8 its clean shutdown, 9 that a burst is paid for by
/// its sender, 10 the order of rooms. The property tests, the fuzz targets and the simulator all
/// name what broke with these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guarantee {
    /// 1: a message goes to exactly the destinations logged in when it is
    /// processed, once each.
    ExactDelivery = 1,
    /// 2: lines from one connection are processed in send order, so one
    /// sender's messages reach each recipient in that order.
    PerSenderFifo = 2,
    /// 3: two recipients of the same two messages get them in the same order.
    SameRelativeOrder = 3,
    /// 4: a connection receives nothing after its disconnect is processed,
    /// and `from X` comes only from the connection holding X.
    NothingAfterDisconnect = 4,
    /// 5: what one connection is sent leaves in the order the broker
    /// processed its causes.
    PerConnectionOrder = 5,
    /// 6: nothing accepted is lost silently: what is sent reaches the
    /// socket unless the connection is closed first.
    NoSilentLoss = 6,
    /// 7: a connection has more than `--max-queue` bytes queued only by
    /// lines whose senders are then paused, and only for `--slow-timeout`.
    MemoryBound = 7,
    /// 8: shutdown delivers what was processed, tells every connection
    /// whose queue has room, and closes them all.
    CleanShutdown = 8,
    /// 9: the senders paused are exactly those whose lines took or kept an
    /// open queue past `--max-queue` that has not drained back since.
    SenderPays = 9,
    /// 10: a room's members get its messages and news in processing order,
    /// and exactly the room messages (but their own) sent while members.
    RoomOrder = 10,
}

impl Guarantee {
    /// Its number in PROTOCOL.md.
    pub fn number(self) -> u8 {
        self as u8
    }

    /// Its short name.
    pub fn name(self) -> &'static str {
        match self {
            Guarantee::ExactDelivery => "exact delivery",
            Guarantee::PerSenderFifo => "per-sender FIFO",
            Guarantee::SameRelativeOrder => "same relative order",
            Guarantee::NothingAfterDisconnect => "nothing after disconnect, no impersonation",
            Guarantee::PerConnectionOrder => "per-connection order",
            Guarantee::NoSilentLoss => "no silent loss",
            Guarantee::MemoryBound => "memory bound",
            Guarantee::CleanShutdown => "clean shutdown",
            Guarantee::SenderPays => "sender pays",
            Guarantee::RoomOrder => "room order",
        }
    }
}

/// `guarantee 6 (no silent loss)`.
impl fmt::Display for Guarantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "guarantee {} ({})", self.number(), self.name())
    }
}

/// A broken guarantee: which one, at which step, and what was seen.
#[derive(Debug)]
pub struct Violation {
    pub guarantee: Guarantee,
    pub step: usize,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Violation {
            guarantee,
            step,
            detail,
        } = self;
        write!(f, "{guarantee} broken at step {step}: {detail}")
    }
}

type Checked = Result<(), Violation>;

/// Runs every guarantee check, in order, and reports the first that fails.
pub fn check_all(trace: &Trace) -> Checked {
    guarantee_1_exact_delivery(trace)?;
    guarantee_2_per_sender_fifo(trace)?;
    guarantee_3_same_relative_order(trace)?;
    guarantee_4_nothing_after_disconnect(trace)?;
    guarantee_5_per_connection_order(trace)?;
    guarantee_6_no_silent_loss(trace)?;
    guarantee_7_memory_bound(trace)?;
    guarantee_8_clean_shutdown(trace)?;
    guarantee_9_sender_pays(trace)?;
    guarantee_10_room_order(trace)
}

/// Guarantee 1: A message is delivered to exactly the destinations logged in
/// when it is processed, once each, in the step that processes it: each
/// connection the destinations reach gets one line, in the form of the
/// first destination that reaches it (a room reaches its members but the
/// sender, if the sender is one). A full
/// queue is no excuse: the delivery is sent and its sender pays (guarantees 7
/// and 9).
pub fn guarantee_1_exact_delivery(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::ExactDelivery;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        if from_irc(seen, &step.input) {
            return Ok(());
        }
        let deliveries: Vec<(ConnId, &str)> = deliveries(step).collect();
        let Some(accepted) = accepted_message(seen, &step.input) else {
            return match deliveries.first() {
                Some((conn, line)) => fail(format!("{conn} got {line:?} but no message was sent")),
                None => Ok(()),
            };
        };
        let expected = accepted.deliveries(seen);
        for (recipient, line) in &expected {
            let copies = deliveries
                .iter()
                .filter(|(conn, _)| conn == recipient)
                .count();
            if copies > 1 {
                return fail(format!("{recipient} got {copies} lines for one message"));
            }
            if copies == 0 {
                return fail(format!(
                    "{recipient} is a destination but never got {line:?}"
                ));
            }
        }
        for (conn, sent) in deliveries {
            let Some((_, line)) = expected.iter().find(|(recipient, _)| *recipient == conn) else {
                return fail(format!(
                    "{conn} got {sent:?} but no destination online reaches it"
                ));
            };
            if sent != line {
                return fail(format!("{conn} got {sent:?} instead of {line:?}"));
            }
        }
        Ok(())
    })
}

/// Guarantee 2: Messages from one sender reach each recipient in the order they
/// were sent, each once.
///
/// A delivery is traced back by its content to the line that sent it (see
/// `received_messages`), so a delivery held back and sent in a later step
/// counts as out of order, not as a new message.
pub fn guarantee_2_per_sender_fifo(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::PerSenderFifo;
    let received = received_messages(trace).map_err(|(step, detail)| violation(G, step, detail))?;
    let mut last_from: BTreeMap<(ConnId, ConnId), usize> = BTreeMap::new();
    for message in received {
        let pair = (message.sender, message.recipient);
        if let Some(earlier) = last_from.insert(pair, message.origin) {
            if earlier >= message.origin {
                let Received {
                    sender, recipient, ..
                } = message;
                let detail = format!(
                    "{recipient} got the message {sender} sent at step {} after the one of step \
                     {earlier}",
                    message.origin
                );
                return Err(violation(G, message.emitted, detail));
            }
        }
    }
    Ok(())
}

/// Guarantee 3: Any two recipients that both get messages m1 and m2 get them in
/// the same relative order. A message is known by the step that sent it.
pub fn guarantee_3_same_relative_order(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::SameRelativeOrder;
    let received = received_messages(trace).map_err(|(step, detail)| violation(G, step, detail))?;
    let mut got: BTreeMap<ConnId, Vec<usize>> = BTreeMap::new();
    for message in &received {
        got.entry(message.recipient)
            .or_default()
            .push(message.origin);
    }
    // Recipients that each got their messages in processing order agree on
    // every pair: the common case, checked in one pass, so a long run (a
    // replayed journal) is not checked pair by pair.
    if got
        .values()
        .all(|origins| origins.is_sorted_by(|a, b| a < b))
    {
        return Ok(());
    }
    let sets: BTreeMap<ConnId, BTreeSet<usize>> = got
        .iter()
        .map(|(conn, origins)| (*conn, origins.iter().copied().collect()))
        .collect();
    for (first, first_got) in &got {
        for (second, second_got) in &got {
            let in_common = |mine: &Vec<usize>, theirs: &BTreeSet<usize>| -> Vec<usize> {
                mine.iter()
                    .copied()
                    .filter(|m| theirs.contains(m))
                    .collect()
            };
            let by_first = in_common(first_got, &sets[second]);
            let by_second = in_common(second_got, &sets[first]);
            if by_first != by_second {
                let detail = format!(
                    "{first} got the messages of steps {by_first:?} in that order, \
                     {second} got them as {by_second:?}"
                );
                return Err(violation(G, trace.steps.len() - 1, detail));
            }
        }
    }
    Ok(())
}

/// Guarantee 4: A connection gets nothing after its disconnect is processed
/// (nor before it opened), not even a `Pause` or `Resume`; `from X` comes only
/// from the connection holding X; a name is held by one connection at a time;
/// a peer's disconnect is processed as soon as it is reported.
pub fn guarantee_4_nothing_after_disconnect(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::NothingAfterDisconnect;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        let mut closed_now: BTreeSet<ConnId> = BTreeSet::new();
        let mut welcomed_now: BTreeSet<&str> = BTreeSet::new();
        for output in &step.outputs {
            let conn = output_conn(output);
            let opening_now =
                matches!(step.input, Input::Opened { conn: opened, .. } if opened == conn);
            if !seen.was_opened(conn) && !opening_now {
                return fail(format!("{output:?} for a connection never opened"));
            }
            if seen.was_closed(conn) || closed_now.contains(&conn) {
                return fail(format!("{output:?} after {conn} was closed"));
            }
            let line = match output {
                Output::Send { line, .. } => line,
                Output::Close { .. } => {
                    closed_now.insert(conn);
                    continue;
                }
                Output::Pause { .. } | Output::Resume { .. } => continue,
            };
            let line = line.as_str();
            if let Some((old, new)) = grammar::read_renamed(line) {
                let renamer = match &step.input {
                    Input::Line { conn: sender, .. } => Some(*sender),
                    _ => None,
                };
                if renamer.and_then(|r| seen.name(r)) != Some(old) {
                    return fail(format!("{conn} got {line:?} but no {old} renamed itself"));
                }
                if let Some(holder) = seen.holder(new).filter(|h| Some(*h) != renamer) {
                    return fail(format!("{conn} got {line:?}, a name {holder} holds"));
                }
            }
            if let Some((sender_name, _)) = grammar::read_delivery(line) {
                let sent_by = match &step.input {
                    Input::Line { conn: sender, .. } => seen.name(*sender),
                    _ => None,
                };
                if sent_by != Some(sender_name) {
                    return fail(format!(
                        "{conn} got {line:?} but the sender holds {sent_by:?}"
                    ));
                }
            }
            if let Some(name) = line.strip_prefix("welcome ") {
                let name = name.trim_end_matches('\n');
                if let Some(holder) = seen.holder(name) {
                    return fail(format!("{conn} welcomed as {name:?}, which {holder} holds"));
                }
                if !welcomed_now.insert(name) {
                    return fail(format!("{name:?} welcomed twice in one step"));
                }
            }
        }
        if let Input::Closed { conn } | Input::Released { conn } = step.input {
            if seen.is_open(conn) && !closed_now.contains(&conn) {
                return fail(format!("{conn}'s peer closed but the broker kept it open"));
            }
        }
        Ok(())
    })
}

/// Guarantee 5: What one connection is sent leaves in the order the broker
/// processed its causes: each line is caused by the step that emits it, starts
/// with a defined prefix, the welcome comes before any delivery or room
/// line, a message's errors follow its destination list, and the shutdown
/// notice is the last line.
pub fn guarantee_5_per_connection_order(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::PerConnectionOrder;
    let mut welcomed: BTreeSet<ConnId> = BTreeSet::new();
    let mut told_shutdown: BTreeSet<ConnId> = BTreeSet::new();
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        let mut missing_peers: Vec<&str> = Vec::new();
        for output in &step.outputs {
            let Output::Send { conn, line } = output else {
                continue;
            };
            let (conn, line) = (*conn, line.as_str());
            // The prefixes are the line protocol's: what an IRC connection
            // is sent has IRC.md's grammar, and the property tests hold it
            // to the model's byte for byte.
            if speaks_irc(seen, step, conn) {
                continue;
            }
            if told_shutdown.contains(&conn) {
                return fail(format!("{conn} got {line:?} after the shutdown notice"));
            }
            if !line.ends_with('\n') || line.matches('\n').count() != 1 {
                return fail(format!("{conn} got {line:?}, which is not one line"));
            }
            let own_line = matches!(step.input, Input::Line { conn: from, .. } if from == conn);
            let some_line = matches!(step.input, Input::Line { .. });
            let shutdown_cause = match step.input {
                Input::Shutdown => true,
                Input::Opened { conn: opened, .. } => opened == conn && seen.shutdown_seen(),
                _ => false,
            };
            if line == grammar::SHUTTING_DOWN {
                if !shutdown_cause {
                    return fail(format!("{conn} got {line:?} with no shutdown"));
                }
                told_shutdown.insert(conn);
            } else if line.starts_with("welcome ") {
                if !own_line || !welcomed.insert(conn) {
                    return fail(format!("{conn} got {line:?} without logging in"));
                }
            } else if line.starts_with("from ") {
                if !some_line || !welcomed.contains(&conn) {
                    return fail(format!("{conn} got {line:?} before its welcome"));
                }
            } else if line == grammar::SERVER_FULL || line == grammar::TOO_MANY_FROM_ADDRESS {
                if !matches!(step.input, Input::Opened { conn: opened, .. } if opened == conn) {
                    return fail(format!("{conn} got {line:?} but was not opening"));
                }
            } else if line == grammar::LOGIN_TIMED_OUT {
                if step.input != Input::Timeout || seen.name(conn).is_some() {
                    return fail(format!("{conn} got {line:?} but no login was due"));
                }
            } else if let Some((_, news)) = grammar::read_room_news(line) {
                let caused = match news {
                    RoomNews::Joined(_) | RoomNews::Left(_, Departure::Parted) => some_line,
                    // The close of the one who left, in this step.
                    RoomNews::Left(name, _) => step.outputs.iter().any(|output| {
                        matches!(output, Output::Close { name: Some(closed), .. } if **closed == *name)
                    }),
                    RoomNews::EveryoneLeft => shutdown_cause,
                };
                if !caused || !welcomed.contains(&conn) {
                    return fail(format!("{conn} got {line:?} with no such cause"));
                }
            } else if line.starts_with("renamed ") {
                if !some_line || !welcomed.contains(&conn) {
                    return fail(format!("{conn} got {line:?} with no rename"));
                }
            } else if line.starts_with("names ") || line.starts_with("rooms:") {
                if !own_line || !welcomed.contains(&conn) {
                    return fail(format!("{conn} got {line:?} but did not ask"));
                }
            } else if line.starts_with("error: ") {
                if !own_line {
                    return fail(format!("{conn} got {line:?} for a line it did not send"));
                }
                let missing = line.strip_prefix("error: no such peer: ");
                let missing = missing.or_else(|| line.strip_prefix("error: not in room: "));
                if let Some(destination) = missing {
                    missing_peers.push(destination.trim_end_matches('\n'));
                }
            } else {
                return fail(format!("{conn} got {line:?}, which has no defined prefix"));
            }
        }
        if let Some(accepted) = accepted_message(seen, &step.input) {
            let listed = &accepted.message.destinations;
            let position = |peer: &&str| listed.iter().position(|d| d == peer);
            let positions: Vec<Option<usize>> = missing_peers.iter().map(position).collect();
            if positions.contains(&None) || !positions.is_sorted() {
                return fail(format!(
                    "errors for {missing_peers:?} out of order of {listed:?}"
                ));
            }
        }
        Ok(())
    })
}

/// Guarantee 6: Nothing accepted is lost silently: every non-blank line from an
/// open connection draws a visible effect (but a message only to rooms its
/// sender is alone in, which reaches no one), every close has its cause in the
/// same step, and a slow-consumer cut happens only on a timer step at least
/// `slow_timeout` after the step whose line took the queue past `max_queue`,
/// with the queue still past it. Closes for a peer that left or for shutdown
/// still write what was queued.
pub fn guarantee_6_no_silent_loss(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::NoSilentLoss;
    if !CloseReason::PeerClosed.flushes_queue() || !CloseReason::ShuttingDown.flushes_queue() {
        let detail = "closing for a departed peer or shutdown discards the queue".to_string();
        return Err(violation(G, 0, detail));
    }
    let slow_timeout = trace.config.slow_timeout;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        if let Input::Line { conn, frame } = &step.input {
            let counts = frame.as_ref().map_or(true, |line| !grammar::is_blank(line));
            // A message only to rooms its sender is alone in reaches nobody,
            // and is no error: there is nothing to lose.
            let to_no_one = accepted_message(seen, &step.input).is_some_and(|accepted| {
                let destinations = accepted.message.destinations.iter();
                destinations.clone().all(|d| seen.members(d).contains(conn))
                    && accepted.deliveries(seen).is_empty()
            });
            // IRC's registration lines (NICK before USER, CAP END before
            // either), PONG and PASS rightly draw nothing.
            let counts = counts && !to_no_one && !seen.is_irc(*conn);
            if seen.is_open(*conn) && counts && step.outputs.is_empty() {
                return fail(format!("{conn}'s line {frame:?} had no effect at all"));
            }
        }
        let mut during = seen.clone();
        during.enter(step);
        for output in &step.outputs {
            if let Output::Close { conn, reason, .. } = output {
                let caused = match reason {
                    CloseReason::PeerClosed => matches!(
                        step.input,
                        Input::Closed { conn: gone } | Input::Released { conn: gone } if gone == *conn
                    ),
                    CloseReason::DeadPeer => {
                        step.input == Input::Timeout
                            && seen.stalled_since(*conn).is_some_and(|since| {
                                since + trace.config.write_timeout <= step.time
                            })
                    }
                    CloseReason::ShuttingDown => match step.input {
                        Input::Shutdown => true,
                        Input::Opened { conn: opened, .. } => opened == *conn,
                        _ => false,
                    },
                    CloseReason::Refused => {
                        matches!(step.input, Input::Opened { conn: opened, .. } if opened == *conn)
                    }
                    CloseReason::LoginTimeout => {
                        step.input == Input::Timeout
                            && seen.name(*conn).is_none()
                            && seen.opened_at(*conn).is_some_and(|opened| {
                                opened + trace.config.login_timeout <= step.time
                            })
                    }
                    // IRC connections' own ways to go (the model's traces
                    // are of the line protocol, but a journal may hold them).
                    CloseReason::Quit => matches!(
                        step.input,
                        Input::Line { conn: from, .. } if from == *conn
                    ),
                    CloseReason::PingTimeout => step.input == Input::Timeout,
                    CloseReason::SlowConsumer => {
                        if let Some(why) = slow_cut_undue(&during, *conn, step, slow_timeout) {
                            return fail(format!(
                                "{conn} closed as SlowConsumer with no such cause: {why}"
                            ));
                        }
                        true
                    }
                };
                if !caused {
                    return fail(format!("{conn} closed as {reason:?} with no such cause"));
                }
            }
            during.emit(step, output);
        }
        Ok(())
    })
}

/// Why cutting `conn` as a slow consumer now, in `step`, with `during` the
/// state just before the cut, is not due, or `None` if it is: it must be
/// a timer step, its queue still past `max_queue`, since a step at least
/// `slow_timeout` before this one.
fn slow_cut_undue(
    during: &Observed,
    conn: ConnId,
    step: &TraceStep,
    slow_timeout: std::time::Duration,
) -> Option<String> {
    let queued = during.unflushed(conn);
    let Some(since) = during.over_since(conn) else {
        return Some(format!("its queue ({queued} bytes) is not past max_queue"));
    };
    if step.input != Input::Timeout {
        return Some(format!("{:?} is no timer step", step.input));
    }
    let due = since + slow_timeout;
    if step.time < due {
        return Some(format!(
            "its queue has been past max_queue only since {since}, and the slow timeout \
             ({slow_timeout:?}) runs out at {due}, after {}",
            step.time
        ));
    }
    None
}

/// Guarantee 7: A queue goes past `max_queue` only by lines whose senders
/// are then paused, and stays past it no longer than `slow_timeout`: a `Send`
/// that leaves its connection's queue over `max_queue` must be in a step
/// whose input is a line from some connection that is paused at the end of
/// the step (so no notice and no unprompted line ever takes a queue over),
/// and a timer step at or after `slow_timeout` past the step that took a
/// queue over, with the queue still over, must close its connection.
pub fn guarantee_7_memory_bound(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::MemoryBound;
    let max_queue = trace.config.max_queue;
    let slow_timeout = trace.config.slow_timeout;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        if step.input == Input::Timeout {
            for (conn, since) in seen.over_queues() {
                let closes = |output: &Output| {
                    matches!(output, Output::Close { .. }) && output_conn(output) == conn
                };
                let closed = step.outputs.iter().any(closes);
                if since + slow_timeout <= step.time && !closed {
                    let queued = seen.unflushed(conn);
                    return fail(format!(
                        "{conn} has had more than {max_queue} bytes queued ({queued} now) since \
                         {since}, {slow_timeout:?} or more before the timer fired at {}, \
                         and was not closed",
                        step.time
                    ));
                }
            }
        }
        let mut during = seen.clone();
        during.enter(step);
        let mut over = Vec::new();
        for output in &step.outputs {
            during.emit(step, output);
            if let Output::Send { conn, line } = output {
                if during.is_over(*conn) {
                    over.push((*conn, line.as_str(), during.unflushed(*conn)));
                }
            }
        }
        for (conn, line, queued) in over {
            let sent = format!(
                "{conn} was sent {line:?}, leaving {queued} bytes queued, over {max_queue}"
            );
            // News of a member that left has no sender to pause.
            let leaving = matches!(
                grammar::read_room_news(line),
                Some((
                    _,
                    RoomNews::Left(_, Departure::Disconnected | Departure::SlowConsumer)
                ))
            );
            // Nor has IRC's news of it, its QUIT, nor its keepalive PING,
            // which IRC.md sends whatever the queue holds.
            let irc_unprompted = seen.is_irc(conn)
                && (line == irc::ping() || matches!(irc::read(line), Some(Heard::Quit(_))));
            if leaving || irc_unprompted {
                continue;
            }
            match line_sender(&step.input) {
                None => return fail(format!("{sent}, and no line caused it")),
                Some(sender) if !during.is_paused(sender) => {
                    return fail(format!(
                        "{sent}, but {sender}, whose line caused it, is not paused after the step"
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    })
}

/// Guarantee 8: On shutdown every open connection is told (first that each
/// room it is in is left, in room order), then closed in a way
/// that writes all it had queued; one whose queue has no room left for the
/// notice is closed the same way without it. Nothing else happens afterwards,
/// except that a connection accepted late is told and closed the same way.
/// The `Resume`s that closing a full queue releases may come in the
/// shutdown step too (guarantee 9 checks them); a `Pause` may not.
pub fn guarantee_8_clean_shutdown(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::CleanShutdown;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        // Each room's `everyone left`, in room order, then the notice, each
        // if it fits when its turn comes.
        // IRC says none of the room lines, and its notice is an ERROR.
        let told_and_closed = |conn: ConnId| {
            let rooms = seen.rooms_of(conn).into_iter();
            let rooms = rooms.filter(|_| !speaks_irc(seen, step, conn));
            let mut notices: Vec<String> = rooms
                .map(|room| grammar::room_news(room, &RoomNews::EveryoneLeft))
                .collect();
            notices.push(match speaks_irc(seen, step, conn) {
                true => irc::error("server shutting down"),
                false => grammar::SHUTTING_DOWN.to_string(),
            });
            let mut queued = seen.unflushed(conn);
            let mut told = Vec::new();
            for notice in notices {
                if queued + notice.len() > trace.config.max_queue {
                    continue;
                }
                queued += notice.len();
                told.push(Output::Send {
                    conn,
                    line: notice.into(),
                });
            }
            let reason = CloseReason::ShuttingDown;
            let name = seen.name(conn).map(Arc::from);
            told.push(Output::Close { conn, reason, name });
            told
        };
        let expected: Vec<Output> = match step.input {
            Input::Shutdown => seen
                .open_connections()
                .into_iter()
                .flat_map(told_and_closed)
                .collect(),
            Input::Opened { conn, .. } if seen.shutdown_seen() => told_and_closed(conn),
            _ if seen.shutdown_seen() => Vec::new(),
            _ => return Ok(()),
        };
        for conn in expected.iter().chain(&step.outputs).map(output_conn) {
            let wanted: Vec<&Output> = expected.iter().filter(|o| output_conn(o) == conn).collect();
            let got: Vec<&Output> = step
                .outputs
                .iter()
                .filter(|o| output_conn(o) == conn && !matches!(o, Output::Resume { .. }))
                .collect();
            if wanted != got {
                return fail(format!("{conn} should get {wanted:?} but got {got:?}"));
            }
        }
        Ok(())
    })
}

/// Guarantee 9: A burst is paid for by its sender. A connection is blocked on
/// a queue when a line it sent made the broker send that queue something that
/// left it past `max_queue`, until the queue drains back to `max_queue` or
/// either of them closes. After every step the paused connections are
/// exactly the open ones blocked on some queue; a `Pause` comes only for an
/// open connection not paused and blocked (by the outputs before it), a
/// `Resume` only for an open connection paused and blocked on nothing.
pub fn guarantee_9_sender_pays(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::SenderPays;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        let mut during = seen.clone();
        during.enter(step);
        for output in &step.outputs {
            match *output {
                Output::Pause { conn } => {
                    if !during.is_open(conn) {
                        return fail(format!("{conn} paused but it is not open"));
                    }
                    if during.is_paused(conn) {
                        return fail(format!("{conn} paused but it was paused already"));
                    }
                    if during.blocked_on(conn).is_empty() {
                        return fail(format!(
                            "{conn} paused but no line of it took a queue past {}",
                            trace.config.max_queue
                        ));
                    }
                }
                Output::Resume { conn } => {
                    if !during.is_open(conn) {
                        return fail(format!("{conn} resumed but it is not open"));
                    }
                    if !during.is_paused(conn) {
                        return fail(format!("{conn} resumed but it was not paused"));
                    }
                    let blocking = during.blocked_on(conn);
                    if !blocking.is_empty() {
                        return fail(format!(
                            "{conn} resumed while its lines still hold {} past {}",
                            queues(&during, &blocking),
                            trace.config.max_queue
                        ));
                    }
                }
                Output::Send { .. } | Output::Close { .. } => {}
            }
            during.emit(step, output);
        }
        let blocked = during.blocked();
        if let Some(&conn) = blocked.difference(during.paused()).next() {
            return fail(format!(
                "{conn}'s lines hold {} past {}, but it is not paused",
                queues(&during, &during.blocked_on(conn)),
                trace.config.max_queue
            ));
        }
        if let Some(&conn) = during.paused().difference(&blocked).next() {
            return fail(format!(
                "{conn} is still paused, but no queue its lines took past {} is still open \
                 and past it",
                trace.config.max_queue
            ));
        }
        Ok(())
    })
}

/// Guarantee 10: Rooms have one order. Each room line is caused by the
/// step that emits it, so a room's members get its lines in the order
/// they were processed as long as each step sends each member exactly the
/// right ones, in the right order; that is what is checked, step by step,
/// against the members an observer knows (each connection is in a room
/// from the `joined` line about itself to its own `left` line, `everyone
/// left` line or close):
/// - a room message goes to each member of each room it lists that its
///   sender is in, but the sender, once (as its one `from` line), and a
///   `from <sender> to <room>` line goes to no one else;
/// - a join's news goes to the room's members and the one who joined, a
///   part's to the members (the one who parted included), a rename's to
///   the renamer and everyone sharing a room with it, once each, as the
///   one who joined, parted or renamed was told it, and to no one else;
/// - a member closed for any reason but the shutdown is told about, one
///   line per room in room order with the reason, to every member left;
/// - so in a step that cuts several members, each member gets the news in
///   the order of the cuts, the same order for all.
pub fn guarantee_10_room_order(trace: &Trace) -> Checked {
    const G: Guarantee = Guarantee::RoomOrder;
    walk(trace, |index, seen, step| {
        let fail = |detail| Err(violation(G, index, detail));
        let sends = step.outputs.iter().filter_map(|output| match output {
            Output::Send { conn, line } => Some((*conn, line.as_str())),
            _ => None,
        });
        let sends: Vec<(ConnId, &str)> = sends.collect();
        if let Some(accepted) = accepted_message(seen, &step.input) {
            let sender = accepted.sender;
            let rooms = accepted.message.destinations.iter();
            let rooms = rooms.filter(|d| grammar::is_room(d) && seen.members(d).contains(&sender));
            let rooms: Vec<&String> = rooms.collect();
            for room in &rooms {
                for member in seen.members(room).into_iter().filter(|m| *m != sender) {
                    let got = deliveries(step).filter(|(conn, _)| *conn == member).count();
                    if got != 1 {
                        return fail(format!(
                            "{member}, a member of {room}, got {got} lines for a message to it"
                        ));
                    }
                }
            }
            for (conn, line) in deliveries(step) {
                let Some((_, Some(room))) = grammar::read_delivery(line) else {
                    continue;
                };
                let member = rooms.iter().any(|r| *r == room) && seen.members(room).contains(&conn);
                if !member || conn == sender {
                    return fail(format!("{conn} got {line:?} but is no member it reaches"));
                }
            }
        }
        let mut expected: Vec<(ConnId, String)> = Vec::new();
        let sender = line_sender(&step.input);
        let sender_name = sender.and_then(|conn| seen.name(conn));
        if let (Some(sender), Some(name)) = (sender, sender_name) {
            for (_, line) in sends.iter().filter(|(conn, _)| *conn == sender) {
                // What the sender was told of its own join, part or
                // rename, in either dialect, is what everyone told gets.
                let news = own_room_news(line, seen.is_irc(sender), name);
                let told: Vec<ConnId> = match &news {
                    Some(News::Joined(room, _)) => {
                        let mut members = seen.members(room);
                        members.push(sender);
                        members
                    }
                    Some(News::Parted(room, _)) => seen.members(room),
                    Some(News::Renamed(..)) => {
                        let mut sharing = BTreeSet::from([sender]);
                        for room in seen.rooms_of(sender) {
                            sharing.extend(seen.members(room));
                        }
                        sharing.into_iter().collect()
                    }
                    None => Vec::new(),
                };
                if let Some(news) = news {
                    let said = |conn: ConnId| (conn, news.said(seen.is_irc(conn)));
                    expected.extend(told.into_iter().map(said));
                }
            }
        }
        let mut during = seen.clone();
        during.enter(step);
        for output in &step.outputs {
            if let Output::Close { conn, reason, .. } = output {
                let departure = match reason {
                    // An IRC client's quit or ping timeout reads as a
                    // disconnect too (IRC.md), in a journal that holds one.
                    CloseReason::PeerClosed
                    | CloseReason::DeadPeer
                    | CloseReason::Quit
                    | CloseReason::PingTimeout => Some(Departure::Disconnected),
                    CloseReason::SlowConsumer => Some(Departure::SlowConsumer),
                    _ => None,
                };
                if let (Some(departure), Some(name)) = (departure, during.name(*conn)) {
                    // An IRC member hears it once, by a QUIT, at the first
                    // room it shared.
                    let mut quit_told = BTreeSet::new();
                    for room in during.rooms_of(*conn) {
                        let news =
                            grammar::room_news(room, &RoomNews::Left(name.to_string(), departure));
                        for member in during.members(room).into_iter().filter(|m| m != conn) {
                            if !during.is_irc(member) {
                                expected.push((member, news.clone()));
                            } else if quit_told.insert(member) {
                                expected.push((member, irc::quit(name, departure)));
                            }
                        }
                    }
                }
            }
            during.emit(step, output);
        }
        let is_room_line = |line: &str| {
            let irc_news = matches!(
                irc::read(line),
                Some(Heard::Joined(..) | Heard::Parted(..) | Heard::Quit(_) | Heard::Renamed(..))
            );
            let news = grammar::read_room_news(line);
            let shutdown = matches!(news, Some((_, RoomNews::EveryoneLeft)));
            irc_news || (news.is_some() && !shutdown) || grammar::read_renamed(line).is_some()
        };
        let receivers = sends.iter().map(|(conn, _)| *conn);
        let conns: BTreeSet<ConnId> = receivers
            .chain(expected.iter().map(|(conn, _)| *conn))
            .collect();
        for conn in conns {
            let got: Vec<&str> = sends
                .iter()
                .filter(|(to, line)| *to == conn && is_room_line(line))
                .map(|(_, line)| *line)
                .collect();
            let wanted: Vec<&str> = expected
                .iter()
                .filter(|(to, _)| *to == conn)
                .map(|(_, line)| line.as_str())
                .collect();
            if got != wanted {
                return fail(format!(
                    "{conn} should get the room lines {wanted:?} but got {got:?}"
                ));
            }
        }
        Ok(())
    })
}

/// A join, part or rename of a room member, as guarantee 10 follows it
/// into either dialect.
enum News {
    Joined(String, String),
    Parted(String, String),
    Renamed(String, String),
}

impl News {
    /// The news as a reader of one dialect gets it.
    fn said(&self, irc: bool) -> String {
        match (self, irc) {
            (News::Joined(room, name), false) => {
                grammar::room_news(room, &RoomNews::Joined(name.clone()))
            }
            (News::Parted(room, name), false) => {
                grammar::room_news(room, &RoomNews::Left(name.clone(), Departure::Parted))
            }
            (News::Renamed(old, new), false) => grammar::renamed(old, new),
            (News::Joined(room, name), true) => irc::joined(name, room),
            (News::Parted(room, name), true) => irc::parted(name, room),
            (News::Renamed(old, new), true) => irc::nick(old, new),
        }
    }
}

/// The news `line`, sent to the one named `name`, gives of that one's own
/// join, part or rename.
fn own_room_news(line: &str, irc: bool, name: &str) -> Option<News> {
    let own = |who: &str| who == name;
    if irc {
        return match irc::read(line)? {
            Heard::Joined(who, room) if own(who) => Some(News::Joined(room.into(), name.into())),
            Heard::Parted(who, room) if own(who) => Some(News::Parted(room.into(), name.into())),
            Heard::Renamed(old, new) if own(old) => Some(News::Renamed(name.into(), new.into())),
            _ => None,
        };
    }
    match grammar::read_room_news(line) {
        Some((room, RoomNews::Joined(who))) if own(&who) => {
            Some(News::Joined(room.into(), name.into()))
        }
        Some((room, RoomNews::Left(who, Departure::Parted))) if own(&who) => {
            Some(News::Parted(room.into(), name.into()))
        }
        _ => match grammar::read_renamed(line) {
            Some((old, new)) if own(old) => Some(News::Renamed(name.into(), new.into())),
            _ => None,
        },
    }
}

/// Whether `conn` speaks IRC, in `step` (which may open it).
fn speaks_irc(seen: &Observed, step: &TraceStep, conn: ConnId) -> bool {
    let opened_irc = matches!(
        step.input,
        Input::Opened { conn: opened, dialect: Dialect::Irc, .. } if opened == conn
    );
    seen.is_irc(conn) || opened_irc
}

/// Whether `input` is a line from an IRC connection. Guarantees 1-3 read
/// messages by the line protocol's grammar (`dest, ...: text`), which an
/// IRC line is not: what IRC's PRIVMSG delivers is held to the reference
/// model byte for byte instead, and guarantee 10 checks the room order of
/// every dialect.
fn from_irc(seen: &Observed, input: &Input) -> bool {
    matches!(input, Input::Line { conn, .. } if seen.is_irc(*conn))
}

/// `c2's queue (75 bytes, over since 0.004000s)`, for each of `conns`,
/// joined by `and`.
fn queues(seen: &Observed, conns: &[ConnId]) -> String {
    let described: Vec<String> = conns
        .iter()
        .map(|&conn| {
            let queued = seen.unflushed(conn);
            match seen.over_since(conn) {
                Some(since) => format!("{conn}'s queue ({queued} bytes, over since {since})"),
                None => format!("{conn}'s queue ({queued} bytes)"),
            }
        })
        .collect();
    described.join(" and ")
}

/// A message line the broker must process as a message: from an open,
/// logged-in connection, non-blank and well formed.
struct Accepted {
    sender: ConnId,
    sender_name: String,
    message: Message,
}

impl Accepted {
    /// The connections the destinations reach, in the order first
    /// reached, each with the line the first destination that reaches it
    /// gives it. A name reaches its holder; a room its members but the
    /// sender, if the sender is one of them.
    fn deliveries(&self, seen: &Observed) -> Vec<(ConnId, String)> {
        let mut deliveries: Vec<(ConnId, String)> = Vec::new();
        for destination in &self.message.destinations {
            let reached: Vec<ConnId> = if grammar::is_room(destination) {
                let members = seen.members(destination);
                if !members.contains(&self.sender) {
                    continue;
                }
                members.into_iter().filter(|m| *m != self.sender).collect()
            } else {
                seen.holder(destination).into_iter().collect()
            };
            let text = &self.message.text;
            for conn in reached {
                // An IRC reader gets a PRIVMSG to the room, or to its nick:
                // the destination that reaches it.
                let line = match seen.is_irc(conn) {
                    true => irc::delivery(&self.sender_name, false, destination, text),
                    false => grammar::delivery_via(&self.sender_name, destination, text),
                };
                if !deliveries.iter().any(|(reached, _)| *reached == conn) {
                    deliveries.push((conn, line));
                }
            }
        }
        deliveries
    }
}

fn accepted_message(seen: &Observed, input: &Input) -> Option<Accepted> {
    let Input::Line {
        conn,
        frame: Ok(line),
    } = input
    else {
        return None;
    };
    let sender_name = seen.name(*conn)?.to_string();
    if from_irc(seen, input)
        || !seen.is_open(*conn)
        || grammar::is_blank(line)
        || grammar::is_command(line)
    {
        return None;
    }
    let message = grammar::parse_message(line).ok()?;
    Some(Accepted {
        sender: *conn,
        sender_name,
        message,
    })
}

/// One `from` line a connection was sent, traced back to the line that
/// sent the message.
struct Received {
    recipient: ConnId,
    /// The step whose outputs hold the delivery.
    emitted: usize,
    /// The sender's connection, and the step that processed its line.
    sender: ConnId,
    origin: usize,
}

/// Every delivery in the trace, in the order sent, each traced back to the
/// latest line at or before it that could have sent it: a message line
/// with the same text, from the connection holding the sender's name when
/// it was processed, listing a destination that gives that form. Fails,
/// with the step and what was seen, if some delivery has no such line.
fn received_messages(trace: &Trace) -> Result<Vec<Received>, (usize, String)> {
    // For each step, the delivery lines its input could send, and from whom.
    let mut sent: Vec<Option<(ConnId, Vec<String>)>> = Vec::new();
    // The steps whose input is an IRC line (see `from_irc`).
    let mut irc_steps: BTreeSet<usize> = BTreeSet::new();
    let walked = walk::<()>(trace, |index, seen, step| {
        if from_irc(seen, &step.input) {
            irc_steps.insert(index);
        }
        let lines = accepted_message(seen, &step.input).map(|accepted| {
            let Accepted {
                sender,
                sender_name,
                message,
            } = accepted;
            let destinations = message.destinations.iter();
            let lines = destinations.map(|d| grammar::delivery_via(&sender_name, d, &message.text));
            (sender, lines.collect())
        });
        sent.push(lines);
        Ok(())
    });
    debug_assert!(walked.is_ok());
    let mut received = Vec::new();
    for (emitted, step) in trace.steps.iter().enumerate() {
        if irc_steps.contains(&emitted) {
            continue;
        }
        // Traced by the line protocol's `from` lines (see `from_irc`).
        let from_lines = deliveries(step).filter(|(_, line)| line.starts_with("from "));
        for (recipient, line) in from_lines {
            let origin = (0..=emitted).rev().find_map(|index| match &sent[index] {
                Some((sender, lines)) if lines.iter().any(|l| l == line) => Some((*sender, index)),
                _ => None,
            });
            let Some((sender, origin)) = origin else {
                return Err((
                    emitted,
                    format!("{recipient} got {line:?}, which nobody sent"),
                ));
            };
            received.push(Received {
                recipient,
                emitted,
                sender,
                origin,
            });
        }
    }
    Ok(received)
}

/// The deliveries of a step, `from ` lines and IRC's PRIVMSGs and
/// NOTICEs from users, with their recipients.
fn deliveries(step: &TraceStep) -> impl Iterator<Item = (ConnId, &str)> {
    step.outputs.iter().filter_map(|output| match output {
        Output::Send { conn, line } => {
            let line = line.as_str();
            let irc = matches!(irc::read(line), Some(Heard::Delivery { .. }));
            (irc || line.starts_with("from ")).then_some((*conn, line))
        }
        _ => None,
    })
}

fn output_conn(output: &Output) -> ConnId {
    match output {
        Output::Send { conn, .. }
        | Output::Close { conn, .. }
        | Output::Pause { conn }
        | Output::Resume { conn } => *conn,
    }
}

fn violation(guarantee: Guarantee, step: usize, detail: String) -> Violation {
    Violation {
        guarantee,
        step,
        detail,
    }
}
