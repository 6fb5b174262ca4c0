//! IRC client-to-server messages, as pure functions: the groundwork for an
//! IRC front end beside PROTOCOL.md's own line grammar ([`crate::protocol`]).
//!
//! Parsing: one line, as the codec delivers it (terminator already cut,
//! already UTF-8), read by the modern IRC grammar
//! (<https://modern.ircdocs.horse/>, "Message format"; RFC 1459 2.3,
//! RFC 2812 2.3):
//!
//! ```text
//! ['@' <tags> ' '] [':' <source> ' '] <command> *(' ' <middle>) [' :' <trailing>]
//! ```
//!
//! into a borrowed [`Message`], or the [`ParseError`] that says why not.
//! Rendering: a [`Reply`] builder that writes a server line
//! (`:<source> <command> <middle>... :<trailing>` and CR LF) that can never
//! carry a second line, and that always parses back to what was built.
//! Also here: the command names the front end matches ([`Command`]) and the
//! case mapping it compares nicks and channels with ([`casefold`]).
//!
//! Also the IRC lines the broker's news needs that are more than one reply
//! (a welcome burst, NAMES, a long message split in several lines), and
//! the formatting codes IRC senders may use and line-protocol readers see
//! stripped. Nothing here knows about connections or registration: the
//! broker's IRC front end (`broker/irc.rs`) decides what each message means.
//!
//! Decisions, each with its reason:
//!
//! - Tags (`@a=b;c `) are kept as one raw, uninterpreted slice
//!   ([`Message::tags`]): chinwag does not advertise the `message-tags`
//!   capability, so a client should not send them, but one that does still
//!   gets its command read rather than refused, and a later front end that
//!   wants them has the text. They have their own allowance
//!   ([`IRC_TAGS_BYTES_MAX`]), as in modern IRC, apart from the 510 bytes
//!   of the rest of the line ([`IRC_BODY_BYTES_MAX`]).
//! - An over-long line is refused ([`ParseError::TooLong`]), not cut:
//!   a cut line is a different command (a PRIVMSG that loses its end, a
//!   JOIN of a channel list that loses a channel), and modern IRC has a
//!   numeric for it (417 `ERR_INPUTTOOLONG`).
//! - More than [`IRC_PARAMS_MAX`] parameters are refused
//!   ([`ParseError::TooManyParams`]), not folded into the fifteenth as
//!   RFC 2812's grammar allows: folding silently changes what the client
//!   meant.
//! - Runs of spaces between parts, and spaces before the first part and
//!   after the last middle parameter, are tolerated, as most servers do.
//! - Rendering refuses (returns a [`RenderError`]) a source, command or
//!   middle parameter that could not be read back as one: those are names
//!   and numerics the server chose, so a bad one is a bug to surface, not
//!   text to repair. The trailing parameter is free text (a message, a
//!   topic, a quit reason), so there NUL, CR and LF are each replaced by a
//!   space and the text is cut at the line limit on a UTF-8 boundary: one
//!   stray byte must not lose the whole reply, and none of them can ever
//!   reach the wire.
//! - The case mapping is `ascii` ([`CASEMAPPING`]), see [`casefold`].

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The most bytes an IRC line may have, its CR LF included and its tags
/// section not counted (RFC 1459 2.3; modern IRC, "Message format").
pub const IRC_LINE_BYTES_MAX: usize = 512;

/// The most bytes of a line without its CR LF and tags section: the most
/// [`parse`] accepts after the tags, and [`Reply::render`] writes before
/// its CR LF.
pub const IRC_BODY_BYTES_MAX: usize = IRC_LINE_BYTES_MAX - 2;

/// The most bytes of a tags section, its leading `@` and the one space
/// after it included (modern IRC, "Tags").
pub const IRC_TAGS_BYTES_MAX: usize = 8191;

/// The most bytes of a whole line that [`parse`] can accept, without its
/// terminator: a tags section and a body, each at its limit. This is the
/// `max_line` a [`crate::codec::LineDecoder`] in front of it needs; lines
/// of the body's limit alone would refuse every tagged line.
pub const IRC_LINE_WITH_TAGS_BYTES_MAX: usize = IRC_TAGS_BYTES_MAX + IRC_BODY_BYTES_MAX;

/// The most parameters a message may have, its trailing one included
/// (RFC 1459 2.3; modern IRC, "Parameters").
pub const IRC_PARAMS_MAX: usize = 15;

/// The case mapping [`casefold`] implements, under the name ISUPPORT's
/// `CASEMAPPING` token advertises it by.
pub const CASEMAPPING: &str = "ascii";

/// One client line, borrowed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The tags section without its `@` and the space after it, raw and
    /// uninterpreted (see the module's decisions); `Some("")` for a lone `@`.
    pub tags: Option<&'a str>,
    /// The source after `:`, as the client wrote it. Modern IRC says a
    /// client must not send one, and a server ignores it: it is kept only
    /// so the front end can choose to. `Some("")` for a lone `:`.
    pub prefix: Option<&'a str>,
    /// The command as written: letters in any case, or exactly 3 digits.
    /// Match it with [`Message::command`].
    pub command: &'a str,
    /// The parameters in order, at most [`IRC_PARAMS_MAX`]; the trailing
    /// one, if any, last and without its `:` (and so maybe empty, or with
    /// spaces). Whether the last was written as trailing is not kept: it
    /// means the same either way.
    pub params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// The command, matched case-insensitively.
    pub fn command(&self) -> Command<'a> {
        Command::from_name(self.command)
    }
}

/// Why a line is not an IRC message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// The line is empty or only spaces. Modern IRC says to ignore such a
    /// line silently, so the front end should not reply to it.
    Empty,
    /// The line holds this byte: NUL, CR or LF. None can be in a line: CR
    /// and LF end one, and NUL ends a string in C servers and clients.
    ForbiddenByte(u8),
    /// The tags section is over [`IRC_TAGS_BYTES_MAX`] bytes.
    TagsTooLong,
    /// The line, its tags section not counted, is over
    /// [`IRC_BODY_BYTES_MAX`] bytes.
    TooLong,
    /// There is a tags section or source but nothing after it.
    MissingCommand,
    /// The command is neither letters only nor exactly 3 digits.
    InvalidCommand,
    /// The line has more than [`IRC_PARAMS_MAX`] parameters.
    TooManyParams,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => f.write_str("empty line"),
            ParseError::ForbiddenByte(byte) => {
                write!(f, "line holds byte 0x{byte:02x} (NUL, CR or LF)")
            }
            ParseError::TagsTooLong => write!(f, "tags over {IRC_TAGS_BYTES_MAX} bytes"),
            ParseError::TooLong => write!(f, "line over {IRC_LINE_BYTES_MAX} bytes"),
            ParseError::MissingCommand => f.write_str("missing command"),
            ParseError::InvalidCommand => f.write_str("invalid command"),
            ParseError::TooManyParams => write!(f, "more than {IRC_PARAMS_MAX} parameters"),
        }
    }
}

/// Whether `byte` may never be inside a line, in any part of it.
fn is_forbidden_byte(byte: u8) -> bool {
    matches!(byte, b'\0' | b'\r' | b'\n')
}

/// Whether `command` is a command: ASCII letters only, or exactly 3 ASCII
/// digits (a numeric).
fn is_valid_command(command: &str) -> bool {
    let bytes = command.as_bytes();
    let is_numeric = bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit);
    let is_word = !bytes.is_empty() && bytes.iter().all(u8::is_ascii_alphabetic);
    is_numeric || is_word
}

/// `text` up to its first space, and what follows that space (all of it,
/// further spaces included; the caller skips them).
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, rest),
        None => (text, ""),
    }
}

/// Reads one line, without its CR LF, as an IRC message.
pub fn parse(line: &str) -> Result<Message<'_>, ParseError> {
    // Checked over the whole line first, tags included, so no part of a
    // message that parses can hold one.
    if let Some(at) = memchr::memchr3(b'\0', b'\r', b'\n', line.as_bytes()) {
        return Err(ParseError::ForbiddenByte(line.as_bytes()[at]));
    }
    let (tags, body) = match line.strip_prefix('@') {
        Some(after_at) => {
            let (tags, body) = split_word(after_at);
            // The section is the `@`, the tags and the one space after them.
            if 1 + tags.len() + 1 > IRC_TAGS_BYTES_MAX {
                return Err(ParseError::TagsTooLong);
            }
            (Some(tags), body)
        }
        None => (None, line),
    };
    if body.len() > IRC_BODY_BYTES_MAX {
        return Err(ParseError::TooLong);
    }
    let rest = body.trim_start_matches(' ');
    if rest.is_empty() {
        return Err(match tags {
            None => ParseError::Empty,
            Some(_) => ParseError::MissingCommand,
        });
    }
    let (prefix, rest) = match rest.strip_prefix(':') {
        Some(after_colon) => {
            let (prefix, rest) = split_word(after_colon);
            (Some(prefix), rest.trim_start_matches(' '))
        }
        None => (None, rest),
    };
    let (command, mut rest) = split_word(rest);
    if command.is_empty() {
        return Err(ParseError::MissingCommand);
    }
    if !is_valid_command(command) {
        return Err(ParseError::InvalidCommand);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if params.len() == IRC_PARAMS_MAX {
            return Err(ParseError::TooManyParams);
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        let (middle, after) = split_word(rest);
        params.push(middle);
        rest = after;
    }
    Ok(Message {
        tags,
        prefix,
        command,
        params,
    })
}

/// The commands the front end acts on, matched case-insensitively (IRC
/// commands are: `privmsg` is `PRIVMSG`). Anything else, numerics
/// included, is [`Command::Other`], as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command<'a> {
    Nick,
    User,
    Cap,
    Ping,
    Pong,
    Privmsg,
    Notice,
    Join,
    Part,
    Names,
    Topic,
    Mode,
    Who,
    Quit,
    Away,
    Other(&'a str),
}

/// Each known command's name in upper case, in a fixed order.
const KNOWN_COMMANDS: [(&str, Command<'static>); 15] = [
    ("NICK", Command::Nick),
    ("USER", Command::User),
    ("CAP", Command::Cap),
    ("PING", Command::Ping),
    ("PONG", Command::Pong),
    ("PRIVMSG", Command::Privmsg),
    ("NOTICE", Command::Notice),
    ("JOIN", Command::Join),
    ("PART", Command::Part),
    ("NAMES", Command::Names),
    ("TOPIC", Command::Topic),
    ("MODE", Command::Mode),
    ("WHO", Command::Who),
    ("QUIT", Command::Quit),
    ("AWAY", Command::Away),
];

impl<'a> Command<'a> {
    /// The command named `name`, in any case.
    pub fn from_name(name: &'a str) -> Command<'a> {
        KNOWN_COMMANDS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map_or(Command::Other(name), |&(_, command)| command)
    }
}

/// `name` (a nick or channel) folded for comparison under the `ascii`
/// case mapping: `A`-`Z` become `a`-`z`, every other character stays.
/// Borrowed when there is nothing to fold.
///
/// Why `ascii` and not `rfc1459` (which also folds `[]\~` to `{}|^`): that
/// rule is a leftover of a Scandinavian character set no client uses any
/// more, clients implement it unevenly, and it makes `[` and `{` the same
/// name for no reason a user can see. `ascii` is what modern servers
/// default to, and every client implements it. Non-ASCII characters are
/// compared exactly, byte for byte: folding them would need Unicode case
/// tables no IRC client agrees on.
pub fn casefold(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Whether two nicks or channels are the same under [`casefold`].
pub fn eq_casefold(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Why a [`Reply`] cannot be rendered. Each is a bug in what the server
/// asked to send, not something a client caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RenderError {
    /// The source is empty or holds a space, NUL, CR or LF.
    InvalidSource,
    /// The command is neither letters only nor exactly 3 digits.
    InvalidCommand,
    /// The middle parameter at this index (from 0) is empty, starts with
    /// `:`, or holds a space, NUL, CR or LF: it can only be the trailing one.
    InvalidParam(usize),
    /// There are more than [`IRC_PARAMS_MAX`] parameters, trailing included.
    TooManyParams,
    /// The line is over [`IRC_LINE_BYTES_MAX`] bytes before any of the
    /// trailing parameter's text, so cutting that text cannot make it fit.
    TooLong,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::InvalidSource => f.write_str("invalid source"),
            RenderError::InvalidCommand => f.write_str("invalid command"),
            RenderError::InvalidParam(index) => write!(f, "invalid middle parameter {index}"),
            RenderError::TooManyParams => write!(f, "more than {IRC_PARAMS_MAX} parameters"),
            RenderError::TooLong => write!(f, "line over {IRC_LINE_BYTES_MAX} bytes"),
        }
    }
}

/// Whether `param` can be written as a middle parameter and read back as
/// the same one: not empty, not starting with `:`, with no space, NUL, CR
/// or LF.
pub fn is_middle_param(param: &str) -> bool {
    !param.is_empty()
        && !param.starts_with(':')
        && !param
            .bytes()
            .any(|byte| byte == b' ' || is_forbidden_byte(byte))
}

/// A server line to render: a source (the server's name, or a user's
/// `nick!user@host`), a command or 3-digit numeric, middle parameters and
/// an optional trailing one. No tags: the server does not offer
/// `message-tags`.
///
/// ```
/// # use chinwag_core::irc::Reply;
/// let line = Reply::new("irc.example.com", "001")
///     .param("alice")
///     .trailing("Welcome to chinwag, alice")
///     .render();
/// assert_eq!(line.unwrap(), ":irc.example.com 001 alice :Welcome to chinwag, alice\r\n");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<'a> {
    source: &'a str,
    command: &'a str,
    middles: Vec<&'a str>,
    trailing: Option<&'a str>,
}

impl<'a> Reply<'a> {
    /// A reply from `source` with `command` and no parameters yet.
    pub fn new(source: &'a str, command: &'a str) -> Self {
        Reply {
            source,
            command,
            middles: Vec::new(),
            trailing: None,
        }
    }

    /// Adds a middle parameter, after those added before. It must pass
    /// [`is_middle_param`], or [`Reply::render`] refuses the reply.
    pub fn param(mut self, param: &'a str) -> Self {
        self.middles.push(param);
        self
    }

    /// Sets the trailing parameter, written last after ` :` whatever it
    /// holds (even when it would do as a middle one, as clients expect of
    /// a numeric's text), replacing any set before.
    pub fn trailing(mut self, text: &'a str) -> Self {
        self.trailing = Some(text);
        self
    }

    /// The line, CR LF included, at most [`IRC_LINE_BYTES_MAX`] bytes, with
    /// no NUL, CR or LF but its final CR LF. In the trailing text each NUL,
    /// CR or LF becomes a space, and the text is cut at the last character
    /// that fits.
    pub fn render(&self) -> Result<String, RenderError> {
        let source_ok = !self.source.is_empty()
            && !self
                .source
                .bytes()
                .any(|byte| byte == b' ' || is_forbidden_byte(byte));
        if !source_ok {
            return Err(RenderError::InvalidSource);
        }
        if !is_valid_command(self.command) {
            return Err(RenderError::InvalidCommand);
        }
        if self.middles.len() + usize::from(self.trailing.is_some()) > IRC_PARAMS_MAX {
            return Err(RenderError::TooManyParams);
        }
        if let Some(index) = self.middles.iter().position(|p| !is_middle_param(p)) {
            return Err(RenderError::InvalidParam(index));
        }
        let mut line = String::with_capacity(IRC_LINE_BYTES_MAX);
        line.push(':');
        line.push_str(self.source);
        line.push(' ');
        line.push_str(self.command);
        for middle in &self.middles {
            line.push(' ');
            line.push_str(middle);
        }
        if let Some(text) = self.trailing {
            line.push_str(" :");
            if line.len() > IRC_BODY_BYTES_MAX {
                return Err(RenderError::TooLong);
            }
            for c in text.chars() {
                if line.len() + c.len_utf8() > IRC_BODY_BYTES_MAX {
                    break;
                }
                line.push(if is_forbidden_char(c) { ' ' } else { c });
            }
        } else if line.len() > IRC_BODY_BYTES_MAX {
            return Err(RenderError::TooLong);
        }
        line.push_str("\r\n");
        Ok(line)
    }
}

/// Whether `c` is NUL, CR or LF, the characters no line may hold.
fn is_forbidden_char(c: char) -> bool {
    matches!(c, '\0' | '\r' | '\n')
}

/// The server's own name in the replies below; `crate::news` uses the same.
const SERVER: &str = crate::news::IRC_SERVER;

/// `:<source> <command> <target> :<text>` as many lines as `text` needs,
/// each at most [`IRC_LINE_BYTES_MAX`] bytes: a message longer than one IRC
/// line is split on character boundaries rather than cut, so nothing a
/// line-protocol user sends an IRC user is lost.
pub fn render_split(source: &str, command: &str, target: &str, text: &str) -> String {
    let head_bytes = 1 + source.len() + 1 + command.len() + 1 + target.len() + 2;
    let room = IRC_BODY_BYTES_MAX.saturating_sub(head_bytes).max(4);
    let mut lines = String::new();
    let mut rest = text;
    loop {
        let mut cut = rest.len().min(room);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, after) = rest.split_at(cut);
        let line = Reply::new(source, command)
            .param(target)
            .trailing(piece)
            .render()
            .expect("a name, a room and a command are valid parameters");
        lines.push_str(&line);
        rest = after;
        if rest.is_empty() {
            return lines;
        }
    }
}

/// What an IRC client is told when its registration is accepted: 001 to
/// 005 (the ISUPPORT tokens saying what chinwag's names and rooms are) and
/// a short MOTD.
pub fn welcome_burst(nick: &str, rooms_max: usize) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let welcome = alloc::format!("Welcome to chinwag, {nick}");
    let host = alloc::format!("Your host is {SERVER}, running version {version}");
    let chanlimit = alloc::format!("CHANLIMIT=#:{rooms_max}");
    let nicklen = alloc::format!("NICKLEN={}", crate::protocol::MAX_NAME_CHARS);
    let channellen = alloc::format!("CHANNELLEN={}", crate::protocol::MAX_NAME_CHARS + 1);
    let casemapping = alloc::format!("CASEMAPPING={CASEMAPPING}");
    let replies = [
        Reply::new(SERVER, "001").param(nick).trailing(&welcome),
        Reply::new(SERVER, "002").param(nick).trailing(&host),
        Reply::new(SERVER, "003")
            .param(nick)
            .trailing("This server was created when it started"),
        Reply::new(SERVER, "004")
            .param(nick)
            .param(SERVER)
            .param(version)
            .param("iw")
            .param("b"),
        Reply::new(SERVER, "005")
            .param(nick)
            .param("CHANTYPES=#")
            .param(&chanlimit)
            .param(&nicklen)
            .param(&channellen)
            .param(&casemapping)
            .param("NETWORK=chinwag")
            .param("PREFIX=()")
            .param("CHANMODES=,,,")
            .trailing("are supported by this server"),
        Reply::new(SERVER, "375")
            .param(nick)
            .trailing("- chinwag message of the day -"),
        Reply::new(SERVER, "372")
            .param(nick)
            .trailing("- Rooms are # and a name. Users of chinwag's line protocol share them."),
        Reply::new(SERVER, "376")
            .param(nick)
            .trailing("End of /MOTD command"),
    ];
    replies
        .iter()
        .map(|reply| reply.render().expect("the welcome is valid"))
        .collect()
}

/// The answer to NAMES: 353 lines holding as many of `names` as fit, then
/// 366.
pub fn names_reply(nick: &str, room: &str, names: &[&str]) -> String {
    let head_bytes = 1 + SERVER.len() + 5 + nick.len() + 3 + room.len() + 2;
    let room_for_names = IRC_BODY_BYTES_MAX - head_bytes;
    let mut lines = String::new();
    let mut chunk = String::new();
    let flush = |chunk: &mut String, lines: &mut String| {
        let line = Reply::new(SERVER, "353")
            .param(nick)
            .param("=")
            .param(room)
            .trailing(chunk)
            .render()
            .expect("names fit by construction");
        lines.push_str(&line);
        chunk.clear();
    };
    for name in names {
        if !chunk.is_empty() && chunk.len() + 1 + name.len() > room_for_names {
            flush(&mut chunk, &mut lines);
        }
        if !chunk.is_empty() {
            chunk.push(' ');
        }
        chunk.push_str(name);
    }
    if !chunk.is_empty() {
        flush(&mut chunk, &mut lines);
    }
    let end = Reply::new(SERVER, "366")
        .param(nick)
        .param(room)
        .trailing("End of /NAMES list")
        .render()
        .expect("a room is a valid parameter");
    lines.push_str(&end);
    lines
}

/// Whether `c` is one of IRC's formatting codes (bold, colour, italics and
/// so on) or CTCP's delimiter: control characters that IRC clients show as
/// formatting, not as terminal commands, so IRC senders may use them.
pub fn is_formatting(c: char) -> bool {
    matches!(
        c,
        '\x01' | '\x02' | '\x03' | '\x04' | '\x0f' | '\x11' | '\x16' | '\x1d' | '\x1e' | '\x1f'
    )
}

/// `text` as a line-protocol client may show it: IRC formatting removed
/// (colour codes with their numbers) and a CTCP ACTION (IRC's `/me`) as
/// `/me <action>`. Text with no formatting code is returned as it is.
pub fn text_for_terminals(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_formatting) {
        return Cow::Borrowed(text);
    }
    let mut plain = String::with_capacity(text.len());
    let mut rest = text;
    // `\x01ACTION <action>\x01`, or `\x01ACTION\x01` with no action: the
    // space before the action is kept, and the closing `\x01` dropped below.
    if let Some(action) = rest.strip_prefix("\x01ACTION")
        && (action.is_empty() || action.starts_with([' ', '\x01']))
    {
        plain.push_str("/me");
        rest = action;
    }
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Colour: up to two digits, then maybe a comma and two more.
            '\x03' => {
                let digits = |chars: &mut core::iter::Peekable<core::str::Chars<'_>>| {
                    let mut taken = 0;
                    while taken < 2 && chars.next_if(char::is_ascii_digit).is_some() {
                        taken += 1;
                    }
                    taken
                };
                if digits(&mut chars) > 0 && chars.peek() == Some(&',') {
                    let mut lookahead = chars.clone();
                    lookahead.next();
                    if lookahead.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                        digits(&mut chars);
                    }
                }
            }
            // Hex colour: up to six hex digits.
            '\x04' => {
                for _ in 0..6 {
                    if chars.next_if(char::is_ascii_hexdigit).is_none() {
                        break;
                    }
                }
            }
            c if is_formatting(c) => {}
            c => plain.push(c),
        }
    }
    Cow::Owned(plain)
}

#[cfg(test)]
mod tests;
