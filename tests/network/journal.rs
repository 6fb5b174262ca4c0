//! `chinwag serve --journal FILE`: the recording replays to exactly what
//! the clients received.
//!
//! Clients talk through a real server that records its journal; after the
//! shutdown the journal is fed to a fresh broker, whose decisions must be
//! byte for byte what each client read off its socket, and must keep every
//! guarantee. The simulator's `--journal` replay checks the same and holds
//! each step against the reference model.

use std::collections::BTreeMap;
use std::time::Duration;

use chinwag::broker::{Broker, ConnId, Output};
use chinwag::journal::{EndReason, Reader, Record};

use crate::model::guarantees;
use crate::model::trace::{Trace, TraceStep};
use crate::support::{Client, Server};

const EXIT_LIMIT: Duration = Duration::from_secs(15);

/// Everything `client` reads until the server closes it, lines with their LF.
fn read_to_close(client: &mut Client) -> String {
    let mut received = String::new();
    while let Some(line) = client.next_line() {
        received.push_str(&line);
        received.push('\n');
    }
    received
}

#[test]
fn a_journal_replays_to_exactly_what_every_client_received() {
    let dir = std::env::temp_dir().join(format!("chinwag-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("replayed");
    let _ = std::fs::remove_file(&path);
    let mut server = Server::start(&["--journal", path.to_str().unwrap(), "--max-line", "64"]);
    let mut alice = server.connect();
    alice.send("alice");
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    for i in 0..50 {
        alice.send(&format!("bob, carol: hello {i}"));
        bob.send(&format!("alice: hi {i}"));
    }
    alice.send("ghost, bob: anyone?");
    bob.send(&"x".repeat(100));
    carol.send_raw(b"carol \xff\n");
    carol.send("alice, alice: twice?");
    alice.send("alice: the last one");
    // alice's own copy: everything before it was processed.
    let mut alice_got = String::new();
    loop {
        let line = alice.next_line().expect("alice's own copy");
        alice_got.push_str(&line);
        alice_got.push('\n');
        if line == "from alice: the last one" {
            break;
        }
    }
    server.signal("TERM");
    alice_got.push_str(&read_to_close(&mut alice));
    let mut received = BTreeMap::from([
        ("alice", alice_got),
        ("bob", format!("welcome bob\n{}", read_to_close(&mut bob))),
        (
            "carol",
            format!("welcome carol\n{}", read_to_close(&mut carol)),
        ),
    ]);
    drop((alice, bob, carol));
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");

    let bytes = std::fs::read(&path).expect("the journal was written");
    let (config, reader) = Reader::open(&bytes).expect("a journal");
    assert_eq!(config.max_line, 64);
    let mut broker = Broker::new(&config);
    let mut trace = Trace {
        config,
        steps: Vec::new(),
    };
    let mut sent: BTreeMap<ConnId, String> = BTreeMap::new();
    let mut end = None;
    for record in reader {
        match record.expect("a whole record") {
            Record::Input { at, input } => {
                let mut outputs = Vec::new();
                broker.handle(at, &input, &mut outputs);
                for output in &outputs {
                    if let Output::Send { conn, line } = output {
                        sent.entry(*conn).or_default().push_str(line.as_str());
                    }
                }
                trace.steps.push(TraceStep {
                    time: at,
                    input,
                    outputs,
                });
            }
            Record::End { reason, .. } => end = Some(reason),
        }
    }
    assert_eq!(end, Some(EndReason::Stopped));
    guarantees::check_all(&trace).expect("every guarantee holds in the replay");
    for replayed in sent.values() {
        let name = replayed
            .strip_prefix("welcome ")
            .and_then(|rest| rest.split('\n').next())
            .expect("every connection was welcomed");
        let got = received.remove(name).expect("a client of that name");
        assert_eq!(replayed, &got, "{name}");
    }
    assert!(
        received.is_empty(),
        "no replayed connection for {received:?}"
    );
}
