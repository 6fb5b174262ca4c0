//! PROTOCOL.md's line grammar and server lines, written again from the
//! document alone, as plainly as possible, for the reference model.
//!
//! This deliberately does not call `chinwag::protocol`: the model must be an
//! independent reading of the protocol, or it would only check the broker
//! against itself. Clarity beats speed here.

use chinwag::codec::FrameError;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

/// The most characters a login name may have.
const MAX_NAME_CHARS: usize = 32;

/// Blank lines (empty or whitespace only) are ignored.
pub fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// A room (already in NFC) is `#` followed by a valid name.
pub fn is_room(text: &str) -> bool {
    text.strip_prefix('#').is_some_and(is_name)
}

/// A valid name (already in NFC) is 1 to 32 characters, each alphanumeric,
/// `-`, `_`, `.` or (not first) a combining mark, and none of them
/// Default_Ignorable.
pub fn is_name(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let allowed = |(index, c): (usize, &char)| {
        let kind = c.is_alphanumeric()
            || *c == '-'
            || *c == '_'
            || *c == '.'
            || (index > 0 && is_combining_mark(*c));
        kind && c.identifier_type() != Some(IdentifierType::Default_Ignorable)
    };
    !chars.is_empty() && chars.len() <= MAX_NAME_CHARS && chars.iter().enumerate().all(allowed)
}

/// A name as written: trimmed, then in NFC.
fn normalized(written: &str) -> String {
    written.trim().nfc().collect()
}

/// The name a login line asks for: the line trimmed and in NFC, if that is
/// a valid name.
pub fn login_name(line: &str) -> Option<String> {
    let name = normalized(line);
    if is_name(&name) { Some(name) } else { None }
}

/// Whether two names look alike: their UTS #39 confusable skeletons are
/// equal.
pub fn look_alike(a: &str, b: &str) -> bool {
    unicode_security::skeleton(a).eq(unicode_security::skeleton(b))
}

/// A control character, as PROTOCOL.md lists them: C0 but TAB, DEL, C1, and
/// the bidirectional controls.
fn is_control(c: char) -> bool {
    let c0 = c < ' ' && c != '\t';
    let del_or_c1 = ('\u{7f}'..='\u{9f}').contains(&c);
    let bidi = ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c);
    c0 || del_or_c1 || bidi
}

/// A well-formed message: distinct destinations (names, and rooms with
/// their `#`) in first-listed order, and the trimmed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub destinations: Vec<String>,
    pub text: String,
}

/// Why a message line is refused as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    NoColon,
    EmptyDestination,
    InvalidDestination,
    ControlCharacter,
}

/// Reads `<dest>[, <dest>...]: <text>`. Destinations are checked in the
/// order listed, then the text; the first bad one decides the refusal.
pub fn parse_message(line: &str) -> Result<Message, Refusal> {
    let Some(colon) = line.find(':') else {
        return Err(Refusal::NoColon);
    };
    let mut destinations: Vec<String> = Vec::new();
    for part in line[..colon].split(',') {
        if part.trim().is_empty() {
            return Err(Refusal::EmptyDestination);
        }
        let destination = normalized(part);
        if !is_name(&destination) && !is_room(&destination) {
            return Err(Refusal::InvalidDestination);
        }
        if !destinations.contains(&destination) {
            destinations.push(destination);
        }
    }
    let text = line[colon + 1..].trim().to_string();
    if text.chars().any(is_control) {
        return Err(Refusal::ControlCharacter);
    }
    Ok(Message { destinations, text })
}

/// After login, a line whose first non-blank character is `/` is a
/// command, not a message.
pub fn is_command(line: &str) -> bool {
    line.trim_start().starts_with('/')
}

/// A well-formed command. Room arguments are in NFC, like destinations;
/// `/nick`'s argument is kept as written, since an invalid name there is
/// its own refusal (`error: invalid name`), judged by the rules of login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Join(String),
    Part(String),
    Names(String),
    Rooms,
    Nick(String),
}

/// Why a command line is refused before it is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandRefusal {
    Unknown,
    /// Missing, extra or invalid arguments: the usage of the command.
    Usage(&'static str),
}

/// Reads a command line: the command word (with its `/`), then its
/// arguments, all separated by white space.
pub fn parse_command(line: &str) -> Result<Command, CommandRefusal> {
    let mut words = line.split_whitespace();
    let word = words.next().unwrap_or("");
    let arguments: Vec<&str> = words.collect();
    let room = |usage| match arguments[..] {
        [argument] => {
            let room = normalized(argument);
            if is_room(&room) {
                Ok(room)
            } else {
                Err(CommandRefusal::Usage(usage))
            }
        }
        _ => Err(CommandRefusal::Usage(usage)),
    };
    match word {
        "/join" => room("/join <room>").map(Command::Join),
        "/part" => room("/part <room>").map(Command::Part),
        "/names" => room("/names <room>").map(Command::Names),
        "/rooms" if arguments.is_empty() => Ok(Command::Rooms),
        "/rooms" => Err(CommandRefusal::Usage("/rooms")),
        "/nick" => match arguments[..] {
            [name] => Ok(Command::Nick(name.to_string())),
            _ => Err(CommandRefusal::Usage("/nick <name>")),
        },
        _ => Err(CommandRefusal::Unknown),
    }
}

/// Why a member leaves a room, as its `left (<why>)` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    Parted,
    Disconnected,
    SlowConsumer,
}

impl Departure {
    fn why(self) -> &'static str {
        match self {
            Departure::Parted => "parted",
            Departure::Disconnected => "disconnected",
            Departure::SlowConsumer => "slow consumer",
        }
    }
}

/// A line of room news, as its members read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomNews {
    Joined(String),
    Left(String, Departure),
    EveryoneLeft,
}

/// `<room>: <name> joined`, `<room>: <name> left (<why>)` or `<room>:
/// everyone left (server shutting down)`.
pub fn room_news(room: &str, news: &RoomNews) -> String {
    match news {
        RoomNews::Joined(name) => format!("{room}: {name} joined\n"),
        RoomNews::Left(name, departure) => format!("{room}: {name} left ({})\n", departure.why()),
        RoomNews::EveryoneLeft => format!("{room}: everyone left (server shutting down)\n"),
    }
}

/// Reads a line of room news back: its room and what it says. Rooms and
/// names hold no white space and no `:`, so the line splits unambiguously.
pub fn read_room_news(line: &str) -> Option<(&str, RoomNews)> {
    let line = line.strip_suffix('\n')?;
    let (room, rest) = line.split_once(": ")?;
    if !is_room(room) {
        return None;
    }
    if rest == "everyone left (server shutting down)" {
        return Some((room, RoomNews::EveryoneLeft));
    }
    if let Some(name) = rest.strip_suffix(" joined") {
        return is_name(name).then(|| (room, RoomNews::Joined(name.to_string())));
    }
    let (name, why) = rest.split_once(" left (")?;
    let departure = [
        Departure::Parted,
        Departure::Disconnected,
        Departure::SlowConsumer,
    ]
    .into_iter()
    .find(|d| why.strip_suffix(')') == Some(d.why()))?;
    is_name(name).then(|| (room, RoomNews::Left(name.to_string(), departure)))
}

/// `renamed <old> to <new>`
pub fn renamed(old: &str, new: &str) -> String {
    format!("renamed {old} to {new}\n")
}

/// Reads a `renamed <old> to <new>` line back.
pub fn read_renamed(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("renamed ")?.strip_suffix('\n')?;
    rest.split_once(" to ")
}

/// `names <room>: <name> <name> ...`, the names in UTF-8 byte order.
pub fn names(room: &str, members: &[&str]) -> String {
    let mut members = members.to_vec();
    members.sort();
    let listed: String = members.iter().map(|name| format!(" {name}")).collect();
    format!("names {room}:{listed}\n")
}

/// `rooms: <room> <room> ...` in room order, or `rooms:` for none.
pub fn rooms(rooms: &[&str]) -> String {
    let mut rooms = rooms.to_vec();
    rooms.sort();
    let listed: String = rooms.iter().map(|room| format!(" {room}")).collect();
    format!("rooms:{listed}\n")
}

pub fn command_refusal(why: CommandRefusal) -> String {
    match why {
        CommandRefusal::Unknown => {
            "error: unknown command (try /join, /part, /names, /rooms, /nick)\n".to_string()
        }
        CommandRefusal::Usage(usage) => format!("error: usage: {usage}\n"),
    }
}

pub fn already_in_room(room: &str) -> String {
    format!("error: already in room: {room}\n")
}

pub fn too_many_rooms(most: usize) -> String {
    format!("error: too many rooms (at most {most})\n")
}

pub fn room_full(room: &str) -> String {
    format!("error: room full: {room}\n")
}

pub fn not_in_room(room: &str) -> String {
    format!("error: not in room: {room}\n")
}

pub fn no_such_room(room: &str) -> String {
    format!("error: no such room: {room}\n")
}

/// `welcome <name>`
pub fn welcome(name: &str) -> String {
    format!("welcome {name}\n")
}

/// `from <sender>: <text>`
pub fn delivery(sender: &str, text: &str) -> String {
    format!("from {sender}: {text}\n")
}

/// `from <sender> to <room>: <text>`
pub fn room_delivery(sender: &str, room: &str, text: &str) -> String {
    format!("from {sender} to {room}: {text}\n")
}

/// The delivery line `destination` gives a message: the plain form for a
/// name, the room form for a room.
pub fn delivery_via(sender: &str, destination: &str, text: &str) -> String {
    if is_room(destination) {
        room_delivery(sender, destination, text)
    } else {
        delivery(sender, text)
    }
}

/// The sender and, for the room form, the room of a `from` line. Names
/// and rooms hold no white space and no `:`.
pub fn read_delivery(line: &str) -> Option<(&str, Option<&str>)> {
    let (head, _text) = line.strip_prefix("from ")?.split_once(": ")?;
    match head.split_once(" to ") {
        Some((sender, room)) => Some((sender, Some(room))),
        None => Some((head, None)),
    }
}

pub fn invalid_name() -> String {
    "error: invalid name\n".to_string()
}

pub fn name_taken(name: &str) -> String {
    format!("error: name taken: {name}\n")
}

pub fn no_such_peer(name: &str) -> String {
    format!("error: no such peer: {name}\n")
}

pub fn frame_error(error: FrameError) -> String {
    match error {
        FrameError::LineTooLong => "error: line too long\n".to_string(),
        FrameError::InvalidUtf8 => "error: invalid utf-8\n".to_string(),
    }
}

/// PROTOCOL.md fixes only the `error: ` prefix of a refusal and leaves the
/// rest of its wording free. The model pins the wording this server chose,
/// because a reply's length decides whether it still fits a connection's
/// queue, and so which connections are cut as slow consumers.
pub fn refusal(why: Refusal) -> String {
    let detail = match why {
        Refusal::NoColon => "missing ':'",
        Refusal::EmptyDestination => "empty destination",
        Refusal::InvalidDestination => "invalid destination name",
        Refusal::ControlCharacter => {
            return "error: control characters are not allowed in messages\n".to_string();
        }
    };
    format!("error: expected \"<dest>, ...: <text>\" ({detail})\n")
}

pub const SHUTTING_DOWN: &str = "error: server shutting down\n";
pub const SERVER_FULL: &str = "error: server full\n";
pub const TOO_MANY_FROM_ADDRESS: &str = "error: too many connections from your address\n";
pub const LOGIN_TIMED_OUT: &str = "error: login timed out\n";
