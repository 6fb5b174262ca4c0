//! PROTOCOL.md "Rooms" and "Commands": rooms and their news over real TCP,
//! the server's limits on them as flags, and shutdown ending every room.

use std::time::Duration;

use crate::support::Server;

const EXIT_LIMIT: Duration = Duration::from_secs(15);

#[test]
fn members_talk_in_a_room_and_see_who_comes_and_goes() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    alice.send("/join #rust");
    alice.expect("#rust: alice joined");
    bob.send("/join #rust");
    alice.expect("#rust: bob joined");
    bob.expect("#rust: bob joined");

    bob.send("#rust, carol: hello");
    alice.expect("from bob to #rust: hello");
    carol.expect("from bob: hello");
    carol.send("#rust: let me in");
    carol.expect("error: not in room: #rust");
    carol.send("/names #rust");
    carol.expect("names #rust: alice bob");

    carol.send("/join #rust");
    for member in [&mut alice, &mut bob, &mut carol] {
        member.expect("#rust: carol joined");
    }
    bob.send("/part #rust");
    for member in [&mut alice, &mut bob, &mut carol] {
        member.expect("#rust: bob left (parted)");
    }
    drop(carol);
    alice.expect("#rust: carol left (disconnected)");
    alice.send("/rooms");
    alice.expect("rooms: #rust");
    bob.send("/rooms");
    bob.expect("rooms:");
}

#[test]
fn the_room_limits_are_flags() {
    let server = Server::start(&["--max-rooms-per-connection", "1", "--max-room-members", "1"]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    alice.send("/join #a");
    alice.expect("#a: alice joined");
    alice.send("/join #b");
    alice.expect("error: too many rooms (at most 1)");
    bob.send("/join #a");
    bob.expect("error: room full: #a");
    bob.send("/dance");
    bob.expect("error: unknown command (try /join, /part, /names, /rooms, /nick)");
}

#[test]
fn a_rename_is_news_to_room_mates() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    alice.send("/join #r");
    alice.expect("#r: alice joined");
    bob.send("/join #r");
    alice.expect("#r: bob joined");
    bob.expect("#r: bob joined");
    alice.send("/nick alicia");
    alice.expect("renamed alice to alicia");
    bob.expect("renamed alice to alicia");
    bob.send("alice, alicia: hi");
    bob.expect("error: no such peer: alice");
    alice.expect("from bob: hi");
}

#[test]
fn shutdown_ends_each_room_before_the_notice() {
    let mut server = Server::start(&[]);
    let mut alice = server.login("alice");
    alice.send("/join #b");
    alice.expect("#b: alice joined");
    alice.send("/join #a");
    alice.expect("#a: alice joined");
    server.signal("TERM");
    alice.expect("#a: everyone left (server shutting down)");
    alice.expect("#b: everyone left (server shutting down)");
    alice.expect("error: server shutting down");
    alice.expect_closed();
    drop(alice);
    let status = server.wait_exit(EXIT_LIMIT).expect("server exited");
    assert!(status.success(), "exit status {status}");
}
