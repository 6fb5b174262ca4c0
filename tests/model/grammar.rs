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

/// A well-formed message: distinct destinations in first-listed order, and
/// the trimmed text.
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
        if !is_name(&destination) {
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

/// `welcome <name>`
pub fn welcome(name: &str) -> String {
    format!("welcome {name}\n")
}

/// `from <sender>: <text>`
pub fn delivery(sender: &str, text: &str) -> String {
    format!("from {sender}: {text}\n")
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
