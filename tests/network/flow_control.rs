//! PROTOCOL.md "Flow control": a burst is paid for by its sender. A line
//! that takes a queue past `--max-queue` pauses its sender (the server
//! stops reading from it, so TCP pushes back on it alone); a recipient is
//! cut as a slow consumer only if its queue stays past the bound for
//! `--slow-timeout`. Nobody else slows down and the server's memory stays
//! bounded.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::spawned::Spawned;
use crate::support::{Client, Server, eventually, login_with_buffers};

/// Text of the 8 KB lines the burst tests send.
const BURST_TEXT_BYTES: usize = 8000;

/// How long a write must accept nothing to count as stalled: far longer
/// than loopback needs to take a line the server is reading.
const STALL: Duration = Duration::from_millis(300);

/// The most a sender may push at a reader who never reads before the
/// server stops reading from it. What it can push is `--max-queue` plus
/// kernel buffers (its own send buffer, set small below, the server's
/// receive buffer, autotuned to a few MB on loopback, and the buffers
/// towards the reader); without the pause it never stalls at all.
const PUSH_LIMIT: usize = 64 * 1024 * 1024;

/// Connects a client that logs in as `name` and expects to be refused
/// because the name is held.
fn assert_name_held(server: &Server, name: &str) {
    let mut impostor = server.connect();
    impostor.send(name);
    impostor.expect(&format!("error: name taken: {name}"));
}

#[test]
fn a_client_that_stops_reading_is_cut_and_others_carry_on() {
    // The default 1 MiB bound; bob's queue passes it, alice is paused until
    // he is cut, and her next lines draw `no such peer`.
    let server = Server::start(&["--slow-timeout", "1"]);
    let mut bob = server.login_small_window("bob");
    let mut carol = server.login("carol");
    let mut alice = server.login("alice");
    let baseline_kib = server.peak_rss_kib();

    // alice floods bob from one thread and reads her replies on another,
    // as a well-behaved client does; she stops at her first error. Her
    // writes stall once bob's queue is full, until bob is cut.
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
    let server = Server::start(&["--max-queue", "65536", "--slow-timeout", "0.5"]);
    // bob stays connected and never reads.
    let _bob = server.login_small_window("bob");
    let mut alice = server.login("alice");
    // alice reads her own copies, so only bob's queue grows. Once it is
    // past the bound she is paused: her next line waits, unread, until
    // bob is cut, and then draws the error.
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

/// The case: a sender bursts megabytes at a reader who reads as
/// fast as she can, through a small window. Her queue passes the bound
/// again and again; each time the sender is paused, not she cut.
#[test]
fn a_burst_at_a_reader_who_keeps_reading_does_not_get_her_cut() {
    const LINES: usize = 1000;
    let server = Server::start(&["--max-queue", "131072"]);
    let mut alice = server.login_small_window("alice");
    let mut carol = server.login("carol");
    let text = "b".repeat(BURST_TEXT_BYTES);
    let burst: Vec<u8> = (0..LINES)
        .flat_map(|i| format!("alice: {i:04} {text}\n").into_bytes())
        .collect();
    let mut writer = Client::from_stream(carol.raw_stream().try_clone().unwrap());
    let bursting = thread::spawn(move || writer.send_raw(&burst));
    for i in 0..LINES {
        alice.expect(&format!("from carol: {i:04} {text}"));
    }
    bursting.join().unwrap();
    // Nothing else came for carol (no error), and both are still here.
    carol.send("carol: done");
    carol.expect("from carol: done");
    assert_name_held(&server, "alice");
    alice.send("alice: still here");
    alice.expect("from alice: still here");
}

/// One message to hundreds of recipients, who all read: each recipient's
/// queue fills in step, the sender is paused whenever one is past the
/// bound, and nobody is cut.
#[test]
fn a_sender_to_hundreds_of_readers_gets_none_of_them_cut() {
    // Within the default per-address limit even under `ulimit -n` 1024.
    const READERS: usize = 200;
    const LINES: usize = 30;
    let server = Server::start(&["--max-line", "16384", "--max-queue", "65536"]);
    let names: Vec<String> = (0..READERS).map(|i| format!("r{i:03}")).collect();
    let text = "f".repeat(BURST_TEXT_BYTES);
    let readers: Vec<_> = names
        .iter()
        .map(|name| {
            let mut reader = server.login_small_window(name);
            let text = text.clone();
            thread::spawn(move || {
                for i in 0..LINES {
                    reader.expect(&format!("from boss: {i:02} {text}"));
                }
                reader
            })
        })
        .collect();
    let mut boss = server.login("boss");
    let destinations = names.join(",");
    let burst: String = (0..LINES)
        .map(|i| format!("{destinations}: {i:02} {text}\n"))
        .collect();
    boss.send_raw(burst.as_bytes());
    let mut readers: Vec<Client> = readers
        .into_iter()
        .map(|reader| reader.join().expect("a reader missed a line"))
        .collect();
    // Everyone is still logged in: one last line reaches them all.
    boss.send(&format!("{destinations}: the end"));
    for reader in &mut readers {
        reader.expect("from boss: the end");
    }
}

/// A reader who never reads: her sender's writes stop being taken, she is
/// cut as a slow consumer after `--slow-timeout`, and then the sender's
/// lines flow again.
#[test]
fn a_sender_at_a_reader_who_never_reads_is_paused_until_she_is_cut() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chinwag"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--slow-timeout", "3"])
        .env("RUST_LOG", "debug");
    let server = Spawned::start(command);
    let bob = login_with_buffers(server.addr, "bob", Some(4096), None);
    let mut carol = Client::connect(server.addr);
    carol.log_in("carol");
    let mut alice = login_with_buffers(server.addr, "alice", None, Some(64 * 1024));

    let line = format!("bob: {}\n", "n".repeat(BURST_TEXT_BYTES));
    let started = Instant::now();
    // A stall proves the pause only if the server says it paused her: on a
    // loaded machine a write can stall for a moment anyway.
    let mut log = Vec::new();
    let mut pushed = 0;
    let mut unsent = line.clone().into_bytes();
    let rest = loop {
        let (more, rest) = alice.write_until_stalled(&unsent, STALL, PUSH_LIMIT - pushed);
        pushed += more;
        let Some(rest) = rest else {
            panic!("the server took {pushed} bytes and never paused alice");
        };
        let paused = eventually(20, || {
            log.extend(server.new_log_lines());
            log.iter()
                .any(|l| l.contains("pausing") && l.contains("alice"))
        });
        if paused {
            break rest;
        }
        // Finish the line cut off by the stall, then go on with whole ones.
        alice.send_raw(&rest);
        unsent = line.clone().into_bytes();
    };
    // Paused while bob is over, not yet cut: bob still holds his name,
    // and carol chats on.
    let mut impostor = Client::connect(server.addr);
    impostor.send("bob");
    impostor.expect("error: name taken: bob");
    let mut dave = Client::connect(server.addr);
    dave.log_in("dave");
    dave.send("carol: hello");
    carol.expect("from dave: hello");

    // After the slow timeout bob is cut, and alice's lines flow again: her
    // next message to someone else arrives.
    alice.send_raw(&rest);
    alice.send("carol: after the cut");
    carol.expect("from alice: after the cut");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "bob was cut before the slow timeout"
    );
    impostor.send("bob");
    impostor.expect("welcome bob");
    let logged = eventually(200, || {
        log.extend(server.new_log_lines());
        log.iter()
            .any(|line| line.contains("closing slow consumer") && line.contains("bob"))
    });
    assert!(logged, "no slow-consumer cut of bob in the log: {log:#?}");
    drop(bob);
}

/// A client that floods lines drawing error replies and never reads fills
/// its own queue: it is paused, and cut after `--slow-timeout`, while
/// everyone else chats on as usual.
#[test]
fn a_client_flooding_itself_with_errors_is_paused_then_cut() {
    let server = Server::start(&["--max-queue", "65536", "--slow-timeout", "3"]);
    let mut bob = server.login("bob");
    let mut alice = server.login("alice");
    let mut mallory = login_with_buffers(server.addr, "mallory", Some(4096), Some(64 * 1024));
    // Each line names 400 people nobody holds: 400 error replies for her.
    let nobodies: Vec<String> = (0..400).map(|i| format!("nobody{i}")).collect();
    let line = format!("{}: hi\n", nobodies.join(","));
    let started = Instant::now();
    let (pushed, rest) = mallory.write_until_stalled(line.as_bytes(), STALL, PUSH_LIMIT);
    assert!(
        rest.is_some(),
        "the server took {pushed} bytes and never paused mallory"
    );
    // Paused, not cut (a cut would have reset her writes): she still
    // holds her name.
    assert_name_held(&server, "mallory");
    // Meanwhile alice and bob chat as usual. (How promptly is the load
    // tool's to measure, in its `slow` scenario, not a timed test's.)
    for i in 0..20 {
        alice.send(&format!("bob: {i}"));
        bob.expect(&format!("from alice: {i}"));
        bob.send(&format!("alice: {i}"));
        alice.expect(&format!("from bob: {i}"));
    }
    // After the slow timeout she is cut and her name is free.
    let mut next = server.connect();
    let freed = eventually(400, || {
        next.send("mallory");
        next.next_line().as_deref() == Some("welcome mallory")
    });
    assert!(freed, "mallory was never cut");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "mallory was cut after {:?}, before the slow timeout",
        started.elapsed()
    );
    drop(mallory);
}
