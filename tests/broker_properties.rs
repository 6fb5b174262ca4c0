//! Model-based property tests of the broker: random event sequences, the
//! broker's outputs held against the reference model after every step, and
//! PROTOCOL.md's guarantees 1-10 checked over each whole run.
//!
//! The model, the guarantee checks and the story-telling step type live in
//! `tests/model/` (shared with the fuzz targets); this file only says how
//! to draw scenarios. The generator is weighted towards trouble: five
//! connections (from three kinds of address, under small limits), three
//! names and their look-alikes, many logins and disconnects, messages
//! racing logins, control characters, time passing, and small queues so
//! slow readers get cut. A third of the scenarios are stories about rooms,
//! under room limits small enough to be hit. In half of the scenarios some
//! connections speak IRC (IRC.md) and send IRC lines from a small
//! vocabulary, so the model holds the broker to the cross-protocol
//! renderings too.
//!
//! `cargo test` runs proptest's default number of cases; set
//! `PROPTEST_CASES=100000` for a deep run. A shrunk failure prints the
//! scenario as a story, and proptest records its seed in
//! `tests/proptest-regressions/broker_properties.txt`, which is committed
//! and replayed first on every run.

mod model;
mod proptest_config;

use chinwag::broker::{Broker, CloseReason, Input, Output};
use chinwag::codec::{Frame, FrameError};
use chinwag::journal;
use chinwag::time::Time;
use model::scenario::{
    ABSENT, Amount, BAD_COMMANDS, BAD_NAMES, BAD_ROOMS, BLANK, CONTROL_TEXTS, LOOK_ALIKE_ROOM,
    LOOK_ALIKES, MALFORMED, NAMES, NFC_NAMES, NFC_ROOMS, ROOMS, SLOW_TIMEOUT, Scenario, Step,
    TEXTS, WRITE_TIMEOUT,
};
use model::trace::Trace;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::sync::Arc;

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/proptest-regressions/broker_properties.txt"
);

/// One of a few connections, so they meet often.
fn conn() -> impl Strategy<Value = u64> {
    1..=5u64
}

/// Any of the names, or the one nobody logs in as.
fn anyone() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        8 => prop::sample::select(NAMES.to_vec()),
        2 => Just(ABSENT),
        1 => prop::sample::select(NFC_NAMES.to_vec()),
    ]
}

/// A room, mostly one of a few (the first above all) so they fill up, now and then its other
/// spelling, its look-alike or no room at all.
fn room() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        // The first room most, so that rooms have company.
        6 => Just(ROOMS[0]),
        9 => prop::sample::select(ROOMS.to_vec()),
        2 => prop::sample::select(NFC_ROOMS.to_vec()),
        1 => Just(LOOK_ALIKE_ROOM),
        1 => prop::sample::select(BAD_ROOMS.to_vec()),
    ]
}

/// A destination: a name or a room, names more often.
fn destination() -> impl Strategy<Value = &'static str> {
    prop_oneof![1 => anyone(), 1 => room()]
}

/// A command line, well formed or not, maybe led by white space.
fn command() -> impl Strategy<Value = String> {
    let pad = prop::sample::select(vec!["", "", "", " ", "\u{3000}"]);
    let nick = prop_oneof![
        6 => login(),
        1 => prop::sample::select(BAD_NAMES.to_vec()).prop_map(str::to_string),
    ];
    let command = prop_oneof![
        16 => room().prop_map(|r| format!("/join {r}")),
        3 => room().prop_map(|r| format!("/part {r}")),
        2 => room().prop_map(|r| format!("/names {r}")),
        2 => Just("/rooms".to_string()),
        // The name may have white space around it, but not within.
        3 => nick.prop_map(|n| format!("/nick {}", n.trim())),
        2 => prop::sample::select(BAD_COMMANDS.to_vec()).prop_map(str::to_string),
    ];
    (pad, command).prop_map(|(pad, command)| format!("{pad}{command}"))
}

/// A login line for a name or a look-alike of one, maybe padded with
/// Unicode whitespace.
fn login() -> impl Strategy<Value = String> {
    let pad = || prop::sample::select(vec!["", "", " ", "\t", "\u{3000}"]);
    let name = prop_oneof![
        6 => prop::sample::select(NAMES.to_vec()),
        3 => prop::sample::select(LOOK_ALIKES.to_vec()),
        1 => prop::sample::select(NFC_NAMES.to_vec()),
    ];
    (pad(), name, pad()).prop_map(|(a, n, b)| format!("{a}{n}{b}"))
}

/// `dest[, dest...]: text`, with repeats, the sender itself and the
/// absent name all likely; texts from empty to long enough to fill queues.
fn message() -> impl Strategy<Value = String> {
    // Now and then more than eight, for the set that deduplicates long lists.
    let destinations = prop_oneof![
        9 => prop::collection::vec(destination(), 1..=3),
        1 => prop::collection::vec(destination(), 9..=12),
    ];
    let separator = prop::sample::select(vec![",", ", ", " , "]);
    let text = prop_oneof![
        4 => prop::sample::select(TEXTS.to_vec()).prop_map(str::to_string),
        1 => (0..90usize).prop_map(|n| "x".repeat(n)),
        1 => prop::sample::select(CONTROL_TEXTS.to_vec()).prop_map(str::to_string),
    ];
    (destinations, separator, text).prop_map(|(d, s, t)| format!("{}: {t}", d.join(s)))
}

/// A line as the codec hands it to the broker.
fn frame() -> impl Strategy<Value = Frame> {
    let any_of =
        |lines: &[&'static str]| prop::sample::select(lines.to_vec()).prop_map(str::to_string);
    prop_oneof![
        10 => login().prop_map(Ok),
        8 => message().prop_map(Ok),
        8 => command().prop_map(Ok),
        1 => any_of(&BAD_NAMES).prop_map(Ok),
        1 => any_of(&MALFORMED).prop_map(Ok),
        1 => any_of(&BLANK).prop_map(Ok),
        1 => Just(Err(FrameError::LineTooLong)),
        1 => Just(Err(FrameError::InvalidUtf8)),
    ]
}

/// The connections of a scenario that speak IRC.
type IrcConns = Arc<Vec<u64>>;

/// `cN` opens, on the listener of its dialect.
fn open(irc: &IrcConns) -> impl Strategy<Value = Step> + use<> {
    let irc = irc.clone();
    conn().prop_map(move |c| {
        if irc.contains(&c) {
            Step::OpenIrc(c)
        } else {
            Step::Open(c)
        }
    })
}

/// `cN` sends a line of its dialect: `line` for the line protocol.
fn send(irc: &IrcConns, line: BoxedStrategy<Frame>) -> impl Strategy<Value = Step> + use<> {
    let irc = irc.clone();
    conn().prop_flat_map(move |c| {
        let frame = if irc.contains(&c) {
            irc_frame().boxed()
        } else {
            line.clone()
        };
        frame.prop_map(move |f| Step::Send(c, f))
    })
}

/// Texts an IRC user may send: IRC's formatting codes, a CTCP ACTION
/// (`/me`), and colour codes with and without their numbers.
const FORMATTED_TEXTS: [&str; 5] = [
    "\x02bold\x02 and \x1ditalic\x1d",
    "\x0304,12red on blue\x03 plain",
    "\x01ACTION waves\x01",
    "\x0399\x03,5x\x0f\x0423ab4fz",
    "\x11mono\x16rev\x1estrike\x1f",
];

/// An IRC client's line: registration in any order (with and without
/// CAP), PRIVMSG and NOTICE to nicks, rooms, both and invalid targets,
/// JOIN and PART, NICK, PING, QUIT, unknown commands, too-long and blank
/// lines, formatting codes and forbidden control characters.
fn irc_frame() -> impl Strategy<Value = Frame> {
    let names = || {
        prop_oneof![
            6 => prop::sample::select(NAMES.to_vec()),
            2 => prop::sample::select(LOOK_ALIKES.to_vec()),
            1 => prop::sample::select(NFC_NAMES.to_vec()),
            1 => prop::sample::select(vec!["[bot]", "a!", "Ünïcødé-name-that-is-much-too-long"]),
        ]
    };
    let targets = prop_oneof![
        4 => prop::collection::vec(destination(), 1..=3).prop_map(|d| d.join(",")),
        1 => prop::sample::select(vec!["[bot]", "#a!", "#a,,bob", "bob,bob"]).prop_map(str::to_string),
    ];
    let text = prop_oneof![
        4 => prop::sample::select(TEXTS.to_vec()),
        2 => prop::sample::select(FORMATTED_TEXTS.to_vec()),
        1 => prop::sample::select(CONTROL_TEXTS.to_vec()),
    ];
    let message = (
        prop::sample::select(vec!["PRIVMSG", "NOTICE", "privmsg"]),
        targets,
        text,
    )
        .prop_map(|(command, targets, text)| format!("{command} {targets} :{text}"));
    let channels = prop_oneof![
        4 => room().prop_map(str::to_string),
        1 => (room(), room()).prop_map(|(a, b)| format!("{a},{b}")),
    ];
    let line = prop_oneof![
        8 => names().prop_map(|n| format!("NICK {n}")),
        6 => Just("USER u 0 * :Real Name".to_string()),
        3 => prop::sample::select(vec!["CAP LS 302", "CAP END", "CAP REQ :sasl", "CAP LIST", "CAP FOO"])
            .prop_map(str::to_string),
        12 => message,
        6 => channels.clone().prop_map(|c| format!("JOIN {c}")),
        2 => channels.prop_map(|c| format!("PART {c} :bye")),
        1 => room().prop_map(|r| format!("NAMES {r}")),
        2 => prop::sample::select(vec![
            "JOIN 0", "JOIN", "PART", "NICK", "USER u", "PRIVMSG", "PRIVMSG bob", "NOTICE bob",
            "PING tok", "PONG chinwag", "PASS secret", "AWAY :gone", "AWAY", "QUIT :bye",
            "FOO bar", "KICK #a bob", "", "   ", ":nick",
        ])
        .prop_map(str::to_string),
        1 => Just(format!("PRIVMSG #a :{}", "x".repeat(600))),
    ];
    prop_oneof![
        40 => line.prop_map(Ok),
        1 => Just(Err(FrameError::LineTooLong)),
        1 => Just(Err(FrameError::InvalidUtf8)),
    ]
}

fn step(irc: &IrcConns) -> impl Strategy<Value = Step> + use<> {
    prop_oneof![
        20 => open(irc),
        120 => send(irc, frame().boxed()),
        16 => conn().prop_map(|c| Step::Read(c, Amount::Everything)),
        12 => (conn(), 1..40usize).prop_map(|(c, n)| Step::Read(c, Amount::UpTo(n))),
        3 => (0..=2 * WRITE_TIMEOUT.as_millis() as u64).prop_map(Step::Wait),
        // Short of the write timeout, so a full queue is found slow before
        // it is found dead.
        3 => (0..=3 * SLOW_TIMEOUT.as_millis() as u64 / 2).prop_map(Step::Wait),
        12 => conn().prop_map(Step::Disconnect),
        12 => conn().prop_map(Step::Release),
        1 => Just(Step::Shutdown),
        // Past IRC's keepalive (120 s), for its PING, and again, for the
        // close of a client that does not answer.
        1 => (120_000..=130_000u64).prop_map(Step::Wait),
    ]
}

/// A step of a story about rooms: connections that log in, stay, read
/// what they are sent and meet in rooms, with a disconnect, a cut or a
/// shutdown now and then for news of leaving.
fn room_step(irc: &IrcConns) -> impl Strategy<Value = Step> + use<> {
    let frame = prop_oneof![
        3 => login().prop_map(Ok),
        4 => command().prop_map(Ok),
        3 => message().prop_map(Ok),
    ];
    prop_oneof![
        10 => open(irc),
        60 => send(irc, frame.boxed()),
        10 => conn().prop_map(|c| Step::Read(c, Amount::Everything)),
        1 => (0..=2 * WRITE_TIMEOUT.as_millis() as u64).prop_map(Step::Wait),
        3 => (0..=3 * SLOW_TIMEOUT.as_millis() as u64 / 2).prop_map(Step::Wait),
        3 => conn().prop_map(Step::Disconnect),
        2 => conn().prop_map(Step::Release),
        1 => Just(Step::Shutdown),
    ]
}

/// Three connections logged in, alice and bob in `#a` and carol in `#b`,
/// then room steps: a random walk rarely gets two connections logged in
/// and in one room, so a story about rooms starts with the people in
/// place (shrinking can still drop them). An IRC connection registers
/// (USER first, then NICK) and JOINs instead.
fn room_story(irc: &IrcConns) -> impl Strategy<Value = Vec<Step>> + use<> {
    let says = |c: u64, line: String| Step::Send(c, Ok(line));
    let cast = NAMES.iter().zip(1..).flat_map(|(name, c)| {
        if irc.contains(&c) {
            let user = says(c, "USER u 0 * :Real Name".to_string());
            vec![Step::OpenIrc(c), user, says(c, format!("NICK {name}"))]
        } else {
            vec![Step::Open(c), says(c, name.to_string())]
        }
    });
    let rooms = [(1, ROOMS[0]), (2, ROOMS[0]), (3, ROOMS[1])];
    let joins = rooms.map(|(c, room)| {
        let verb = if irc.contains(&c) { "JOIN" } else { "/join" };
        says(c, format!("{verb} {room}"))
    });
    let cast: Vec<Step> = cast.chain(joins).collect();
    prop::collection::vec(room_step(irc), 1..=80).prop_map(move |steps| {
        let mut story = cast.clone();
        story.extend(steps);
        story
    })
}

/// A queue limit (mostly small enough for slow-consumer cuts) and steps.
fn scenario() -> impl Strategy<Value = Scenario> {
    let max_queue = prop_oneof![
        1 => 1..=60usize,
        2 => 61..=300usize,
        1 => 301..=2000usize,
        1 => Just(1 << 20),
    ];
    // Half the scenarios have no IRC connection, the rest one to three.
    let irc = prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::sample::subsequence(vec![1, 2, 3, 4, 5u64], 1..=3),
    ];
    let steps = irc.prop_flat_map(|irc| {
        let irc = Arc::new(irc);
        prop_oneof![
            2 => prop::collection::vec(step(&irc), 1..=100),
            1 => room_story(&irc),
        ]
    });
    (max_queue, steps).prop_map(|(max_queue, steps)| Scenario { max_queue, steps })
}

/// Cases per `cargo test` run, unless `PROPTEST_CASES` asks for another
/// number; sized to take a few seconds in a debug build.
const DEFAULT_CASES: u32 = 4000;

fn config() -> ProptestConfig {
    proptest_config::config(REGRESSIONS, DEFAULT_CASES)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn broker_matches_the_model_and_keeps_every_guarantee(scenario in scenario()) {
        scenario.play().map_err(TestCaseError::fail)?;
    }
}

/// Cases of the journal property: each plays a scenario, as above, so
/// fewer than the main property's.
const JOURNAL_CASES: u32 = 1000;

proptest! {
    #![proptest_config(proptest_config::config(REGRESSIONS, JOURNAL_CASES))]

    /// A run's journal (`--journal`) replays to the very outputs the broker
    /// decided: the format keeps every input and time, and the broker is
    /// deterministic.
    #[test]
    fn a_journal_of_any_run_replays_to_the_same_decisions(scenario in scenario()) {
        let trace = scenario.play().map_err(TestCaseError::fail)?;
        let mut bytes = Vec::new();
        journal::encode_header(&trace.config, &mut bytes);
        let mut previous = Time::ZERO;
        for step in &trace.steps {
            journal::encode_input(previous, step.time, &step.input, &mut bytes);
            previous = step.time;
        }
        let (config, reader) = journal::Reader::open(&bytes).expect("a header");
        prop_assert_eq!(config, trace.config);
        let mut broker = Broker::new(&config);
        let mut replayed = 0;
        for (record, step) in reader.zip(&trace.steps) {
            let Ok(journal::Record::Input { at, input }) = record else {
                return Err(TestCaseError::fail(format!("{record:?} for {step:?}")));
            };
            prop_assert_eq!((at, &input), (step.time, &step.input));
            let mut outputs = Vec::new();
            broker.handle(at, &input, &mut outputs);
            prop_assert_eq!(&outputs, &step.outputs, "replaying {:?}", input);
            replayed += 1;
        }
        prop_assert_eq!(replayed, trace.steps.len());
    }
}

/// How many scenarios `the_generator_reaches_the_interesting_cases` counts.
const SAMPLE_SCENARIOS: usize = 1200;

/// The situations the suite exists for, counted over a fixed sample of
/// scenarios, so a change to the weights cannot quietly stop producing them.
#[test]
fn the_generator_reaches_the_interesting_cases() {
    let mut runner = TestRunner::deterministic();
    let mut seen = Coverage::default();
    // A third of them are stories about rooms (see `scenario`), and half
    // open IRC connections, which take turns from the line protocol's
    // cases: 1200, four times the 300 that were enough before either.
    for _ in 0..SAMPLE_SCENARIOS {
        let scenario = scenario().new_tree(&mut runner).unwrap().current();
        // A failing scenario is the property test's to report.
        if let Ok(trace) = scenario.play() {
            seen.count(&trace);
        }
    }
    let Coverage {
        welcomes,
        names_taken,
        look_alikes_taken,
        control_characters_refused,
        deliveries,
        missing_peers,
        slow_consumer_cuts,
        pauses,
        resumes,
        dead_peers,
        refusals,
        login_timeouts,
        shutdowns_with_connections,
        joins,
        room_deliveries,
        rooms_left_by_disconnects,
        rooms_left_by_slow_consumers,
        rooms_left_at_shutdown,
        too_many_rooms,
        rooms_full,
        not_in_room,
        renames,
        names_listed,
        commands_refused,
        ..
    } = seen;
    for (what, count) in [
        ("welcome", welcomes),
        ("name taken", names_taken),
        ("look-alike taken", look_alikes_taken),
        ("control character refusal", control_characters_refused),
        ("delivery", deliveries),
        ("no such peer", missing_peers),
        ("slow-consumer cut", slow_consumer_cuts),
        ("pause", pauses),
        ("resume", resumes),
        ("dead-peer close", dead_peers),
        ("refused connection", refusals),
        ("login timeout", login_timeouts),
        ("shutdown with connections open", shutdowns_with_connections),
        ("join", joins),
        ("room delivery", room_deliveries),
        ("room left by a disconnect", rooms_left_by_disconnects),
        ("room left by a slow consumer", rooms_left_by_slow_consumers),
        ("room left at shutdown", rooms_left_at_shutdown),
        ("too many rooms", too_many_rooms),
        ("room full", rooms_full),
        ("not in room", not_in_room),
        ("rename", renames),
        ("names list", names_listed),
        ("command refused", commands_refused),
    ] {
        assert!(
            count >= 10,
            "only {count} {what}s in {SAMPLE_SCENARIOS} scenarios: {seen:?}"
        );
    }
    assert!(
        seen.names_retaken >= 10,
        "names are rarely taken again: {seen:?}"
    );
}

/// How often each interesting thing happened.
#[derive(Debug, Default)]
struct Coverage {
    welcomes: usize,
    names_taken: usize,
    look_alikes_taken: usize,
    control_characters_refused: usize,
    names_retaken: usize,
    deliveries: usize,
    missing_peers: usize,
    slow_consumer_cuts: usize,
    pauses: usize,
    resumes: usize,
    dead_peers: usize,
    refusals: usize,
    login_timeouts: usize,
    shutdowns_with_connections: usize,
    joins: usize,
    room_deliveries: usize,
    rooms_left_by_disconnects: usize,
    rooms_left_by_slow_consumers: usize,
    rooms_left_at_shutdown: usize,
    too_many_rooms: usize,
    rooms_full: usize,
    not_in_room: usize,
    renames: usize,
    names_listed: usize,
    commands_refused: usize,
}

impl Coverage {
    fn count(&mut self, trace: &Trace) {
        let mut welcomed = Vec::new();
        for step in &trace.steps {
            if step.input == Input::Shutdown && !step.outputs.is_empty() {
                self.shutdowns_with_connections += 1;
            }
            for output in &step.outputs {
                match output {
                    Output::Send { line, .. } => {
                        let line = line.as_str();
                        if let Some(name) = line.strip_prefix("welcome ") {
                            self.welcomes += 1;
                            self.names_retaken += usize::from(welcomed.contains(&name));
                            welcomed.push(name);
                        }
                        self.names_taken += usize::from(line.starts_with("error: name taken"));
                        let look_alike =
                            |name: &str| line == format!("error: name taken: {name}\n");
                        self.look_alikes_taken +=
                            usize::from(LOOK_ALIKES.into_iter().any(look_alike));
                        self.control_characters_refused +=
                            usize::from(line.starts_with("error: control characters"));
                        self.deliveries += usize::from(line.starts_with("from "));
                        self.missing_peers += usize::from(line.starts_with("error: no such peer"));
                        let has = |part: &str| usize::from(line.contains(part));
                        let starts = |prefix: &str| usize::from(line.starts_with(prefix));
                        self.joins += usize::from(line.starts_with('#')) * has(" joined");
                        self.room_deliveries += starts("from ") * has(" to #");
                        self.rooms_left_by_disconnects += has(" left (disconnected)");
                        self.rooms_left_by_slow_consumers += has(" left (slow consumer)");
                        self.rooms_left_at_shutdown += has(": everyone left");
                        self.too_many_rooms += starts("error: too many rooms");
                        self.rooms_full += starts("error: room full");
                        self.not_in_room += starts("error: not in room");
                        self.renames += starts("renamed ");
                        self.names_listed += starts("names ");
                        self.commands_refused +=
                            starts("error: unknown command") + starts("error: usage");
                    }
                    Output::Close { reason, .. } => {
                        self.slow_consumer_cuts +=
                            usize::from(*reason == CloseReason::SlowConsumer);
                        self.dead_peers += usize::from(*reason == CloseReason::DeadPeer);
                        self.refusals += usize::from(*reason == CloseReason::Refused);
                        self.login_timeouts += usize::from(*reason == CloseReason::LoginTimeout);
                    }
                    Output::Pause { .. } => self.pauses += 1,
                    Output::Resume { .. } => self.resumes += 1,
                }
            }
        }
    }
}

/// Hand-made traces that each break one guarantee, to show that every
/// guarantee check can fail, and fails for the right reason.
mod every_guarantee_check_bites {
    use std::time::Duration;

    use chinwag::broker::{CloseReason, ConnId, Input, Output};
    use chinwag::time::Time;

    use super::model::guarantees::{self, Violation};
    use chinwag::config::Config;

    use super::model::scenario::{WRITE_TIMEOUT, address_of};
    use super::model::trace::{Trace, TraceStep};

    const ALICE: ConnId = ConnId(1);
    const BOB: ConnId = ConnId(2);
    const CAROL: ConnId = ConnId(3);

    fn send(conn: ConnId, line: &str) -> Output {
        let line = line.into();
        Output::Send { conn, line }
    }

    /// `conn` closed, freeing the name the trace logged it in with.
    fn close(conn: ConnId, reason: CloseReason) -> Output {
        let name = [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")]
            .into_iter()
            .find(|(held_by, _)| *held_by == conn)
            .map(|(_, name)| name.into());
        Output::Close { conn, reason, name }
    }

    fn says(conn: ConnId, line: &str) -> Input {
        let frame = Ok(line.to_string());
        Input::Line { conn, frame }
    }

    /// alice, bob and carol open and log in on c1, c2 and c3, then `rest`
    /// happens.
    fn trace(max_queue: usize, rest: Vec<(Input, Vec<Output>)>) -> Trace {
        let mut steps = Vec::new();
        for (conn, name) in [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")] {
            steps.push((opened(conn), vec![]));
            let welcome = format!("welcome {name}\n");
            steps.push((says(conn, name), vec![send(conn, &welcome)]));
        }
        steps.extend(rest);
        // One millisecond apart, as a scenario's steps are.
        let steps = steps
            .into_iter()
            .zip(1..)
            .map(|((input, outputs), ms)| TraceStep {
                time: Time::from_origin(Duration::from_millis(ms)),
                input,
                outputs,
            });
        let config = Config {
            max_queue,
            write_timeout: WRITE_TIMEOUT,
            ..Config::default()
        };
        Trace {
            config,
            steps: steps.collect(),
        }
    }

    fn opened(conn: ConnId) -> Input {
        Input::Opened {
            conn,
            address: address_of(conn.0),
            dialect: chinwag::news::Dialect::Line,
        }
    }

    fn broken(check: fn(&Trace) -> Result<(), Violation>, trace: &Trace, words: &str) {
        let violation = check(trace).expect_err("the check passed a broken trace");
        let message = violation.to_string();
        assert!(message.contains(words), "{message}");
    }

    #[test]
    fn a_correct_trace_passes_every_check() {
        let to_both = says(ALICE, "bob, carol: hi");
        let hi = "from alice: hi\n";
        let trace = trace(1000, vec![(to_both, vec![send(BOB, hi), send(CAROL, hi)])]);
        guarantees::check_all(&trace).unwrap();
    }

    #[test]
    fn guarantee_1_catches_a_lost_delivery() {
        let to_both = says(ALICE, "bob, carol: hi");
        let trace = trace(1000, vec![(to_both, vec![send(BOB, "from alice: hi\n")])]);
        broken(
            guarantees::guarantee_1_exact_delivery,
            &trace,
            "c3 is a destination",
        );
    }

    #[test]
    fn guarantee_2_catches_a_message_held_back() {
        let trace = trace(
            1000,
            vec![
                (says(ALICE, "bob: one"), vec![]),
                (
                    says(ALICE, "bob: two"),
                    vec![
                        send(BOB, "from alice: two\n"),
                        send(BOB, "from alice: one\n"),
                    ],
                ),
            ],
        );
        broken(
            guarantees::guarantee_2_per_sender_fifo,
            &trace,
            "after the one of step",
        );
    }

    #[test]
    fn guarantee_3_catches_recipients_that_disagree() {
        let (one, two) = ("from alice: one\n", "from alice: two\n");
        let trace = trace(
            1000,
            vec![
                (says(ALICE, "bob, carol: one"), vec![send(BOB, one)]),
                (
                    says(ALICE, "bob, carol: two"),
                    vec![send(BOB, two), send(CAROL, two), send(CAROL, one)],
                ),
            ],
        );
        broken(
            guarantees::guarantee_3_same_relative_order,
            &trace,
            "in that order",
        );
    }

    #[test]
    fn guarantee_4_catches_a_line_after_disconnect() {
        let trace = trace(
            1000,
            vec![
                (
                    Input::Closed { conn: BOB },
                    vec![close(BOB, CloseReason::PeerClosed)],
                ),
                (says(ALICE, "bob: hi"), vec![send(BOB, "from alice: hi\n")]),
            ],
        );
        broken(
            guarantees::guarantee_4_nothing_after_disconnect,
            &trace,
            "after c2 was closed",
        );
    }

    #[test]
    fn guarantee_5_catches_a_delivery_before_the_welcome() {
        let dave = ConnId(4);
        let trace = trace(
            1000,
            vec![
                (opened(dave), vec![]),
                (says(ALICE, "bob: hi"), vec![send(dave, "from alice: hi\n")]),
            ],
        );
        broken(
            guarantees::guarantee_5_per_connection_order,
            &trace,
            "before its welcome",
        );
    }

    #[test]
    fn guarantee_6_catches_a_needless_slow_consumer_cut() {
        let cut = close(BOB, CloseReason::SlowConsumer);
        let trace = trace(1000, vec![(says(ALICE, "bob: hi"), vec![cut])]);
        broken(
            guarantees::guarantee_6_no_silent_loss,
            &trace,
            "with no such cause",
        );
    }

    #[test]
    fn guarantee_7_catches_an_overfull_queue() {
        let long = "from alice: a message too long for bob's queue\n";
        let line = says(ALICE, "bob: a message too long for bob's queue");
        let trace = trace(40, vec![(line, vec![send(BOB, long)])]);
        broken(guarantees::guarantee_7_memory_bound, &trace, "over 40");
    }

    #[test]
    fn guarantee_8_catches_a_shutdown_without_notice() {
        let closes = [ALICE, BOB, CAROL].map(|conn| close(conn, CloseReason::ShuttingDown));
        let trace = trace(1000, vec![(Input::Shutdown, closes.to_vec())]);
        broken(guarantees::guarantee_8_clean_shutdown, &trace, "should get");
    }

    // Sender pays: a burst past max_queue pauses its sender; the queue's
    // connection is cut only after slow_timeout with the queue still over.

    fn pause(conn: ConnId) -> Output {
        Output::Pause { conn }
    }

    fn resume(conn: ConnId) -> Output {
        Output::Resume { conn }
    }

    fn flushed(conn: ConnId, bytes: usize) -> Input {
        Input::Flushed { conn, bytes }
    }

    /// 47 bytes: with bob's 12-byte welcome unread, 59 queued for him.
    const TOO_LONG_FOR_BOB: &str = "from alice: a message too long for bob's queue\n";

    fn alice_floods_bob() -> Input {
        says(ALICE, "bob: a message too long for bob's queue")
    }

    /// alice's line takes bob's queue past 40 bytes, and she is paused.
    fn alice_floods_bob_and_pays() -> (Input, Vec<Output>) {
        let sent = vec![send(BOB, TOO_LONG_FOR_BOB), pause(ALICE)];
        (alice_floods_bob(), sent)
    }

    /// `trace`, with a slow timeout of one second and the last step at `ms`
    /// milliseconds (the steps before it are 1 ms apart, from 1 ms).
    fn slow_trace(max_queue: usize, rest: Vec<(Input, Vec<Output>)>, last_ms: u64) -> Trace {
        let mut trace = trace(max_queue, rest);
        trace.config.slow_timeout = Duration::from_secs(1);
        let last = trace.steps.last_mut().unwrap();
        last.time = Time::from_origin(Duration::from_millis(last_ms));
        trace
    }

    #[test]
    fn a_burst_paid_for_by_its_sender_passes_every_check() {
        // Bob reads it all: alice resumes.
        let drained = trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (flushed(BOB, 59), vec![resume(ALICE)]),
            ],
        );
        guarantees::check_all(&drained).unwrap();
        // Bob reads nothing: cut a slow timeout later, and alice resumes.
        let cut = slow_trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (
                    Input::Timeout,
                    vec![close(BOB, CloseReason::SlowConsumer), resume(ALICE)],
                ),
            ],
            1007,
        );
        guarantees::check_all(&cut).unwrap();
        // The shutdown closes alice's full queue (without the notice, which
        // does not fit) before bob, who resumes in that step.
        let to_alice = "from bob: a message too long for alice's queue\n";
        let notice = "error: server shutting down\n";
        let shutdown = trace(
            50,
            vec![
                (
                    says(BOB, "alice: a message too long for alice's queue"),
                    vec![send(ALICE, to_alice), pause(BOB)],
                ),
                (
                    Input::Shutdown,
                    vec![
                        close(ALICE, CloseReason::ShuttingDown),
                        resume(BOB),
                        send(BOB, notice),
                        close(BOB, CloseReason::ShuttingDown),
                        send(CAROL, notice),
                        close(CAROL, CloseReason::ShuttingDown),
                    ],
                ),
            ],
        );
        guarantees::check_all(&shutdown).unwrap();
    }

    #[test]
    fn guarantee_1_catches_a_delivery_dropped_for_a_full_queue() {
        let cut = close(BOB, CloseReason::SlowConsumer);
        let trace = trace(40, vec![(alice_floods_bob(), vec![cut])]);
        broken(
            guarantees::guarantee_1_exact_delivery,
            &trace,
            "c2 is a destination but never got",
        );
    }

    #[test]
    fn guarantee_4_catches_a_resume_after_close() {
        let trace = trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (
                    Input::Closed { conn: ALICE },
                    vec![close(ALICE, CloseReason::PeerClosed)],
                ),
                (flushed(BOB, 59), vec![resume(ALICE)]),
            ],
        );
        broken(
            guarantees::guarantee_4_nothing_after_disconnect,
            &trace,
            "after c1 was closed",
        );
    }

    #[test]
    fn guarantee_6_catches_a_slow_cut_before_the_slow_timeout() {
        let trace = slow_trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (
                    Input::Timeout,
                    vec![close(BOB, CloseReason::SlowConsumer), resume(ALICE)],
                ),
            ],
            500,
        );
        broken(
            guarantees::guarantee_6_no_silent_loss,
            &trace,
            "only since 0.007000s",
        );
    }

    #[test]
    fn guarantee_6_catches_a_slow_cut_of_a_queue_read_back_under() {
        let trace = slow_trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (flushed(BOB, 30), vec![resume(ALICE)]),
                (Input::Timeout, vec![close(BOB, CloseReason::SlowConsumer)]),
            ],
            2000,
        );
        broken(
            guarantees::guarantee_6_no_silent_loss,
            &trace,
            "is not past max_queue",
        );
    }

    #[test]
    fn guarantee_7_catches_a_send_over_the_bound_with_no_pause() {
        let trace = trace(
            40,
            vec![(alice_floods_bob(), vec![send(BOB, TOO_LONG_FOR_BOB)])],
        );
        broken(
            guarantees::guarantee_7_memory_bound,
            &trace,
            "but c1, whose line caused it, is not paused",
        );
    }

    #[test]
    fn guarantee_7_catches_a_notice_over_the_bound() {
        // 14 + 28 bytes for alice, over 40: no room for the notice.
        let notice = "error: server shutting down\n";
        let closes = [ALICE, BOB, CAROL]
            .map(|conn| [send(conn, notice), close(conn, CloseReason::ShuttingDown)]);
        let trace = trace(40, vec![(Input::Shutdown, closes.concat())]);
        broken(
            guarantees::guarantee_7_memory_bound,
            &trace,
            "no line caused it",
        );
    }

    #[test]
    fn guarantee_7_catches_a_slow_consumer_left_open() {
        let trace = slow_trace(
            40,
            vec![alice_floods_bob_and_pays(), (Input::Timeout, vec![])],
            1007,
        );
        broken(
            guarantees::guarantee_7_memory_bound,
            &trace,
            "c2 has had more than 40 bytes queued",
        );
    }

    #[test]
    fn guarantee_9_catches_a_pause_with_no_cause() {
        let hi = "from alice: hi\n";
        let trace = trace(
            40,
            vec![(says(ALICE, "bob: hi"), vec![send(BOB, hi), pause(ALICE)])],
        );
        broken(
            guarantees::guarantee_9_sender_pays,
            &trace,
            "c1 paused but no line of it took a queue past 40",
        );
    }

    #[test]
    fn guarantee_9_catches_a_missing_pause() {
        let trace = trace(
            40,
            vec![(alice_floods_bob(), vec![send(BOB, TOO_LONG_FOR_BOB)])],
        );
        broken(
            guarantees::guarantee_9_sender_pays,
            &trace,
            "but it is not paused",
        );
    }

    #[test]
    fn guarantee_9_catches_a_missing_resume() {
        let trace = trace(
            40,
            vec![alice_floods_bob_and_pays(), (flushed(BOB, 59), vec![])],
        );
        broken(
            guarantees::guarantee_9_sender_pays,
            &trace,
            "c1 is still paused",
        );
    }

    #[test]
    fn guarantee_9_catches_a_resume_while_still_blocked() {
        // Bob reads 10 of 59 bytes: 49 is still over 40.
        let trace = trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (flushed(BOB, 10), vec![resume(ALICE)]),
            ],
        );
        broken(
            guarantees::guarantee_9_sender_pays,
            &trace,
            "c1 resumed while its lines still hold c2's queue (49 bytes",
        );
    }

    #[test]
    fn guarantee_9_catches_a_resume_before_the_close_that_releases_it() {
        let trace = trace(
            40,
            vec![
                alice_floods_bob_and_pays(),
                (
                    Input::Closed { conn: BOB },
                    vec![resume(ALICE), close(BOB, CloseReason::PeerClosed)],
                ),
            ],
        );
        broken(
            guarantees::guarantee_9_sender_pays,
            &trace,
            "c1 resumed while its lines still hold",
        );
    }

    /// alice and bob in `#a` and `#b`, carol in `#a`: the joins of a room
    /// trace, each told to the members then in the room.
    fn in_rooms() -> Vec<(Input, Vec<Output>)> {
        let join = |conn, room: &str, name: &str, members: &[ConnId]| {
            let news = format!("{room}: {name} joined\n");
            let told = members.iter().map(|member| send(*member, &news)).collect();
            (says(conn, &format!("/join {room}")), told)
        };
        vec![
            join(ALICE, "#a", "alice", &[ALICE]),
            join(ALICE, "#b", "alice", &[ALICE]),
            join(BOB, "#a", "bob", &[ALICE, BOB]),
            join(BOB, "#b", "bob", &[ALICE, BOB]),
            join(CAROL, "#a", "carol", &[ALICE, BOB, CAROL]),
        ]
    }

    #[test]
    fn a_correct_room_trace_passes_every_check() {
        let mut steps = in_rooms();
        let hi = "from alice to #a: hi\n";
        steps.push((says(ALICE, "#a: hi"), vec![send(BOB, hi), send(CAROL, hi)]));
        let renamed = "renamed carol to cat\n";
        let rename = vec![
            send(ALICE, renamed),
            send(BOB, renamed),
            send(CAROL, renamed),
        ];
        steps.push((says(CAROL, "/nick cat"), rename));
        steps.push((
            Input::Closed { conn: BOB },
            vec![
                close(BOB, CloseReason::PeerClosed),
                send(ALICE, "#a: bob left (disconnected)\n"),
                send(CAROL, "#a: bob left (disconnected)\n"),
                send(ALICE, "#b: bob left (disconnected)\n"),
            ],
        ));
        guarantees::check_all(&trace(1000, steps)).unwrap();
    }

    #[test]
    fn guarantee_10_catches_a_member_left_out() {
        let mut steps = in_rooms();
        let hi = "from alice to #a: hi\n";
        steps.push((says(ALICE, "#a: hi"), vec![send(BOB, hi)]));
        broken(
            guarantees::guarantee_10_room_order,
            &trace(1000, steps),
            "c3, a member of #a, got 0 lines",
        );
    }

    #[test]
    fn guarantee_10_catches_leave_news_out_of_room_order() {
        let mut steps = in_rooms();
        steps.push((
            Input::Closed { conn: BOB },
            vec![
                close(BOB, CloseReason::PeerClosed),
                send(ALICE, "#b: bob left (disconnected)\n"),
                send(ALICE, "#a: bob left (disconnected)\n"),
                send(CAROL, "#a: bob left (disconnected)\n"),
            ],
        ));
        broken(
            guarantees::guarantee_10_room_order,
            &trace(1000, steps),
            "c1 should get the room lines",
        );
    }

    #[test]
    fn guarantee_10_catches_a_rename_kept_from_a_room_mate() {
        let mut steps = in_rooms();
        let renamed = "renamed carol to cat\n";
        let rename = vec![send(ALICE, renamed), send(CAROL, renamed)];
        steps.push((says(CAROL, "/nick cat"), rename));
        broken(
            guarantees::guarantee_10_room_order,
            &trace(1000, steps),
            "c2 should get the room lines",
        );
    }
}
