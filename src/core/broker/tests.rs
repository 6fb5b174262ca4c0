//! The broker's decisions, one rule of PROTOCOL.md at a time.
//!
//! Each test drives a broker with a few inputs and compares the outputs as
//! text, so a failure reads like a transcript. The model-based property
//! tests in `tests/` cover the interleavings; these pin down each rule.

use core::net::IpAddr;

use super::*;
use crate::codec::FrameError;

const ALICE: ConnId = ConnId(1);
const BOB: ConnId = ConnId(2);
const CAROL: ConnId = ConnId(3);

const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const SLOW_TIMEOUT: Duration = Duration::from_secs(10);
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
const HOME: IpAddr = IpAddr::V4(core::net::Ipv4Addr::LOCALHOST);

/// `conn` was accepted from `HOME`.
fn opened(conn: ConnId) -> Input {
    opened_from(conn, HOME)
}

fn opened_from(conn: ConnId, address: IpAddr) -> Input {
    Input::Opened {
        conn,
        address,
        dialect: Dialect::Line,
    }
}

/// A broker under test, its clock and everything it has output so far.
struct Harness {
    broker: Broker,
    now: Time,
    out: Vec<Output>,
}

impl Harness {
    fn new(max_queue: usize) -> Self {
        let config = Config {
            max_queue,
            write_timeout: WRITE_TIMEOUT,
            slow_timeout: SLOW_TIMEOUT,
            login_timeout: LOGIN_TIMEOUT,
            ..Config::default()
        };
        Harness {
            broker: Broker::new(&config),
            now: Time::ZERO,
            out: Vec::new(),
        }
    }

    /// A broker with `conns` open and logged in as the given names, with
    /// the welcomes already taken and flushed.
    fn with_users(users: &[(ConnId, &str)]) -> Self {
        let mut harness = Harness::new(1 << 20);
        for &(conn, name) in users {
            harness.input(opened(conn));
            harness.line(conn, name);
            harness.flush_all();
        }
        harness
    }

    /// Feeds one input and returns its outputs, rendered as text.
    fn input(&mut self, input: Input) -> Vec<String> {
        self.out.clear();
        self.broker.handle(self.now, &input, &mut self.out);
        self.out.iter().map(describe).collect()
    }

    /// Lets `duration` pass, then delivers the timeout the broker asks for.
    fn wait(&mut self, duration: Duration) -> Vec<String> {
        self.now = self.now + duration;
        self.input(Input::Timeout)
    }

    fn line(&mut self, conn: ConnId, line: &str) -> Vec<String> {
        let frame = Ok(line.to_string());
        self.input(Input::Line { conn, frame })
    }

    /// Reports everything queued as flushed, as a fast reader would.
    fn flush_all(&mut self) {
        let conns: Vec<ConnId> = self.broker.connections.keys().copied().collect();
        for conn in conns {
            let bytes = self.broker.queued_bytes(conn).unwrap();
            self.input(Input::Flushed { conn, bytes });
        }
    }
}

fn describe(output: &Output) -> String {
    match output {
        Output::Send { conn, line } => {
            format!("{conn} <- {}", line.as_str().trim_end_matches('\n'))
        }
        Output::Close { conn, reason, .. } => format!("{conn} closed: {reason:?}"),
        Output::Pause { conn } => format!("{conn} paused"),
        Output::Resume { conn } => format!("{conn} resumed"),
    }
}

#[test]
fn a_valid_free_name_is_welcomed() {
    let mut h = Harness::new(1024);
    assert_eq!(h.input(opened(ALICE)), Vec::<String>::new());
    assert_eq!(h.line(ALICE, "  alice \t"), ["c1 <- welcome alice"]);
    assert_eq!(h.broker.name_of(ALICE), Some("alice"));
}

#[test]
fn an_invalid_name_is_refused_and_login_can_be_retried() {
    let mut h = Harness::new(1024);
    h.input(opened(ALICE));
    assert_eq!(h.line(ALICE, "al ice"), ["c1 <- error: invalid name"]);
    assert_eq!(
        h.line(ALICE, &"x".repeat(33)),
        ["c1 <- error: invalid name"]
    );
    assert_eq!(h.broker.name_of(ALICE), None);
    assert_eq!(h.line(ALICE, "alice"), ["c1 <- welcome alice"]);
}

#[test]
fn a_held_name_is_refused_until_its_holder_disconnects() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    assert_eq!(h.line(BOB, "alice"), ["c2 <- error: name taken: alice"]);
    assert_eq!(
        h.input(Input::Closed { conn: ALICE }),
        ["c1 closed: PeerClosed"]
    );
    assert_eq!(h.line(BOB, "alice"), ["c2 <- welcome alice"]);
}

#[test]
fn a_look_alike_of_a_held_name_is_taken_until_its_holder_leaves() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    for look_alike in ["\u{430}lice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞"] {
        assert_eq!(
            h.line(BOB, look_alike),
            [format!("c2 <- error: name taken: {look_alike}")]
        );
    }
    h.input(Input::Closed { conn: ALICE });
    assert_eq!(h.line(BOB, "\u{430}lice"), ["c2 <- welcome \u{430}lice"]);
    h.input(opened(CAROL));
    assert_eq!(h.line(CAROL, "alice"), ["c3 <- error: name taken: alice"]);
}

#[test]
fn names_are_held_and_addressed_in_nfc() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    assert_eq!(h.line(BOB, "Ame\u{301}lie"), ["c2 <- welcome Am\u{e9}lie"]);
    assert_eq!(h.broker.name_of(BOB), Some("Am\u{e9}lie"));
    assert_eq!(
        h.line(ALICE, "Ame\u{301}lie: salut"),
        ["c2 <- from alice: salut"]
    );
}

#[test]
fn text_with_control_characters_goes_nowhere() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    assert_eq!(
        h.line(ALICE, "bob: x\rfrom carol: send me your password"),
        ["c1 <- error: control characters are not allowed in messages"]
    );
}

#[test]
fn names_are_case_sensitive() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    assert_eq!(h.line(BOB, "Alice"), ["c2 <- welcome Alice"]);
}

#[test]
fn blank_lines_are_ignored_before_and_after_login() {
    let mut h = Harness::new(1024);
    h.input(opened(ALICE));
    assert!(h.line(ALICE, "").is_empty());
    assert!(h.line(ALICE, " \t\u{3000}").is_empty());
    h.line(ALICE, "alice");
    assert!(h.line(ALICE, "   ").is_empty());
}

#[test]
fn a_message_reaches_each_listed_online_name_once() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")]);
    assert_eq!(
        h.line(ALICE, "bob, carol ,bob:  hi: there "),
        ["c2 <- from alice: hi: there", "c3 <- from alice: hi: there"]
    );
}

#[test]
fn every_recipient_shares_one_rendered_line() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")]);
    h.line(ALICE, "bob, carol: hi");
    let lines: Vec<&Line> = h
        .out
        .iter()
        .filter_map(|output| match output {
            Output::Send { line, .. } => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(core::ptr::eq(lines[0].as_bytes(), lines[1].as_bytes()));
}

#[test]
fn a_sender_may_name_itself_and_empty_text_is_delivered() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    assert_eq!(h.line(ALICE, "alice:"), ["c1 <- from alice: "]);
}

#[test]
fn offline_destinations_are_reported_and_the_rest_still_delivered() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    assert_eq!(
        h.line(ALICE, "eve, bob, eve, mallory: hi"),
        [
            "c1 <- error: no such peer: eve",
            "c2 <- from alice: hi",
            "c1 <- error: no such peer: mallory",
        ]
    );
}

#[test]
fn a_connection_not_yet_logged_in_is_no_peer() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    assert_eq!(h.line(ALICE, "bob: hi"), ["c1 <- error: no such peer: bob"]);
}

#[test]
fn malformed_messages_are_refused_whole() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    for line in ["no colon here", ": hi", "bob,: hi", "bob, b b: hi"] {
        let out = h.line(ALICE, line);
        assert_eq!(out.len(), 1, "{line:?} gave {out:?}");
        assert!(
            out[0].starts_with("c1 <- error: expected \"<dest>, ...: <text>\""),
            "{line:?} gave {out:?}"
        );
    }
}

#[test]
fn frame_errors_are_reported_to_their_connection_in_any_state() {
    let mut h = Harness::new(1024);
    h.input(opened(ALICE));
    let too_long = Input::Line {
        conn: ALICE,
        frame: Err(FrameError::LineTooLong),
    };
    assert_eq!(h.input(too_long.clone()), ["c1 <- error: line too long"]);
    h.line(ALICE, "alice");
    let invalid = Input::Line {
        conn: ALICE,
        frame: Err(FrameError::InvalidUtf8),
    };
    assert_eq!(h.input(invalid), ["c1 <- error: invalid utf-8"]);
    assert_eq!(h.input(too_long), ["c1 <- error: line too long"]);
}

#[test]
fn nothing_is_sent_after_a_disconnect_and_stale_facts_are_ignored() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.input(Input::Closed { conn: BOB });
    assert_eq!(h.line(ALICE, "bob: hi"), ["c1 <- error: no such peer: bob"]);
    assert!(h.line(BOB, "alice: ghost").is_empty());
    assert!(h.input(Input::Closed { conn: BOB }).is_empty());
    assert!(
        h.input(Input::Flushed {
            conn: BOB,
            bytes: 1
        })
        .is_empty()
    );
    assert_eq!(h.broker.connection_count(), 1);
}

#[test]
fn queued_bytes_grow_with_sends_and_shrink_with_flushes() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.line(ALICE, "bob: hi");
    let line_len = "from alice: hi\n".len();
    assert_eq!(h.broker.queued_bytes(BOB), Some(line_len));
    h.input(Input::Flushed {
        conn: BOB,
        bytes: 4,
    });
    assert_eq!(h.broker.queued_bytes(BOB), Some(line_len - 4));
}

/// A broker whose queues hold two `from alice: hi` lines, with alice, bob
/// and carol logged in and their welcomes flushed.
fn two_line_queues() -> Harness {
    let mut h = Harness::new(2 * HI.len());
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")] {
        h.input(opened(conn));
        h.line(conn, name);
        h.flush_all();
    }
    h
}

/// The delivery of `hi` from alice.
const HI: &str = "from alice: hi\n";

#[test]
fn a_line_past_max_queue_pauses_its_sender_and_cuts_nobody() {
    let mut h = two_line_queues();
    assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
    assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
    assert!(
        !h.broker.is_paused(ALICE),
        "a full queue is not past the bound"
    );
    assert_eq!(
        h.line(ALICE, "bob: hi"),
        ["c2 <- from alice: hi", "c1 paused"]
    );
    // A line from another sender pauses that one too.
    assert_eq!(
        h.line(CAROL, "bob, alice: hi"),
        ["c2 <- from carol: hi", "c3 paused", "c1 <- from carol: hi"]
    );
    assert_eq!(h.broker.queued_bytes(BOB), Some(4 * HI.len()));
    assert_eq!(h.broker.name_of(BOB), Some("bob"));
    // Bob reads: back at the bound is not yet under it...
    assert!(
        h.input(Input::Flushed {
            conn: BOB,
            bytes: 2 * HI.len() - 1
        })
        .is_empty()
    );
    // ...one more byte is, and both read on.
    assert_eq!(
        h.input(Input::Flushed {
            conn: BOB,
            bytes: 1
        }),
        ["c1 resumed", "c3 resumed"]
    );
    assert!(!h.broker.is_paused(ALICE));
}

#[test]
#[should_panic(expected = "a line from paused c1")]
fn a_line_from_a_paused_connection_is_a_shell_bug_caught_in_release_too() {
    let mut h = two_line_queues();
    for _ in 0..3 {
        h.line(ALICE, "bob: hi");
    }
    h.line(ALICE, "carol: hi");
}

#[test]
fn a_queue_past_max_queue_for_the_slow_timeout_is_cut_and_frees_its_senders() {
    let mut h = two_line_queues();
    h.line(CAROL, "bob: a message long enough to fill a queue");
    assert_eq!(
        h.line(ALICE, "bob: hi"),
        ["c2 <- from alice: hi", "c1 paused"]
    );
    assert_eq!(h.broker.poll_timeout(), Some(h.now + SLOW_TIMEOUT));
    // Progress short of the bound does not stop the clock.
    h.wait(SLOW_TIMEOUT / 2);
    h.input(Input::Flushed {
        conn: BOB,
        bytes: 1,
    });
    assert!(
        h.wait(SLOW_TIMEOUT / 2 - Duration::from_millis(1))
            .is_empty()
    );
    assert_eq!(
        h.wait(Duration::from_millis(1)),
        ["c2 closed: SlowConsumer", "c1 resumed", "c3 resumed"]
    );
    assert_eq!(h.line(ALICE, "bob: hi"), ["c1 <- error: no such peer: bob"]);
}

#[test]
fn no_sender_waits_on_a_queue_longer_than_the_slow_timeout() {
    // Twenty senders' lines, one each, take bob's queue far past its bound
    // of two lines: each sender is paused by its own.
    const HI_FROM: &str = "from u00: hi\n";
    let senders: Vec<(ConnId, String)> = (10..30).map(|i| (ConnId(i), format!("u{i}"))).collect();
    let mut h = Harness::new(2 * HI_FROM.len());
    h.input(opened(BOB));
    h.line(BOB, "bob");
    for (conn, name) in &senders {
        h.input(opened_from(*conn, IpAddr::from([10, 0, 0, conn.0 as u8])));
        h.line(*conn, name);
    }
    h.flush_all();
    for (conn, _) in &senders {
        h.line(*conn, "bob: hi");
    }
    assert_eq!(h.broker.queued_bytes(BOB), Some(20 * HI_FROM.len()));
    // He reads, but too slowly to get back under his bound: reading does
    // not stop the slow clock, or his senders could wait on him forever.
    let queue_worth = 2 * HI_FROM.len();
    for _ in 0..4 {
        assert!(h.wait(SLOW_TIMEOUT / 5).is_empty());
        assert!(
            h.input(Input::Flushed {
                conn: BOB,
                bytes: queue_worth
            })
            .is_empty()
        );
    }
    // When it runs out he is cut, and the 18 senders whose lines found
    // his queue full read on.
    let cut = h.wait(SLOW_TIMEOUT / 5);
    assert_eq!(cut[0], "c2 closed: SlowConsumer");
    let resumed: Vec<String> = (12..30).map(|i| format!("c{i} resumed")).collect();
    assert_eq!(cut[1..], resumed);
}

#[test]
fn draining_under_the_bound_stops_the_slow_clock() {
    let mut h = two_line_queues();
    for _ in 0..3 {
        h.line(ALICE, "bob: hi");
    }
    h.wait(SLOW_TIMEOUT - Duration::from_millis(1));
    assert_eq!(
        h.input(Input::Flushed {
            conn: BOB,
            bytes: HI.len()
        }),
        ["c1 resumed"]
    );
    assert!(h.wait(SLOW_TIMEOUT).is_empty(), "bob is no longer slow");
    assert_eq!(h.broker.connection_count(), 3);
}

#[test]
fn a_sender_resumes_only_when_every_queue_it_filled_has_drained() {
    let mut h = two_line_queues();
    for _ in 0..2 {
        h.line(ALICE, "bob, carol: hi");
    }
    assert_eq!(
        h.line(ALICE, "bob, carol: hi"),
        ["c2 <- from alice: hi", "c1 paused", "c3 <- from alice: hi"]
    );
    assert!(
        h.input(Input::Flushed {
            conn: BOB,
            bytes: HI.len()
        })
        .is_empty()
    );
    assert!(h.broker.is_paused(ALICE));
    assert_eq!(
        h.input(Input::Closed { conn: CAROL }),
        ["c3 closed: PeerClosed", "c1 resumed"]
    );
}

#[test]
fn flushing_makes_room_so_a_reading_client_is_never_cut() {
    let mut h = Harness::new(HI.len());
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(opened(conn));
        h.line(conn, name);
        h.flush_all();
    }
    for _ in 0..100 {
        assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
        h.input(Input::Flushed {
            conn: BOB,
            bytes: HI.len(),
        });
    }
}

#[test]
fn a_sender_whose_own_replies_overflow_pauses_itself_until_it_reads() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.broker.max_queue = "from alice: x\n".len() * 2;
    assert_eq!(
        h.line(ALICE, "bob, alice, nobody-here: x"),
        [
            "c2 <- from alice: x",
            "c1 <- from alice: x",
            "c1 <- error: no such peer: nobody-here",
            "c1 paused",
        ]
    );
    assert_eq!(
        h.input(Input::Flushed {
            conn: ALICE,
            bytes: 20
        }),
        ["c1 resumed"]
    );
}

#[test]
fn a_socket_that_accepts_nothing_for_the_write_timeout_is_cut_as_a_dead_peer() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    assert_eq!(
        h.broker.poll_timeout(),
        Some(Time::ZERO + WRITE_TIMEOUT),
        "the welcomes' check"
    );
    h.wait(Duration::from_secs(10));
    h.line(ALICE, "bob: hi");
    // The welcomes' check, due at 30 s, is still set: it comes first and
    // finds bob's clock started at 10 s, so it is set again for 40 s.
    assert_eq!(h.broker.poll_timeout(), Some(Time::ZERO + WRITE_TIMEOUT));
    assert!(h.wait(Duration::from_secs(20)).is_empty());
    assert_eq!(
        h.broker.poll_timeout(),
        Some(h.now + Duration::from_secs(10))
    );
    assert!(
        h.wait(Duration::from_secs(10) - Duration::from_millis(1))
            .is_empty()
    );
    assert_eq!(h.wait(Duration::from_millis(1)), ["c2 closed: DeadPeer"]);
    assert_eq!(h.broker.poll_timeout(), None);
    h.input(opened(CAROL));
    assert_eq!(h.line(CAROL, "bob"), ["c3 <- welcome bob"]);
}

#[test]
fn any_progress_restarts_the_write_timeout() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.line(ALICE, "bob: hi");
    h.line(ALICE, "bob: there");
    for _ in 0..3 {
        h.wait(WRITE_TIMEOUT - Duration::from_secs(1));
        h.input(Input::Flushed {
            conn: BOB,
            bytes: 1,
        });
    }
    assert!(h.wait(WRITE_TIMEOUT - Duration::from_secs(1)).is_empty());
    assert_eq!(
        h.broker.poll_timeout(),
        Some(h.now + Duration::from_secs(1))
    );
    assert_eq!(h.wait(Duration::from_secs(1)), ["c2 closed: DeadPeer"]);
}

#[test]
fn an_idle_connection_is_never_a_dead_peer() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.line(ALICE, "bob: hi");
    h.flush_all();
    assert!(h.wait(10 * WRITE_TIMEOUT).is_empty());
    assert_eq!(
        h.broker.poll_timeout(),
        None,
        "an empty queue needs no check"
    );
    assert_eq!(h.broker.connection_count(), 2);
}

#[test]
fn dead_peers_due_together_are_cut_in_connection_order() {
    let mut h = Harness::with_users(&[(CAROL, "carol"), (ALICE, "alice"), (BOB, "bob")]);
    h.line(ALICE, "carol, bob: hi");
    assert_eq!(
        h.wait(WRITE_TIMEOUT),
        ["c2 closed: DeadPeer", "c3 closed: DeadPeer"]
    );
}

#[test]
#[should_panic(expected = "flushed 100 bytes with")]
fn flushing_more_than_was_queued_is_a_shell_bug_caught_in_release_too() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(Input::Flushed {
        conn: ALICE,
        bytes: 100,
    });
}

#[test]
#[should_panic(expected = "time went backwards")]
fn time_going_backwards_is_a_caller_bug() {
    let mut h = Harness::new(1024);
    h.now = Time::from_origin(Duration::from_secs(5));
    h.input(Input::Timeout);
    h.now = Time::ZERO;
    h.input(Input::Timeout);
}

#[test]
fn shutdown_tells_every_connection_then_closes_it() {
    let mut h = Harness::with_users(&[(BOB, "bob"), (ALICE, "alice")]);
    h.input(opened(CAROL));
    assert_eq!(
        h.input(Input::Shutdown),
        [
            "c1 <- error: server shutting down",
            "c1 closed: ShuttingDown",
            "c2 <- error: server shutting down",
            "c2 closed: ShuttingDown",
            "c3 <- error: server shutting down",
            "c3 closed: ShuttingDown",
        ]
    );
    assert!(h.line(ALICE, "bob: too late").is_empty());
    assert_eq!(h.broker.connection_count(), 0);
}

#[test]
fn a_connection_opened_during_shutdown_is_told_and_closed() {
    let mut h = Harness::new(1024);
    h.input(Input::Shutdown);
    assert_eq!(
        h.input(opened(ALICE)),
        [
            "c1 <- error: server shutting down",
            "c1 closed: ShuttingDown"
        ]
    );
    assert!(h.line(ALICE, "alice").is_empty());
}

#[test]
fn a_connection_opened_during_shutdown_is_held_to_the_queue_bound_too() {
    let mut h = Harness::new("error: server shutting down\n".len() - 1);
    h.input(Input::Shutdown);
    assert_eq!(h.input(opened(ALICE)), ["c1 closed: ShuttingDown"]);
}

#[test]
fn a_full_queue_at_shutdown_keeps_its_deliveries_and_skips_the_notice() {
    let line_len = "from alice: hi\n".len();
    let notice_len = "error: server shutting down\n".len();
    // Room for the notice alone, or for the message, but not for both.
    let mut h = Harness::new(line_len + notice_len - 1);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(opened(conn));
        h.line(conn, name);
        h.flush_all();
    }
    h.line(ALICE, "bob: hi");
    assert_eq!(
        h.input(Input::Shutdown),
        [
            "c1 <- error: server shutting down",
            "c1 closed: ShuttingDown",
            "c2 closed: ShuttingDown",
        ]
    );
}

#[test]
fn only_graceful_closes_flush_the_queue() {
    assert!(CloseReason::PeerClosed.flushes_queue());
    assert!(CloseReason::ShuttingDown.flushes_queue());
    assert!(!CloseReason::SlowConsumer.flushes_queue());
    assert!(!CloseReason::DeadPeer.flushes_queue());
}

#[test]
fn a_close_names_the_name_it_frees() {
    /// The name the one `Close` among `outputs` frees.
    fn freed(outputs: &[Output]) -> Option<&str> {
        match outputs {
            [Output::Close { name, .. }] => name.as_deref(),
            other => panic!("expected one close, got {other:?}"),
        }
    }
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    h.input(Input::Closed { conn: ALICE });
    assert_eq!(freed(&h.out), Some("alice"));
    h.input(Input::Closed { conn: BOB });
    assert_eq!(freed(&h.out), None, "bob never logged in");
}

#[test]
fn a_connection_over_the_limit_is_told_and_closed_at_once() {
    let mut h = Harness::new(1024);
    h.broker.max_connections = 2;
    h.input(opened(ALICE));
    h.input(opened(BOB));
    assert_eq!(
        h.input(opened(CAROL)),
        ["c3 <- error: server full", "c3 closed: Refused"]
    );
    h.input(Input::Closed { conn: ALICE });
    assert_eq!(
        h.input(opened(ConnId(4))),
        ["c4 <- error: server full", "c4 closed: Refused"],
        "a closed connection holds its slot until the shell lets it go"
    );
    for conn in [ALICE, CAROL, ConnId(4)] {
        assert!(h.input(Input::Released { conn }).is_empty());
    }
    assert!(
        h.input(opened(ConnId(5))).is_empty(),
        "a slot is free again"
    );
}

#[test]
fn a_release_of_a_connection_still_open_closes_it_first() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    assert_eq!(
        h.input(Input::Released { conn: ALICE }),
        ["c1 closed: PeerClosed"]
    );
    assert_eq!(h.broker.connection_count(), 0);
}

#[test]
#[should_panic(expected = "released a connection it never opened, or twice")]
fn releasing_twice_is_a_shell_bug() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(Input::Released { conn: ALICE });
    h.input(Input::Released { conn: ALICE });
}

#[test]
fn one_address_cannot_take_more_than_its_share() {
    let mut h = Harness::new(1024);
    h.broker.max_connections_per_address = 2;
    let elsewhere = IpAddr::V4(core::net::Ipv4Addr::new(127, 0, 0, 2));
    h.input(opened(ALICE));
    h.input(opened(BOB));
    assert_eq!(
        h.input(opened(CAROL)),
        [
            "c3 <- error: too many connections from your address",
            "c3 closed: Refused"
        ]
    );
    assert!(h.input(opened_from(ConnId(4), elsewhere)).is_empty());
}

#[test]
fn a_connection_that_never_logs_in_is_closed_after_the_login_timeout() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(opened(BOB));
    assert!(h.wait(LOGIN_TIMEOUT - Duration::from_millis(1)).is_empty());
    assert_eq!(
        h.wait(Duration::from_millis(1)),
        ["c2 <- error: login timed out", "c2 closed: LoginTimeout"]
    );
    assert_eq!(h.broker.connection_count(), 1, "alice logged in in time");
}

#[test]
fn logging_in_stops_the_login_clock() {
    let mut h = Harness::new(1024);
    h.input(opened(ALICE));
    h.wait(LOGIN_TIMEOUT / 2);
    h.line(ALICE, "alice");
    h.flush_all();
    assert!(h.wait(LOGIN_TIMEOUT).is_empty());
    assert_eq!(h.broker.poll_timeout(), None);
}

#[test]
fn refusals_and_timeouts_flush_their_notice() {
    assert!(CloseReason::Refused.flushes_queue());
    assert!(CloseReason::LoginTimeout.flushes_queue());
}

#[test]
fn an_ipv6_host_counts_by_its_64_bit_prefix() {
    let mut h = Harness::new(1024);
    h.broker.max_connections_per_address = 2;
    let host = |last: u16| IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
    h.input(opened_from(ALICE, host(1)));
    h.input(opened_from(BOB, host(2)));
    assert_eq!(
        h.input(opened_from(CAROL, host(3))),
        [
            "c3 <- error: too many connections from your address",
            "c3 closed: Refused"
        ]
    );
    let mapped = IpAddr::V6(core::net::Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
    h.input(opened_from(ConnId(4), HOME));
    h.input(opened_from(ConnId(5), HOME));
    assert_eq!(
        h.input(opened_from(ConnId(6), mapped)),
        [
            "c6 <- error: too many connections from your address",
            "c6 closed: Refused"
        ],
        "an IPv4-mapped address is its IPv4 address"
    );
}

/// A broker with alice, bob and carol logged in and `rooms` joined, as
/// `(member, room)`, with everything queued so far flushed.
fn with_rooms(memberships: &[(ConnId, &str)]) -> Harness {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")]);
    for &(conn, room) in memberships {
        h.line(conn, &format!("/join {room}"));
        h.flush_all();
    }
    h
}

#[test]
fn joining_tells_every_member_the_joiner_included() {
    let mut h = with_rooms(&[(ALICE, "#rust")]);
    assert_eq!(
        h.line(BOB, " /join   #rust "),
        ["c1 <- #rust: bob joined", "c2 <- #rust: bob joined"]
    );
    assert_eq!(
        h.line(BOB, "/join #rust"),
        ["c2 <- error: already in room: #rust"]
    );
    assert_eq!(h.line(CAROL, "/rooms"), ["c3 <- rooms:"]);
    assert_eq!(h.line(BOB, "/rooms"), ["c2 <- rooms: #rust"]);
}

#[test]
fn a_room_message_reaches_the_other_members_once_each() {
    let mut h = with_rooms(&[(ALICE, "#rust"), (BOB, "#rust"), (CAROL, "#rust")]);
    assert_eq!(
        h.line(ALICE, "#rust: hi"),
        [
            "c2 <- from alice to #rust: hi",
            "c3 <- from alice to #rust: hi"
        ]
    );
    // The first destination that reaches a recipient decides the form.
    assert_eq!(
        h.line(ALICE, "bob, #rust, carol, alice: x"),
        [
            "c2 <- from alice: x",
            "c3 <- from alice to #rust: x",
            "c1 <- from alice: x"
        ]
    );
}

#[test]
fn only_members_send_to_a_room_and_the_rest_still_goes_out() {
    let mut h = with_rooms(&[(ALICE, "#rust")]);
    assert_eq!(
        h.line(BOB, "#rust, #nowhere, alice: hi"),
        [
            "c2 <- error: not in room: #rust",
            "c2 <- error: not in room: #nowhere",
            "c1 <- from bob: hi"
        ]
    );
    assert_eq!(
        h.line(BOB, "#bad name: hi"),
        ["c2 <- error: expected \"<dest>, ...: <text>\" (invalid destination name)"]
    );
}

#[test]
fn parting_tells_every_member_and_an_empty_room_is_gone() {
    let mut h = with_rooms(&[(ALICE, "#rust"), (BOB, "#rust")]);
    assert_eq!(
        h.line(BOB, "/part #rust"),
        [
            "c1 <- #rust: bob left (parted)",
            "c2 <- #rust: bob left (parted)"
        ]
    );
    assert_eq!(
        h.line(BOB, "/part #rust"),
        ["c2 <- error: not in room: #rust"]
    );
    assert_eq!(h.line(ALICE, "/part #rust").len(), 1);
    assert_eq!(
        h.line(BOB, "/names #rust"),
        ["c2 <- error: no such room: #rust"]
    );
    assert!(h.broker.rooms.is_empty());
}

#[test]
fn names_lists_members_in_name_order_to_anyone() {
    let mut h = with_rooms(&[(CAROL, "#r"), (ALICE, "#r")]);
    assert_eq!(h.line(BOB, "/names #r"), ["c2 <- names #r: alice carol"]);
}

#[test]
fn leaving_by_disconnect_or_cut_is_news_in_room_order() {
    let mut h = with_rooms(&[
        (ALICE, "#b"),
        (ALICE, "#a"),
        (BOB, "#a"),
        (BOB, "#b"),
        (CAROL, "#b"),
    ]);
    assert_eq!(
        h.input(Input::Closed { conn: ALICE }),
        [
            "c1 closed: PeerClosed",
            "c2 <- #a: alice left (disconnected)",
            "c2 <- #b: alice left (disconnected)",
            "c3 <- #b: alice left (disconnected)"
        ]
    );
    assert_eq!(h.line(BOB, "/names #b"), ["c2 <- names #b: bob carol"]);
}

#[test]
fn a_slow_consumer_leaves_its_rooms_as_one_and_the_news_needs_no_payer() {
    let mut h = Harness::new(200);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(opened(conn));
        h.line(conn, name);
        h.line(conn, "/join #r");
    }
    h.flush_all();
    // Alice's line takes Bob's queue past the bound; he stops reading.
    let filler = "x".repeat(190);
    h.line(ALICE, &format!("bob: {filler}"));
    assert!(h.broker.is_paused(ALICE), "alice paid for her line");
    assert_eq!(
        h.wait(SLOW_TIMEOUT),
        [
            "c2 closed: SlowConsumer",
            "c1 resumed",
            "c1 <- #r: bob left (slow consumer)"
        ]
    );
}

#[test]
fn shutdown_ends_each_room_once_per_member_then_closes() {
    let mut h = with_rooms(&[(ALICE, "#b"), (ALICE, "#a"), (BOB, "#a")]);
    assert_eq!(
        h.input(Input::Shutdown),
        [
            "c1 <- #a: everyone left (server shutting down)",
            "c1 <- #b: everyone left (server shutting down)",
            "c1 <- error: server shutting down",
            "c1 closed: ShuttingDown",
            "c2 <- #a: everyone left (server shutting down)",
            "c2 <- error: server shutting down",
            "c2 closed: ShuttingDown",
            "c3 <- error: server shutting down",
            "c3 closed: ShuttingDown"
        ]
    );
}

#[test]
fn rooms_per_connection_and_members_per_room_are_limited() {
    let config = Config {
        max_rooms_per_connection: 1,
        max_room_members: 2,
        ..Config::default()
    };
    let mut h = Harness::new(1 << 20);
    h.broker = Broker::new(&config);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob"), (CAROL, "carol")] {
        h.input(opened(conn));
        h.line(conn, name);
        h.line(conn, "/join #r");
    }
    assert_eq!(
        h.line(ALICE, "/join #s"),
        ["c1 <- error: too many rooms (at most 1)"]
    );
    assert_eq!(h.line(CAROL, "/rooms"), ["c3 <- rooms:"], "#r was full");
    assert_eq!(h.line(CAROL, "/join #r"), ["c3 <- error: room full: #r"]);
}

#[test]
fn commands_are_checked_before_they_change_anything() {
    let mut h = with_rooms(&[]);
    let unknown = "c1 <- error: unknown command (try /join, /part, /names, /rooms, /nick)";
    assert_eq!(h.line(ALICE, "/dance"), [unknown]);
    assert_eq!(h.line(ALICE, "/JOIN #r"), [unknown]);
    assert_eq!(
        h.line(ALICE, "/join: x"),
        [unknown],
        "a command, not a message"
    );
    for (line, usage) in [
        ("/join", "/join <room>"),
        ("/join rust", "/join <room>"),
        ("/join #a #b", "/join <room>"),
        ("/join #a\u{3164}", "/join <room>"),
        ("/part", "/part <room>"),
        ("/names #", "/names <room>"),
        ("/rooms #a", "/rooms"),
        ("/nick", "/nick <name>"),
    ] {
        assert_eq!(
            h.line(ALICE, line),
            [format!("c1 <- error: usage: {usage}")],
            "{line}"
        );
    }
    // Room names are taken in NFC, like names.
    assert_eq!(
        h.line(ALICE, "/join #zoe\u{308}"),
        ["c1 <- #zo\u{eb}: alice joined"]
    );
    assert_eq!(h.line(ALICE, "#zo\u{eb}: x").len(), 0, "alone in the room");
}

#[test]
fn a_rename_frees_the_old_name_and_tells_room_mates_once() {
    let mut h = with_rooms(&[(ALICE, "#a"), (ALICE, "#b"), (BOB, "#a"), (BOB, "#b")]);
    assert_eq!(
        h.line(ALICE, "/nick b\u{43e}b"),
        ["c1 <- error: name taken: b\u{43e}b"]
    );
    assert_eq!(
        h.line(ALICE, "/nick a b"),
        ["c1 <- error: usage: /nick <name>"]
    );
    assert_eq!(h.line(ALICE, "/nick a!"), ["c1 <- error: invalid name"]);
    assert_eq!(
        h.line(ALICE, "/nick \u{430}lice"),
        [
            "c1 <- renamed alice to \u{430}lice",
            "c2 <- renamed alice to \u{430}lice"
        ],
        "a look-alike of one's own name is free"
    );
    assert_eq!(
        h.line(BOB, "alice: x"),
        ["c2 <- error: no such peer: alice"]
    );
    assert_eq!(h.line(BOB, "\u{430}lice: x"), ["c1 <- from bob: x"]);
    h.input(opened(ConnId(4)));
    assert_eq!(
        h.line(ConnId(4), "alice"),
        ["c4 <- error: name taken: alice"],
        "still a look-alike of the name held"
    );
    h.line(ALICE, "/nick alicia");
    assert_eq!(h.line(ConnId(4), "alice"), ["c4 <- welcome alice"]);
}

/// IRC connections, as `opened` and `line` are for the line protocol.
fn opened_irc(conn: ConnId) -> Input {
    Input::Opened {
        conn,
        address: HOME,
        dialect: Dialect::Irc,
    }
}

/// Registers `conn` over IRC as `nick`, returning what it was sent.
fn register_irc(h: &mut Harness, conn: ConnId, nick: &str) -> Vec<String> {
    h.input(opened_irc(conn));
    let mut said = h.line(conn, "CAP LS 302");
    said.extend(h.line(conn, &format!("NICK {nick}")));
    said.extend(h.line(conn, "USER u 0 * :Real Name"));
    said.extend(h.line(conn, "CAP END"));
    h.flush_all();
    said
}

#[test]
fn an_irc_client_registers_after_cap_end_with_the_welcome_numerics() {
    let mut h = Harness::new(1 << 20);
    let said = register_irc(&mut h, ALICE, "alice");
    assert_eq!(said[0], "c1 <- :chinwag CAP * LS :\r");
    let welcome = said[1..].join("\n");
    for numeric in [
        " 001 alice ",
        " 002 ",
        " 003 ",
        " 004 ",
        " 005 ",
        " 375 ",
        " 372 ",
        " 376 ",
    ] {
        assert!(welcome.contains(numeric), "{numeric} in {welcome}");
    }
    for token in [
        "CHANTYPES=#",
        "NICKLEN=32",
        "CHANNELLEN=33",
        "CASEMAPPING=ascii",
        "NETWORK=chinwag",
    ] {
        assert!(welcome.contains(token), "{token} in {welcome}");
    }
    assert_eq!(h.broker.name_of(ALICE), Some("alice"));
}

#[test]
fn irc_and_line_users_share_names_rooms_and_messages() {
    let mut h = Harness::with_users(&[(BOB, "bob")]);
    register_irc(&mut h, ALICE, "alice");
    h.line(BOB, "/join #rust");
    h.flush_all();
    assert_eq!(
        h.line(ALICE, "JOIN #rust"),
        [
            "c1 <- :alice!alice@chinwag JOIN #rust\r",
            "c2 <- #rust: alice joined",
            "c1 <- :chinwag 353 alice = #rust :alice bob\r\n:chinwag 366 alice #rust :End of /NAMES list\r"
        ]
    );
    assert_eq!(
        h.line(ALICE, "PRIVMSG #rust :hi all"),
        ["c2 <- from alice to #rust: hi all"]
    );
    assert_eq!(
        h.line(ALICE, "PRIVMSG bob :\x01ACTION waves\x01"),
        ["c2 <- from alice: /me waves"]
    );
    assert_eq!(
        h.line(BOB, "#rust, alice: \u{e9}t\u{e9}"),
        ["c1 <- :bob!bob@chinwag PRIVMSG #rust :\u{e9}t\u{e9}\r"]
    );
    assert_eq!(
        h.line(BOB, "alice: direct"),
        ["c1 <- :bob!bob@chinwag PRIVMSG alice :direct\r"]
    );
    assert_eq!(
        h.line(ALICE, "NICK alicia"),
        [
            "c1 <- :alice!alice@chinwag NICK alicia\r",
            "c2 <- renamed alice to alicia"
        ]
    );
    assert_eq!(
        h.input(Input::Closed { conn: BOB }),
        [
            "c2 closed: PeerClosed",
            "c1 <- :bob!bob@chinwag QUIT :disconnected\r"
        ]
    );
}

#[test]
fn list_gives_rooms_in_room_order_with_their_member_counts() {
    let mut h = Harness::with_users(&[(BOB, "bob"), (CAROL, "carol")]);
    for line in ["/join #b", "/join #a"] {
        h.line(BOB, line);
    }
    h.line(CAROL, "/join #b");
    register_irc(&mut h, ALICE, "alice");
    assert_eq!(
        h.line(ALICE, "LIST"),
        [
            "c1 <- :chinwag 321 alice Channel :Users Name\r",
            "c1 <- :chinwag 322 alice #a 1 :\r",
            "c1 <- :chinwag 322 alice #b 2 :\r",
            "c1 <- :chinwag 323 alice :End of /LIST\r"
        ]
    );
}

#[test]
fn irc_errors_are_numerics_and_notices_get_none() {
    let mut h = Harness::new(1 << 20);
    h.input(opened_irc(ALICE));
    assert_eq!(
        h.line(ALICE, "JOIN #x"),
        ["c1 <- :chinwag 451 * :You have not registered\r"]
    );
    assert_eq!(
        h.line(ALICE, "NICK a!"),
        ["c1 <- :chinwag 432 * a! :Erroneous nickname\r"]
    );
    h.line(ALICE, "NICK alice");
    h.line(ALICE, "USER a 0 * :A");
    h.flush_all();
    assert_eq!(
        h.line(ALICE, "PRIVMSG nobody,#nowhere :x"),
        [
            "c1 <- :chinwag 401 alice nobody :No such nick/channel\r",
            "c1 <- :chinwag 442 alice #nowhere :You're not on that channel\r"
        ]
    );
    assert_eq!(
        h.line(ALICE, "NOTICE nobody,#nowhere :x"),
        Vec::<String>::new()
    );
    assert_eq!(
        h.line(ALICE, "PRIVMSG bob"),
        ["c1 <- :chinwag 412 alice :No text to send\r"]
    );
    assert_eq!(
        h.line(ALICE, "FROB x"),
        ["c1 <- :chinwag 421 alice FROB :Unknown command\r"]
    );
    assert_eq!(
        h.line(ALICE, "JOIN rust"),
        ["c1 <- :chinwag 403 alice rust :No such channel\r"]
    );
    assert_eq!(
        h.line(ALICE, "PART #nowhere"),
        ["c1 <- :chinwag 403 alice #nowhere :No such channel\r"]
    );
    assert_eq!(
        h.line(ALICE, "PRIVMSG alice :\x1b[2J"),
        ["c1 <- :chinwag NOTICE alice :control characters are not allowed in messages\r"]
    );
    assert_eq!(
        h.line(ALICE, "QUIT :bye"),
        [
            "c1 <- :chinwag ERROR :closing link (you quit)\r",
            "c1 closed: Quit"
        ]
    );
}

#[test]
fn a_quiet_irc_client_is_pinged_then_closed_if_it_stays_quiet() {
    let mut h = Harness::new(1 << 20);
    register_irc(&mut h, ALICE, "alice");
    h.now = h.now + Duration::from_secs(60);
    h.line(ALICE, "PONG :anything");
    assert_eq!(
        h.wait(Duration::from_secs(60)),
        Vec::<String>::new(),
        "heard 60 s ago"
    );
    assert_eq!(
        h.wait(Duration::from_secs(60)),
        ["c1 <- :chinwag PING :chinwag\r"]
    );
    h.flush_all();
    assert_eq!(
        h.wait(irc::IRC_PING_IDLE),
        [
            "c1 <- :chinwag ERROR :ping timeout\r",
            "c1 closed: PingTimeout"
        ]
    );
}

#[test]
fn an_answered_ping_keeps_an_irc_client() {
    let mut h = Harness::new(1 << 20);
    register_irc(&mut h, ALICE, "alice");
    assert_eq!(
        h.wait(irc::IRC_PING_IDLE),
        ["c1 <- :chinwag PING :chinwag\r"]
    );
    h.flush_all();
    h.line(ALICE, "PONG :chinwag");
    assert_eq!(
        h.wait(irc::IRC_PING_IDLE),
        ["c1 <- :chinwag PING :chinwag\r"]
    );
    assert_eq!(
        h.line(ALICE, "PING :x"),
        ["c1 <- :chinwag PONG chinwag :x\r"]
    );
}

#[test]
fn an_irc_client_may_set_its_own_invisible_mode_quietly_and_nothing_else() {
    let mut h = Harness::new(1 << 20);
    register_irc(&mut h, ALICE, "alice");
    for quiet in ["MODE alice +i", "MODE alice -iw"] {
        assert_eq!(h.line(ALICE, quiet), Vec::<String>::new(), "{quiet}");
    }
    assert_eq!(
        h.line(ALICE, "MODE alice"),
        ["c1 <- :chinwag 221 alice :+\r"]
    );
    assert_eq!(
        h.line(ALICE, "MODE alice +o"),
        ["c1 <- :chinwag 501 alice :Unknown MODE flag\r"]
    );
}

#[test]
fn irc_mode_b_lists_no_bans_and_a_ban_with_a_mask_is_refused() {
    let mut h = Harness::new(1 << 20);
    register_irc(&mut h, ALICE, "alice");
    h.line(ALICE, "JOIN #rust");
    h.flush_all();
    for query in ["MODE #rust b", "MODE #rust +b"] {
        assert_eq!(
            h.line(ALICE, query),
            ["c1 <- :chinwag 368 alice #rust :End of channel ban list\r"],
            "{query}"
        );
    }
    for change in [
        "MODE #rust +b bob!*@*",
        "MODE #rust -b bob!*@*",
        "MODE #rust b x",
    ] {
        assert_eq!(
            h.line(ALICE, change),
            ["c1 <- :chinwag 482 alice #rust :You're not channel operator\r"],
            "{change}"
        );
    }
}

#[test]
fn irc_nick_refusals_name_the_nick_before_and_after_registration() {
    let mut h = Harness::with_users(&[(BOB, "bob")]);
    h.input(opened_irc(ALICE));
    assert_eq!(
        h.line(ALICE, "NICK [alice]"),
        ["c1 <- :chinwag 432 * [alice] :Erroneous nickname\r"]
    );
    assert_eq!(
        h.line(ALICE, "NICK :"),
        ["c1 <- :chinwag 431 * :No nickname given\r"]
    );
    assert_eq!(
        h.line(ALICE, "NICK bob"),
        ["c1 <- :chinwag 433 * bob :Nickname is already in use\r"]
    );
    h.line(ALICE, "NICK alice");
    h.line(ALICE, "USER a 0 * :A");
    h.flush_all();
    assert_eq!(h.broker.name_of(ALICE), Some("alice"));
    assert_eq!(
        h.line(ALICE, "NICK nick|away"),
        ["c1 <- :chinwag 432 alice nick|away :Erroneous nickname\r"]
    );
    assert_eq!(
        h.line(ALICE, "NICK :a b"),
        ["c1 <- :chinwag 432 alice * :Erroneous nickname\r"],
        "a nick that is no IRC parameter is `*`"
    );
    assert_eq!(
        h.line(ALICE, "NICK :"),
        ["c1 <- :chinwag 431 alice :No nickname given\r"]
    );
    assert_eq!(h.broker.name_of(ALICE), Some("alice"), "still alice");
    assert_eq!(
        h.line(ALICE, "NICK alicia"),
        ["c1 <- :alice!alice@chinwag NICK alicia\r"]
    );
}

#[test]
fn irc_join_past_the_room_limit_gets_405_naming_the_channel() {
    let config = Config {
        max_rooms_per_connection: 1,
        max_room_members: 1,
        ..Config::default()
    };
    let mut h = Harness::new(1 << 20);
    h.broker = Broker::new(&config);
    register_irc(&mut h, ALICE, "alice");
    register_irc(&mut h, BOB, "bob");
    h.line(ALICE, "JOIN #one");
    h.flush_all();
    assert_eq!(
        h.line(ALICE, "JOIN #one,#two"),
        ["c1 <- :chinwag 405 alice #two :You have joined too many channels (at most 1)\r"],
        "#one, already joined, is skipped; #two is refused by name"
    );
    assert_eq!(
        h.line(BOB, "JOIN #one"),
        ["c2 <- :chinwag 471 bob #one :Cannot join channel (room full)\r"]
    );
    assert_eq!(
        h.line(ALICE, "JOIN 0"),
        ["c1 <- :alice!alice@chinwag PART #one :parted\r"]
    );
    h.flush_all();
    assert_eq!(
        h.line(ALICE, "JOIN #two"),
        [
            "c1 <- :alice!alice@chinwag JOIN #two\r",
            "c1 <- :chinwag 353 alice = #two :alice\r\n:chinwag 366 alice #two :End of /NAMES list\r"
        ]
    );
}

#[test]
fn a_ctcp_action_reaches_line_users_as_me_even_when_empty() {
    let mut h = Harness::with_users(&[(BOB, "bob")]);
    register_irc(&mut h, ALICE, "alice");
    for (sent, shown) in [
        ("\x01ACTION waves\x01", "c2 <- from alice: /me waves"),
        ("\x01ACTION waves", "c2 <- from alice: /me waves"),
        ("\x01ACTION\x01", "c2 <- from alice: /me"),
        ("\x01ACTION", "c2 <- from alice: /me"),
        ("\x01ACTIONS\x01", "c2 <- from alice: ACTIONS"),
        ("\x01VERSION\x01", "c2 <- from alice: VERSION"),
    ] {
        assert_eq!(
            h.line(ALICE, &format!("PRIVMSG bob :{sent}")),
            [shown],
            "{sent:?}"
        );
    }
}
