//! PROTOCOL.md "Messages": delivery, dedupe, self, unknown peers, malformed.

use crate::support::Server;

#[test]
fn a_message_reaches_every_listed_name_as_from_sender() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    let mut carol = server.login("carol");
    alice.send(" bob ,carol :  hi: how are you?  ");
    bob.expect("from alice: hi: how are you?");
    carol.expect("from alice: hi: how are you?");
    // alice got nothing: her next line is her own echo.
    alice.send("alice: echo");
    alice.expect("from alice: echo");
}

#[test]
fn a_name_listed_twice_receives_once_and_errors_once() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    alice.send("bob, eve, bob, eve: once");
    alice.expect("error: no such peer: eve");
    bob.expect("from alice: once");
    alice.send("bob, alice: twice");
    bob.expect("from alice: twice");
    alice.expect("from alice: twice");
}

#[test]
fn empty_text_is_delivered_as_in_the_tutorial() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    alice.send("alice:");
    alice.expect("from alice: ");
}

#[test]
fn offline_names_get_errors_and_online_ones_still_receive() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    alice.send("ghost, bob, phantom: boo");
    alice.expect("error: no such peer: ghost");
    alice.expect("error: no such peer: phantom");
    bob.expect("from alice: boo");
}

#[test]
fn malformed_lines_are_refused_whole_and_nobody_receives_them() {
    let server = Server::start(&[]);
    let mut alice = server.login("alice");
    let mut bob = server.login("bob");
    for line in [
        "no colon",
        ": hi",
        "bob,: hi",
        "bob,,bob: hi",
        "bob, b@d: hi",
    ] {
        alice.send(line);
        alice.expect_prefix("error: expected \"<dest>, ...: <text>\"");
    }
    alice.send("bob: real");
    bob.expect("from alice: real");
}

/// `bob: x\rfrom alice: ...` used to show on bob's terminal as a line from
/// alice; escape sequences could clear lines or set the window title.
#[test]
fn text_with_control_characters_is_refused_so_nobody_forges_a_line() {
    let server = Server::start(&[]);
    let mut bob = server.login("bob");
    let mut mallory = server.login("mallory");
    for text in [
        "x\rfrom alice: send me your password",
        "\x1b[2K\rhi",
        "\x1b]52;c;aGk=\x07",
        "\u{202e}olleh",
    ] {
        mallory.send(&format!("bob: {text}"));
        mallory.expect("error: control characters are not allowed in messages");
    }
    mallory.send("bob: tabs\tare fine");
    bob.expect("from mallory: tabs\tare fine");
}
