//! PROTOCOL.md "Ordering and delivery guarantees", observed over TCP.

use std::thread;

use crate::support::Server;

const MESSAGES: usize = 2000;

#[test]
fn one_senders_messages_arrive_in_send_order_at_every_recipient() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    let sender = thread::spawn(move || {
        for i in 0..MESSAGES {
            alice.send(&format!("bob, carol: m{i}"));
        }
        alice
    });
    for i in 0..MESSAGES {
        bob.expect(&format!("from alice: m{i}"));
        carol.expect(&format!("from alice: m{i}"));
    }
    sender.join().unwrap();
}

#[test]
fn recipients_see_concurrent_senders_in_the_same_relative_order() {
    let server = Server::start(&[]);
    let senders: Vec<_> = ["alice", "dave"]
        .into_iter()
        .map(|name| (name, server.login(name)))
        .collect();
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    let threads: Vec<_> = senders
        .into_iter()
        .map(|(name, mut client)| {
            thread::spawn(move || {
                for i in 0..MESSAGES {
                    client.send(&format!("bob, carol: {name}{i}"));
                }
                client
            })
        })
        .collect();
    let seen_by_bob: Vec<String> = (0..2 * MESSAGES)
        .map(|_| bob.next_line().unwrap())
        .collect();
    let seen_by_carol: Vec<String> = (0..2 * MESSAGES)
        .map(|_| carol.next_line().unwrap())
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(seen_by_bob, seen_by_carol);
    for name in ["alice", "dave"] {
        let own: Vec<&String> = seen_by_bob
            .iter()
            .filter(|line| line.starts_with(&format!("from {name}: ")))
            .collect();
        let expected: Vec<String> = (0..MESSAGES)
            .map(|i| format!("from {name}: {name}{i}"))
            .collect();
        assert_eq!(own, expected.iter().collect::<Vec<_>>());
    }
}

#[test]
fn a_senders_replies_and_deliveries_leave_in_processing_order() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    for i in 0..200 {
        alice.send(&format!("ghost, alice: {i}"));
    }
    for i in 0..200 {
        alice.expect("error: no such peer: ghost");
        alice.expect(&format!("from alice: {i}"));
    }
}

/// The mirror of the test above: with the online name first, its delivery
/// leaves before the error for the offline one. The broker writes a
/// message's replies and deliveries in the order of its destinations, and
/// guarantee 5 keeps that order on the sender's socket.
#[test]
fn a_delivery_to_a_name_listed_first_leaves_before_the_error_for_the_next() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    for i in 0..200 {
        alice.send(&format!("alice, ghost: {i}"));
    }
    for i in 0..200 {
        alice.expect(&format!("from alice: {i}"));
        alice.expect("error: no such peer: ghost");
    }
}
