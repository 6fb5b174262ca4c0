//! The server's sockets under hostile load: a burst of connects, and a peer
//! that stops reading (TCP_USER_TIMEOUT). Connection limits are in
//! `limits.rs`.

use std::net::TcpStream;
use std::time::Duration;

use crate::support::{Client, HUGE_QUEUE, Server, eventually};

/// The burst the issue reported taking 5 s against a backlog of 128.
const BURST_CONNECTS: usize = 1000;

/// File descriptors the test process keeps for everything else while it
/// holds a burst (other tests run alongside in the same process).
const OTHER_DESCRIPTORS: usize = 256;

/// How long one connect of the burst may take: a handshake the kernel
/// completes at once, or a SYN dropped on a full backlog (retried after 1 s).
const CONNECT_LIMIT: Duration = Duration::from_millis(500);

/// A soft limit from /proc/self/limits, e.g. "Max open files".
fn soft_limit(name: &str) -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(usize::MAX)
}

#[test]
fn a_burst_of_connects_waits_in_the_backlog() {
    let server = Server::start(&[]);
    // The kernel caps any backlog at somaxconn, and this process can only
    // hold so many sockets: the burst is as big as both allow.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(usize::MAX);
    let burst = BURST_CONNECTS
        .min(somaxconn)
        .min(soft_limit("Max open files").saturating_sub(OTHER_DESCRIPTORS));
    assert!(burst > 129, "this machine allows a burst of only {burst}");
    // A stopped server accepts nothing: every connect of the burst has to
    // wait in the backlog, as it does while a busy server catches up.
    server.signal("STOP");
    let mut held = Vec::with_capacity(burst);
    while held.len() < burst {
        match TcpStream::connect_timeout(&server.addr, CONNECT_LIMIT) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    server.signal("CONT");
    assert_eq!(
        held.len(),
        burst,
        "the backlog held {} connects of a burst of {burst}",
        held.len()
    );
    // Once running again, the server serves them.
    let mut first = Client::from_stream(held.swap_remove(0));
    first.send("first");
    first.expect("welcome first");
    drop(held);
    let mut late = server.login("late");
    late.send("first, late: all served");
    first.expect("from late: all served");
    late.expect("from late: all served");
}

#[test]
fn the_kernel_drops_a_closed_connection_its_peer_never_reads() {
    // A queue bound so large that only the write timeout can cut bob.
    let server = Server::start(&[&["--write-timeout", "1"][..], &HUGE_QUEUE].concat());
    let (bob, mut alice) = server.flood_a_client_who_never_reads(200);
    let bob_port = bob.raw_stream().local_addr().unwrap().port();
    // The broker cuts bob as a dead peer and the server closes its socket,
    // with megabytes still unsent to a window bob keeps at zero.
    let bob_cut = eventually(400, || alice.probe_is_gone("alice", "bob"));
    assert!(bob_cut, "bob was never cut");
    // Without TCP_USER_TIMEOUT the kernel would keep probing bob's zero
    // window for that closed socket for many minutes.
    let gone = eventually(400, || {
        !server_side_sockets(server.addr.port()).contains(&bob_port)
    });
    assert!(
        gone,
        "the server's socket to bob outlived the write timeout"
    );
    drop(bob);
}

/// The peer ports of the sockets on the server's port, from /proc/net/tcp.
fn server_side_sockets(server_port: u16) -> Vec<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port = |address: &str| {
        let hex = address.rsplit(':').next().unwrap();
        u16::from_str_radix(hex, 16).unwrap()
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let (local, remote) = (fields.next()?, fields.next()?);
            (port(local) == server_port).then(|| port(remote))
        })
        .collect()
}
