//! PROTOCOL.md "Login": valid names, invalid names, taken names, release.

use crate::support::{Server, eventually};

#[test]
fn a_valid_name_is_welcomed_with_whitespace_trimmed() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    client.send("  Zoë_1.x-y \t");
    client.expect("welcome Zoë_1.x-y");
}

#[test]
fn invalid_names_are_refused_and_login_can_be_retried() {
    let server = Server::start(&[]);
    let mut client = server.connect();
    let too_long = "a".repeat(33);
    for name in ["al ice", "bob!", "a:b", "😀", too_long.as_str()] {
        client.send(name);
        client.expect("error: invalid name");
    }
    client.send(&"é".repeat(32));
    client.expect(&format!("welcome {}", "é".repeat(32)));
}

#[test]
fn a_held_name_cannot_be_taken_so_nobody_is_impersonated() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut mallory = server.connect();
    mallory.send("alice");
    mallory.expect("error: name taken: alice");
    mallory.send("Alice");
    mallory.expect("welcome Alice");
    mallory.send("alice: it's me");
    alice.expect("from Alice: it's me");
}

#[test]
fn a_name_is_free_again_once_its_holder_disconnects() {
    let server = Server::start(&[]);
    let alice = server.login("alice");
    drop(alice);
    let mut again = server.connect();
    let welcomed = eventually(200, || {
        again.send("alice");
        match again.next_line().as_deref() {
            Some("welcome alice") => true,
            Some("error: name taken: alice") => false,
            other => panic!("unexpected reply {other:?}"),
        }
    });
    assert!(welcomed, "alice's name was never released");
}

#[test]
fn a_client_is_not_logged_in_until_welcomed() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.connect();
    bob.send("b b");
    bob.expect("error: invalid name");
    alice.send("b b, bob: hi");
    alice.expect_prefix("error: expected");
    alice.send("bob: hi");
    alice.expect("error: no such peer: bob");
}

/// Each of these was accepted beside `alice` as a distinct user before
/// names were normalized and compared by their confusable skeleton.
#[test]
fn look_alikes_of_a_held_name_are_taken_and_invisible_names_refused() {
    let server = Server::start(&[]);
    let _alice = server.login("alice");
    let mut mallory = server.connect();
    for look_alike in ["\u{430}lice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞"] {
        mallory.send(look_alike);
        mallory.expect(&format!("error: name taken: {look_alike}"));
    }
    for invisible in ["alice\u{3164}", "\u{3164}", "al\u{200b}ice"] {
        mallory.send(invisible);
        mallory.expect("error: invalid name");
    }
    let _angstrom = server.login("\u{c5}");
    mallory.send("\u{212b}");
    mallory.expect("error: name taken: \u{c5}");
    mallory.send("e\u{301}");
    mallory.expect("welcome \u{e9}");
}
