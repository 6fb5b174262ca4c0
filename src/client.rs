//! `chinwag connect`: the interactive client.
//!
//! When stdin and stdout are both terminals, the client is a line editor
//! ([`terminal`]): what the server sends is printed above the line being
//! typed, escaped as below. Otherwise it is plain line-in, line-out, as
//! follows. What is typed on stdin goes to the server byte
//! for byte: the server, not the client, judges it (invalid UTF-8 gets
//! `error: invalid utf-8` from the server). What the server sends is printed
//! on stdout as it arrives, not a whole line at a time, so a line with no
//! end cannot make the client grow; and every control character in it is
//! printed as a visible escape, never raw, so nothing a peer says can move
//! the cursor, rewrite a line with a CR, ring the bell or reorder the text
//! with bidi controls. When stdin ends, the client half-closes the
//! connection and keeps printing until the server closes it, so piped input
//! gets all its replies; it exits when the server closes.

mod terminal;

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use std::net::SocketAddr;

use async_std::io::{self, prelude::*};
use async_std::net::TcpStream;
use futures::{FutureExt, select_biased};

/// The most bytes of stdin read and sent at a time.
const CLIENT_SEND_CHUNK_BYTES: usize = 64 * 1024;

/// The most bytes from the server read at a time; each read is printed
/// before the next, so this (and an incomplete UTF-8 sequence of at most 3
/// bytes) is all the client holds, however long a line is.
const CLIENT_PRINT_CHUNK_BYTES: usize = 64 * 1024;

/// Why the client stopped before the server closed the connection, naming
/// the side that failed.
#[derive(Debug)]
pub enum Error {
    /// Connecting to the server, or the connection, failed.
    Server(SocketAddr, io::Error),
    /// Reading stdin failed.
    Stdin(io::Error),
    /// Writing stdout failed (for instance, it is a closed pipe).
    Stdout(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Server(address, error) => write!(f, "{address}: {error}"),
            Error::Stdin(error) => write!(f, "reading stdin: {error}"),
            Error::Stdout(error) => write!(f, "writing stdout: {error}"),
        }
    }
}

impl std::error::Error for Error {}

/// Connects to `address` and relays stdin and stdout until the server
/// closes; on a terminal, until the user quits or the server closes.
pub async fn run(address: SocketAddr) -> Result<(), Error> {
    if std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal()
        && let Some(terminal) = terminal::Terminal::open()
    {
        return terminal::run(terminal, address).await;
    }
    let server = |error| Error::Server(address, error);
    let stream = TcpStream::connect(address).await.map_err(server)?;
    stream.set_nodelay(true).map_err(server)?;
    let to_server = send_stdin(&stream, address).fuse();
    let from_server = print_replies(&stream, address).fuse();
    futures::pin_mut!(to_server, from_server);
    select_biased! {
        result = from_server => result,
        result = to_server => {
            result?;
            from_server.await
        }
    }
}

/// Sends stdin as it is, ending an unterminated last line with an LF, then
/// half-closes the connection.
async fn send_stdin(mut stream: &TcpStream, address: SocketAddr) -> Result<(), Error> {
    let server = |error| Error::Server(address, error);
    let mut stdin = io::stdin();
    let mut chunk = vec![0; CLIENT_SEND_CHUNK_BYTES];
    let mut ends_line = true;
    loop {
        let read = stdin.read(&mut chunk).await.map_err(Error::Stdin)?;
        let Some(&last) = chunk[..read].last() else {
            break;
        };
        stream.write_all(&chunk[..read]).await.map_err(server)?;
        ends_line = last == b'\n';
    }
    if !ends_line {
        stream.write_all(b"\n").await.map_err(server)?;
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(server)
}

/// Prints what the server sends, escaped, a read at a time.
async fn print_replies(mut stream: &TcpStream, address: SocketAddr) -> Result<(), Error> {
    let mut stdout = io::stdout();
    let mut chunk = vec![0; CLIENT_PRINT_CHUNK_BYTES];
    let mut escaper = Escaper::default();
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| Error::Server(address, error))?;
        let shown = if read == 0 {
            escaper.finish()
        } else {
            escaper.push(&chunk[..read])
        };
        stdout
            .write_all(shown.as_bytes())
            .await
            .map_err(Error::Stdout)?;
        stdout.flush().await.map_err(Error::Stdout)?;
        if read == 0 {
            return Ok(());
        }
    }
}

/// Turns the server's bytes, in pieces as they arrive, into text that is
/// safe to show on a terminal: LF and TAB pass, other control characters
/// become escapes (`\r`, `\x1b`, `\u{85}`, `\u{202e}`), and so does each
/// byte that is not valid UTF-8 (`\xff`). A character split across two
/// pieces is held until its end arrives.
#[derive(Debug)]
struct Escaper {
    /// The start of a character whose end has not arrived: at most 3 bytes.
    partial: Vec<u8>,
    /// Whether the text shown so far is empty or ends with an LF.
    ends_line: bool,
}

impl Default for Escaper {
    fn default() -> Self {
        Escaper {
            partial: Vec::new(),
            ends_line: true,
        }
    }
}

impl Escaper {
    /// The text to show for the next piece of the stream.
    fn push(&mut self, bytes: &[u8]) -> String {
        let mut received = std::mem::take(&mut self.partial);
        received.extend_from_slice(bytes);
        self.escape(&received, false)
    }

    /// The text to show at the end of the stream: what is left of an
    /// incomplete character, and an LF if the last line had none.
    fn finish(&mut self) -> String {
        let partial = std::mem::take(&mut self.partial);
        let mut shown = self.escape(&partial, true);
        if !self.ends_line {
            shown.push('\n');
            self.ends_line = true;
        }
        shown
    }

    fn escape(&mut self, bytes: &[u8], at_end: bool) -> String {
        let mut shown = String::with_capacity(bytes.len());
        let mut chunks = bytes.utf8_chunks().peekable();
        while let Some(chunk) = chunks.next() {
            escape_text(chunk.valid(), &mut shown);
            let invalid = chunk.invalid();
            // Only the very end of a piece can be the start of a character
            // that the next piece completes.
            let incomplete = !at_end
                && chunks.peek().is_none()
                && std::str::from_utf8(invalid).is_err_and(|error| error.error_len().is_none());
            if incomplete {
                self.partial.extend_from_slice(invalid);
            } else {
                for byte in invalid {
                    let _ = write!(shown, "\\x{byte:02x}");
                }
            }
        }
        if let Some(last) = shown.chars().next_back() {
            self.ends_line = last == '\n';
        }
        shown
    }
}

/// Appends `text` with every character [`is_shown_escaped`] escaped.
fn escape_text(text: &str, shown: &mut String) {
    let mut plain_from = 0;
    for (at, c) in text.char_indices() {
        if is_shown_escaped(c) {
            shown.push_str(&text[plain_from..at]);
            match c {
                '\r' => shown.push_str("\\r"),
                c if c.is_ascii() => {
                    let _ = write!(shown, "\\x{:02x}", u32::from(c));
                }
                c => {
                    let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
                }
            }
            plain_from = at + c.len_utf8();
        }
    }
    shown.push_str(&text[plain_from..]);
}

/// Whether a character could act on a terminal instead of being shown: the
/// C0 controls but LF and TAB, DEL, the C1 controls (Unicode's Cc), and the
/// bidi embedding, override and isolate controls, which reorder what
/// follows them on the line.
fn is_shown_escaped(c: char) -> bool {
    match c {
        '\n' | '\t' => false,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => true,
        c => c.is_control(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(pieces: &[&[u8]]) -> String {
        let mut escaper = Escaper::default();
        let mut shown: String = pieces.iter().map(|piece| escaper.push(piece)).collect();
        shown.push_str(&escaper.finish());
        shown
    }

    #[test]
    fn plain_text_tabs_and_line_ends_pass() {
        assert_eq!(shown(&[b"from a: x\ty \xc3\xa9\n"]), "from a: x\ty é\n");
    }

    #[test]
    fn a_carriage_return_cannot_forge_a_line() {
        assert_eq!(
            shown(&[b"from alice: x\rfrom mallory: y\n"]),
            "from alice: x\\rfrom mallory: y\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            shown(&["\0\x07\x0b\x1b[2J\x7f\u{85}\u{9f}\n".as_bytes()]),
            "\\x00\\x07\\x0b\\x1b[2J\\x7f\\u{85}\\u{9f}\n"
        );
        assert_eq!(
            shown(&["\u{202a}\u{202e}olleh\u{202c}\u{2066}\u{2069}\n".as_bytes()]),
            "\\u{202a}\\u{202e}olleh\\u{202c}\\u{2066}\\u{2069}\n"
        );
        // Neighbours of the bidi controls are ordinary text.
        assert_eq!(
            shown(&["\u{2029}\u{202f}\u{2065}\u{206a}\n".as_bytes()]),
            "\u{2029}\u{202f}\u{2065}\u{206a}\n"
        );
    }

    #[test]
    fn invalid_utf8_is_escaped_byte_by_byte() {
        assert_eq!(shown(&[b"a\xffb\xc3(\n"]), "a\\xffb\\xc3(\n");
        assert_eq!(shown(&[b"cut \xe2\x80"]), "cut \\xe2\\x80\n");
    }

    #[test]
    fn a_character_split_across_reads_is_shown_whole() {
        let bytes = "é\u{202e}€😀\n".as_bytes();
        let expected = "é\\u{202e}€😀\n";
        for split in 0..=bytes.len() {
            assert_eq!(shown(&[&bytes[..split], &bytes[split..]]), expected);
        }
        let one_at_a_time: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(shown(&one_at_a_time), expected);
    }

    #[test]
    fn a_held_byte_that_turns_out_invalid_is_escaped() {
        assert_eq!(shown(&[b"x\xe2", b"y\n"]), "x\\xe2y\n");
    }

    #[test]
    fn an_unterminated_last_line_is_ended() {
        assert_eq!(shown(&[b"welcome a\nfrom"]), "welcome a\nfrom\n");
        assert_eq!(shown(&[b"welcome a\n"]), "welcome a\n");
        assert_eq!(shown(&[]), "");
    }

    #[test]
    fn a_long_line_is_shown_as_it_arrives() {
        let mut escaper = Escaper::default();
        assert_eq!(escaper.push(b"from a: "), "from a: ");
        assert_eq!(escaper.push(b"more"), "more");
        assert_eq!(escaper.finish(), "\n");
    }
}
