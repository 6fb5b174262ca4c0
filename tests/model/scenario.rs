//! Scenarios: sequences of things that happen to a server, told as a story,
//! and the harness that plays one against the broker and the model.
//!
//! A [`Step`] names connections `c1`, `c2`, ... and says what happens
//! ("c1 opens", "c1 sends \"alice\"", "c2 reads up to 10 bytes"). Playing a
//! [`Scenario`] turns each step into the [`Input`] the shell would report,
//! skipping steps the shell never could report (a line from a connection
//! that was never opened, a second shutdown), so any sequence of steps is a
//! valid one and shrinking can drop steps freely. After every step the
//! broker's outputs must equal the model's; at the end, every guarantee
//! must hold over the whole trace.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use chinwag::broker::{Broker, ConnId, Input};
use chinwag::codec::{Frame, FrameError};
use chinwag::config::Config;
use chinwag::news::Dialect;
use chinwag::time::Time;

use super::guarantees;
use super::reference::{Model, per_connection};
use super::trace::{Observed, Trace, TraceStep};

/// Names that log in and message each other. Few, so they collide often.
pub const NAMES: [&str; 3] = ["alice", "bob", "carol"];
/// Valid names that look like ones in `NAMES` (a Cyrillic `а`, fullwidth
/// letters): taken while their look-alike is held.
pub const LOOK_ALIKES: [&str; 2] = ["\u{430}lice", "ｂｏｂ"];
/// One name in two spellings, decomposed and composed: the same name once
/// in NFC, as a login and as a destination.
pub const NFC_NAMES: [&str; 2] = ["zoe\u{308}", "zo\u{eb}"];
/// A valid name nobody is ever generated to log in as.
pub const ABSENT: &str = "dave";
/// Login lines that are not valid names.
pub const BAD_NAMES: [&str; 7] = [
    "alice\u{3164}",
    "al ice",
    "a!",
    "\u{1f600}",
    "bob:",
    "Ünïcødé-name-that-is-much-too-long",
    "tab\there",
];
/// Message texts, including the empty one and ones with `:` in them.
pub const TEXTS: [&str; 7] = [
    "hi",
    "",
    "a: b",
    "  padded  ",
    "ünï",
    "a longer text to fill queues",
    "tabs\tare\tfine",
];
/// Texts the server refuses for a control character, one of each kind.
pub const CONTROL_TEXTS: [&str; 6] = [
    "x\rfrom alice: forged",
    "\x1b[2K",
    "a\x7fb",
    "a\u{85}b",
    "a\u{9b}b",
    "\u{202e}olleh",
];
/// Lines after login that are no message at all.
pub const MALFORMED: [&str; 7] = [
    "bob: x\rfrom alice: y",
    "hello",
    ": hi",
    "bob,,carol: x",
    "bob, : x",
    "b b: hi",
    "alice,\u{1f600}: x",
];
/// Rooms that are joined and messaged. Three, so that one connection can
/// try one more than `MAX_ROOMS_PER_CONNECTION`.
pub const ROOMS: [&str; 3] = ["#a", "#b", "#c"];
/// One room in two spellings, decomposed and composed: the same room once
/// in NFC, as a command's argument and as a destination.
pub const NFC_ROOMS: [&str; 2] = ["#zoe\u{308}", "#zo\u{eb}"];
/// A room that looks like `#a` (a Cyrillic `а`) but is another room: rooms,
/// like destinations, are exact.
pub const LOOK_ALIKE_ROOM: &str = "#\u{430}";
/// Room arguments and destinations that are no room: a space, nothing
/// after the `#`, a character no name has, and a bare name.
pub const BAD_ROOMS: [&str; 4] = ["#a b", "#", "#a!", "a"];
/// Command lines refused before anything is done: unknown commands (they
/// are case-sensitive, and `/` alone is none), and known ones with missing
/// or extra arguments.
pub const BAD_COMMANDS: [&str; 10] = [
    "/foo",
    "/JOIN #a",
    "/",
    "/ join #a",
    "/join",
    "/join #a #b",
    "/part",
    "/names",
    "/rooms #a",
    "/nick alice bob",
];
/// Lines that are ignored.
pub const BLANK: [&str; 3] = ["", "   ", "\t\u{3000}"];
/// Room limits of every scenario: small, so that joins are refused for
/// too many rooms and for a full room now and then (with at most four
/// connections, two from one address, a third member is rare).
pub const MAX_ROOMS_PER_CONNECTION: usize = 2;
pub const MAX_ROOM_MEMBERS: usize = 2;
/// The write timeout of every scenario; `Wait` steps are drawn around it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection limits of every scenario: small, so that connections are
/// refused now and then (connection `cN` connects from `address_of(N)`).
pub const MAX_CONNECTIONS: usize = 4;
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 2;
/// The slow timeout of every scenario: shorter than the write timeout, so
/// a queue past its bound that makes no progress at all is cut as slow
/// first, and one that drains a little is cut as slow all the same.
pub const SLOW_TIMEOUT: Duration = Duration::from_secs(5);
/// The login timeout of every scenario, within reach of a few `Wait`s.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Time that passes between two steps that are not `Wait`s, so that
/// progress and stalls have distinct times.
pub const TICK: Duration = Duration::from_millis(1);

/// One thing that happens to the server.
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    Open(u64),
    /// The connection comes in on the IRC listener (IRC.md).
    OpenIrc(u64),
    Send(u64, Frame),
    Read(u64, Amount),
    /// Time passes, in milliseconds, and the broker's timer fires.
    Wait(u64),
    Disconnect(u64),
    /// The shell lets go of the connection's socket.
    Release(u64),
    Shutdown,
}

/// How much of its queued output a connection reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Everything,
    UpTo(usize),
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Open(c) => write!(f, "c{c} opens"),
            Step::OpenIrc(c) => write!(f, "c{c} opens, speaking IRC"),
            Step::Send(c, Ok(line)) => write!(f, "c{c} sends {line:?}"),
            Step::Send(c, Err(FrameError::LineTooLong)) => write!(f, "c{c} sends a too-long line"),
            Step::Send(c, Err(FrameError::InvalidUtf8)) => write!(f, "c{c} sends invalid UTF-8"),
            Step::Read(c, Amount::Everything) => write!(f, "c{c} reads all it was sent"),
            Step::Read(c, Amount::UpTo(n)) => write!(f, "c{c} reads up to {n} bytes"),
            Step::Wait(ms) => write!(f, "{ms} ms pass"),
            Step::Disconnect(c) => write!(f, "c{c} disconnects"),
            Step::Release(c) => write!(f, "c{c}'s socket is let go"),
            Step::Shutdown => write!(f, "the server shuts down"),
        }
    }
}

impl Step {
    /// How long after the previous step this one happens.
    fn delay(&self) -> Duration {
        match self {
            Step::Wait(ms) => Duration::from_millis(*ms),
            _ => TICK,
        }
    }

    /// The input the shell would report for this step at `now`, if it could.
    fn input(&self, now: Time, seen: &Observed) -> Option<Input> {
        let input = match self {
            Step::Open(c) | Step::OpenIrc(c) => Input::Opened {
                conn: ConnId(*c),
                address: address_of(*c),
                dialect: match self {
                    Step::OpenIrc(_) => Dialect::Irc,
                    _ => Dialect::Line,
                },
            },
            Step::Send(c, frame) => Input::Line {
                conn: ConnId(*c),
                frame: frame.clone(),
            },
            Step::Read(c, amount) => {
                let queued = seen.unflushed(ConnId(*c));
                let bytes = match amount {
                    Amount::Everything => queued,
                    Amount::UpTo(n) => queued.min(*n),
                };
                if bytes == 0 {
                    return None;
                }
                Input::Flushed {
                    conn: ConnId(*c),
                    bytes,
                }
            }
            Step::Wait(_) => Input::Timeout,
            Step::Disconnect(c) => Input::Closed { conn: ConnId(*c) },
            Step::Release(c) => Input::Released { conn: ConnId(*c) },
            Step::Shutdown => Input::Shutdown,
        };
        seen.permits(now, &input).then_some(input)
    }
}

/// The address connection `cN` connects from: 127.0.0.1, the same as an
/// IPv4-mapped IPv6 address, or one of the hosts of one IPv6 /64, so the
/// per-address limit meets every way of counting an address.
pub fn address_of(c: u64) -> IpAddr {
    let v4 = Ipv4Addr::LOCALHOST;
    match c % 3 {
        0 => IpAddr::V4(v4),
        1 => IpAddr::V6(v4.to_ipv6_mapped()),
        _ => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, c as u16)),
    }
}

/// A server with a queue limit, and what happens to it.
#[derive(Clone)]
pub struct Scenario {
    pub max_queue: usize,
    pub steps: Vec<Step>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "with max_queue = {} bytes, write_timeout = {WRITE_TIMEOUT:?}, \
             slow_timeout = {SLOW_TIMEOUT:?}, login_timeout = {LOGIN_TIMEOUT:?}, {MAX_CONNECTIONS} connections at most, \
             {MAX_CONNECTIONS_PER_ADDRESS} from one address, {MAX_ROOMS_PER_CONNECTION} rooms per \
             connection, {MAX_ROOM_MEMBERS} members per room:",
            self.max_queue
        )?;
        for (number, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>3}. {step:?}", number + 1)?;
        }
        Ok(())
    }
}

impl Scenario {
    /// Plays the scenario; on failure says what went wrong, after the
    /// story of what the broker did up to that point.
    pub fn play(&self) -> Result<Trace, String> {
        let mut run = Run::new(self.max_queue);
        let mut now = Time::ZERO;
        for step in &self.steps {
            now = now + step.delay();
            if let Some(input) = step.input(now, &run.seen) {
                run.feed(now, input)
                    .map_err(|why| format!("{}{why}", run.trace))?;
            }
        }
        guarantees::check_all(&run.trace).map_err(|why| format!("{}{why}", run.trace))?;
        Ok(run.trace)
    }
}

/// A broker and the model, fed the same inputs, and the trace so far.
struct Run {
    broker: Broker,
    model: Model,
    seen: Observed,
    trace: Trace,
}

impl Run {
    fn new(max_queue: usize) -> Self {
        let config = Config {
            max_queue,
            write_timeout: WRITE_TIMEOUT,
            slow_timeout: SLOW_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_address: MAX_CONNECTIONS_PER_ADDRESS,
            login_timeout: LOGIN_TIMEOUT,
            max_rooms_per_connection: MAX_ROOMS_PER_CONNECTION,
            max_room_members: MAX_ROOM_MEMBERS,
            ..Config::default()
        };
        Run {
            broker: Broker::new(&config),
            model: Model::new(&config),
            seen: Observed::new(&config),
            trace: Trace {
                config,
                steps: Vec::new(),
            },
        }
    }

    /// Gives both the input and checks they agree on what each connection
    /// is sent and whether it is closed, in order. (The order between
    /// different connections is the shell's business, not the protocol's.)
    fn feed(&mut self, time: Time, input: Input) -> Result<(), String> {
        let mut outputs = Vec::new();
        self.broker.handle(time, &input, &mut outputs);
        let expected = self.model.step(time, &input);
        let step = TraceStep {
            time,
            input,
            outputs,
        };
        self.seen.advance(&step);
        self.trace.steps.push(step);
        let got = &self.trace.steps.last().unwrap().outputs;
        let due = self.model.next_deadline();
        let asked = self.broker.poll_timeout();
        if due.is_some_and(|due| asked.is_none_or(|asked| asked > due)) {
            let index = self.trace.steps.len() - 1;
            return Err(format!(
                "after step {index} the broker asks to be woken at {asked:?}, \
                 but a connection is due to be closed at {due:?}"
            ));
        }
        let index = self.trace.steps.len() - 1;
        if per_connection(got) != per_connection(&expected) {
            return Err(format!(
                "the broker disagrees with the model at step {index}:\n  \
                 broker: {got:?}\n  model:  {expected:?}"
            ));
        }
        for conn in self.seen.open_connections() {
            let (broker, model) = (self.broker.is_paused(conn), self.model.is_paused(conn));
            if broker != model {
                return Err(format!(
                    "after step {index} the broker says {conn} is paused: {broker}, \
                     the model: {model}"
                ));
            }
        }
        Ok(())
    }
}
