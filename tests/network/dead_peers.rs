//! PROTOCOL.md "Dead peers": a socket that accepts no bytes for
//! `--write-timeout` is closed and its name freed, even under the queue bound.

use crate::support::{Server, eventually};

#[test]
fn a_peer_whose_socket_accepts_nothing_is_closed_after_the_write_timeout() {
    // A queue bound so large that only the write timeout can cut bob.
    let server = Server::start(&[
        "--write-timeout",
        "0.5",
        "--max-queue",
        "268435456",
        "--max-line",
        "65536",
    ]);
    let mut bob = server.login_small_window("bob");
    let mut alice = server.login("alice");
    // Enough to fill every kernel buffer between the server and bob.
    let text = "z".repeat(60_000);
    alice.send_many(&format!("bob: {text}"), 400);
    let bob_closed = eventually(400, || {
        alice.send("bob, alice: probe");
        let first = alice.next_line().unwrap();
        if first == "error: no such peer: bob" {
            alice.expect("from alice: probe");
            return true;
        }
        assert_eq!(first, "from alice: probe");
        false
    });
    assert!(bob_closed, "bob was never closed as a dead peer");
    let received = bob.drain_bytes();
    assert!(received < 400 * 60_000, "bob cannot have read everything");
}
