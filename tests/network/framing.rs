//! PROTOCOL.md "Framing": LF lines, CR LF, line limit, UTF-8, blank lines.

use std::io::Write;

use crate::support::Server;

#[test]
fn crlf_terminated_lines_work_like_lf() {
    let server = Server::start(&[]);
    let mut alice = server.connect();
    alice.send_raw(b"alice\r\nalice: hi\r\n");
    alice.expect("welcome alice");
    alice.expect("from alice: hi");
}

#[test]
fn lines_split_across_writes_are_reassembled() {
    let server = Server::start(&[]);
    let mut alice = server.connect();
    for byte in b"alice\r\nalice: hi there\n" {
        alice.send_raw(&[*byte]);
    }
    alice.expect("welcome alice");
    alice.expect("from alice: hi there");
}

#[test]
fn a_too_long_line_is_refused_and_the_connection_stays_usable() {
    let server = Server::start(&["--max-line", "16"]);
    let mut alice = server.login("alice");
    // 16 bytes is the limit; the terminator does not count.
    alice.send("alice: 012345678");
    alice.expect("from alice: 012345678");
    alice.send_raw(b"alice: 0123456789\r\n");
    alice.expect("error: line too long");
    alice.send("alice: still ok");
    alice.expect("from alice: still ok");
}

#[test]
fn a_too_long_line_before_login_is_refused_too() {
    let server = Server::start(&["--max-line", "8"]);
    let mut client = server.connect();
    client.send("a-very-long-name");
    client.expect("error: line too long");
    client.send("alice");
    client.expect("welcome alice");
}

#[test]
fn a_100_mib_line_is_skipped_without_buffering_it() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let baseline_kib = server.peak_rss_kib();
    let chunk = vec![b'x'; 1024 * 1024];
    let mut stream = alice.raw_stream().try_clone().unwrap();
    for _ in 0..100 {
        stream.write_all(&chunk).unwrap();
    }
    stream.write_all(b"\nalice: after\n").unwrap();
    alice.expect("error: line too long");
    alice.expect("from alice: after");
    let growth_kib = server.peak_rss_kib().saturating_sub(baseline_kib);
    assert!(
        growth_kib < 16 * 1024,
        "peak RSS grew {growth_kib} KiB while skipping a 100 MiB line"
    );
}

#[test]
fn invalid_utf8_is_refused_and_the_next_line_is_read() {
    let server = Server::start(&[]);
    let mut alice = server.connect();
    alice.send_raw(b"al\xffice\n");
    alice.expect("error: invalid utf-8");
    alice.send("alice");
    alice.expect("welcome alice");
    alice.send_raw(b"alice: \xc3\x28\n");
    alice.expect("error: invalid utf-8");
    alice.send("alice: ok");
    alice.expect("from alice: ok");
}

#[test]
fn blank_lines_are_ignored_before_and_after_login() {
    let server = Server::start(&[]);
    let mut alice = server.connect();
    alice.send_raw(b"\n \t\r\n\xe3\x80\x80\nalice\n\n   \r\nalice: next\n");
    alice.expect("welcome alice");
    // Had a blank line been answered, its reply would come first.
    alice.expect("from alice: next");
}

#[test]
fn an_unterminated_last_line_is_processed_at_end_of_stream() {
    let server = Server::start(&[]);
    let mut bob = server.login("bob");
    let mut alice = server.connect();
    alice.send_raw(b"alice\nbob: bye");
    alice.finish_sending();
    alice.expect("welcome alice");
    alice.expect_closed();
    bob.expect("from alice: bye");
}
