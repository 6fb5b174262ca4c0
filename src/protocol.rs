//! The text grammar of PROTOCOL.md, as pure functions.
//!
//! Parsing: login names and `dest, ...: text` message lines. Rendering: the
//! three kinds of line a server sends (`welcome `, `from `, `error: `).
//! Nothing here knows about connections or who is online; the broker makes
//! those decisions with what these functions return.

use std::collections::HashSet;
use std::fmt;

use foldhash::fast::FixedState;

use crate::codec::FrameError;

/// The most characters (Unicode scalar values) a login name may have.
pub const MAX_NAME_CHARS: usize = 32;

/// Whether `c` may appear in a login name.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Whether `name` (already trimmed) is a valid login name.
pub fn is_valid_name(name: &str) -> bool {
    let mut count = 0;
    for c in name.chars() {
        count += 1;
        if count > MAX_NAME_CHARS || !is_name_char(c) {
            return false;
        }
    }
    count >= 1
}

/// Whether a line is blank (empty or Unicode whitespace only) and so ignored.
pub fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// Reads a login line: the name it asks for, trimmed, if it is valid.
pub fn parse_login(line: &str) -> Option<&str> {
    let name = line.trim();
    is_valid_name(name).then_some(name)
}

/// A parsed message line: distinct destinations in the order first listed,
/// and the trimmed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub destinations: Vec<&'a str>,
    pub text: &'a str,
}

/// Why a message line was refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError {
    /// The line has no `:` separating destinations from text.
    MissingColon,
    /// A destination is empty (`: hi`, `bob,,carol: hi`, `bob, : hi`).
    EmptyDestination,
    /// A destination is not a valid login name.
    InvalidDestination,
}

/// Parses `<dest>[, <dest>...]: <text>`.
pub fn parse_message(line: &str) -> Result<Message<'_>, MessageError> {
    let (head, text) = line.split_once(':').ok_or(MessageError::MissingColon)?;
    let mut destinations: Vec<&str> = Vec::new();
    for dest in head.split(',').map(str::trim) {
        if dest.is_empty() {
            return Err(MessageError::EmptyDestination);
        }
        if !is_valid_name(dest) {
            return Err(MessageError::InvalidDestination);
        }
        destinations.push(dest);
    }
    dedupe_in_order(&mut destinations);
    Ok(Message {
        destinations,
        text: text.trim(),
    })
}

/// Lists up to this long are deduplicated by scanning: cheaper than hashing
/// for the few names a chat line usually lists.
const SCAN_DEDUPE_MAX: usize = 8;

/// Keeps the first occurrence of each name, in listed order. A line may
/// list thousands of names, so long lists use a set: a scan per name would
/// let one line cost millions of comparisons.
fn dedupe_in_order(names: &mut Vec<&str>) {
    if names.len() <= SCAN_DEDUPE_MAX {
        let mut kept = 0;
        for i in 0..names.len() {
            if !names[..kept].contains(&names[i]) {
                names[kept] = names[i];
                kept += 1;
            }
        }
        names.truncate(kept);
    } else {
        // Only membership is asked of the set, so its hash order never
        // reaches an output; the fixed seed keeps even timing repeatable.
        let mut seen = HashSet::with_capacity_and_hasher(names.len(), FixedState::default());
        names.retain(|name| seen.insert(*name));
    }
}

/// Every reason the server refuses something or closes a connection; each
/// renders as the text after `error: `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorReply {
    Frame(FrameError),
    InvalidName,
    NameTaken(String),
    NoSuchPeer(String),
    Malformed(MessageError),
    ShuttingDown,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorReply::Frame(error) => write!(f, "{error}"),
            ErrorReply::InvalidName => f.write_str("invalid name"),
            ErrorReply::NameTaken(name) => write!(f, "name taken: {name}"),
            ErrorReply::NoSuchPeer(name) => write!(f, "no such peer: {name}"),
            ErrorReply::Malformed(why) => {
                let detail = match why {
                    MessageError::MissingColon => "missing ':'",
                    MessageError::EmptyDestination => "empty destination",
                    MessageError::InvalidDestination => "invalid destination name",
                };
                write!(f, "expected \"<dest>, ...: <text>\" ({detail})")
            }
            ErrorReply::ShuttingDown => f.write_str("server shutting down"),
        }
    }
}

/// `welcome <name>\n`
pub fn render_welcome(name: &str) -> String {
    format!("welcome {name}\n")
}

/// `from <sender>: <text>\n`
pub fn render_delivery(sender: &str, text: &str) -> String {
    let mut line = String::with_capacity("from : \n".len() + sender.len() + text.len());
    line.push_str("from ");
    line.push_str(sender);
    line.push_str(": ");
    line.push_str(text);
    line.push('\n');
    line
}

/// `error: <reason>\n`
pub fn render_error(error: &ErrorReply) -> String {
    format!("error: {error}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_alphanumeric_dash_underscore_dot() {
        for name in ["alice", "Bob", "a", "x-y_z.0", "Ünïcødé", "名前", "٣"] {
            assert!(is_valid_name(name), "{name:?} should be valid");
        }
        for name in ["", "a b", "a:b", "a,b", "a!", "😀", "tab\there"] {
            assert!(!is_valid_name(name), "{name:?} should be invalid");
        }
    }

    #[test]
    fn names_are_limited_to_32_characters_not_bytes() {
        assert!(is_valid_name(&"a".repeat(32)));
        assert!(!is_valid_name(&"a".repeat(33)));
        assert!(is_valid_name(&"é".repeat(32)), "64 bytes, 32 chars");
        assert!(!is_valid_name(&"é".repeat(33)));
    }

    #[test]
    fn login_trims_unicode_whitespace() {
        assert_eq!(parse_login("  alice\t"), Some("alice"));
        assert_eq!(parse_login("\u{3000}alice\u{a0}"), Some("alice"));
        assert_eq!(parse_login("al ice"), None);
        assert_eq!(parse_login("   "), None);
    }

    #[test]
    fn blank_lines_are_whitespace_only() {
        assert!(is_blank(""));
        assert!(is_blank(" \t\u{2003}"));
        assert!(!is_blank(" x "));
    }

    #[test]
    fn message_splits_on_first_colon_and_trims() {
        let message = parse_message(" bob ,carol:  hi: there  ").unwrap();
        assert_eq!(message.destinations, ["bob", "carol"]);
        assert_eq!(message.text, "hi: there");
        assert_eq!(parse_message("bob:").unwrap().text, "");
    }

    #[test]
    fn duplicate_destinations_count_once_in_first_listed_order() {
        let message = parse_message("carol, bob, carol ,bob: x").unwrap();
        assert_eq!(message.destinations, ["carol", "bob"]);
    }

    #[test]
    fn long_destination_lists_are_deduplicated_in_first_listed_order() {
        let names: Vec<String> = (0..40).map(|i| format!("n{}", i % 13)).collect();
        let line = format!("{}: x", names.join(", "));
        let message = parse_message(&line).unwrap();
        let expected: Vec<String> = (0..13).map(|i| format!("n{i}")).collect();
        assert_eq!(message.destinations, expected);
    }

    #[test]
    fn malformed_messages_name_their_fault() {
        assert_eq!(parse_message("hello"), Err(MessageError::MissingColon));
        assert_eq!(parse_message(": hi"), Err(MessageError::EmptyDestination));
        assert_eq!(
            parse_message("bob,: hi"),
            Err(MessageError::EmptyDestination)
        );
        assert_eq!(
            parse_message("bob,,x: hi"),
            Err(MessageError::EmptyDestination)
        );
        assert_eq!(
            parse_message("b b: hi"),
            Err(MessageError::InvalidDestination)
        );
        let long = format!("{}: hi", "a".repeat(33));
        assert_eq!(parse_message(&long), Err(MessageError::InvalidDestination));
    }

    #[test]
    fn server_lines_have_fixed_prefixes() {
        assert_eq!(render_welcome("alice"), "welcome alice\n");
        assert_eq!(render_delivery("alice", "hi"), "from alice: hi\n");
        assert_eq!(render_delivery("alice", ""), "from alice: \n");
        let errors = [
            (ErrorReply::Frame(FrameError::LineTooLong), "line too long"),
            (ErrorReply::Frame(FrameError::InvalidUtf8), "invalid utf-8"),
            (ErrorReply::InvalidName, "invalid name"),
            (ErrorReply::NameTaken("bob".into()), "name taken: bob"),
            (ErrorReply::NoSuchPeer("eve".into()), "no such peer: eve"),
            (ErrorReply::ShuttingDown, "server shutting down"),
        ];
        for (error, text) in errors {
            assert_eq!(render_error(&error), format!("error: {text}\n"));
        }
        let malformed = render_error(&ErrorReply::Malformed(MessageError::MissingColon));
        assert!(malformed.starts_with("error: expected \"<dest>, ...: <text>\""));
    }
}
