//! The text grammar of PROTOCOL.md, as pure functions.
//!
//! Parsing: login names, room names, `dest, ...: text` message lines and
//! `/` commands. Rendering: every kind of line a server sends (`welcome `,
//! `from `, room news, `renamed `, `names `, `rooms:`, `error: `).
//! Nothing here knows about connections or who is online; the broker makes
//! those decisions with what these functions return.
//!
//! Names are Unicode, so they are compared the way people read them: in
//! NFC (a decomposed `e` + U+0301 is the same name as `é`), with invisible
//! characters refused, and with a [`skeleton`] that makes look-alikes (a
//! Cyrillic `а` for a Latin `a`, fullwidth or mathematical letters) count
//! as the same name when the broker decides whether a name is taken. The
//! Unicode data comes from maintained crates, not hand-written tables.

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use foldhash::fast::FixedState;
use hashbrown::HashSet;
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

use crate::codec::FrameError;

/// The most characters (Unicode scalar values, after NFC) a login name may have.
pub const MAX_NAME_CHARS: usize = 32;

/// Whether `c` may appear in a login name, `first` or later: letters and
/// digits of any script, `-`, `_` and `.`, and combining marks after the
/// first character (so names in scripts that need them can be written),
/// but nothing invisible (fillers such as U+3164 are letters that show as
/// blank space, and default-ignorable).
fn is_name_char(c: char, first: bool) -> bool {
    // Every message looks up its destinations' names, so the common case
    // skips the Unicode tables: no ASCII character is a mark or invisible.
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    }
    let visible_kind =
        c.is_alphanumeric() || matches!(c, '-' | '_' | '.') || (!first && is_combining_mark(c));
    visible_kind && c.identifier_type() != Some(IdentifierType::Default_Ignorable)
}

/// Whether `name` is a valid login name exactly as given: trimmed, in NFC,
/// 1 to `MAX_NAME_CHARS` characters, each one allowed.
pub fn is_valid_name(name: &str) -> bool {
    has_name_chars(name) && is_nfc(name)
}

/// Whether `name` has 1 to `MAX_NAME_CHARS` characters, each one allowed.
fn has_name_chars(name: &str) -> bool {
    let mut count = 0;
    for c in name.chars() {
        if count == MAX_NAME_CHARS || !is_name_char(c, count == 0) {
            return false;
        }
        count += 1;
    }
    count >= 1
}

/// Whether `text` is in Normalization Form C. Quick for the usual cases:
/// ASCII always is, and otherwise only a "maybe" costs a full check.
fn is_nfc(text: &str) -> bool {
    if text.is_ascii() {
        return true;
    }
    match is_nfc_quick(text.chars()) {
        IsNormalized::Yes => true,
        IsNormalized::No => false,
        IsNormalized::Maybe => text.chars().eq(text.nfc()),
    }
}

/// `text` in NFC, borrowed when it already is.
fn to_nfc(text: &str) -> Cow<'_, str> {
    if is_nfc(text) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.nfc().collect())
    }
}

/// A name as written (already trimmed), in NFC, if it is a valid name.
fn canonical_name(trimmed: &str) -> Option<Cow<'_, str>> {
    let name = to_nfc(trimmed);
    has_name_chars(&name).then_some(name)
}

/// The UTS #39 confusable skeleton of a name: two names with the same
/// skeleton look alike (`alice`, `аlice` with a Cyrillic `а`, `ａｌｉｃｅ`),
/// so only one of them may be held at a time. Case is kept: names are
/// case-sensitive, as the tutorial's are.
pub fn skeleton(name: &str) -> String {
    unicode_security::skeleton(name).collect()
}

/// Whether `room` is a valid room name exactly as given: `#` and a valid
/// name.
pub fn is_valid_room(room: &str) -> bool {
    room.strip_prefix('#').is_some_and(is_valid_name)
}

/// A room as written (already trimmed), in NFC, if it is `#` and a valid
/// name. The IRC front end reads channels with it too.
pub fn parse_room(trimmed: &str) -> Option<Cow<'_, str>> {
    let name = trimmed.strip_prefix('#')?;
    match canonical_name(name)? {
        Cow::Borrowed(_) => Some(Cow::Borrowed(trimmed)),
        Cow::Owned(name) => Some(Cow::Owned(format!("#{name}"))),
    }
}

/// A destination as written (already trimmed), in NFC: a room if it starts
/// with `#`, a name otherwise. The two never collide: a name holds no `#`.
/// The IRC front end reads message targets with it too.
pub fn parse_destination(trimmed: &str) -> Option<Cow<'_, str>> {
    if trimmed.starts_with('#') {
        parse_room(trimmed)
    } else {
        canonical_name(trimmed)
    }
}

/// Whether a destination, as parsed, names a room rather than a connection.
pub fn is_room(destination: &str) -> bool {
    destination.starts_with('#')
}

/// Whether a line is blank (empty or Unicode whitespace only) and so ignored.
pub fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// Reads a login line: the name it asks for, trimmed and in NFC, if it is
/// valid.
pub fn parse_login(line: &str) -> Option<Cow<'_, str>> {
    canonical_name(line.trim())
}

/// Whether `c` is refused in message text: a control character (C0 but
/// TAB, DEL, C1) or a bidirectional control (U+202A-U+202E,
/// U+2066-U+2069). Each can rewrite what the recipient's terminal shows:
/// return to the start of the line and print a forged `from `, clear it,
/// set the window title or the clipboard, or reorder what follows.
pub fn is_forbidden_in_text(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `text` may hold a character `is_forbidden_in_text` refuses:
/// whether it has a byte that is a control or not ASCII. Every message's
/// text is scanned, so this is the fast pass: it folds each chunk without
/// stopping early, which lets the compiler compare many bytes at once, and
/// only text that fails it is decoded and checked character by character.
fn may_hold_forbidden(text: &str) -> bool {
    const CHUNK_BYTES: usize = 32;
    let suspect = |byte: u8| (byte < b' ' && byte != b'\t') | (byte >= 0x7f);
    let chunk_suspect = |chunk: &[u8]| chunk.iter().fold(false, |seen, &byte| seen | suspect(byte));
    text.as_bytes().chunks(CHUNK_BYTES).any(chunk_suspect)
}

/// A parsed message line: distinct destinations (names and rooms, in NFC)
/// in the order first listed, and the trimmed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub destinations: Vec<Cow<'a, str>>,
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
    /// The text holds a control character (see `is_forbidden_in_text`).
    ControlCharacter,
}

/// Parses `<dest>[, <dest>...]: <text>`.
pub fn parse_message(line: &str) -> Result<Message<'_>, MessageError> {
    let (head, text) = line.split_once(':').ok_or(MessageError::MissingColon)?;
    let mut destinations: Vec<Cow<'_, str>> = Vec::new();
    for dest in head.split(',').map(str::trim) {
        if dest.is_empty() {
            return Err(MessageError::EmptyDestination);
        }
        let dest = parse_destination(dest).ok_or(MessageError::InvalidDestination)?;
        destinations.push(dest);
    }
    let text = text.trim();
    if may_hold_forbidden(text) && text.chars().any(is_forbidden_in_text) {
        return Err(MessageError::ControlCharacter);
    }
    dedupe_in_order(&mut destinations);
    Ok(Message { destinations, text })
}

/// A command line: `/` and a word, then its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// `/join <room>`
    Join(Cow<'a, str>),
    /// `/part <room>`
    Part(Cow<'a, str>),
    /// `/names <room>`
    Names(Cow<'a, str>),
    /// `/rooms`
    Rooms,
    /// `/nick <name>`: the name as typed, judged by the rules of login.
    Nick(&'a str),
}

/// Why a command line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// No such command.
    Unknown,
    /// A known command with missing, extra or invalid arguments: its usage.
    Usage(&'static str),
}

/// Whether a line (after login) is a command rather than a message.
pub fn is_command(line: &str) -> bool {
    line.trim_start().starts_with('/')
}

/// Parses a command line (one that [`is_command`]).
pub fn parse_command(line: &str) -> Result<Command<'_>, CommandError> {
    let mut words = line.split_whitespace();
    let word = words.next().unwrap_or_default();
    let arguments: Vec<&str> = words.collect();
    let (usage, make): (&'static str, fn(&str) -> Option<Command<'_>>) = match word {
        "/join" => ("/join <room>", |room| parse_room(room).map(Command::Join)),
        "/part" => ("/part <room>", |room| parse_room(room).map(Command::Part)),
        "/names" => ("/names <room>", |room| parse_room(room).map(Command::Names)),
        "/nick" => ("/nick <name>", |name| Some(Command::Nick(name))),
        "/rooms" if arguments.is_empty() => return Ok(Command::Rooms),
        "/rooms" => return Err(CommandError::Usage("/rooms")),
        _ => return Err(CommandError::Unknown),
    };
    match arguments[..] {
        [argument] => make(argument).ok_or(CommandError::Usage(usage)),
        _ => Err(CommandError::Usage(usage)),
    }
}

/// Lists up to this long are deduplicated by scanning: cheaper than hashing
/// for the few names a chat line usually lists.
const SCAN_DEDUPE_MAX: usize = 8;

/// Keeps the first occurrence of each name, in listed order. A line may
/// list thousands of names, so long lists use a set: a scan per name would
/// let one line cost millions of comparisons.
pub fn dedupe_in_order(names: &mut Vec<Cow<'_, str>>) {
    if names.len() <= SCAN_DEDUPE_MAX {
        let mut kept = 0;
        for i in 0..names.len() {
            if !names[..kept].contains(&names[i]) {
                names.swap(kept, i);
                kept += 1;
            }
        }
        names.truncate(kept);
    } else {
        // Only membership is asked of the set, so its hash order never
        // reaches an output; the fixed seed keeps even timing repeatable.
        let mut seen = HashSet::with_capacity_and_hasher(names.len(), FixedState::default());
        names.retain(|name| seen.insert(name.clone()));
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
    Command(CommandError),
    NotInRoom(String),
    AlreadyInRoom(String),
    TooManyRooms(usize),
    RoomFull(String),
    NoSuchRoom(String),
    ShuttingDown,
    ServerFull,
    TooManyFromAddress,
    LoginTimedOut,
    /// An IRC client said QUIT.
    Quit,
    /// An IRC client did not answer a PING.
    PingTimeout,
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
                    MessageError::ControlCharacter => {
                        return f.write_str("control characters are not allowed in messages");
                    }
                };
                write!(f, "expected \"<dest>, ...: <text>\" ({detail})")
            }
            ErrorReply::Command(CommandError::Unknown) => {
                f.write_str("unknown command (try /join, /part, /names, /rooms, /nick)")
            }
            ErrorReply::Command(CommandError::Usage(usage)) => write!(f, "usage: {usage}"),
            ErrorReply::NotInRoom(room) => write!(f, "not in room: {room}"),
            ErrorReply::AlreadyInRoom(room) => write!(f, "already in room: {room}"),
            ErrorReply::TooManyRooms(max) => write!(f, "too many rooms (at most {max})"),
            ErrorReply::RoomFull(room) => write!(f, "room full: {room}"),
            ErrorReply::NoSuchRoom(room) => write!(f, "no such room: {room}"),
            ErrorReply::ShuttingDown => f.write_str("server shutting down"),
            ErrorReply::ServerFull => f.write_str("server full"),
            ErrorReply::TooManyFromAddress => f.write_str("too many connections from your address"),
            ErrorReply::LoginTimedOut => f.write_str("login timed out"),
            ErrorReply::Quit => f.write_str("closing link (you quit)"),
            ErrorReply::PingTimeout => f.write_str("ping timeout"),
        }
    }
}

/// One rendered server line, terminator included, in a shared buffer. A
/// delivery is rendered once, into one allocation, and every recipient's
/// queue holds a reference to the same bytes: rendering sits on the broker's
/// serial step, so it must not copy.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Line(Arc<[u8]>);

impl Line {
    /// The line's bytes, as they go on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The line as text. Every line is rendered from text, so this cannot
    /// fail; it checks anyway, being meant for tests and logs, not the hot path.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).expect("lines are rendered from text")
    }

    /// Length in bytes, terminator included: what it costs a queue.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the line has no bytes (never true of a rendered line).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The concatenation of `parts`, in one allocation of exactly its size.
    fn concat(parts: &[&str]) -> Line {
        let len = parts.iter().map(|part| part.len()).sum();
        // An exact-size iterator collects into one allocation; it is then
        // filled in place while it has a single owner.
        let mut bytes: Arc<[u8]> = core::iter::repeat_n(0, len).collect();
        let buffer = Arc::get_mut(&mut bytes).expect("a new buffer has one owner");
        let mut at = 0;
        for part in parts {
            buffer[at..at + part.len()].copy_from_slice(part.as_bytes());
            at += part.len();
        }
        Line(bytes)
    }
}

impl From<&str> for Line {
    fn from(text: &str) -> Line {
        Line(Arc::from(text.as_bytes()))
    }
}

impl From<String> for Line {
    fn from(text: String) -> Line {
        Line(Arc::from(text.into_bytes()))
    }
}

impl fmt::Debug for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `welcome <name>\n`
pub fn render_welcome(name: &str) -> Line {
    Line::concat(&["welcome ", name, "\n"])
}

/// `from <sender>: <text>\n`
pub fn render_delivery(sender: &str, text: &str) -> Line {
    Line::concat(&["from ", sender, ": ", text, "\n"])
}

/// `from <sender> to <room>: <text>\n`
pub fn render_room_delivery(sender: &str, room: &str, text: &str) -> Line {
    Line::concat(&["from ", sender, " to ", room, ": ", text, "\n"])
}

/// Why a member left a room, as its news says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    Parted,
    Disconnected,
    SlowConsumer,
}

impl Departure {
    /// How the news says it: `parted`, `disconnected`, `slow consumer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Parted => "parted",
            Departure::Disconnected => "disconnected",
            Departure::SlowConsumer => "slow consumer",
        }
    }
}

/// `<room>: <name> joined\n`
pub fn render_joined(room: &str, name: &str) -> Line {
    Line::concat(&[room, ": ", name, " joined\n"])
}

/// `<room>: <name> left (<why>)\n`
pub fn render_left(room: &str, name: &str, why: Departure) -> Line {
    Line::concat(&[room, ": ", name, " left (", why.as_str(), ")\n"])
}

/// `<room>: everyone left (server shutting down)\n`
pub fn render_everyone_left(room: &str) -> Line {
    Line::concat(&[room, ": everyone left (server shutting down)\n"])
}

/// `renamed <old> to <new>\n`
pub fn render_renamed(old: &str, new: &str) -> Line {
    Line::concat(&["renamed ", old, " to ", new, "\n"])
}

/// `names <room>: <name> <name> ...\n`, the names as given.
pub fn render_names<'a>(room: &str, names: impl IntoIterator<Item = &'a str>) -> Line {
    render_list(format!("names {room}:"), names)
}

/// `rooms: <room> <room> ...\n`, the rooms as given (`rooms:` for none).
pub fn render_rooms<'a>(rooms: impl IntoIterator<Item = &'a str>) -> Line {
    render_list(String::from("rooms:"), rooms)
}

/// `head`, then each of `items` after a space, then LF.
fn render_list<'a>(mut text: String, items: impl IntoIterator<Item = &'a str>) -> Line {
    for item in items {
        text.push(' ');
        text.push_str(item);
    }
    text.push('\n');
    Line::from(text)
}

/// `error: <reason>\n`
pub fn render_error(error: &ErrorReply) -> Line {
    Line::from(format!("error: {error}\n"))
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
        assert_eq!(parse_login("  alice\t").as_deref(), Some("alice"));
        assert_eq!(parse_login("\u{3000}alice\u{a0}").as_deref(), Some("alice"));
        assert_eq!(parse_login("al ice"), None);
        assert_eq!(parse_login("   "), None);
    }

    #[test]
    fn names_are_taken_in_nfc() {
        assert_eq!(parse_login("e\u{301}").as_deref(), Some("\u{e9}"));
        assert_eq!(
            parse_login("\u{212b}").as_deref(),
            Some("\u{c5}"),
            "ANGSTROM SIGN"
        );
        assert!(!is_valid_name("e\u{301}"), "a name as held is already NFC");
        let message = parse_message("e\u{301}, \u{e9}: hi").unwrap();
        assert_eq!(message.destinations, ["\u{e9}"], "one destination, in NFC");
    }

    #[test]
    fn names_may_not_be_invisible_or_start_with_a_mark() {
        for name in [
            "alice\u{3164}",
            "\u{3164}",
            "al\u{200b}ice",
            "\u{ffa0}",
            "a\u{ad}b",
        ] {
            assert_eq!(parse_login(name), None, "{name:?}");
        }
        assert_eq!(parse_login("\u{301}a"), None);
        // Marks that have no precomposed form stay valid after a letter.
        for name in ["नमस्ते", "zoë", "名前", "Ünïcødé", "x\u{20e3}"] {
            assert!(parse_login(name).is_some(), "{name:?}");
        }
    }

    #[test]
    fn look_alike_names_share_a_skeleton_and_case_does_not() {
        for look_alike in ["\u{430}lice", "ａｌｉｃｅ", "𝐚𝐥𝐢𝐜𝐞"] {
            assert_eq!(skeleton(look_alike), skeleton("alice"), "{look_alike:?}");
        }
        assert_ne!(skeleton("Alice"), skeleton("alice"));
        assert_ne!(skeleton("bob"), skeleton("alice"));
    }

    #[test]
    fn control_characters_in_text_are_refused_but_tab_is_not() {
        for text in [
            "x\rfrom alice: pw?",
            "\x1b[2K",
            "\x1b]0;title\x07",
            "a\x7fb",
            "a\u{85}b",
            "a\u{9b}b",
            "\u{202e}txt",
            "\u{2066}",
        ] {
            let line = format!("bob: {text}");
            assert_eq!(
                parse_message(&line),
                Err(MessageError::ControlCharacter),
                "{text:?}"
            );
        }
        assert_eq!(parse_message("bob: a\tb").unwrap().text, "a\tb");
        let reply = render_error(&ErrorReply::Malformed(MessageError::ControlCharacter));
        assert_eq!(
            reply.as_str(),
            "error: control characters are not allowed in messages\n"
        );
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
        assert_eq!(render_welcome("alice").as_str(), "welcome alice\n");
        assert_eq!(render_delivery("alice", "hi").as_str(), "from alice: hi\n");
        assert_eq!(render_delivery("alice", "").as_str(), "from alice: \n");
        let errors = [
            (ErrorReply::Frame(FrameError::LineTooLong), "line too long"),
            (ErrorReply::Frame(FrameError::InvalidUtf8), "invalid utf-8"),
            (ErrorReply::InvalidName, "invalid name"),
            (ErrorReply::NameTaken("bob".into()), "name taken: bob"),
            (ErrorReply::NoSuchPeer("eve".into()), "no such peer: eve"),
            (ErrorReply::ShuttingDown, "server shutting down"),
        ];
        for (error, text) in errors {
            assert_eq!(render_error(&error).as_str(), format!("error: {text}\n"));
        }
        let malformed = render_error(&ErrorReply::Malformed(MessageError::MissingColon));
        assert!(
            malformed
                .as_str()
                .starts_with("error: expected \"<dest>, ...: <text>\"")
        );
    }
}
