//! PROTOCOL.md "Shutdown": on SIGTERM/SIGINT, deliver what was processed,
//! tell every connection, close them, and exit 0 within the timeout.

use std::time::Duration;

use crate::support::{HUGE_QUEUE, Server};

const EXIT_LIMIT: Duration = Duration::from_secs(15);

#[test]
fn sigterm_drains_processed_messages_then_tells_everyone() {
    let mut server = Server::start(&[]);
    let mut bob = server.login("bob");
    let mut anonymous = server.connect();
    let mut alice = server.login("alice");
    for i in 0..500 {
        alice.send(&format!("bob, alice: m{i}"));
    }
    // alice's own copies prove every message was processed before the signal.
    for i in 0..500 {
        alice.expect(&format!("from alice: m{i}"));
    }
    server.signal("TERM");
    for i in 0..500 {
        bob.expect(&format!("from alice: m{i}"));
    }
    for client in [&mut bob, &mut alice, &mut anonymous] {
        client.expect("error: server shutting down");
        client.expect_closed();
    }
    // The server lingers until its peers close too (or the timeout).
    drop((bob, alice, anonymous));
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigint_shuts_down_the_same_way() {
    let mut server = Server::start(&[]);
    let mut alice = server.login("alice");
    server.signal("INT");
    alice.expect("error: server shutting down");
    alice.expect_closed();
    drop(alice);
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn a_client_that_never_reads_cannot_hold_up_shutdown() {
    let mut server = Server::start(&[&["--shutdown-timeout", "1"][..], &HUGE_QUEUE].concat());
    let (bob, mut alice) = server.flood_a_client_who_never_reads(200);
    alice.send("alice: all sent");
    alice.expect("from alice: all sent");
    server.signal("TERM");
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");
    drop(bob);
}

/// The server must not close a socket with the peer's input unread: the
/// kernel would answer with a reset, and the reset makes the peer's kernel
/// throw away every line it had received and not yet read. So a client
/// that types while it reads the drain still gets everything.
#[test]
fn a_client_typing_during_the_drain_still_gets_everything_processed() {
    const LINES: usize = 5000;
    let mut server = Server::start(&["--shutdown-timeout", "10"]);
    let mut reader = server.login_small_window("x");
    let mut alice = server.login("alice");
    let padding = "p".repeat(80);
    let flood: String = (0..LINES)
        .map(|i| format!("x: {i:05} {padding}\n"))
        .collect();
    alice.send_raw(flood.as_bytes());
    alice.send("alice: all sent");
    alice.expect("from alice: all sent");
    server.signal("TERM");
    for i in 0..LINES {
        reader.expect(&format!("from alice: {i:05} {padding}"));
        if i % 50 == 0 {
            reader.send("");
        }
    }
    reader.expect("error: server shutting down");
    // Typing after the goodbye, before reading the end of stream, must not
    // cost anything either.
    reader.send("");
    reader.expect_closed();
    drop((reader, alice));
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");
}
