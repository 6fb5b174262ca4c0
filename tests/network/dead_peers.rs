//! PROTOCOL.md "Dead peers": a socket that accepts no bytes for
//! `--write-timeout` is closed and its name freed, even under the queue bound.

use std::thread;
use std::time::Duration;

use crate::support::{FLOOD_LINE_BYTES, HUGE_QUEUE, Server, eventually};

#[test]
fn a_peer_whose_socket_accepts_nothing_is_closed_after_the_write_timeout() {
    // A queue bound so large that only the write timeout can cut bob.
    let server = Server::start(&[&["--write-timeout", "0.5"][..], &HUGE_QUEUE].concat());
    let (mut bob, mut alice) = server.flood_a_client_who_never_reads(400);
    let bob_closed = eventually(400, || alice.probe_is_gone("alice", "bob"));
    assert!(bob_closed, "bob was never closed as a dead peer");
    let received = bob.drain_bytes();
    assert!(
        received < 400 * FLOOD_LINE_BYTES,
        "bob cannot have read everything"
    );
}

/// A socket that keeps accepting bytes, however slowly, is alive: the write
/// timeout counts from the last progress, not from the first blocked write.
#[test]
fn a_slow_but_steady_reader_is_not_a_dead_peer() {
    const READ_BYTES_PER_TICK: usize = 1024;
    const TICK: Duration = Duration::from_millis(100);
    let server = Server::start(&["--write-timeout", "1"]);
    let mut bob = server.login_with_window("bob", 64 * 1024);
    let mut alice = server.login("alice");
    let padding = "s".repeat(100);
    let flood: String = (0..3000)
        .map(|i| format!("bob: {i:04} {padding}\n"))
        .collect();
    alice.send_raw(flood.as_bytes());
    alice.send("alice: all sent");
    alice.expect("from alice: all sent");
    // About 10 KB/s for one and a half write timeouts: past the write
    // timeout, short of the kernel's TCP_USER_TIMEOUT backstop (twice it;
    // src/server.rs says why it is looser).
    let mut chunk = [0; READ_BYTES_PER_TICK];
    for _ in 0..15 {
        bob.read_exact_bytes(&mut chunk);
        thread::sleep(TICK);
    }
    alice.send("bob, alice: still there?");
    alice.expect("from alice: still there?");
}
