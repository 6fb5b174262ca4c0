//! IRC.md over real TCP, with a third-party IRC client: the `irc` crate
//! registers, joins, talks, renames and quits on `--irc-listen`, while a
//! line-protocol user in the same room sees it all in the line protocol
//! ("What others see").

use ::irc::client::ClientStream;
use ::irc::client::prelude::{Client, Command, Config, Message, Response};
use futures::StreamExt;

use crate::support::{READ_TIMEOUT, Server};

/// Reads the IRC client's stream until a message satisfies `wanted`,
/// within `READ_TIMEOUT`, and returns it. Every message on the way must be
/// one the server sends in the normal course (registration numerics, the
/// MOTD, names): an error numeric or NOTICE fails the test, so a command
/// the server refused cannot pass unseen.
async fn wait_for(
    stream: &mut ClientStream,
    what: &str,
    wanted: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {READ_TIMEOUT:?}; saw {seen:#?}"));
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                panic!("IRC stream error waiting for {what}: {error}; saw {seen:#?}")
            }
            None => panic!("IRC stream ended waiting for {what}; saw {seen:#?}"),
        };
        if wanted(&message) {
            return message;
        }
        match &message.command {
            Command::Response(response, _) if response.is_error() => {
                panic!("error waiting for {what}: {message:?}")
            }
            Command::NOTICE(..) | Command::ERROR(_) => {
                panic!("unexpected waiting for {what}: {message:?}")
            }
            _ => seen.push(message),
        }
    }
}

/// Sends a PING after what the client queued and waits for its PONG: the
/// client's stream writes queued messages only while it is polled, and
/// the server answers lines in order, so once the PONG is back every
/// earlier line has been acted on.
async fn round_trip(client: &Client, stream: &mut ClientStream, token: &str) {
    client
        .send(Command::PING(token.to_owned(), None))
        .expect("queue PING");
    wait_for(stream, &format!("PONG {token}"), |message| {
        matches!(&message.command, Command::PONG(_, Some(t)) if t == token)
            || matches!(&message.command, Command::PONG(t, None) if t == token)
    })
    .await;
}

fn is_from(message: &Message, nick: &str) -> bool {
    message.source_nickname() == Some(nick)
}

#[test]
fn an_irc_client_and_a_line_user_talk_in_one_room() {
    let server = Server::start(&["--irc-listen", "127.0.0.1:0"]);
    let irc_addr = server.irc_addr();
    let mut bob = server.login("bob");
    bob.send("/join #rust");
    bob.expect("#rust: bob joined");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let config = Config {
            nickname: Some("alice".to_owned()),
            username: Some("alice".to_owned()),
            realname: Some("Alice".to_owned()),
            server: Some(irc_addr.ip().to_string()),
            port: Some(irc_addr.port()),
            ..Config::default()
        };
        let mut client = tokio::time::timeout(READ_TIMEOUT, Client::from_config(config))
            .await
            .expect("connect within the timeout")
            .expect("connect to the IRC listener");
        let mut stream = client.stream().expect("the client's stream");
        client.identify().expect("queue CAP END, NICK, USER");

        let welcome = wait_for(&mut stream, "001", |message| {
            matches!(message.command, Command::Response(Response::RPL_WELCOME, _))
        })
        .await;
        let Command::Response(_, args) = &welcome.command else {
            unreachable!()
        };
        assert_eq!(
            args.first().map(String::as_str),
            Some("alice"),
            "{welcome:?}"
        );
        wait_for(&mut stream, "the end of the MOTD", |message| {
            matches!(
                message.command,
                Command::Response(Response::RPL_ENDOFMOTD, _)
            )
        })
        .await;

        // alice joins: her own JOIN, then the names, which list bob.
        client.send_join("#rust").expect("queue JOIN");
        wait_for(&mut stream, "alice's JOIN", |message| {
            is_from(message, "alice")
                && matches!(&message.command, Command::JOIN(channel, ..) if channel == "#rust")
        })
        .await;
        let names = wait_for(&mut stream, "353", |message| {
            matches!(
                message.command,
                Command::Response(Response::RPL_NAMREPLY, _)
            )
        })
        .await;
        let Command::Response(_, args) = &names.command else {
            unreachable!()
        };
        let mut listed: Vec<&str> = args.last().expect("names").split(' ').collect();
        listed.sort_unstable();
        assert_eq!(listed, ["alice", "bob"], "{names:?}");
        wait_for(&mut stream, "366", |message| {
            matches!(
                message.command,
                Command::Response(Response::RPL_ENDOFNAMES, _)
            )
        })
        .await;
        bob.expect("#rust: alice joined");

        // bob talks to the room and to alice: PRIVMSGs from bob.
        bob.send("#rust: hi alice");
        let message = wait_for(&mut stream, "bob's room message", |message| {
            matches!(&message.command, Command::PRIVMSG(..))
        })
        .await;
        assert!(is_from(&message, "bob"), "{message:?}");
        assert_eq!(
            message.command,
            Command::PRIVMSG("#rust".to_owned(), "hi alice".to_owned())
        );
        bob.send("alice: psst");
        let message = wait_for(&mut stream, "bob's direct message", |message| {
            matches!(&message.command, Command::PRIVMSG(..))
        })
        .await;
        assert!(is_from(&message, "bob"), "{message:?}");
        assert_eq!(
            message.command,
            Command::PRIVMSG("alice".to_owned(), "psst".to_owned())
        );

        // alice talks to the room and to bob.
        client
            .send_privmsg("#rust", "hello bob")
            .expect("queue PRIVMSG");
        round_trip(&client, &mut stream, "room").await;
        bob.expect("from alice to #rust: hello bob");
        client
            .send_privmsg("bob", "psst back")
            .expect("queue PRIVMSG");
        round_trip(&client, &mut stream, "direct").await;
        bob.expect("from alice: psst back");

        // A CTCP ACTION (`/me`) reaches the line user as `/me`.
        client
            .send_privmsg("#rust", "\u{1}ACTION waves\u{1}")
            .expect("queue ACTION");
        round_trip(&client, &mut stream, "action").await;
        bob.expect("from alice to #rust: /me waves");

        // alice renames herself: told to her, and to bob as a rename.
        client
            .send(Command::NICK("alicia".to_owned()))
            .expect("queue NICK");
        let rename = wait_for(&mut stream, "alice's NICK", |message| {
            matches!(&message.command, Command::NICK(_))
        })
        .await;
        assert!(is_from(&rename, "alice"), "{rename:?}");
        assert_eq!(rename.command, Command::NICK("alicia".to_owned()));
        bob.expect("renamed alice to alicia");
        bob.send("#rust: welcome, alicia");
        let message = wait_for(&mut stream, "bob's message after the rename", |message| {
            matches!(&message.command, Command::PRIVMSG(..))
        })
        .await;
        assert_eq!(
            message.command,
            Command::PRIVMSG("#rust".to_owned(), "welcome, alicia".to_owned())
        );

        // alicia quits: the server says goodbye and closes.
        client.send_quit("bye").expect("queue QUIT");
        let goodbye = wait_for(&mut stream, "the server's ERROR", |message| {
            matches!(&message.command, Command::ERROR(_))
        })
        .await;
        assert_eq!(
            goodbye.command,
            Command::ERROR("closing link (you quit)".to_owned())
        );
        let end = tokio::time::timeout(READ_TIMEOUT, stream.next())
            .await
            .expect("the server closes within the timeout");
        assert!(end.is_none(), "after ERROR: {end:?}");
    });
    bob.expect("#rust: alicia left (disconnected)");

    // Nothing else reached bob, and alicia's name is free again.
    bob.send("/names #rust");
    bob.expect("names #rust: bob");
    drop(bob);
    let mut alicia = server.login("alicia");
    alicia.send("/rooms");
    alicia.expect("rooms:");
}
