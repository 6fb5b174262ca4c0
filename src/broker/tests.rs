//! The broker's decisions, one rule of PROTOCOL.md at a time.
//!
//! Each test drives a broker with a few inputs and compares the outputs as
//! text, so a failure reads like a transcript. The model-based property
//! tests in `tests/` cover the interleavings; these pin down each rule.

use std::sync::Arc;

use super::*;
use crate::codec::FrameError;

const ALICE: ConnId = ConnId(1);
const BOB: ConnId = ConnId(2);
const CAROL: ConnId = ConnId(3);

/// A broker under test and everything it has output so far.
struct Harness {
    broker: Broker,
    out: Vec<Output>,
}

impl Harness {
    fn new(max_queue: usize) -> Self {
        Harness {
            broker: Broker::new(max_queue),
            out: Vec::new(),
        }
    }

    /// A broker with `conns` open and logged in as the given names, with
    /// the welcomes already taken and flushed.
    fn with_users(users: &[(ConnId, &str)]) -> Self {
        let mut harness = Harness::new(1 << 20);
        for &(conn, name) in users {
            harness.input(Input::Opened { conn });
            harness.line(conn, name);
            harness.flush_all();
        }
        harness
    }

    /// Feeds one input and returns its outputs, rendered as text.
    fn input(&mut self, input: Input) -> Vec<String> {
        self.out.clear();
        self.broker.handle(&input, &mut self.out);
        self.out.iter().map(describe).collect()
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
        Output::Send { conn, line } => format!("{conn} <- {}", line.trim_end_matches('\n')),
        Output::Close { conn, reason } => format!("{conn} closed: {reason:?}"),
    }
}

#[test]
fn a_valid_free_name_is_welcomed() {
    let mut h = Harness::new(1024);
    assert_eq!(h.input(Input::Opened { conn: ALICE }), Vec::<String>::new());
    assert_eq!(h.line(ALICE, "  alice \t"), ["c1 <- welcome alice"]);
    assert_eq!(h.broker.name_of(ALICE), Some("alice"));
}

#[test]
fn an_invalid_name_is_refused_and_login_can_be_retried() {
    let mut h = Harness::new(1024);
    h.input(Input::Opened { conn: ALICE });
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
    h.input(Input::Opened { conn: BOB });
    assert_eq!(h.line(BOB, "alice"), ["c2 <- error: name taken: alice"]);
    assert_eq!(
        h.input(Input::Closed { conn: ALICE }),
        ["c1 closed: PeerClosed"]
    );
    assert_eq!(h.line(BOB, "alice"), ["c2 <- welcome alice"]);
}

#[test]
fn names_are_case_sensitive() {
    let mut h = Harness::with_users(&[(ALICE, "alice")]);
    h.input(Input::Opened { conn: BOB });
    assert_eq!(h.line(BOB, "Alice"), ["c2 <- welcome Alice"]);
}

#[test]
fn blank_lines_are_ignored_before_and_after_login() {
    let mut h = Harness::new(1024);
    h.input(Input::Opened { conn: ALICE });
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
    let lines: Vec<&Arc<str>> = h
        .out
        .iter()
        .filter_map(|output| match output {
            Output::Send { line, .. } => Some(line),
            Output::Close { .. } => None,
        })
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(Arc::ptr_eq(lines[0], lines[1]));
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
    h.input(Input::Opened { conn: BOB });
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
    h.input(Input::Opened { conn: ALICE });
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
    assert!(h.input(Input::WriteStalled { conn: BOB }).is_empty());
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

#[test]
fn a_delivery_past_max_queue_cuts_the_recipient_only() {
    let line_len = "from alice: hi\n".len();
    let mut h = Harness::new(2 * line_len);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(Input::Opened { conn });
        h.line(conn, name);
        h.flush_all();
    }
    assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
    assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
    assert_eq!(h.broker.queued_bytes(BOB), Some(2 * line_len));
    assert_eq!(h.line(ALICE, "bob: hi"), ["c2 closed: SlowConsumer"]);
    assert_eq!(h.broker.name_of(ALICE), Some("alice"));
    assert_eq!(h.line(ALICE, "bob: hi"), ["c1 <- error: no such peer: bob"]);
}

#[test]
fn flushing_makes_room_so_a_reading_client_is_never_cut() {
    let line_len = "from alice: hi\n".len();
    let mut h = Harness::new(line_len);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(Input::Opened { conn });
        h.line(conn, name);
        h.flush_all();
    }
    for _ in 0..100 {
        assert_eq!(h.line(ALICE, "bob: hi"), ["c2 <- from alice: hi"]);
        h.input(Input::Flushed {
            conn: BOB,
            bytes: line_len,
        });
    }
}

#[test]
fn a_sender_whose_own_errors_overflow_is_cut_but_its_message_still_goes_out() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.broker.max_queue = "from alice: x\n".len() * 2;
    assert_eq!(
        h.line(ALICE, "bob, alice, nobody-here: x"),
        [
            "c2 <- from alice: x",
            "c1 <- from alice: x",
            "c1 closed: SlowConsumer",
        ]
    );
}

#[test]
fn a_stalled_writer_is_closed_as_a_dead_peer_and_its_name_freed() {
    let mut h = Harness::with_users(&[(ALICE, "alice"), (BOB, "bob")]);
    h.line(ALICE, "bob: hi");
    assert_eq!(
        h.input(Input::WriteStalled { conn: BOB }),
        ["c2 closed: DeadPeer"]
    );
    h.input(Input::Opened { conn: CAROL });
    assert_eq!(h.line(CAROL, "bob"), ["c3 <- welcome bob"]);
}

#[test]
fn shutdown_tells_every_connection_then_closes_it() {
    let mut h = Harness::with_users(&[(BOB, "bob"), (ALICE, "alice")]);
    h.input(Input::Opened { conn: CAROL });
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
        h.input(Input::Opened { conn: ALICE }),
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
    assert_eq!(
        h.input(Input::Opened { conn: ALICE }),
        ["c1 closed: ShuttingDown"]
    );
}

#[test]
fn a_full_queue_at_shutdown_keeps_its_deliveries_and_skips_the_notice() {
    let line_len = "from alice: hi\n".len();
    let notice_len = "error: server shutting down\n".len();
    // Room for the notice alone, or for the message, but not for both.
    let mut h = Harness::new(line_len + notice_len - 1);
    for (conn, name) in [(ALICE, "alice"), (BOB, "bob")] {
        h.input(Input::Opened { conn });
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
