//! The checker: judges a finished run against PROTOCOL.md's guarantees,
//! numbered 1-8 as [`Guarantee`] numbers them.
//!
//! It works from two kinds of evidence. The broker's witness log of each
//! server incarnation is a [`Trace`], the record the property tests check,
//! and is checked by the same code: the reference model
//! (`tests/model/reference.rs`) replayed over it must decide exactly what
//! the broker decided at every step, and every guarantee check of
//! `tests/model/guarantees.rs` must hold over it. A difference is named by
//! the guarantee a check finds broken in the log up to it, if any.
//!
//! Then comes what only the simulator can see: what the clients actually
//! sent and received, held against that log connection by connection, so
//! bugs in the shell between the broker and the sockets show up too.
//!
//! - Guarantee 2, end to end: the lines the broker processed from a
//!   connection are a prefix of what its client sent, framed by PROTOCOL.md's
//!   rules read literally (`tests/model/framing.rs`), not by the codec under
//!   test. (A prefix: the network may lose the rest, and after a reset the
//!   server drops an unterminated last line it would process at end of
//!   stream.) A client that half-closed, on a link no fault touched, is
//!   owed the whole: its end of stream may not overtake its lines.
//! - Guarantee 6, end to end: what a client received is a prefix of what the
//!   broker sent its connection, byte for byte: nothing lost or altered in
//!   between (a line that arrives out of order is guarantee 5, a byte the
//!   broker never sent guarantee 5, or 4 once the broker had closed it).
//! - Guarantee 10, end to end: in each of its rooms, a client received
//!   exactly what the log owes it there ([`RoomLedger`]: the room messages
//!   processed while it was a member, not its own, and the joins, leaves,
//!   renames and `everyone left` of the room), in log order, nothing
//!   skipped, up to the last line it received. Messages are known by
//!   their ids, so each is matched to the step that processed its
//!   sender's line, whatever form it arrived in.
//! - Guarantees 6 and 8 after healing: each client's final session is
//!   welcomed, and unless the broker cut it as a slow consumer (which the
//!   model has already found due), the shutdown closes it, after it had
//!   every line it sent processed (a client typing on into the shutdown:
//!   every line it sent before it started) and received every byte the
//!   broker sent it, with a clean end of stream.
//! - PROTOCOL.md's "Connection limits" after healing: a final session the
//!   broker refused (the model has found the refusal due) is told and
//!   closed with a clean end of stream if it had sent nothing, and the
//!   client tries again; a client refused every time is let off the
//!   checks above. A connection that never logs in is closed by the login
//!   timeout (or refused), and gets the notice and a clean end of stream.
//!
//! - Guarantees 6 and 8 on the wire: a reset the server caused (it dropped
//!   a socket with input unread, or a client wrote after it had dropped
//!   one; see `crate::net`) comes only after the close lingered as
//!   PROTOCOL.md's "Closing here means" says: reading until the client
//!   closes too, for the write timeout at a shutdown (or until the server
//!   exits at the shutdown timeout) and 1 s or 4 KiB otherwise. A reset
//!   discards what the client had received and not read, so an early one
//!   can lose processed lines, whether or not this run's client lost any.
//!   Resets the client caused itself (it had closed first), cuts, faults on
//!   its link or host and server crashes are excused.
//!
//! Client connections are matched to broker connection ids through the
//! accept order each server incarnation recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use std::time::Duration;

use chinwag::broker::{CloseReason, ConnId, Input, Output};
use chinwag::codec::Frame;
use chinwag::news::Dialect;
use chinwag::time::Time;

use crate::faults::{Fault, FaultKind};
use crate::model::framing::frames_by_the_book;
use crate::model::grammar::irc::{self, Heard};
use crate::model::grammar::{self, Command, Departure, RoomNews};
use crate::model::guarantees::{self, Guarantee};
use crate::model::reference::{Model, per_connection};
use crate::model::trace::{Observed, Trace, TraceStep, walk};
use crate::net::{Cause, Side};
use crate::record::{ClientConnection, End, Incarnation, Records, ResetSent, Role, server_source};
use crate::scenario::{Scenario, final_name, steady_budget};

/// What a failing seed broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// One of PROTOCOL.md's guarantees.
    Guarantee(Guarantee),
    /// A decision of PROTOCOL.md that no guarantee check caught (a reply's
    /// wording, a refused login, when a dead peer is cut): the broker did
    /// not do what the reference model does.
    Protocol,
    /// A server task panicked or a host's software failed.
    Crash,
    /// A rule of the PROTOCOL.md section named that no guarantee covers,
    /// seen end to end: a refused or timed-out connection that was not
    /// told and closed.
    Rule(&'static str),
}

/// The section of PROTOCOL.md with the connection limits and the login
/// timeout.
const CONNECTION_LIMITS: &str = "Connection limits";

/// The section of PROTOCOL.md on queues, pausing senders and slow
/// consumers.
const FLOW_CONTROL: &str = "Flow control";

/// How long after a fault on a client's link or host ends its connections
/// are still excused from the steady-reader check: segments held or slowed
/// by it arrive late, and one dropped by a partition never frees its
/// credit.
const FAULT_AFTERMATH: Duration = Duration::from_secs(2);

/// How long, and for how many bytes, the server lingers after a close
/// other than a shutdown's: PROTOCOL.md's "Closing here means" and the
/// shell's `linger_limits`.
const BRIEF_LINGER: Duration = Duration::from_secs(1);
const BRIEF_LINGER_BYTES: usize = 4 * 1024;

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Broken::Guarantee(guarantee) => guarantee.fmt(f),
            Broken::Protocol => {
                f.write_str("protocol: the broker differs from the reference model")
            }
            Broken::Crash => f.write_str("the server crashed"),
            Broken::Rule(section) => write!(f, "PROTOCOL.md \"{section}\""),
        }
    }
}

/// Why a seed failed, with the trace line where it shows.
#[derive(Debug)]
pub struct Failure {
    pub broken: Broken,
    pub detail: String,
    pub trace_index: Option<usize>,
}

/// What a passing check covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct Coverage {
    /// Inputs the broker processed, all checked against the model.
    pub events: usize,
    /// Message lines the broker processed.
    pub messages: usize,
    /// Deliveries (`from` lines) clients received, each checked byte for
    /// byte against what the broker sent.
    pub deliveries: usize,
    /// Client connections checked.
    pub connections: usize,
    /// Connections the broker cut as slow consumers.
    pub slow_consumer_cuts: usize,
    /// Connections the broker cut as dead peers.
    pub dead_peer_cuts: usize,
    /// Connections closed by a shutdown without the notice, for want of
    /// room in their queue.
    pub notices_skipped: usize,
    /// Connections refused with `error: server full`.
    pub refused_full: usize,
    /// Connections refused for their address (told so, or without the
    /// notice if their queue had no room for it).
    pub refused_per_address: usize,
    /// Connections closed because they had not logged in in time.
    pub login_timeouts: usize,
    /// Messages refused for a control character.
    pub control_refused: usize,
    /// Logins refused because the name looked like one held, not equal to it.
    pub look_alikes_taken: usize,
    /// Lines final sessions typed on into the shutdown.
    pub typed_into_shutdown: usize,
    /// Connections that never logged in, opened after healing and checked
    /// to be told and closed.
    pub never_logins_checked: usize,
    /// Clients whose every final session was refused by a connection limit.
    pub finals_refused: usize,
    /// Senders paused because their line took a queue past `max_queue`.
    pub pauses: usize,
    /// Paused senders resumed.
    pub resumes: usize,
    /// The most bytes any queue held past `max_queue`.
    pub max_overshoot: usize,
    /// Churn sessions that read steadily (owed never being cut).
    pub steady_readers: usize,
    /// Of those, the ones whose queue went past `max_queue` (and came back
    /// or was excused): the check had something to judge.
    pub steady_overfull: usize,
    /// Steady readers cut as slow consumers and excused: a fault on their
    /// link, their reading stopped, or more senders than their budget
    /// covers.
    pub steady_cuts_excused: usize,
    /// Resets the server caused (it closed with input unread, or the client
    /// wrote after it had closed), each judged against PROTOCOL.md's
    /// closing.
    pub server_resets: usize,
    /// Of those, the ones excused by a fault on the client's link or host,
    /// or a server crash.
    pub server_resets_excused: usize,
    /// Resets that were the client's own doing (it closed with input
    /// unread, or wrote after its own close was answered).
    pub client_resets: usize,
    /// Burst lines (`#`-filled, just under `max_line`) the broker processed.
    pub burst_lines: usize,
    /// Fan-out lines (many destinations at once) the broker processed.
    pub fan_outs: usize,
    /// Joins of a room the broker processed.
    pub room_joins: usize,
    /// Parts of a room the broker processed.
    pub room_parts: usize,
    /// Renames the broker processed (a rename to one's own name included).
    pub room_renames: usize,
    /// Messages the broker processed to a room their sender was in, one
    /// per room.
    pub room_messages: usize,
    /// Members who left their rooms by a close (disconnected, dead peer or
    /// slow consumer), one per room.
    pub room_leaves: usize,
    /// Room lines the clients received and the checker matched to the
    /// log, in [`ROOM_LINE_KINDS`] order.
    pub room_lines: [usize; ROOM_LINE_KINDS.len()],
    /// The broker's outputs of each kind, in [`OUTPUT_KINDS`] order.
    pub outputs: [usize; OUTPUT_KINDS.len()],
    /// Its closes for each reason, in [`CLOSE_REASONS`] order.
    pub close_reasons: [usize; CLOSE_REASONS.len()],
    /// The error lines it sent of each kind, in [`ERROR_KINDS`] order.
    pub errors: [usize; ERROR_KINDS.len()],
    /// Error lines it sent of no kind in [`ERROR_KINDS`]: the list is out
    /// of date.
    pub other_errors: usize,
    /// What IRC sessions did, in [`IRC_KINDS`] order.
    pub irc: [usize; IRC_KINDS.len()],
}

/// What the sweep's summary counts of IRC sessions.
pub const IRC_KINDS: [&str; 9] = [
    "IRC connections checked",
    "CAP LS processed",
    "registrations (001)",
    "PRIVMSG/NOTICE processed",
    "deliveries IRC clients received",
    "client PINGs answered (PONG)",
    "server PINGs sent",
    "server PINGs answered by a PONG",
    "final sessions in IRC checked to the shutdown",
];

/// The kinds of room line a client receives, as a sweep's summary names
/// them.
pub const ROOM_LINE_KINDS: [&str; 7] = [
    "room messages",
    "joined",
    "left (parted)",
    "left (disconnected)",
    "left (slow consumer)",
    "everyone left",
    "renamed",
];

/// The kinds of the broker's outputs, as a sweep's summary names them.
pub const OUTPUT_KINDS: [&str; 4] = ["send", "close", "pause", "resume"];

/// Every close reason, with the name a sweep's summary gives it.
pub const CLOSE_REASONS: [(CloseReason, &str); 8] = [
    (CloseReason::PeerClosed, "peer closed"),
    (CloseReason::SlowConsumer, "slow consumer"),
    (CloseReason::DeadPeer, "dead peer"),
    (CloseReason::ShuttingDown, "shutting down"),
    (CloseReason::Refused, "refused"),
    (CloseReason::LoginTimeout, "login timeout"),
    (CloseReason::Quit, "quit (IRC)"),
    (CloseReason::PingTimeout, "ping timeout (IRC)"),
];

/// Every kind of error line the broker sends: each its text up to the part
/// that varies (a name, a refusal's detail).
pub const ERROR_KINDS: [&str; 18] = [
    "error: line too long",
    "error: invalid utf-8",
    "error: invalid name",
    "error: name taken",
    "error: no such peer",
    "error: expected",
    "error: control characters are not allowed in messages",
    "error: server full",
    "error: too many connections from your address",
    "error: login timed out",
    "error: server shutting down",
    "error: unknown command",
    "error: usage",
    "error: already in room",
    "error: too many rooms",
    "error: room full",
    "error: not in room",
    "error: no such room",
];

/// Checks every guarantee over the records of a finished run.
pub fn check(scenario: &Scenario, records: &Records) -> Result<Coverage, Failure> {
    if let Some(panic) = records.panics.first() {
        let detail = format!("a server task panicked: {panic}");
        return Err(failure(Broken::Crash, detail, None));
    }
    let mut coverage = Coverage::default();
    for (number, incarnation) in records.incarnations.iter().enumerate() {
        let line = |step: usize| incarnation.lines.get(step).copied();
        check_log(&server_source(number), &incarnation.log, line)?;
        count_log(&incarnation.log, &mut coverage);
    }
    let logs: Vec<BTreeMap<ConnId, ConnectionLog>> =
        records.incarnations.iter().map(connection_logs).collect();
    let ledgers: Vec<RoomLedger> = records
        .incarnations
        .iter()
        .map(|incarnation| room_ledger(&incarnation.log, &mut coverage))
        .collect();
    let ids = connection_ids(records);
    let never_accepted = ConnectionLog::default();
    let mut final_sessions = vec![false; scenario.clients];
    let mut welcomed = vec![false; scenario.clients];
    for (index, connection) in records.connections.iter().enumerate() {
        let accepted = ids.get(&connection.local).copied();
        let log = accepted
            .and_then(|(incarnation, conn)| logs[incarnation].get(&conn))
            .unwrap_or(&never_accepted);
        let judged = Judged {
            index,
            connection,
            accepted,
            log,
        };
        judged.lines_in_send_order(judged.max_line(scenario))?;
        judged.every_line_before_end_of_stream(scenario, &records.incarnations)?;
        judged.stream_as_sent()?;
        if let Some((incarnation, _)) = accepted {
            judged.rooms_as_owed(&ledgers[incarnation], &mut coverage)?;
        }
        judged.resets_allowed(
            scenario,
            &records.incarnations,
            &records.resets,
            &mut coverage,
        )?;
        if let Some(accepted) = accepted {
            let started_at = records.incarnations[accepted.0].started_at;
            judged.steady_reader_kept(scenario, started_at, &mut coverage)?;
            let tick = scenario.network.tick;
            judged.stops_reading_while_paused(started_at, tick, &records.server_reads)?;
        }
        coverage.max_overshoot = coverage.max_overshoot.max(judged.log.max_overshoot);
        let deliveries = judged.deliveries();
        coverage.deliveries += deliveries;
        if connection.irc {
            coverage.irc[0] += 1;
            coverage.irc[4] += deliveries;
        }
        match connection.role {
            Role::Final => {
                final_sessions[connection.client] = true;
                if !judged.refused_after_healing()? {
                    welcomed[connection.client] = true;
                    coverage.typed_into_shutdown +=
                        judged.complete_after_healing(judged.max_line(scenario))?;
                    coverage.irc[8] += usize::from(connection.irc);
                }
            }
            Role::FinalNeverLogin => {
                judged.closed_for_not_logging_in()?;
                coverage.never_logins_checked += 1;
            }
            Role::Churn | Role::ChurnNeverLogin => {}
        }
        coverage.connections += 1;
    }
    coverage.finals_refused = final_sessions
        .iter()
        .zip(&welcomed)
        .filter(|&(&connected, &welcomed)| connected && !welcomed)
        .count();
    if let Some(client) = final_sessions.iter().position(|connected| !connected) {
        let detail = format!("client{client} never connected after the network healed");
        return Err(failure(
            Broken::Guarantee(Guarantee::NoSilentLoss),
            detail,
            None,
        ));
    }
    Ok(coverage)
}

/// Counts what one broker's witness log covered (its clients aside).
pub fn count_log(log: &Trace, coverage: &mut Coverage) {
    count_pauses(log, coverage);
    coverage.events += log.steps.len();
    coverage.messages += messages(log);
    count_closes(log, coverage);
    count_hostile_replies(log, coverage);
    count_decisions(log, coverage);
    count_irc(log, coverage);
}

/// Counts what IRC connections did in one witness log (see [`IRC_KINDS`]).
fn count_irc(log: &Trace, coverage: &mut Coverage) {
    let server = |what: &str| format!(":{} {what} ", irc::SERVER);
    let (welcome, pong, ping) = (server("001"), server("PONG"), irc::ping());
    let walked = walk::<()>(log, |_, seen, step| {
        if let Input::Line {
            conn,
            frame: Ok(line),
        } = &step.input
            && seen.is_irc(*conn)
            && seen.is_open(*conn)
        {
            let command = chinwag::irc::parse(line).map(|m| m.command.to_ascii_uppercase());
            match command.as_deref() {
                Ok("CAP") if line.to_ascii_uppercase().contains(" LS") => coverage.irc[1] += 1,
                Ok("PONG") if seen.name(*conn).is_some() => coverage.irc[7] += 1,
                _ if seen.name(*conn).is_some() && irc_message(line).is_some() => {
                    coverage.irc[3] += 1
                }
                _ => {}
            }
        }
        for output in &step.outputs {
            if let Output::Send { conn, line } = output
                && seen.is_irc(*conn)
            {
                let line = line.as_str();
                coverage.irc[2] += usize::from(line.starts_with(&welcome));
                coverage.irc[5] += usize::from(line.starts_with(&pong));
                coverage.irc[6] += usize::from(line == ping);
            }
        }
        Ok(())
    });
    debug_assert!(walked.is_ok());
}

/// Replays one broker's witness log (`name`'s, `line` giving the trace
/// line of each step) through the reference model and runs every
/// guarantee check over it. The first step where the broker and the model
/// differ is reported, under the guarantee a check finds broken in the log
/// up to that step if one does; a guarantee broken with no difference (the
/// model would be wrong) is reported too.
pub fn check_log(
    name: &str,
    log: &Trace,
    line: impl Fn(usize) -> Option<usize>,
) -> Result<(), Failure> {
    let mut model = Model::new(&log.config);
    let difference = log.steps.iter().enumerate().find_map(|(index, step)| {
        let expected = model.step(step.time, &step.input);
        let differs = per_connection(&step.outputs) != per_connection(&expected);
        differs.then_some((index, expected))
    });
    let checked = match &difference {
        Some((index, _)) => &Trace {
            steps: log.steps[..=*index].to_vec(),
            ..*log
        },
        None => log,
    };
    if let Err(violation) = guarantees::check_all(checked) {
        let detail = format!("{name} step #{}: {}", violation.step, violation.detail);
        let broken = Broken::Guarantee(violation.guarantee);
        return Err(failure(broken, detail, line(violation.step)));
    }
    match difference {
        None => Ok(()),
        Some((index, expected)) => {
            let step = &log.steps[index];
            let detail = format!(
                "{name} step #{index}: for {:?} at {} the broker output {:?}, \
                 the reference model {expected:?}",
                step.input, step.time, step.outputs
            );
            Err(failure(Broken::Protocol, detail, line(index)))
        }
    }
}

/// How many message lines the broker processed: non-blank, well-formed
/// lines from open, logged-in connections (IRC's PRIVMSG and NOTICE from
/// registered ones).
fn messages(log: &Trace) -> usize {
    let mut count = 0;
    let walked = walk::<()>(log, |_, seen, step| {
        if let Input::Line {
            conn,
            frame: Ok(line),
        } = &step.input
            && seen.is_open(*conn)
            && seen.name(*conn).is_some()
        {
            // An IRC line is read as IRC: PRIVMSG and NOTICE.
            let message = if seen.is_irc(*conn) {
                irc_message(line).is_some()
            } else {
                !grammar::is_blank(line) && grammar::parse_message(line).is_ok()
            };
            if message {
                count += 1;
            }
        }
        Ok(())
    });
    debug_assert!(walked.is_ok());
    count
}

/// Counts the pauses and resumes. (That the shell hands the broker no line
/// from a paused connection needs no check here: the broker asserts it, and
/// a panicking server task fails the seed.)
fn count_pauses(log: &Trace, coverage: &mut Coverage) {
    for output in log.steps.iter().flat_map(|step| &step.outputs) {
        match output {
            Output::Pause { .. } => coverage.pauses += 1,
            Output::Resume { .. } => coverage.resumes += 1,
            Output::Send { .. } | Output::Close { .. } => {}
        }
    }
}

/// Counts the closes worth seeing in a sweep's totals.
fn count_closes(log: &Trace, coverage: &mut Coverage) {
    for step in &log.steps {
        if let Input::Line {
            frame: Ok(line), ..
        } = &step.input
            && !step.outputs.is_empty()
        {
            if line.ends_with("##") {
                coverage.burst_lines += 1;
            } else if line.ends_with(" fan") {
                coverage.fan_outs += 1;
            }
        }
        for output in &step.outputs {
            let Output::Close { conn, reason, .. } = output else {
                continue;
            };
            match reason {
                CloseReason::SlowConsumer => coverage.slow_consumer_cuts += 1,
                CloseReason::DeadPeer => coverage.dead_peer_cuts += 1,
                CloseReason::ShuttingDown => {
                    if !told(step, *conn, grammar::SHUTTING_DOWN) {
                        coverage.notices_skipped += 1;
                    }
                }
                CloseReason::Refused => {
                    if told(step, *conn, grammar::SERVER_FULL) {
                        coverage.refused_full += 1;
                    } else {
                        coverage.refused_per_address += 1;
                    }
                }
                CloseReason::LoginTimeout => coverage.login_timeouts += 1,
                // Counted with every decision (`count_decisions`).
                CloseReason::PeerClosed | CloseReason::Quit | CloseReason::PingTimeout => {}
            }
        }
    }
}

/// Whether `step` sent `conn` the closing notice `notice` (an `error: `
/// line), in the line protocol or as IRC's `ERROR`.
fn told(step: &TraceStep, conn: ConnId, notice: &str) -> bool {
    let why = notice.trim_start_matches("error: ").trim_end_matches('\n');
    let irc = irc::error(why);
    step.outputs.iter().any(|output| {
        matches!(output, Output::Send { conn: to, line }
            if *to == conn && (line.as_str() == notice || line.as_str() == irc))
    })
}

/// Counts every decision of the broker by kind: outputs, close reasons and
/// error lines.
fn count_decisions(log: &Trace, coverage: &mut Coverage) {
    for output in log.steps.iter().flat_map(|step| &step.outputs) {
        let kind = match output {
            Output::Send { line, .. } => {
                count_error(line.as_str(), coverage);
                0
            }
            Output::Close { reason, .. } => {
                let index = CLOSE_REASONS
                    .iter()
                    .position(|(known, _)| known == reason)
                    .expect("CLOSE_REASONS lists every reason");
                coverage.close_reasons[index] += 1;
                1
            }
            Output::Pause { .. } => 2,
            Output::Resume { .. } => 3,
        };
        coverage.outputs[kind] += 1;
    }
}

/// Counts `line` under its kind if it is an error line.
fn count_error(line: &str, coverage: &mut Coverage) {
    if !line.starts_with("error: ") {
        return;
    }
    let kind = ERROR_KINDS.iter().position(|kind| {
        line.strip_prefix(kind)
            .is_some_and(|rest| rest.starts_with([':', ' ', '\n']))
    });
    match kind {
        Some(index) => coverage.errors[index] += 1,
        None => coverage.other_errors += 1,
    }
}

/// Counts the replies to hostile lines worth seeing in a sweep's totals:
/// control characters refused, and look-alike names taken (a login
/// refused as taken while nobody holds that very name).
fn count_hostile_replies(log: &Trace, coverage: &mut Coverage) {
    let control = grammar::refusal(grammar::Refusal::ControlCharacter);
    let walked = walk::<()>(log, |_, seen, step| {
        for output in &step.outputs {
            let Output::Send { line, .. } = output else {
                continue;
            };
            let line = line.as_str();
            if line == control {
                coverage.control_refused += 1;
            }
            if let Some(name) = line.strip_prefix("error: name taken: ")
                && seen.holder(name.trim_end_matches('\n')).is_none()
            {
                coverage.look_alikes_taken += 1;
            }
        }
        Ok(())
    });
    debug_assert!(walked.is_ok());
}

/// What the witness log says about one connection.
#[derive(Default)]
struct ConnectionLog {
    /// Every byte the broker sent it, in order.
    written: Vec<u8>,
    /// The step that sent each of those lines, one entry per LF.
    line_steps: Vec<usize>,
    /// Every frame the broker processed from it, with the run's trace line
    /// of the step that did.
    processed: Vec<(Frame, usize)>,
    /// Why the broker closed it, if it did, and the trace line of that step.
    closed: Option<(CloseReason, usize)>,
    /// When the broker closed it, in the incarnation's time.
    closed_time: Option<Time>,
    /// The most bytes its queue held past `max_queue`.
    max_overshoot: usize,
    /// When the broker paused it, each with the trace line of that step,
    /// and when it resumed it or closed it (if it did): the server reads
    /// nothing from it in between.
    pauses: Vec<Paused>,
}

/// One stretch in which the broker had a connection paused, in the
/// incarnation's time.
struct Paused {
    from: Time,
    line: usize,
    until: Option<Time>,
}

impl ConnectionLog {
    fn end_pause(&mut self, at: Time) {
        if let Some(paused) = self.pauses.last_mut() {
            paused.until.get_or_insert(at);
        }
    }
}

fn connection_logs(incarnation: &Incarnation) -> BTreeMap<ConnId, ConnectionLog> {
    let max_queue = incarnation.log.config.max_queue;
    let mut logs: BTreeMap<ConnId, ConnectionLog> = BTreeMap::new();
    // Bytes sent minus flushed, per connection.
    let mut queued: BTreeMap<ConnId, usize> = BTreeMap::new();
    for (index, step) in incarnation.log.steps.iter().enumerate() {
        match &step.input {
            Input::Line { conn, frame } => {
                let log = logs.entry(*conn).or_default();
                log.processed
                    .push((frame.clone(), incarnation.lines[index]));
            }
            Input::Flushed { conn, bytes } => {
                let queue = queued.entry(*conn).or_default();
                *queue = queue.saturating_sub(*bytes);
            }
            _ => {}
        }
        for output in &step.outputs {
            match output {
                Output::Send { conn, line } => {
                    let log = logs.entry(*conn).or_default();
                    log.written.extend_from_slice(line.as_bytes());
                    // One send may hold several lines (IRC's welcome burst).
                    let lines = line.as_bytes().iter().filter(|&&b| b == b'\n').count();
                    log.line_steps.extend(std::iter::repeat_n(index, lines));
                    let queue = queued.entry(*conn).or_default();
                    *queue += line.len();
                    if *queue > max_queue {
                        log.max_overshoot = log.max_overshoot.max(*queue - max_queue);
                    }
                }
                Output::Close { conn, reason, .. } => {
                    let log = logs.entry(*conn).or_default();
                    if log.closed.is_none() {
                        log.closed = Some((*reason, incarnation.lines[index]));
                        log.closed_time = Some(step.time);
                    }
                    // A closed connection lingers, reading and discarding.
                    log.end_pause(step.time);
                }
                Output::Pause { conn } => logs.entry(*conn).or_default().pauses.push(Paused {
                    from: step.time,
                    line: incarnation.lines[index],
                    until: None,
                }),
                Output::Resume { conn } => logs.entry(*conn).or_default().end_pause(step.time),
            }
        }
    }
    logs
}

/// The rooms' side of one incarnation's witness log: for every
/// connection, the room messages and room news it is owed, room by room in
/// the order the broker processed them, and the renames it is owed. It is
/// read off the log's inputs, with the membership the log's outputs show
/// (the `joined` and `left` lines each member was sent about itself, as
/// [`Observed`] follows them), so it says what PROTOCOL.md's "Rooms" and
/// guarantee 10 owe each member; the clients' sockets are then held
/// against it.
#[derive(Default)]
struct RoomLedger {
    /// The steps that processed each message, by its key
    /// ([`message_key`]): one, unless its line lost its id.
    message_steps: BTreeMap<String, Vec<usize>>,
    owed: BTreeMap<ConnId, Owes>,
}

/// What one connection is owed in its rooms.
#[derive(Default)]
struct Owes {
    /// For each room, its messages and news, in log order.
    rooms: BTreeMap<String, Vec<Owed>>,
    /// For each message step that reached it through rooms, those rooms.
    messages: BTreeMap<usize, Vec<String>>,
    /// The lines it gets once for several rooms, in log order, each with
    /// the rooms it counts in: its `renamed` lines, and for an IRC
    /// connection its `NICK` and `QUIT` lines (IRC tells a member's
    /// disconnect once, not once per room).
    renames: Vec<(usize, String, Vec<String>)>,
}

/// One thing a member is owed in one room, at a step of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Owed {
    step: usize,
    /// The news line; `None` for a message, which is known by its step.
    news: Option<String>,
}

impl Owes {
    fn news(&mut self, room: &str, step: usize, line: String) {
        let owed = Owed {
            step,
            news: Some(line),
        };
        self.rooms.entry(room.to_string()).or_default().push(owed);
    }
}

impl RoomLedger {
    fn owes(&mut self, conn: ConnId) -> &mut Owes {
        self.owed.entry(conn).or_default()
    }

    /// Owes `member` the news of `room` at step `index`, in its dialect: the
    /// line protocol's room news, or IRC's JOIN and PART (IRC has no
    /// `everyone left`: the shutdown closes it). Departures by a close go
    /// through [`RoomLedger::owe_departure`].
    fn owe_news(
        &mut self,
        seen: &Observed,
        member: ConnId,
        room: &str,
        index: usize,
        news: &RoomNews,
    ) {
        let line = if seen.is_irc(member) {
            match news {
                RoomNews::Joined(name) => irc::joined(name, room),
                RoomNews::Left(name, Departure::Parted) => irc::parted(name, room),
                RoomNews::Left(..) | RoomNews::EveryoneLeft => return,
            }
        } else {
            grammar::room_news(room, news)
        };
        self.owes(member).news(room, index, line);
    }
}

/// The message destinations and text of an IRC `PRIVMSG` or `NOTICE`, as
/// the model reads them (`irc_message` in `tests/model/reference.rs`):
/// the targets in NFC, each once; `None` for any other line.
fn irc_message(line: &str) -> Option<(Vec<String>, String)> {
    let message = chinwag::irc::parse(line).ok()?;
    let command = message.command.to_ascii_uppercase();
    if command != "PRIVMSG" && command != "NOTICE" {
        return None;
    }
    let [targets, text, ..] = message.params[..] else {
        return None;
    };
    let mut destinations: Vec<String> = Vec::new();
    for target in targets.split(',').filter(|t| !t.is_empty()) {
        if let Some(destination) = irc::canonical(target)
            && !destinations.contains(&destination)
        {
            destinations.push(destination);
        }
    }
    Some((destinations, text.to_string()))
}

/// The room command an IRC line is, in the line protocol's terms: `JOIN`
/// and `PART` of one channel, and `NICK`. (The simulated IRC clients join
/// and part one channel at a time.)
fn irc_command(line: &str) -> Option<Command> {
    let message = chinwag::irc::parse(line).ok()?;
    let first = message.params.first()?;
    let room = || irc::canonical(first).filter(|room| grammar::is_room(room));
    match message.command.to_ascii_uppercase().as_str() {
        "JOIN" if !first.contains(',') => room().map(Command::Join),
        "PART" if !first.contains(',') => room().map(Command::Part),
        "NICK" => Some(Command::Nick(first.to_string())),
        _ => None,
    }
}

/// What a message is known by: its id, or for a line cut short before its
/// id was whole (a crash, a hasty close), its whole text, which may be
/// another's too.
fn message_key(text: &str) -> &str {
    message_id(text).unwrap_or(text)
}

/// The message id in a message's text (`<m3.17>`), if it has one.
fn message_id(text: &str) -> Option<&str> {
    let start = text.find("<m")?;
    let end = start + text[start..].find('>')?;
    Some(&text[start..=end])
}

/// How a close reads in room news: `None` for a close that gives none (a
/// shutdown's, whose members get `everyone left` instead, or one of a
/// connection that never logged in).
fn departure(reason: CloseReason) -> Option<Departure> {
    match reason {
        CloseReason::SlowConsumer => Some(Departure::SlowConsumer),
        CloseReason::PeerClosed
        | CloseReason::DeadPeer
        | CloseReason::Quit
        | CloseReason::PingTimeout => Some(Departure::Disconnected),
        CloseReason::ShuttingDown | CloseReason::Refused | CloseReason::LoginTimeout => None,
    }
}

/// Reads one incarnation's room ledger off its witness log, counting its
/// room events in `coverage`.
fn room_ledger(log: &Trace, coverage: &mut Coverage) -> RoomLedger {
    let mut ledger = RoomLedger::default();
    let mut seen = Observed::new(&log.config);
    let max_queue = log.config.max_queue;
    for (index, step) in log.steps.iter().enumerate() {
        // Before the step: a command's effect shows in its outputs.
        let mut command = None;
        match &step.input {
            Input::Line {
                conn,
                frame: Ok(line),
            } if seen.is_open(*conn) && seen.name(*conn).is_some() => {
                let sender = *conn;
                let name = seen.name(sender).unwrap_or_default().to_string();
                let rooms: Vec<String> = seen
                    .rooms_of(sender)
                    .iter()
                    .map(|r| r.to_string())
                    .collect();
                // An IRC line is read as IRC (the model's reading); the
                // line protocol's otherwise.
                let message = if seen.is_irc(sender) {
                    command = irc_command(line).map(|c| (sender, name, rooms.clone(), c));
                    irc_message(line)
                } else if grammar::is_command(line) {
                    command = grammar::parse_command(line)
                        .ok()
                        .map(|c| (sender, name, rooms.clone(), c));
                    None
                } else {
                    grammar::parse_message(line)
                        .ok()
                        .map(|message| (message.destinations, message.text))
                };
                if let Some((destinations, text)) = message {
                    let key = message_key(&text).to_string();
                    ledger.message_steps.entry(key).or_default().push(index);
                    for room in destinations.iter().filter(|d| rooms.contains(d)) {
                        coverage.room_messages += 1;
                        for member in seen.members(room) {
                            if member != sender {
                                let owes = ledger.owes(member);
                                owes.messages.entry(index).or_default().push(room.clone());
                                let owed = Owed {
                                    step: index,
                                    news: None,
                                };
                                owes.rooms.entry(room.clone()).or_default().push(owed);
                            }
                        }
                    }
                }
            }
            Input::Shutdown => {
                // Each `everyone left` line is sent if it fits, on its own.
                for conn in seen.open_connections() {
                    let mut queued = seen.unflushed(conn);
                    let rooms: Vec<String> =
                        seen.rooms_of(conn).iter().map(|r| r.to_string()).collect();
                    // IRC has no `everyone left`: the shutdown closes it.
                    if seen.is_irc(conn) {
                        continue;
                    }
                    for room in rooms {
                        let line = grammar::room_news(&room, &RoomNews::EveryoneLeft);
                        if queued + line.len() <= max_queue {
                            queued += line.len();
                            ledger.owes(conn).news(&room, index, line);
                        }
                    }
                }
            }
            _ => {}
        }
        let before: Option<Vec<(String, Vec<ConnId>)>> =
            command.as_ref().map(|(_, _, rooms, _)| {
                rooms
                    .iter()
                    .map(|room| (room.clone(), seen.members(room)))
                    .collect()
            });
        seen.enter(step);
        for output in &step.outputs {
            // A member closed leaves its rooms with news to the members
            // still there, in room order.
            if let Output::Close { conn, reason, .. } = output
                && let Some(departure) = departure(*reason)
                && let Some(name) = seen.name(*conn)
            {
                let name = name.to_string();
                let rooms: Vec<String> =
                    seen.rooms_of(*conn).iter().map(|r| r.to_string()).collect();
                // IRC members get one QUIT, counting in every room shared.
                let mut irc_members: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();
                for room in rooms {
                    coverage.room_leaves += 1;
                    let line = grammar::room_news(&room, &RoomNews::Left(name.clone(), departure));
                    for member in seen.members(&room) {
                        if member == *conn {
                            continue;
                        }
                        if seen.is_irc(member) {
                            irc_members.entry(member).or_default().push(room.clone());
                        } else {
                            ledger.owes(member).news(&room, index, line.clone());
                        }
                    }
                }
                let quit = irc::quit(&name, departure);
                for (member, rooms) in irc_members {
                    let owes = ledger.owes(member);
                    for room in &rooms {
                        owes.news(room, index, quit.clone());
                    }
                    owes.renames.push((index, quit.clone(), rooms));
                }
            }
            seen.emit(step, output);
        }
        let (Some((sender, name, rooms, command)), Some(before)) = (command, before) else {
            continue;
        };
        match command {
            Command::Join(room)
                if !rooms.contains(&room) && seen.rooms_of(sender).contains(&room.as_str()) =>
            {
                coverage.room_joins += 1;
                let news = RoomNews::Joined(name);
                for member in seen.members(&room) {
                    ledger.owe_news(&seen, member, &room, index, &news);
                }
            }
            Command::Part(room)
                if rooms.contains(&room) && !seen.rooms_of(sender).contains(&room.as_str()) =>
            {
                coverage.room_parts += 1;
                let news = RoomNews::Left(name, Departure::Parted);
                let members = before
                    .iter()
                    .find(|(r, _)| *r == room)
                    .map(|(_, m)| m.clone());
                for member in members.unwrap_or_default() {
                    ledger.owe_news(&seen, member, &room, index, &news);
                }
            }
            Command::Nick(wanted) => {
                // A rename to the name one holds is a rename too: PROTOCOL.md
                // refuses only a name another connection holds.
                let Some(new) = seen.name(sender) else {
                    continue;
                };
                if grammar::login_name(&wanted).as_deref() != Some(new) {
                    continue;
                }
                coverage.room_renames += 1;
                let renamed = grammar::renamed(&name, new);
                let irc_nick = irc::nick(&name, new);
                // Once to the renamer and to each connection sharing a
                // room with it, counting in every room they share.
                let mut shared: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();
                shared.insert(sender, Vec::new());
                for (room, members) in &before {
                    for member in members {
                        shared.entry(*member).or_default().push(room.clone());
                    }
                }
                for (member, rooms) in shared {
                    let line = if seen.is_irc(member) {
                        irc_nick.clone()
                    } else {
                        renamed.clone()
                    };
                    let owes = ledger.owes(member);
                    for room in &rooms {
                        owes.news(room, index, line.clone());
                    }
                    owes.renames.push((index, line.clone(), rooms));
                }
            }
            _ => {}
        }
    }
    ledger
}

/// Holds what connection `conn` received against what `ledger` owes it in
/// its rooms (see [`Judged::rooms_as_owed`]). `line_steps` gives the step
/// that sent each line the broker sent it, of which `received` is a prefix
/// (all of it if `got_all`). On failure: the offset of the line received
/// that broke it, if one did, and what broke.
fn match_rooms(
    ledger: &RoomLedger,
    conn: ConnId,
    received: &[u8],
    line_steps: &[usize],
    got_all: bool,
    irc: bool,
    coverage: &mut Coverage,
) -> Result<(), (Option<usize>, String)> {
    let none = Owes::default();
    let owes = ledger.owed.get(&conn).unwrap_or(&none);
    let mut cursors: BTreeMap<String, usize> = BTreeMap::new();
    let mut renames = owes.renames.iter();
    let mut complete_lines: usize = 0;
    let mut offset = 0;
    for line in received.split_inclusive(|&b| b == b'\n') {
        let at = offset;
        offset += line.len();
        if !line.ends_with(b"\n") {
            break;
        }
        complete_lines += 1;
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let matched = match read_room_line(line, irc) {
            RoomLine::News(room, kind) => {
                coverage.room_lines[kind] += 1;
                take(owes, &mut cursors, room, |owed| {
                    owed.news.as_deref() == Some(line)
                })
            }
            RoomLine::Shared(kind) => {
                coverage.room_lines[kind] += 1;
                match renames.next() {
                    Some((step, owed, rooms)) if owed == line => {
                        rooms.iter().try_for_each(|room| {
                            take(owes, &mut cursors, room, |next| {
                                next.step == *step && next.news.as_deref() == Some(line)
                            })
                        })
                    }
                    Some((step, owed, _)) => {
                        Err(format!("where it was owed {owed:?} (step #{step}) next"))
                    }
                    None => Err("where it was owed no more renames or quits".to_string()),
                }
            }
            RoomLine::Delivery(text, via) => {
                let steps = ledger.message_steps.get(message_key(text));
                // Of the messages it may be, those it is owed: the one each of
                // its rooms has next, or else the first (to be reported).
                let owed = steps
                    .into_iter()
                    .flatten()
                    .filter(|step| owes.messages.contains_key(step));
                let next_everywhere = |step: &&usize| {
                    owes.messages[*step].iter().all(|room| {
                        next_owed(owes, &cursors, room)
                            .is_some_and(|next| next.news.is_none() && next.step == **step)
                    })
                };
                let step = owed
                    .clone()
                    .find(next_everywhere)
                    .or(owed.clone().next())
                    .copied();
                match (step.and_then(|step| owes.messages.get(&step)), via) {
                    (Some(rooms), _) => {
                        coverage.room_lines[0] += 1;
                        rooms.iter().try_for_each(|room| {
                            take(owes, &mut cursors, room, |next| {
                                next.news.is_none() && Some(next.step) == step
                            })
                        })
                    }
                    (None, Some(room)) => Err(format!(
                        "as a delivery to {room}: it was owed no message of {room} processed \
                         at step {step:?}"
                    )),
                    // A delivery by name alone.
                    (None, None) => Ok(()),
                }
            }
            RoomLine::Other => Ok(()),
        };
        if let Err(owed) = matched {
            return Err((Some(at), format!("received {line:?} {owed}")));
        }
    }
    // The last line received came from this step: everything owed before
    // it was sent before it.
    let horizon = complete_lines
        .checked_sub(1)
        .and_then(|last| line_steps.get(last).copied());
    for (room, owed) in &owes.rooms {
        let cursor = cursors.get(room).copied().unwrap_or(0);
        let Some(next) = owed.get(cursor) else {
            continue;
        };
        let after = match horizon {
            _ if got_all => "all the broker sent it".to_string(),
            Some(last) if next.step < last => {
                format!("lines the broker sent after it, at step #{last}")
            }
            _ => continue,
        };
        let what = format!(
            "never received {} in {room}, though it received {after}",
            describe(next)
        );
        return Err((None, what));
    }
    Ok(())
}

/// What one line a connection received is, to the room check.
enum RoomLine<'a> {
    /// News of one room, of the kind [`ROOM_LINE_KINDS`] numbers.
    News(&'a str, usize),
    /// A line that counts once in several rooms (`renamed`; IRC's `NICK`
    /// and `QUIT`), of that kind.
    Shared(usize),
    /// A message's text, and the room it came through, if it says.
    Delivery(&'a str, Option<&'a str>),
    Other,
}

/// Reads `line` (with its terminator) as its connection's dialect gets it:
/// the line protocol's room news, `renamed` and `from` lines, or IRC's
/// JOIN, PART, QUIT, NICK and PRIVMSG or NOTICE from a user.
fn read_room_line(line: &str, irc: bool) -> RoomLine<'_> {
    if irc {
        return match irc::read(line) {
            Some(Heard::Joined(_, room)) => RoomLine::News(room, 1),
            Some(Heard::Parted(_, room)) => RoomLine::News(room, 2),
            Some(Heard::Quit(_)) if line.ends_with(":slow consumer\r\n") => RoomLine::Shared(4),
            Some(Heard::Quit(_)) => RoomLine::Shared(3),
            Some(Heard::Renamed(..)) => RoomLine::Shared(6),
            Some(Heard::Delivery { target, text, .. }) => {
                RoomLine::Delivery(text, grammar::is_room(target).then_some(target))
            }
            Some(Heard::Welcome(_)) | None => RoomLine::Other,
        };
    }
    if let Some((room, news)) = grammar::read_room_news(line) {
        let kind = match news {
            RoomNews::Joined(_) => 1,
            RoomNews::Left(_, Departure::Parted) => 2,
            RoomNews::Left(_, Departure::Disconnected) => 3,
            RoomNews::Left(_, Departure::SlowConsumer) => 4,
            RoomNews::EveryoneLeft => 5,
        };
        RoomLine::News(room, kind)
    } else if grammar::read_renamed(line).is_some() {
        RoomLine::Shared(6)
    } else if let Some((_, via)) = grammar::read_delivery(line) {
        let text = line.split_once(": ").map_or("", |(_, text)| text);
        RoomLine::Delivery(text.trim_end_matches('\n'), via)
    } else {
        RoomLine::Other
    }
}

/// What a member owes to be matched next in `room`: the entry at its
/// cursor there, which advances if `fits` it; otherwise what was owed.
fn take(
    owes: &Owes,
    cursors: &mut BTreeMap<String, usize>,
    room: &str,
    fits: impl Fn(&Owed) -> bool,
) -> Result<(), String> {
    match next_owed(owes, cursors, room) {
        Some(next) if fits(next) => {
            *cursors.entry(room.to_string()).or_default() += 1;
            Ok(())
        }
        Some(next) => Err(format!(
            "in {room}, where it was owed next {}",
            describe(next)
        )),
        None => Err(format!("in {room}, where it was owed nothing more")),
    }
}

/// What a member is owed next in `room`, if anything.
fn next_owed<'a>(
    owes: &'a Owes,
    cursors: &BTreeMap<String, usize>,
    room: &str,
) -> Option<&'a Owed> {
    let owed = owes.rooms.get(room)?;
    owed.get(cursors.get(room).copied().unwrap_or(0))
}

/// An owed room event, for messages.
fn describe(owed: &Owed) -> String {
    match &owed.news {
        Some(line) => format!("{:?} (step #{})", line, owed.step),
        None => format!("the message of step #{}", owed.step),
    }
}

/// Whether `fault` touched `client`'s link or host between `from` and
/// `to` (or shortly before, see [`FAULT_AFTERMATH`]).
fn touches(fault: &Fault, client: usize, from: Duration, to: Duration) -> bool {
    let victim = match fault.kind {
        FaultKind::Partition { client, .. }
        | FaultKind::Hold { client, .. }
        | FaultKind::Latency { client, .. }
        | FaultKind::Flaky { client, .. }
        | FaultKind::ClientCrash { client, .. }
        | FaultKind::ClientBounce { client } => client,
        FaultKind::ServerCrash { .. } | FaultKind::ServerRestart { .. } => return false,
    };
    victim == client && fault.at <= to && from <= fault.ends_at() + FAULT_AFTERMATH
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

/// One client connection held against the broker's log of it.
struct Judged<'a> {
    index: usize,
    connection: &'a ClientConnection,
    /// The incarnation that accepted it and the id it gave it, if any did.
    accepted: Option<(usize, ConnId)>,
    /// Empty if no incarnation accepted it.
    log: &'a ConnectionLog,
}

impl Judged<'_> {
    fn name(&self) -> String {
        let client = self.connection.client;
        match self.accepted {
            Some((incarnation, conn)) => {
                format!(
                    "k{} (client{client}, {conn} of server#{incarnation})",
                    self.index
                )
            }
            None => format!("k{} (client{client}, never accepted)", self.index),
        }
    }

    fn fail<T>(&self, guarantee: Guarantee, what: String, at: Option<usize>) -> Result<T, Failure> {
        self.broke(Broken::Guarantee(guarantee), what, at)
    }

    fn broke<T>(&self, broken: Broken, what: String, at: Option<usize>) -> Result<T, Failure> {
        let detail = format!("{}: {what}", self.name());
        Err(failure(broken, detail, at))
    }

    /// Whether the broker refused this connection of a final session (the
    /// model has found the refusal due). If the client had sent nothing,
    /// nothing was left unread when the server closed it, so the close must
    /// be clean: the client received all the broker sent (its notice, if
    /// it fitted) and then the end of stream.
    fn refused_after_healing(&self) -> Result<bool, Failure> {
        let Some((CloseReason::Refused, line)) = self.log.closed else {
            return Ok(false);
        };
        if self.connection.sent.is_empty() {
            self.closed_cleanly("refused", line)?;
        }
        Ok(true)
    }

    /// A connection that never logged in, opened on the healed network: the
    /// login timeout closed it (or a limit refused it), and it was told and
    /// closed cleanly. It sent at most blank lines, the last well before its
    /// deadline, so the server had read them all when it closed it.
    fn closed_for_not_logging_in(&self) -> Result<(), Failure> {
        let last_read = self.connection.reads.last().map(|&(_, line)| line);
        match self.log.closed {
            Some((reason @ (CloseReason::LoginTimeout | CloseReason::Refused), line)) => {
                let what = if reason == CloseReason::Refused {
                    "refused"
                } else {
                    "timed out"
                };
                self.closed_cleanly(what, line)
            }
            Some((reason, line)) => {
                let what = format!("never logged in, but was closed as {reason:?}");
                self.broke(Broken::Rule(CONNECTION_LIMITS), what, Some(line))
            }
            None => {
                let what = "never logged in and was never closed by the login timeout";
                self.broke(Broken::Rule(CONNECTION_LIMITS), what.to_string(), last_read)
            }
        }
    }

    /// The client received every byte the broker sent before it closed the
    /// connection (at trace line `closed_at`), then a clean end of stream.
    fn closed_cleanly(&self, what: &str, closed_at: usize) -> Result<(), Failure> {
        let last_read = self.connection.reads.last().map(|&(_, line)| line);
        let (received, written) = (self.connection.received.len(), self.log.written.len());
        let broken = Broken::Rule(CONNECTION_LIMITS);
        if received != written {
            let what =
                format!("{what}: received {received} of the {written} bytes the broker sent it");
            return self.broke(broken, what, last_read.or(Some(closed_at)));
        }
        if self.connection.end != Some(End::EndOfStream) {
            let what = format!(
                "{what}: the stream ended {:?}, not with a clean end of stream",
                self.connection.end
            );
            return self.broke(broken, what, last_read.or(Some(closed_at)));
        }
        Ok(())
    }

    /// Flow control, the promise: no client that keeps reading is
    /// ever cut. A steady reader (see `client::Reading::Steady`) reads, every
    /// `pause`, all that has arrived up to a budget chosen by
    /// `scenario::steady_budget` so that its queue, once past `max_queue`,
    /// is back under it well within the slow timeout, with every other
    /// client sending to it. It must not be cut as a slow consumer (which
    /// comes without a notice) unless it is excused: its reading loop had
    /// stopped by the cut, or a fault touched its link or host while it was
    /// connected.
    fn steady_reader_kept(
        &self,
        scenario: &Scenario,
        started_at: Duration,
        coverage: &mut Coverage,
    ) -> Result<(), Failure> {
        let Some(steady) = self.connection.steady else {
            return Ok(());
        };
        coverage.steady_readers += 1;
        if self.log.max_overshoot > 0 {
            coverage.steady_overfull += 1;
        }
        let Some((CloseReason::SlowConsumer, cut)) = self.log.closed else {
            return Ok(());
        };
        let slow_timeout = scenario.config.slow_timeout;
        let cut_time = self
            .log
            .closed_time
            .map_or(Duration::MAX, |time| started_at + time.since_origin());
        let over_since = cut_time.saturating_sub(slow_timeout);
        let still_reading = self
            .connection
            .reading_until
            .is_none_or(|until| until >= cut_time);
        let client = self.connection.client;
        let from = self.connection.connected_at;
        let faulted = scenario
            .faults
            .iter()
            .any(|fault| touches(fault, client, from, cut_time));
        let senders = scenario.clients - 1;
        let budget_holds =
            steady_budget(&scenario.config, &scenario.network, senders, steady.pause)
                .is_some_and(|needed| steady.budget >= needed);
        if !still_reading || faulted || !budget_holds {
            coverage.steady_cuts_excused += 1;
            return Ok(());
        }
        let what = format!(
            "reads steadily (up to {} bytes every {:?}) and kept reading on a healthy \
             link, yet was cut as a slow consumer (past max_queue since about {}, by {} \
             bytes at most)",
            steady.budget,
            steady.pause,
            crate::trace::format_time(over_since),
            self.log.max_overshoot,
        );
        self.broke(Broken::Rule(FLOW_CONTROL), what, Some(cut))
    }

    /// PROTOCOL.md's "Closing here means", on the wire: after a graceful
    /// close the server reads on until the client closes too, for at most
    /// the write timeout at a shutdown (the server exits at the shutdown
    /// timeout, though, if that comes first) and 1 s or 4 KiB for any other
    /// close; only then may it drop a socket with input unread, and only
    /// then may a client writing on find the socket gone. Either resets the
    /// connection, which discards what the client had received and not read
    /// (see `crate::net`). A reset the server caused sooner breaks 8 at a
    /// shutdown and 6 otherwise, whether or not this client lost anything
    /// to it this time. Cuts (slow consumer, dead peer) do not linger, and
    /// a fault on the client's link or host, or a server crash, excuses the
    /// reset.
    fn resets_allowed(
        &self,
        scenario: &Scenario,
        incarnations: &[Incarnation],
        resets: &[ResetSent],
        coverage: &mut Coverage,
    ) -> Result<(), Failure> {
        let connection = self.connection;
        let mine = resets.iter().filter(|reset| {
            reset.connector == connection.local && reset.at >= connection.connected_at
        });
        for reset in mine {
            let server_closed = match (reset.by, reset.cause, reset.peer_closed_at) {
                // The client had closed first: the reset is its doing.
                (Side::Acceptor, Cause::ClosedUnread, None) => reset.at,
                (Side::Connector, Cause::WroteToClosed, Some(at)) => at,
                _ => {
                    coverage.client_resets += 1;
                    continue;
                }
            };
            coverage.server_resets += 1;
            let client = connection.client;
            let faulted = scenario
                .faults
                .iter()
                .any(|fault| touches(fault, client, connection.connected_at, reset.at));
            let crashed = scenario.faults.iter().any(|fault| {
                matches!(fault.kind, FaultKind::ServerCrash { .. })
                    && fault.at.abs_diff(server_closed) <= Duration::from_secs(1)
            });
            if faulted || crashed {
                coverage.server_resets_excused += 1;
                continue;
            }
            let (Some((incarnation, _)), Some((reason, line)), Some(time)) =
                (self.accepted, self.log.closed, self.log.closed_time)
            else {
                let what = format!(
                    "the server reset the connection ({:?} by the {:?}) at {} though the \
                     broker never closed it",
                    reset.cause,
                    reset.by,
                    crate::trace::format_time(reset.at)
                );
                let last_read = connection.reads.last().map(|&(_, line)| line);
                return self.fail(Guarantee::NoSilentLoss, what, last_read);
            };
            let config = &scenario.config;
            let (bound, bytes_max, guarantee) = match reason {
                CloseReason::SlowConsumer | CloseReason::DeadPeer => continue,
                CloseReason::ShuttingDown => (
                    config.write_timeout.min(config.shutdown_timeout),
                    usize::MAX,
                    Guarantee::CleanShutdown,
                ),
                _ => (
                    config.write_timeout.min(BRIEF_LINGER),
                    BRIEF_LINGER_BYTES,
                    Guarantee::NoSilentLoss,
                ),
            };
            let closed = incarnations[incarnation].started_at + time.since_origin();
            let slack = 2 * scenario.network.tick;
            if server_closed + slack >= closed + bound || self.unprocessed_bytes() >= bytes_max {
                continue;
            }
            let what = format!(
                "the server reset the connection ({:?} by the {:?}): it dropped its socket \
                 {:?} after the broker closed it ({reason:?}), though a close lingers, \
                 reading, until the client closes too or for {bound:?}",
                reset.cause,
                reset.by,
                server_closed.saturating_sub(closed),
            );
            return self.fail(guarantee, what, Some(line));
        }
        Ok(())
    }

    /// Bytes the client sent past the last line the broker processed (at
    /// most: a line the broker skipped counts as unprocessed).
    fn unprocessed_bytes(&self) -> usize {
        let sent = &self.connection.sent;
        let lines = self.log.processed.len();
        let consumed = sent
            .iter()
            .enumerate()
            .filter(|&(_, &byte)| byte == b'\n')
            .nth(lines.saturating_sub(1))
            .map_or(0, |(at, _)| at + 1);
        if lines == 0 {
            sent.len()
        } else {
            sent.len() - consumed.min(sent.len())
        }
    }

    /// The trace line of the read that brought byte `offset`.
    fn read_at(&self, offset: usize) -> Option<usize> {
        let reads = &self.connection.reads;
        let i = reads.partition_point(|&(end, _)| end <= offset);
        reads.get(i).or(reads.last()).map(|&(_, line)| line)
    }

    /// Guarantee 2, end to end: the broker processed a prefix of the lines
    /// the client sent, in order, each once.
    fn lines_in_send_order(&self, max_line: usize) -> Result<(), Failure> {
        let sent = frames_by_the_book(max_line, &self.connection.sent);
        let processed = &self.log.processed;
        let agree = processed.len() <= sent.len()
            && sent
                .iter()
                .zip(processed)
                .all(|(sent, (processed, _))| sent == processed);
        if agree {
            return Ok(());
        }
        let at = sent
            .iter()
            .zip(processed)
            .take_while(|(sent, (processed, _))| *sent == processed)
            .count();
        let (frame, line) = &processed[at];
        let what = format!(
            "the broker processed {frame:?} as its line {at}; the client sent {:?}",
            sent.get(at)
        );
        self.fail(Guarantee::PerSenderFifo, what, Some(*line))
    }

    /// Guarantee 2 at the end of a stream: a client that half-closed after
    /// sending, and whose connection the broker then closed because the
    /// peer did, had every line it sent processed before that close (an
    /// unterminated last line included): the end of stream came after
    /// them on the wire, so it may not overtake them in the server. Only
    /// where nothing else could explain a missing line: no fault touched
    /// the client while the connection was open, and the client still held
    /// its socket when the server closed it (it saw the end of stream).
    fn every_line_before_end_of_stream(
        &self,
        scenario: &Scenario,
        incarnations: &[crate::record::Incarnation],
    ) -> Result<(), Failure> {
        let (Some((incarnation, _)), Some((CloseReason::PeerClosed, closed_at)), Some(time)) =
            (self.accepted, self.log.closed, self.log.closed_time)
        else {
            return Ok(());
        };
        if !self.connection.half_closed || self.connection.end != Some(End::EndOfStream) {
            return Ok(());
        }
        let closed = incarnations[incarnation].started_at + time.since_origin();
        let (client, from) = (self.connection.client, self.connection.connected_at);
        if scenario
            .faults
            .iter()
            .any(|fault| touches(fault, client, from, closed))
        {
            return Ok(());
        }
        let sent = frames_by_the_book(self.max_line(scenario), &self.connection.sent);
        let before = self
            .log
            .processed
            .iter()
            .filter(|(_, line)| *line < closed_at);
        let processed = before.count();
        if processed < sent.len() {
            let what = format!(
                "half-closed after sending {} lines, but the broker processed the close \
                 after {processed} of them; the next was {:?}",
                sent.len(),
                sent[processed]
            );
            return self.fail(Guarantee::PerSenderFifo, what, Some(closed_at));
        }
        Ok(())
    }

    /// PROTOCOL.md's "Flow control", end to end: while the broker has the
    /// connection paused, the server reads nothing from its socket, so TCP
    /// pushes back on the client. One read may complete after the pause:
    /// the one the reader was waiting in when it came. Reads in the tick
    /// of the pause or of its end are not counted (their order with it
    /// within the tick is not recorded).
    fn stops_reading_while_paused(
        &self,
        started_at: Duration,
        tick: Duration,
        server_reads: &BTreeMap<SocketAddr, Vec<Duration>>,
    ) -> Result<(), Failure> {
        let Some(reads) = server_reads.get(&self.connection.local) else {
            return Ok(());
        };
        for paused in &self.log.pauses {
            let from = started_at + paused.from.since_origin() + tick;
            let until = paused
                .until
                .map_or(Duration::MAX, |until| started_at + until.since_origin());
            // `reads` is in time order, as the reads happened; a pause
            // ended within its own tick counts none.
            let read_while_paused = reads
                .partition_point(|&at| at < until)
                .saturating_sub(reads.partition_point(|&at| at <= from));
            if read_while_paused > 1 {
                let what = format!(
                    "the server read from it {read_while_paused} times while the broker had \
                     it paused, from {from:?} to {until:?}"
                );
                return self.broke(Broken::Rule("Flow control"), what, Some(paused.line));
            }
        }
        Ok(())
    }

    /// Guarantee 6, end to end: the client received a prefix of what the
    /// broker sent the connection.
    fn stream_as_sent(&self) -> Result<(), Failure> {
        let received = &self.connection.received;
        let closed = self.log.closed.is_some();
        match compare_streams(&self.log.written, received, closed) {
            Ok(()) => Ok(()),
            Err((guarantee, at, what)) => self.fail(guarantee, what, self.read_at(at)),
        }
    }

    /// Guarantee 10 on the wire, after [`Judged::stream_as_sent`]: in each
    /// of its rooms, the room messages and news (joins, leaves, renames,
    /// `everyone left`) the client received are, in the order it received
    /// them, exactly those the log owes it there ([`RoomLedger`]), in log
    /// order, with none skipped: so every member saw one common order, the
    /// log's, and a member received exactly the room messages processed
    /// while it was one, not its own, and the news of the others. Messages
    /// are known by their ids, so what arrived is matched to what its
    /// sender's line was processed as. The client may have received only
    /// a prefix (a fault, a crash, a cut): what it is owed but did not get
    /// must come after the last line it did get, unless it got all the
    /// broker sent, when it must have got everything owed.
    fn rooms_as_owed(&self, ledger: &RoomLedger, coverage: &mut Coverage) -> Result<(), Failure> {
        let Some((_, conn)) = self.accepted else {
            return Ok(());
        };
        let got_all =
            self.log.closed.is_some() && self.connection.received.len() == self.log.written.len();
        let received = &self.connection.received;
        match match_rooms(
            ledger,
            conn,
            received,
            &self.log.line_steps,
            got_all,
            self.connection.irc,
            coverage,
        ) {
            Ok(()) => Ok(()),
            Err((Some(at), what)) => self.fail(Guarantee::RoomOrder, what, self.read_at(at)),
            Err((None, what)) => {
                let last_read = self.connection.reads.last().map(|&(_, line)| line);
                self.fail(Guarantee::RoomOrder, what, last_read)
            }
        }
    }

    /// The deliveries the client received whole: `from` lines, or for an
    /// IRC connection PRIVMSG and NOTICE lines from users.
    fn deliveries(&self) -> usize {
        let lines = self.connection.received.split_inclusive(|&b| b == b'\n');
        if self.connection.irc {
            return lines
                .filter_map(|line| std::str::from_utf8(line).ok())
                .filter(|line| matches!(irc::read(line), Some(Heard::Delivery { .. })))
                .count();
        }
        lines
            .filter(|line| line.starts_with(b"from ") && line.ends_with(b"\n"))
            .count()
    }

    /// The longest line the server reads from this connection: `max-line`,
    /// or IRC's limit (`Dialect::max_line`).
    fn max_line(&self, scenario: &Scenario) -> usize {
        let dialect = if self.connection.irc {
            Dialect::Irc
        } else {
            Dialect::Line
        };
        dialect.max_line(&scenario.config)
    }

    /// Guarantees 6 and 8 for a final session on the healed network.
    /// Returns how many lines it typed on into the shutdown.
    fn complete_after_healing(&self, max_line: usize) -> Result<usize, Failure> {
        let last_read = self.connection.reads.last().map(|&(_, line)| line);
        let written = &self.log.written;
        let name = final_name(self.connection.client);
        let welcomed = if self.connection.irc {
            // Its first line but CAP's replies is `001` to its name.
            let lines = written.split_inclusive(|&b| b == b'\n');
            let cap = format!(":{} CAP ", irc::SERVER);
            let first = lines
                .map(|line| String::from_utf8_lossy(line))
                .find(|line| !line.starts_with(&cap));
            first.is_some_and(|line| irc::read(&line) == Some(Heard::Welcome(&name)))
        } else {
            written.starts_with(format!("welcome {name}\n").as_bytes())
        };
        if !welcomed {
            let what = format!(
                "final session not welcomed; the broker sent {:?}",
                line_at(written, 0)
            );
            return self.fail(Guarantee::NoSilentLoss, what, last_read);
        }
        let closed_at = match self.log.closed {
            Some((CloseReason::ShuttingDown, line)) => line,
            // Due: the model and guarantee 6's check agree it would not fit.
            // What the client got until the cut was checked as a prefix.
            Some((CloseReason::SlowConsumer, _)) => return Ok(0),
            Some((reason, line)) => {
                let what = format!("closed as {reason:?} on a healed network");
                return self.fail(Guarantee::NoSilentLoss, what, Some(line));
            }
            None => {
                let what = "never closed by the shutdown".to_string();
                return self.fail(Guarantee::CleanShutdown, what, last_read);
            }
        };
        // A client that typed on into the shutdown is owed only what it
        // sent before: the rest may come after the broker closed it.
        let all = &self.connection.sent;
        let owed = &all[..self.connection.owed.unwrap_or(all.len())];
        let sent = frames_by_the_book(max_line, owed).len();
        let typed = frames_by_the_book(max_line, all).len() - sent;
        // Lines handed to the broker after it closed the connection are
        // stale: it ignores them, so they were not processed.
        let processed = self.log.processed.iter();
        let processed = processed.filter(|(_, line)| *line < closed_at).count();
        if processed < sent {
            let what = if typed == 0 {
                format!("{processed} of the {sent} lines it sent were processed")
            } else {
                format!(
                    "{processed} of the {sent} lines it sent before typing into the \
                     shutdown were processed"
                )
            };
            return self.fail(Guarantee::NoSilentLoss, what, last_read);
        }
        let (received, written) = (self.connection.received.len(), written.len());
        if received != written {
            let what = format!("received {received} of the {written} bytes the broker sent it");
            return self.fail(Guarantee::CleanShutdown, what, last_read);
        }
        if self.connection.end != Some(End::EndOfStream) {
            let what = format!(
                "the stream ended {:?}, not with a clean end of stream",
                self.connection.end
            );
            return self.fail(Guarantee::CleanShutdown, what, last_read);
        }
        Ok(typed)
    }
}

/// Whether `received` is a prefix of `written`, what the broker sent a
/// connection (`closed` says whether it closed it). If not: the guarantee
/// broken, the offset where the streams part, and what was seen there. A
/// line received before one the broker sent ahead of it is out of order
/// (5); one the broker sent that never arrived, though later bytes did, or
/// arrived altered, is lost (6); bytes beyond all the broker sent came after
/// its close (4) or from nowhere (5).
fn compare_streams(
    written: &[u8],
    received: &[u8],
    closed: bool,
) -> Result<(), (Guarantee, usize, String)> {
    if written.starts_with(received) {
        return Ok(());
    }
    let at = received
        .iter()
        .zip(written)
        .take_while(|(a, b)| a == b)
        .count();
    let got = line_at(received, at);
    if at == written.len() {
        let (guarantee, when) = if closed {
            (
                Guarantee::NothingAfterDisconnect,
                "after the broker closed it",
            )
        } else {
            (Guarantee::PerConnectionOrder, "that the broker never sent")
        };
        return Err((
            guarantee,
            at,
            format!("from byte {at} received {got}, {when}"),
        ));
    }
    let line_start = written[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |lf| lf + 1);
    let expected = line_bytes(written, line_start);
    let arrives_later = received[line_start..]
        .split_inclusive(|&b| b == b'\n')
        .skip(1)
        .any(|line| line == expected);
    let guarantee = if arrives_later {
        Guarantee::PerConnectionOrder
    } else {
        Guarantee::NoSilentLoss
    };
    let what = format!(
        "from byte {at} received {got} where the broker sent {}",
        line_at(written, at)
    );
    Err((guarantee, at, what))
}

/// The line of `bytes` that starts at `start`, terminator included.
fn line_bytes(bytes: &[u8], start: usize) -> &[u8] {
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |lf| start + lf + 1);
    &bytes[start..end]
}

/// The line of `bytes` that holds `offset` (or starts at the end), escaped,
/// for messages.
fn line_at(bytes: &[u8], offset: usize) -> String {
    let start = bytes[..offset.min(bytes.len())]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |lf| lf + 1);
    format!("\"{}\"", line_bytes(bytes, start).escape_ascii())
}

fn failure(broken: Broken, detail: String, trace_index: Option<usize>) -> Failure {
    Failure {
        broken,
        detail,
        trace_index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITTEN: &[u8] = b"welcome ann\nfrom bob: 1\nfrom cyd: 2\n";

    fn broken(received: &[u8], closed: bool) -> Option<Guarantee> {
        compare_streams(WRITTEN, received, closed)
            .err()
            .map(|(guarantee, _, _)| guarantee)
    }

    #[test]
    fn a_prefix_of_what_was_sent_is_fine() {
        assert_eq!(broken(b"", false), None);
        assert_eq!(broken(b"welcome ann\nfrom b", false), None);
        assert_eq!(broken(WRITTEN, true), None);
    }

    #[test]
    fn streams_that_part_name_the_guarantee() {
        let lost = b"welcome ann\nfrom cyd: 2\n";
        assert_eq!(broken(lost, false), Some(Guarantee::NoSilentLoss));
        let altered = b"welcome ann\nfrom bob: 9\n";
        assert_eq!(broken(altered, false), Some(Guarantee::NoSilentLoss));
        let swapped = b"welcome ann\nfrom cyd: 2\nfrom bob: 1\n";
        assert_eq!(broken(swapped, false), Some(Guarantee::PerConnectionOrder));
        let extra = [WRITTEN, b"from eve: 3\n"].concat();
        assert_eq!(broken(&extra, false), Some(Guarantee::PerConnectionOrder));
        assert_eq!(
            broken(&extra, true),
            Some(Guarantee::NothingAfterDisconnect)
        );
    }

    #[test]
    fn error_lines_are_counted_by_kind() {
        let mut coverage = Coverage::default();
        for line in [
            "error: no such peer: bob\n",
            "error: expected \"<dest>, ...: <text>\" (missing ':')\n",
            "error: line too long\n",
            "error: name taken: ann\n",
            "error: name takenx\n",
            "from bob: error: no such peer: x\n",
        ] {
            count_error(line, &mut coverage);
        }
        let at = |kind: &str| coverage.errors[ERROR_KINDS.iter().position(|k| *k == kind).unwrap()];
        assert_eq!(at("error: no such peer"), 1);
        assert_eq!(at("error: expected"), 1);
        assert_eq!(at("error: line too long"), 1);
        assert_eq!(at("error: name taken"), 1);
        assert_eq!(coverage.other_errors, 1);
    }

    /// A trace of the reference model's decisions on `inputs`, one input
    /// per millisecond: what a correct broker would have logged.
    fn trace_of(inputs: Vec<Input>) -> Trace {
        let config = chinwag::config::Config::default();
        let mut model = Model::new(&config);
        let steps = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| {
                let time = Time::from_origin(Duration::from_millis(i as u64));
                let outputs = model.step(time, &input);
                crate::model::trace::TraceStep {
                    time,
                    input,
                    outputs,
                }
            })
            .collect();
        Trace { config, steps }
    }

    fn open(conn: u64) -> Input {
        Input::Opened {
            conn: ConnId(conn),
            address: std::net::IpAddr::from([10, 0, 0, conn as u8]),
            dialect: chinwag::news::Dialect::Line,
        }
    }

    fn line(conn: u64, text: &str) -> Input {
        Input::Line {
            conn: ConnId(conn),
            frame: Ok(text.to_string()),
        }
    }

    /// ann and bob share #a, cyd watches from outside and then joins; bob
    /// renames, ann writes to #a (and to cyd by name), bob disconnects and
    /// the server shuts down.
    fn rooms_trace() -> Trace {
        trace_of(vec![
            open(1),
            open(2),
            open(3),
            line(1, "ann"),
            line(2, "bob"),
            line(3, "cyd"),
            line(1, "/join #a"),
            line(2, "/join #a"),
            line(1, "#a: <m0.1> one"),
            line(3, "/join #a"),
            line(2, "/nick bo"),
            line(1, "cyd, #a: <m0.2> two"),
            line(2, "#a: <m1.1> three"),
            Input::Closed { conn: ConnId(2) },
            Input::Shutdown,
        ])
    }

    /// Everything the log sent `conn`, and the step of each line.
    fn sent_to(log: &Trace, conn: u64) -> (Vec<u8>, Vec<usize>) {
        let logs = connection_logs(&Incarnation {
            log: log.clone(),
            lines: (0..log.steps.len()).collect(),
            accepted: Vec::new(),
            started_at: Duration::ZERO,
        });
        let sent = &logs[&ConnId(conn)];
        (sent.written.clone(), sent.line_steps.clone())
    }

    fn judge(log: &Trace, conn: u64, received: &[u8], got_all: bool) -> Result<(), String> {
        judge_as(
            log,
            conn,
            received,
            got_all,
            false,
            &mut Coverage::default(),
        )
    }

    fn judge_as(
        log: &Trace,
        conn: u64,
        received: &[u8],
        got_all: bool,
        irc: bool,
        coverage: &mut Coverage,
    ) -> Result<(), String> {
        let ledger = room_ledger(log, &mut Coverage::default());
        let (_, steps) = sent_to(log, conn);
        match_rooms(
            &ledger,
            ConnId(conn),
            received,
            &steps,
            got_all,
            irc,
            coverage,
        )
        .map_err(|(_, what)| what)
    }

    fn open_irc(conn: u64) -> Input {
        Input::Opened {
            conn: ConnId(conn),
            address: std::net::IpAddr::from([10, 0, 0, conn as u8]),
            dialect: chinwag::news::Dialect::Irc,
        }
    }

    /// ann speaks the line protocol, bob and cyd IRC; they share #a, bob
    /// messages #a and ann at once, renames, parts and joins again, cyd
    /// sends a NOTICE to #a, ann disconnects and cyd quits.
    fn irc_rooms_trace() -> Trace {
        trace_of(vec![
            open(1),
            open_irc(2),
            open_irc(3),
            line(1, "ann"),
            line(2, "NICK bob"),
            line(2, "USER bob 0 * :b"),
            line(3, "CAP LS 302"),
            line(3, "NICK cyd"),
            line(3, "USER cyd 0 * :c"),
            line(3, "CAP END"),
            line(1, "/join #a"),
            line(2, "JOIN #a"),
            line(1, "#a: <m0.1> one"),
            line(2, "PRIVMSG #a,ann :<m1.1> two"),
            line(3, "JOIN #a"),
            line(2, "NICK bo"),
            line(3, "NOTICE #a :<m2.1> three"),
            line(2, "PART #a :later"),
            line(2, "JOIN #a"),
            line(2, "PRIVMSG cyd :<m1.2> four"),
            Input::Closed { conn: ConnId(1) },
            line(3, "QUIT :bye"),
            Input::Shutdown,
        ])
    }

    #[test]
    fn irc_members_are_owed_their_rooms_in_irc() {
        let log = irc_rooms_trace();
        let mut coverage = Coverage::default();
        for conn in 1..=3 {
            let irc = conn != 1;
            let (written, _) = sent_to(&log, conn);
            let judged = judge_as(&log, conn, &written, true, irc, &mut coverage);
            assert_eq!(judged, Ok(()), "c{conn}");
            let half = &written[..written.len() / 2];
            let judged = judge_as(&log, conn, half, false, irc, &mut Coverage::default());
            assert_eq!(judged, Ok(()), "c{conn}");
        }
        // Messages, joins, parts, a disconnect, a rename, all matched.
        let [messages, joined, parted, disconnected, _, _, renamed] = coverage.room_lines;
        assert!(messages >= 4 && joined >= 6 && parted >= 2, "{coverage:?}");
        assert!(disconnected >= 3 && renamed >= 3, "{coverage:?}");
        // bob misses cyd's JOIN, or sees ann's QUIT twice: guarantee 10.
        let (written, _) = sent_to(&log, 2);
        let text = String::from_utf8(written).unwrap();
        let join = ":cyd!cyd@chinwag JOIN #a\r\n";
        assert!(text.contains(join) && text.contains(" QUIT :disconnected\r\n"));
        let missed = text.replacen(join, "", 1);
        let judged = judge_as(
            &log,
            2,
            missed.as_bytes(),
            true,
            true,
            &mut Coverage::default(),
        );
        assert!(judged.is_err(), "{text}");
        let quit = ":ann!ann@chinwag QUIT :disconnected\r\n";
        let twice = text.replacen(quit, &format!("{quit}{quit}"), 1);
        let judged = judge_as(
            &log,
            2,
            twice.as_bytes(),
            true,
            true,
            &mut Coverage::default(),
        );
        assert!(judged.is_err(), "{text}");
    }

    #[test]
    fn the_ledger_owes_members_their_rooms_in_log_order() {
        let log = rooms_trace();
        let mut coverage = Coverage::default();
        let ledger = room_ledger(&log, &mut coverage);
        assert_eq!(
            (
                coverage.room_joins,
                coverage.room_renames,
                coverage.room_leaves
            ),
            (3, 1, 1)
        );
        // ann's own message and the one before cyd joined are not cyd's.
        assert_eq!(coverage.room_messages, 3);
        let news = |conn: u64| -> Vec<Option<String>> {
            ledger.owed[&ConnId(conn)].rooms["#a"]
                .iter()
                .map(|owed| owed.news.clone())
                .collect()
        };
        let text = |line: &str| Some(line.to_string());
        assert_eq!(
            news(3),
            [
                text("#a: cyd joined\n"),
                text("renamed bob to bo\n"),
                None,
                None,
                text("#a: bo left (disconnected)\n"),
                text("#a: everyone left (server shutting down)\n"),
            ]
        );
        // ann's own message is not hers.
        let joined = ["#a: ann joined\n", "#a: bob joined\n", "#a: cyd joined\n"];
        assert_eq!(news(1)[..3], joined.map(text));
    }

    #[test]
    fn what_the_model_sent_matches_the_ledger() {
        let log = rooms_trace();
        for conn in 1..=3 {
            let (written, _) = sent_to(&log, conn);
            assert_eq!(judge(&log, conn, &written, true), Ok(()), "c{conn}");
            // Any prefix, too, when the rest never arrived.
            let half = &written[..written.len() / 2];
            assert_eq!(judge(&log, conn, half, false), Ok(()), "c{conn}");
        }
    }

    #[test]
    fn room_lines_lost_swapped_or_not_owed_break_guarantee_10() {
        let log = rooms_trace();
        let (written, _) = sent_to(&log, 3);
        let lines: Vec<&[u8]> = written.split_inclusive(|&b| b == b'\n').collect();
        let with = |lines: &[&[u8]]| lines.concat();
        // cyd: welcome, joined, renamed, two (by name), three, left,
        // everyone left, notice.
        let mut swapped = lines.clone();
        swapped.swap(4, 5);
        assert!(judge(&log, 3, &with(&swapped), false).is_err());
        let mut lost = lines.clone();
        lost.remove(5);
        assert!(judge(&log, 3, &with(&lost), false).is_err());
        // The end lost, all the broker sent received: the shutdown's line
        // is missing.
        assert!(judge(&log, 3, &with(&lines[..lines.len() - 2]), true).is_err());
        let extra = [&written[..], b"from ann to #a: <m0.1> one\n"].concat();
        assert!(judge(&log, 3, &extra, false).is_err());
        let mut unowed = lines.clone();
        unowed.insert(2, b"#a: bob left (parted)\n");
        assert!(judge(&log, 3, &with(&unowed), false).is_err());
    }

    #[test]
    fn messages_cut_before_their_ids_are_matched_in_order() {
        let log = trace_of(vec![
            open(1),
            open(2),
            line(1, "ann"),
            line(2, "bob"),
            line(1, "/join #a"),
            line(2, "/join #a"),
            line(1, "#a: <m0"),
            line(1, "bob, #a: <m0"),
        ]);
        let (written, _) = sent_to(&log, 2);
        assert_eq!(judge(&log, 2, &written, true), Ok(()));
        let once = b"welcome bob\n#a: bob joined\nfrom ann to #a: <m0\n";
        assert!(judge(&log, 2, once, true).is_err());
    }

    #[test]
    fn message_ids_are_found_in_texts() {
        assert_eq!(message_id("<m3.17> hello"), Some("<m3.17>"));
        assert_eq!(message_id("\u{1b}<m0.2> at the edge"), Some("<m0.2>"));
        assert_eq!(message_id("no id"), None);
        assert_eq!(message_id("<m5.8"), None);
        assert_eq!(message_key("<m5.8"), "<m5.8");
        assert_eq!(message_key("<m5.8> hi"), "<m5.8>");
    }

    #[test]
    fn line_at_finds_the_line_around_an_offset() {
        assert_eq!(line_at(b"one\ntwo\nthree", 5), "\"two\\n\"");
        assert_eq!(line_at(b"one\ntwo\n", 0), "\"one\\n\"");
        assert_eq!(line_at(b"one\n", 4), "\"\"");
        assert_eq!(line_at(b"", 0), "\"\"");
    }
}
