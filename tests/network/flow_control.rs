//! PROTOCOL.md "Flow control": a reader that stops reading is cut as a slow
//! consumer; nobody else slows down and the server's memory stays bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use crate::support::{Client, Server};

#[test]
fn a_client_that_stops_reading_is_cut_and_others_carry_on() {
    // The default 1 MiB bound: room for alice's own replies to the messages
    // still in flight when bob is cut (1 in 40 of their bytes).
    let server = Server::start(&[]);
    let mut bob = server.login_small_window("bob");
    let mut carol = server.login("carol");
    let mut alice = server.login("alice");
    let baseline_kib = server.peak_rss_kib();

    // alice floods bob from one thread and reads her replies on another,
    // as a well-behaved client does; she stops at her first error.
    let mut flood = Client::from_stream(alice.raw_stream().try_clone().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let flooding = {
        let stop = stop.clone();
        thread::spawn(move || {
            let text = "x".repeat(1000);
            let mut sent = 0;
            // Bounded: 100 MB at most, far past any kernel buffering.
            while !stop.load(Ordering::Relaxed) && sent < 100_000 {
                flood.send(&format!("bob: {text}"));
                sent += 1;
            }
            flood.send("alice: end of flood");
            sent
        })
    };
    let mut errors = 0;
    loop {
        match alice.next_line().as_deref() {
            Some("error: no such peer: bob") => {
                stop.store(true, Ordering::Relaxed);
                errors += 1;
            }
            Some("from alice: end of flood") => break,
            other => panic!("alice got {other:?}"),
        }
    }
    let sent = flooding.join().unwrap();
    assert!(errors >= 1 && sent < 100_000, "bob was never cut");

    // The rest of the server is unaffected.
    alice.send("carol: still flowing");
    carol.expect("from alice: still flowing");
    // bob gets what was already in flight, then the close; never it all.
    let received = bob.drain_bytes();
    assert!(
        received < sent * 1006,
        "bob received {received} bytes of {sent} messages"
    );
    let growth_kib = server.peak_rss_kib().saturating_sub(baseline_kib);
    assert!(growth_kib < 32 * 1024, "server RSS grew {growth_kib} KiB");
}

#[test]
fn a_name_freed_by_a_slow_consumer_cut_can_log_in_again() {
    let server = Server::start(&["--max-queue", "65536"]);
    // bob stays connected and never reads.
    let _bob = server.login_small_window("bob");
    let mut alice = server.login("alice");
    // alice reads her own copies, so only bob's queue grows.
    let text = "y".repeat(8000);
    let mut cut = false;
    for _ in 0..2000 {
        alice.send(&format!("bob, alice: {text}"));
        let line = alice.next_line().unwrap();
        if line == "error: no such peer: bob" {
            cut = true;
            break;
        }
        assert_eq!(line, format!("from alice: {text}"));
    }
    assert!(cut, "bob was never cut");
    let mut bob_again = server.connect();
    bob_again.send("bob");
    bob_again.expect("welcome bob");
}
