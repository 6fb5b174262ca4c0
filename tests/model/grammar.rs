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
pub fn is_control(c: char) -> bool {
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

pub mod irc {
    //! IRC.md's server lines, written again from the document for the
    //! reference model, and read back for the guarantee checks. Kept in
    //! this file so every crate that includes the model's grammar (the
    //! simulator lists the model's files one by one) has them too.
    //!
    //! Like the rest of this file, this renders without `chinwag::irc` or
    //! `chinwag::news`: the model must be an independent reading. Client
    //! lines are split with `chinwag::irc::parse` (that grammar is checked
    //! on its own by `tests/irc_properties.rs` and the `irc` fuzz target), and
    //! the model reads their meaning itself.
    //!
    //! IRC.md fixes the commands, numerics and sources; the human-readable
    //! text of a numeric (`:No such nick/channel`), the welcome burst's words
    //! and the server's version are left free, as PROTOCOL.md leaves an
    //! error's wording. The model pins the words this server chose, because a
    //! line's length decides what still fits a queue.

    use unicode_normalization::UnicodeNormalization;

    use super as grammar;

    /// The server's name: every server line's source, and every user's host.
    pub const SERVER: &str = "chinwag";
    /// The version `004` and `002` give: the core crate's, which the crates
    /// that include this module (the tests, the simulator, the fuzz targets)
    /// do not share, so it is written out.
    pub const SERVER_VERSION: &str = "0.1.0";
    /// The longest line the server sends, CR LF not counted (IRC's 512 with it).
    const MAX_BODY: usize = 510;
    /// How long a registered client may be quiet before it is pinged, and
    /// then how long it has to answer.
    pub const PING_IDLE: std::time::Duration = std::time::Duration::from_secs(120);

    /// `nick!nick@chinwag`: every user's made-up user and host.
    pub fn source(nick: &str) -> String {
        format!("{nick}!{nick}@{SERVER}")
    }

    /// A middle parameter: not empty, no space, not led by `:`.
    fn is_middle(param: &str) -> bool {
        !param.is_empty() && !param.starts_with(':') && !param.contains([' ', '\0', '\r', '\n'])
    }

    /// `:chinwag <code> <me> <params...> :<text>`; a parameter the client
    /// wrote that cannot be one is given as `*`.
    pub fn numeric(me: &str, code: &str, params: &[&str], text: &str) -> String {
        let mut line = format!(":{SERVER} {code} {me}");
        for param in params {
            line.push(' ');
            line.push_str(if is_middle(param) { param } else { "*" });
        }
        format!("{line} :{text}\r\n")
    }

    /// A server NOTICE, for what IRC has no numeric for.
    pub fn server_notice(me: &str, text: &str) -> String {
        format!(":{SERVER} NOTICE {me} :{text}\r\n")
    }

    /// `ERROR :<why>`, the last line before the server closes a connection.
    pub fn error(why: &str) -> String {
        format!(":{SERVER} ERROR :{why}\r\n")
    }

    pub fn ping() -> String {
        format!(":{SERVER} PING :{SERVER}\r\n")
    }

    pub fn pong(token: &str) -> String {
        format!(":{SERVER} PONG {SERVER} :{token}\r\n")
    }

    /// `CAP <me> <answer> :<text>`: `LS` and `LIST` with nothing, `NAK` with
    /// what was asked for.
    pub fn cap(me: &str, answer: &str, text: &str) -> String {
        format!(":{SERVER} CAP {me} {answer} :{text}\r\n")
    }

    /// `001` to `005` and the MOTD, one burst.
    pub fn welcome_burst(nick: &str, rooms_max: usize) -> String {
        let max_name = 32;
        let isupport = format!(
            "CHANTYPES=# CHANLIMIT=#:{rooms_max} NICKLEN={max_name} CHANNELLEN={} \
             CASEMAPPING=ascii NETWORK=chinwag PREFIX=() CHANMODES=,,,",
            max_name + 1
        );
        [
            numeric(nick, "001", &[], &format!("Welcome to chinwag, {nick}")),
            numeric(
                nick,
                "002",
                &[],
                &format!("Your host is {SERVER}, running version {SERVER_VERSION}"),
            ),
            numeric(nick, "003", &[], "This server was created when it started"),
            format!(":{SERVER} 004 {nick} {SERVER} {SERVER_VERSION} iw b\r\n"),
            format!(":{SERVER} 005 {nick} {isupport} :are supported by this server\r\n"),
            numeric(nick, "375", &[], "- chinwag message of the day -"),
            numeric(
                nick,
                "372",
                &[],
                "- Rooms are # and a name. Users of chinwag's line protocol share them.",
            ),
            numeric(nick, "376", &[], "End of /MOTD command"),
        ]
        .concat()
    }

    /// `353` lines holding the names in byte order, as many a line as fit in
    /// 512 bytes, then `366`.
    pub fn names(me: &str, room: &str, members: &[&str]) -> String {
        let mut members = members.to_vec();
        members.sort();
        let head = format!(":{SERVER} 353 {me} = {room} :");
        let mut lines: Vec<String> = Vec::new();
        let mut listed = String::new();
        for name in members {
            if !listed.is_empty() && head.len() + listed.len() + 1 + name.len() > MAX_BODY {
                lines.push(format!("{head}{listed}\r\n"));
                listed.clear();
            }
            if !listed.is_empty() {
                listed.push(' ');
            }
            listed.push_str(name);
        }
        if !listed.is_empty() {
            lines.push(format!("{head}{listed}\r\n"));
        }
        lines.push(numeric(me, "366", &[room], "End of /NAMES list"));
        lines.concat()
    }

    /// A message as an IRC reader gets it: `PRIVMSG` (or `NOTICE`) to the
    /// room, or to the reader's nick, as many lines as the text needs (each
    /// at most 512 bytes, cut on character boundaries: nothing is lost).
    pub fn delivery(sender: &str, notice: bool, target: &str, text: &str) -> String {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let head = format!(":{} {command} {target} :", source(sender));
        let room = MAX_BODY.saturating_sub(head.len()).max(4);
        let mut lines = String::new();
        let mut rest = text;
        loop {
            let mut cut = rest.len().min(room);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            let (piece, after) = rest.split_at(cut);
            lines.push_str(&format!("{head}{piece}\r\n"));
            rest = after;
            if rest.is_empty() {
                return lines;
            }
        }
    }

    pub fn joined(name: &str, room: &str) -> String {
        format!(":{} JOIN {room}\r\n", source(name))
    }

    pub fn parted(name: &str, room: &str) -> String {
        format!(":{} PART {room} :parted\r\n", source(name))
    }

    pub fn quit(name: &str, departure: grammar::Departure) -> String {
        let why = match departure {
            grammar::Departure::SlowConsumer => "slow consumer",
            grammar::Departure::Disconnected | grammar::Departure::Parted => "disconnected",
        };
        format!(":{} QUIT :{why}\r\n", source(name))
    }

    pub fn nick(old: &str, new: &str) -> String {
        format!(":{} NICK {new}\r\n", source(old))
    }

    /// IRC's formatting codes and CTCP's delimiter, allowed in IRC users'
    /// text (IRC.md, "Text, formatting and control characters").
    pub fn is_formatting(c: char) -> bool {
        matches!(
            c,
            '\x01' | '\x02' | '\x03' | '\x04' | '\x0f' | '\x11' | '\x16' | '\x1d' | '\x1e' | '\x1f'
        )
    }

    /// Text an IRC user may send: no control character but TAB and the
    /// formatting codes.
    pub fn is_allowed_text(text: &str) -> bool {
        !text
            .chars()
            .any(|c| grammar::is_control(c) && !is_formatting(c))
    }

    /// What a line-protocol reader gets of an IRC user's text: a CTCP ACTION
    /// as `/me <action>`, and the formatting removed, a colour code with its
    /// colour numbers (`\x03` and up to two digits, maybe a comma and two
    /// more; `\x04` and up to six hex digits).
    pub fn strip_formatting(text: &str) -> String {
        if !text.chars().any(is_formatting) {
            return text.to_string();
        }
        let (mut plain, rest) = match text.strip_prefix("\x01ACTION ") {
            Some(action) => ("/me ".to_string(), action),
            None => (String::new(), text),
        };
        let chars: Vec<char> = rest.chars().collect();
        let digits_from = |at: usize, most: usize, hex: bool| {
            let is = |c: &char| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            };
            chars[at..].iter().take(most).take_while(|c| is(c)).count()
        };
        let mut at = 0;
        while at < chars.len() {
            let c = chars[at];
            at += 1;
            match c {
                '\x03' => {
                    let foreground = digits_from(at, 2, false);
                    at += foreground;
                    let comma = chars.get(at) == Some(&',');
                    if foreground > 0 && comma && digits_from(at + 1, 2, false) > 0 {
                        at += 1 + digits_from(at + 1, 2, false);
                    }
                }
                '\x04' => at += digits_from(at, 6, true),
                c if is_formatting(c) => {}
                c => plain.push(c),
            }
        }
        plain
    }

    /// A name or room an IRC client wrote, in NFC: IRC's words hold no white
    /// space, so nothing is trimmed.
    pub fn canonical(written: &str) -> Option<String> {
        let canonical: String = written.nfc().collect();
        let valid = grammar::is_name(&canonical) || grammar::is_room(&canonical);
        valid.then_some(canonical)
    }

    /// The parts of a server line: its source, command and parameters (the
    /// trailing one last), without its CR LF.
    fn split(line: &str) -> Option<(&str, &str, Vec<&str>)> {
        let line = line.strip_suffix("\r\n")?.strip_prefix(':')?;
        let (source, rest) = line.split_once(' ')?;
        let (middles, trailing) = match rest.split_once(" :") {
            Some((middles, trailing)) => (middles, Some(trailing)),
            None => (rest, None),
        };
        let mut words = middles.split(' ');
        let command = words.next()?;
        let params = words.chain(trailing).collect();
        Some((source, command, params))
    }

    /// The nick of a user source, `nick!nick@chinwag`.
    fn user(source: &str) -> Option<&str> {
        let (nick, host) = source.split_once('!')?;
        (host == format!("{nick}@{SERVER}")).then_some(nick)
    }

    /// What an IRC line says, in the line protocol's terms, for the guarantee
    /// checks: each kind is what the line-protocol line of the same news is.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum Heard<'a> {
        /// `001`: registered as this nick.
        Welcome(&'a str),
        /// A message from a user: its sender, its target (a room, or the
        /// reader's nick) and its text.
        Delivery {
            sender: &'a str,
            target: &'a str,
            text: &'a str,
        },
        Joined(&'a str, &'a str),
        Parted(&'a str, &'a str),
        Quit(&'a str),
        Renamed(&'a str, &'a str),
    }

    /// Reads one line (the first, of a burst) an IRC connection was sent.
    pub fn read(line: &str) -> Option<Heard<'_>> {
        let first = &line[..line.find("\r\n")? + 2];
        let (source, command, params) = split(first)?;
        if source == SERVER {
            return match (command, &params[..]) {
                ("001", [nick, _]) => Some(Heard::Welcome(nick)),
                _ => None,
            };
        }
        let nick = user(source)?;
        match (command, &params[..]) {
            ("PRIVMSG" | "NOTICE", [target, text]) => Some(Heard::Delivery {
                sender: nick,
                target,
                text,
            }),
            ("JOIN", [room]) => Some(Heard::Joined(nick, room)),
            ("PART", [room, _]) => Some(Heard::Parted(nick, room)),
            ("QUIT", [_]) => Some(Heard::Quit(nick)),
            ("NICK", [new]) => Some(Heard::Renamed(nick, new)),
            _ => None,
        }
    }
}
