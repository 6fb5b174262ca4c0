//! Property tests of the IRC grammar (`chinwag::irc`), with the checks the
//! `irc` fuzz target runs (`check_irc_parse`, `check_irc_render` in
//! `tests/model/fuzz_checks.rs`):
//!
//! - parsing never panics, on any text or on text built from the pieces
//!   IRC parsing gets wrong (`@`, `:`, runs of spaces, NUL, CR, LF,
//!   numerics, lines at the 510-byte limit and either side of it, more
//!   than 15 parameters, multibyte characters), and what it accepts obeys
//!   the grammar and renders back to the same message;
//! - rendering a reply refuses exactly what the builder's rules refuse,
//!   and anything it renders is at most 512 bytes, has no NUL, CR or LF
//!   but its final CR LF, and parses back to what was given (the trailing
//!   text sanitized, and cut only where the next character would not fit).
//!
//! `cargo test` runs `DEFAULT_CASES` cases per property; set
//! `PROPTEST_CASES` for a deeper run. proptest records a failing case's
//! seed in `tests/proptest-regressions/irc_properties.txt`; commit it, and
//! every later run replays the case first.

mod model;
mod proptest_config;

use chinwag::irc::IRC_BODY_BYTES_MAX;
use model::fuzz_checks::{check_irc_parse, check_irc_render};
use proptest::prelude::*;

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/proptest-regressions/irc_properties.txt"
);

/// Cases per property per `cargo test` run, unless `PROPTEST_CASES` asks
/// for another number; the checks are cheap, so this takes well under a
/// second in a debug build.
const DEFAULT_CASES: u32 = 2000;

fn config() -> ProptestConfig {
    proptest_config::config(REGRESSIONS, DEFAULT_CASES)
}

/// A piece of a line: mostly grammar, sometimes what breaks it.
fn line_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(" ".to_string()),
        2 => Just("   ".to_string()),
        3 => Just(":".to_string()),
        2 => Just("@".to_string()),
        2 => prop::sample::select(vec![
            "PRIVMSG", "privmsg", "CAP", "PING", "001", "12", "1234", "JOIN", "x-y",
        ])
        .prop_map(str::to_string),
        3 => "[a-z#!@.=;*+-]{1,6}",
        2 => prop::sample::select(vec!["\0", "\r", "\n", "\t", "é", "😀", "\u{85}"])
            .prop_map(str::to_string),
        1 => (IRC_BODY_BYTES_MAX - 20..=IRC_BODY_BYTES_MAX + 2).prop_map(|len| "x".repeat(len)),
    ]
}

/// A line built from pieces; one filled to the limit or a byte either
/// side of it, with or without tags; or a run of 14 to 17 parameters.
fn irc_line() -> impl Strategy<Value = String> {
    let near_limit = (
        prop::collection::vec(line_piece(), 0..6),
        IRC_BODY_BYTES_MAX - 1..=IRC_BODY_BYTES_MAX + 1,
        prop::option::of("@[a-z=;]{0,8} "),
        "[xé]",
    )
        .prop_map(|(pieces, len, tags, fill)| {
            let mut body = format!("PRIVMSG #a :{}", pieces.concat());
            while body.len() < len {
                body.push_str(if body.len() + fill.len() <= len {
                    &fill
                } else {
                    "x"
                });
            }
            format!("{}{body}", tags.unwrap_or_default())
        });
    prop_oneof![
        6 => prop::collection::vec(line_piece(), 0..24).prop_map(|pieces| pieces.concat()),
        2 => near_limit,
        1 => (14..=17usize, any::<bool>()).prop_map(|(count, trailing)| {
            let params: Vec<String> = (0..count).map(|n| format!("p{n}")).collect();
            let colon = if trailing { ":" } else { "" };
            format!("CMD {} {colon}last", params.join(" "))
        }),
    ]
}

/// A source: mostly a valid one, sometimes empty or with a space or CR.
fn source() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z][a-z0-9.!@-]{0,20}",
        1 => "[ a-z\\r\\x00é]{0,4}",
    ]
}

/// A command: mostly letters or a numeric, sometimes neither.
fn command() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z]{1,8}",
        4 => "[0-9]{3}",
        1 => "[A-Z0-9 :\\r]{0,5}",
    ]
}

/// A middle parameter: mostly valid (colons inside, non-ASCII, long),
/// sometimes one only a trailing parameter may be.
fn middle() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[#&a-z0-9+*,=!@.]([a-z0-9:é😀]{0,10})",
        1 => "[a-z]{1,40}".prop_map(|word| word.repeat(6)),
        1 => prop::sample::select(vec!["", ":x", "a b", "a\rb", "a\nb", "a\0b"])
            .prop_map(str::to_string),
    ]
}

/// A trailing parameter: any text, short or past the limit, with the
/// characters it may hold and those it must be cleaned of.
fn trailing() -> impl Strategy<Value = Option<String>> {
    let text = prop_oneof![
        4 => "[ :a-zé😀\\x00\\r\\n\\t]{0,20}",
        2 => any::<String>(),
        1 => ("[a-z ]{0,3}", 400..=520usize, "[xé😀]")
            .prop_map(|(start, len, fill)| format!("{start}{}", fill.repeat(len))),
    ];
    prop::option::weighted(0.8, text)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_any_string_never_panics_and_obeys_the_grammar(line in any::<String>()) {
        check_irc_parse(&line);
    }

    #[test]
    fn parsing_any_bytes_as_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_irc_parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parsing_lines_near_the_grammar_obeys_it(line in irc_line()) {
        check_irc_parse(&line);
    }

    #[test]
    fn rendered_replies_parse_back(
        source in source(),
        command in command(),
        middles in prop::collection::vec(middle(), 0..=16),
        trailing in trailing(),
    ) {
        let middles: Vec<&str> = middles.iter().map(String::as_str).collect();
        check_irc_render(&source, &command, &middles, trailing.as_deref());
    }
}
