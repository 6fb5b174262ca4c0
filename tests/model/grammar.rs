//! PROTOCOL.md's line grammar and server lines, written again from the
//! document alone, as plainly as possible, for the reference model.
//!
//! This deliberately does not call `chinwag::protocol`: the model must be an
//! independent reading of the protocol, or it would only check the broker
//! against itself. Clarity beats speed here.

use chinwag::codec::FrameError;

/// The most characters a login name may have.
const MAX_NAME_CHARS: usize = 32;

/// Blank lines (empty or whitespace only) are ignored.
pub fn is_blank(line: &str) -> bool {
    line.trim().is_empty()
}

/// A valid name is 1 to 32 characters, each alphanumeric or `-`, `_`, `.`.
pub fn is_name(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let allowed = |c: &char| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == '.';
    !chars.is_empty() && chars.len() <= MAX_NAME_CHARS && chars.iter().all(allowed)
}

/// The name a login line asks for: the line trimmed, if that is a valid name.
pub fn login_name(line: &str) -> Option<&str> {
    let name = line.trim();
    if is_name(name) { Some(name) } else { None }
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
}

/// Reads `<dest>[, <dest>...]: <text>`. Destinations are checked in the
/// order listed; the first bad one decides the refusal.
pub fn parse_message(line: &str) -> Result<Message, Refusal> {
    let Some(colon) = line.find(':') else {
        return Err(Refusal::NoColon);
    };
    let mut destinations: Vec<String> = Vec::new();
    for part in line[..colon].split(',') {
        let destination = part.trim();
        if destination.is_empty() {
            return Err(Refusal::EmptyDestination);
        }
        if !is_name(destination) {
            return Err(Refusal::InvalidDestination);
        }
        if !destinations.iter().any(|d| d == destination) {
            destinations.push(destination.to_string());
        }
    }
    let text = line[colon + 1..].trim().to_string();
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
    };
    format!("error: expected \"<dest>, ...: <text>\" ({detail})\n")
}

pub const SHUTTING_DOWN: &str = "error: server shutting down\n";
