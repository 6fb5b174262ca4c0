use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;

/// Parses `line`, which must be a message.
fn ok(line: &str) -> Message<'_> {
    parse(line).unwrap_or_else(|error| panic!("{line:?}: {error}"))
}

#[test]
fn modern_irc_examples_parse() {
    let cap = ok(":irc.example.com CAP LS * :multi-prefix extended-join sasl");
    assert_eq!(
        cap,
        Message {
            tags: None,
            prefix: Some("irc.example.com"),
            command: "CAP",
            params: vec!["LS", "*", "multi-prefix extended-join sasl"],
        }
    );
    assert_eq!(cap.command(), Command::Cap);

    let tagged = ok("@id=234AB :dan!d@localhost PRIVMSG #chan :Hey what's up!");
    assert_eq!(tagged.tags, Some("id=234AB"));
    assert_eq!(tagged.prefix, Some("dan!d@localhost"));
    assert_eq!(tagged.command(), Command::Privmsg);
    assert_eq!(tagged.params, ["#chan", "Hey what's up!"]);

    let request = ok("CAP REQ :sasl");
    assert_eq!((request.prefix, request.command), (None, "CAP"));
    assert_eq!(request.params, ["REQ", "sasl"]);

    // The same two parameters, the last written as middle or trailing.
    let middle = ok(":dan!d@localhost PRIVMSG #chan Hey!");
    let trailing = ok(":dan!d@localhost PRIVMSG #chan :Hey!");
    assert_eq!(middle, trailing);
    assert_eq!(middle.params, ["#chan", "Hey!"]);

    // A trailing parameter may itself start with a colon.
    assert_eq!(ok("PRIVMSG #chan ::-)").params, ["#chan", ":-)"]);

    let tags = ok("@url=;netsplit=tur,ty :dan!d@localhost PRIVMSG #chan :Hey");
    assert_eq!(tags.tags, Some("url=;netsplit=tur,ty"));

    let numeric = ok(":irc.example.com 001 dan :Welcome to the Internet Relay Network dan");
    assert_eq!(numeric.command, "001");
    assert_eq!(numeric.command(), Command::Other("001"));
}

#[test]
fn empty_trailing_is_an_empty_parameter() {
    assert_eq!(ok("PRIVMSG #chan :").params, ["#chan", ""]);
    assert_eq!(ok("PING :").params, [""]);
    // No trailing at all is no parameter, not an empty one.
    assert_eq!(ok("PING").params, Vec::<&str>::new());
    assert_eq!(ok("QUIT :Gone to lunch").params, ["Gone to lunch"]);
}

#[test]
fn commands_match_in_any_case() {
    let lower = ok("privmsg #chan :hi");
    assert_eq!(lower.command, "privmsg", "kept as written");
    assert_eq!(lower.command(), Command::Privmsg);
    let cases = [
        ("nick", Command::Nick),
        ("User", Command::User),
        ("cAP", Command::Cap),
        ("ping", Command::Ping),
        ("PONG", Command::Pong),
        ("notice", Command::Notice),
        ("join", Command::Join),
        ("part", Command::Part),
        ("names", Command::Names),
        ("topic", Command::Topic),
        ("mode", Command::Mode),
        ("who", Command::Who),
        ("quit", Command::Quit),
        ("away", Command::Away),
        ("whois", Command::Other("whois")),
        ("PRIVMSGX", Command::Other("PRIVMSGX")),
    ];
    for (name, command) in cases {
        assert_eq!(ok(name).command(), command, "{name}");
    }
}

#[test]
fn spaces_between_parts_are_tolerated() {
    let message = ok("  :src   JOIN   #a   b  ");
    assert_eq!(message.prefix, Some("src"));
    assert_eq!(message.command, "JOIN");
    assert_eq!(message.params, ["#a", "b"]);
    // Spaces inside the trailing parameter are its own.
    assert_eq!(ok("PRIVMSG #a :  two  ").params, ["#a", "  two  "]);
    // A colon inside a middle parameter does not start a trailing one.
    assert_eq!(ok("MODE #a b:c :d e").params, ["#a", "b:c", "d e"]);
}

#[test]
fn fifteen_parameters_and_no_more() {
    let fifteen: Vec<String> = (1..=15).map(|n| format!("p{n}")).collect();
    let line = format!("CMD {}", fifteen.join(" "));
    assert_eq!(ok(&line).params, fifteen);
    let trailing = format!("CMD {} :last one", fifteen[..14].join(" "));
    assert_eq!(ok(&trailing).params.len(), 15);
    assert_eq!(ok(&trailing).params[14], "last one");

    let sixteen = format!("{line} p16");
    assert_eq!(parse(&sixteen), Err(ParseError::TooManyParams));
    let sixteen_trailing = format!("{line} :p16 with spaces");
    assert_eq!(parse(&sixteen_trailing), Err(ParseError::TooManyParams));
    // Trailing spaces after the fifteenth are not a sixteenth.
    assert_eq!(ok(&format!("{line}   ")).params.len(), 15);
}

#[test]
fn line_limit_is_510_bytes_without_crlf() {
    let head = "PRIVMSG #chan :";
    let at_limit = format!("{head}{}", "x".repeat(IRC_BODY_BYTES_MAX - head.len()));
    assert_eq!(at_limit.len(), 510);
    assert_eq!(ok(&at_limit).params[1].len(), 510 - head.len());
    let over = format!("{at_limit}x");
    assert_eq!(over.len(), 511);
    assert_eq!(parse(&over), Err(ParseError::TooLong));

    // Tags have their own allowance: a full body behind them still fits.
    let tags = "a".repeat(IRC_TAGS_BYTES_MAX - 2);
    let tagged = format!("@{tags} {at_limit}");
    assert_eq!(tagged.len(), IRC_LINE_WITH_TAGS_BYTES_MAX);
    assert_eq!(ok(&tagged).tags, Some(tags.as_str()));
    assert_eq!(
        parse(&format!("@{tags}a {head}")),
        Err(ParseError::TagsTooLong)
    );
    assert_eq!(parse(&format!("@{tags} {over}")), Err(ParseError::TooLong));
}

#[test]
fn nul_cr_and_lf_are_refused_anywhere() {
    for (line, byte) in [
        ("PRIVMSG #a :hi\0there", 0),
        ("PRIVMSG #a :hi\rthere", b'\r'),
        ("PRIVMSG #a\n:hi", b'\n'),
        ("@a=\r PING", b'\r'),
        (":s\0 PING", 0),
        ("PING\n", b'\n'),
    ] {
        assert_eq!(
            parse(line),
            Err(ParseError::ForbiddenByte(byte)),
            "{line:?}"
        );
    }
}

#[test]
fn malformed_lines_say_why() {
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("    "), Err(ParseError::Empty));
    assert_eq!(parse(":irc.example.com"), Err(ParseError::MissingCommand));
    assert_eq!(
        parse(":irc.example.com   "),
        Err(ParseError::MissingCommand)
    );
    assert_eq!(parse("@id=1"), Err(ParseError::MissingCommand));
    assert_eq!(parse("@id=1 :src"), Err(ParseError::MissingCommand));
    for command in [
        "12",
        "1234",
        "PRIV-MSG",
        "PRIVMSG:x",
        "ÉTÉ",
        "0x1",
        "@",
        ":",
    ] {
        let line = format!("{command} #a");
        assert_eq!(parse(&line), Err(ParseError::InvalidCommand), "{line:?}");
    }
    // A lone `:` or `@` is an empty source or tags, not an error.
    assert_eq!(ok(": PING").prefix, Some(""));
    assert_eq!(ok("@ PING").tags, Some(""));
}

#[test]
fn non_ascii_text_is_kept() {
    let message = ok(":é PRIVMSG #café :héllo 😀");
    assert_eq!(message.prefix, Some("é"));
    assert_eq!(message.params, ["#café", "héllo 😀"]);
}

#[test]
fn ascii_case_mapping() {
    assert_eq!(CASEMAPPING, "ascii");
    assert_eq!(casefold("Alice[]"), "alice[]");
    assert!(matches!(casefold("alice"), Cow::Borrowed("alice")));
    // rfc1459's extra pairs stay distinct, non-ASCII is compared exactly.
    assert!(eq_casefold("#Chan", "#cHAN"));
    assert!(!eq_casefold("a[", "a{"));
    assert!(!eq_casefold("a\\", "a|"));
    assert!(!eq_casefold("É", "é"));
    assert_eq!(casefold("ÉA"), "Éa");
}

#[test]
fn replies_render_and_parse_back() {
    let welcome = Reply::new("irc.example.com", "001")
        .param("dan")
        .trailing("Welcome to chinwag, dan")
        .render()
        .unwrap();
    assert_eq!(
        welcome,
        ":irc.example.com 001 dan :Welcome to chinwag, dan\r\n"
    );
    let message = ok(welcome.strip_suffix("\r\n").unwrap());
    assert_eq!(message.prefix, Some("irc.example.com"));
    assert_eq!(message.params, ["dan", "Welcome to chinwag, dan"]);

    let mode = Reply::new("dan!d@localhost", "MODE")
        .param("#chan")
        .param("+o")
        .param("alice")
        .render()
        .unwrap();
    assert_eq!(mode, ":dan!d@localhost MODE #chan +o alice\r\n");

    // Trailing is always written with its colon, even empty.
    let pong = Reply::new("irc.example.com", "PONG")
        .param("irc.example.com")
        .trailing("")
        .render()
        .unwrap();
    assert_eq!(pong, ":irc.example.com PONG irc.example.com :\r\n");
    assert_eq!(ok(pong.trim_end()).params, ["irc.example.com", ""]);
}

#[test]
fn params_that_only_trailing_can_hold_are_refused_as_middles() {
    for (bad, why) in [
        ("", "empty"),
        ("two words", "space"),
        (":colon", "leading colon"),
        ("a\rb", "CR"),
        ("a\nb", "LF"),
        ("a\0b", "NUL"),
    ] {
        let reply = Reply::new("s", "PRIVMSG").param("#a").param(bad);
        assert_eq!(reply.render(), Err(RenderError::InvalidParam(1)), "{why}");
    }
    assert!(is_middle_param("a:b"));
}

#[test]
fn sources_and_commands_are_checked() {
    for source in ["", "a b", "a\r", "a\n", "a\0"] {
        let reply = Reply::new(source, "PING");
        assert_eq!(
            reply.render(),
            Err(RenderError::InvalidSource),
            "{source:?}"
        );
    }
    for command in ["", "12", "1234", "PRIV MSG", "A\r\nQUIT", "PING1"] {
        let reply = Reply::new("s", command);
        assert_eq!(
            reply.render(),
            Err(RenderError::InvalidCommand),
            "{command:?}"
        );
    }
}

#[test]
fn trailing_text_is_sanitized_not_refused() {
    let line = Reply::new("s", "PRIVMSG")
        .param("#a")
        .trailing("one\r\nQUIT :two\0three")
        .render()
        .unwrap();
    assert_eq!(line, ":s PRIVMSG #a :one  QUIT :two three\r\n");
    assert_eq!(line.matches(['\r', '\n', '\0']).count(), 2);
}

#[test]
fn too_many_params_are_refused() {
    let names: Vec<String> = (0..15).map(|n| format!("p{n}")).collect();
    let mut fifteen = Reply::new("s", "CMD");
    for name in &names {
        fifteen = fifteen.param(name);
    }
    assert!(fifteen.render().is_ok());
    assert_eq!(
        fifteen.clone().trailing("x").render(),
        Err(RenderError::TooManyParams)
    );
    assert_eq!(
        fifteen.param("p15").render(),
        Err(RenderError::TooManyParams)
    );
}

#[test]
fn long_trailing_is_cut_to_512_bytes_on_a_char_boundary() {
    // ":s PRIVMSG #a :" is 15 bytes, so 495 bytes of text fit.
    let fits = "x".repeat(495);
    let line = Reply::new("s", "PRIVMSG")
        .param("#a")
        .trailing(&fits)
        .render()
        .unwrap();
    assert_eq!(line.len(), IRC_LINE_BYTES_MAX);
    assert!(line.ends_with(&format!("{fits}\r\n")));

    // 494 bytes of x then a 4-byte emoji: the emoji would end at 513.
    let split = format!("{}😀tail", "x".repeat(494));
    let line = Reply::new("s", "PRIVMSG")
        .param("#a")
        .trailing(&split)
        .render()
        .unwrap();
    assert_eq!(line.len(), IRC_LINE_BYTES_MAX - 1);
    assert!(line.ends_with("x\r\n"));
    assert_eq!(ok(line.trim_end_matches("\r\n")).params[1], "x".repeat(494));

    let huge = "é".repeat(1000);
    let line = Reply::new("s", "PRIVMSG")
        .param("#a")
        .trailing(&huge)
        .render()
        .unwrap();
    assert!(line.len() <= IRC_LINE_BYTES_MAX);
    assert!(line.len() >= IRC_LINE_BYTES_MAX - 1);
}

#[test]
fn a_head_over_the_limit_is_refused() {
    let long = "n".repeat(IRC_BODY_BYTES_MAX);
    let middle = Reply::new("s", "PRIVMSG").param(&long);
    assert_eq!(middle.render(), Err(RenderError::TooLong));
    assert_eq!(
        middle.clone().trailing("x").render(),
        Err(RenderError::TooLong)
    );
    // ":s PRIVMSG " is 11 bytes: a middle of 499 exactly fills 510.
    let exact = "n".repeat(IRC_BODY_BYTES_MAX - 11);
    let line = Reply::new("s", "PRIVMSG").param(&exact).render().unwrap();
    assert_eq!(line.len(), IRC_LINE_BYTES_MAX);
    // With a trailing, " :" would take it to 512 without CR LF.
    let with_trailing = Reply::new("s", "PRIVMSG").param(&exact).trailing("");
    assert_eq!(with_trailing.render(), Err(RenderError::TooLong));
}

#[test]
fn errors_display_their_reason() {
    assert_eq!(format!("{}", ParseError::TooLong), "line over 512 bytes");
    assert_eq!(
        format!("{}", ParseError::ForbiddenByte(b'\r')),
        "line holds byte 0x0d (NUL, CR or LF)"
    );
    assert_eq!(
        format!("{}", RenderError::InvalidParam(2)),
        "invalid middle parameter 2"
    );
}
