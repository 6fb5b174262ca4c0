//! PROTOCOL.md "Connection limits": a connection over `--max-connections`
//! or `--max-connections-per-address` is told and closed at once, and one
//! that does not log in within `--login-timeout` is told and closed, so
//! nobody can fill the server with sockets that never log in.

use std::net::TcpStream;
use std::process::{Command, Stdio};

use socket2::{Domain, Socket, Type};

use crate::spawned::Spawned;
use crate::support::{Client, Server, eventually};

/// Connects a client that does not log in, once the server has taken it in:
/// connections are taken in as their tasks reach the broker, not in the
/// order they were accepted, so a test that counts slots waits for each.
fn connect_held(server: &Server) -> Client {
    let mut client = server.connect();
    client.send("!");
    client.expect("error: invalid name");
    client
}

/// A client connecting from another loopback address than 127.0.0.1.
fn connect_from(source: [u8; 4], server: std::net::SocketAddr) -> Client {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let source = std::net::SocketAddr::from((source, 0));
    socket
        .bind(&source.into())
        .expect("bind a loopback source address");
    socket.connect(&server.into()).expect("connect");
    Client::from_stream(TcpStream::from(socket))
}

#[test]
fn a_connection_over_max_connections_is_told_and_closed_at_once() {
    let server = Server::start(&[
        "--max-connections",
        "2",
        "--max-connections-per-address",
        "2",
    ]);
    let first = connect_held(&server);
    let _second = server.login("second");
    let mut third = server.connect();
    third.expect("error: server full");
    third.expect_closed();
    drop(first);
    // Once the first one's close is processed, its slot is free again.
    let got_in = eventually(40, || {
        let mut late = server.connect();
        late.send("late");
        late.next_line().as_deref() == Some("welcome late")
    });
    assert!(got_in, "the freed slot was never given out");
}

#[test]
fn one_address_cannot_take_every_slot() {
    let server = Server::start(&["--max-connections-per-address", "2"]);
    let _held: Vec<Client> = (0..2).map(|_| connect_held(&server)).collect();
    let mut refused = server.connect();
    refused.expect("error: too many connections from your address");
    refused.expect_closed();
    let mut elsewhere = connect_from([127, 0, 0, 2], server.addr);
    elsewhere.send("alice");
    elsewhere.expect("welcome alice");
}

#[test]
fn a_connection_that_never_logs_in_is_told_and_closed() {
    let server = Server::start(&["--login-timeout", "0.3"]);
    let mut idle = server.connect();
    let mut alice = server.login("alice");
    idle.expect("error: login timed out");
    idle.expect_closed();
    alice.send("alice: still here");
    alice.expect("from alice: still here");
}

/// The finding: with a 256-descriptor limit, 246 sockets that never logged
/// in filled the server, and legitimate users were locked out for as long
/// as the attacker liked. Now the defaults, derived from the limit, keep
/// one address to a quarter of the slots and refuse the rest at once.
#[test]
fn sockets_that_never_log_in_cannot_lock_others_out() {
    const SERVER_DESCRIPTORS: usize = 256;
    const ATTACKER_SOCKETS: usize = 246;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n {SERVER_DESCRIPTORS} && exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_chinwag"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null());
    let server = Spawned::start(command);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..ATTACKER_SOCKETS {
        let mut attacker = Client::connect(server.addr);
        // An invalid name: a held socket is told so and stays open without
        // logging in; a refused one is told why it is refused.
        attacker.send("!");
        match attacker.next_line().as_deref() {
            Some("error: invalid name") => held.push(attacker),
            Some("error: too many connections from your address") => refused += 1,
            other => panic!("the attacker got {other:?}"),
        }
    }
    // 256 descriptors leave 192 for connections, a quarter of them per address.
    assert_eq!(held.len(), 48, "{refused} refused");
    let mut alice = connect_from([127, 0, 0, 2], server.addr);
    alice.send("alice");
    alice.expect("welcome alice");
    // Refusing in time, the server never ran out of descriptors.
    let log = server.new_log_lines();
    assert!(
        !log.iter().any(|line| line.contains("accept failed")),
        "{log:#?}"
    );
}
