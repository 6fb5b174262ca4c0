//! The server as a process: its stdout line, and its signals (PROTOCOL.md
//! "Shutdown" and "Command line").

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::spawned::Spawned;
use crate::support::{Client, HUGE_QUEUE, Server};

/// How long the server may take to exit after it should.
const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// How long after a second signal the process may still be there.
const FORCED_EXIT_LIMIT: Duration = Duration::from_secs(2);

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    // stdout is a socket whose other end is already closed: writing to it
    // fails with EPIPE, as a pipe whose reader is gone does, and the server
    // cannot write its line before the reader closes.
    let (stdout, reader) = UnixStream::pair().unwrap();
    drop(reader);
    let mut command = Command::new(env!("CARGO_BIN_EXE_chinwag"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::from(OwnedFd::from(stdout)));
    let mut server = Spawned::start(command);
    assert!(
        server
            .startup_log
            .iter()
            .any(|line| line.contains("WARN") && line.contains("stdout")),
        "no warning about stdout in {:#?}",
        server.startup_log
    );

    let mut alice = Client::connect(server.addr);
    alice.send("alice");
    alice.expect("welcome alice");
    server.signal("TERM");
    alice.expect("error: server shutting down");
    alice.expect_closed();
    let status = server.wait_exit(EXIT_LIMIT).expect("the server exited");
    assert!(status.success(), "exit status {status}");
}

/// Starts a drain that only `--shutdown-timeout` (30 s) would end, with the
/// first signal, then sends the second.
fn second_signal_during_a_long_drain(first: &str, second: &str) {
    let mut server = Server::start(&[&["--shutdown-timeout", "30"][..], &HUGE_QUEUE].concat());
    // bob never reads, so about 12 MB stay queued for him.
    let (bob, mut alice) = server.flood_a_client_who_never_reads(200);
    alice.send("alice: all sent");
    alice.expect("from alice: all sent");
    server.signal(first);
    alice.expect("error: server shutting down");
    assert!(
        server.wait_exit(Duration::from_millis(300)).is_none(),
        "the first signal must start the drain, not end the process"
    );
    server.signal(second);
    let status = server
        .wait_exit(FORCED_EXIT_LIMIT)
        .expect("the process ended soon after the second signal");
    assert_eq!(status.code(), Some(1), "exit status {status}");
    drop(bob);
}

#[test]
fn a_second_sigterm_ends_a_long_drain_at_once() {
    second_signal_during_a_long_drain("TERM", "TERM");
}

#[test]
fn a_sigint_after_a_sigterm_ends_a_long_drain_at_once() {
    second_signal_during_a_long_drain("TERM", "INT");
}
