//! What a bench message carries, so its recipient can check it.
//!
//! The text of every message is `i<sender> q<seq> t<micros>`, padded with
//! dots to the requested size: the sender's index (to check attribution
//! against the `from` name), its per-sender sequence number (to check
//! order and count), and the time it was due to be sent in microseconds
//! since the run's epoch (for latency; all clients share one process and
//! one clock).
//!
//! A delivery arrives as `from <sender>: <text>`, or, sent to a room, as
//! `from <sender> to <room>: <text>` (PROTOCOL.md, "Messages").

use std::io::Write;

/// The fields a recipient reads back from a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub sender: usize,
    pub seq: u32,
    pub sent_micros: u64,
}

/// A delivery line as received: `from <name>: <text>`, or
/// `from <name> to <room>: <text>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery<'a> {
    pub from: &'a str,
    /// The room it was sent to, if it was.
    pub to: Option<&'a str>,
    pub stamp: Stamp,
}

/// Appends `<destinations>: <stamped text>\n` to `out`, the text padded
/// to `size` bytes (at least the stamp itself).
pub fn write_message(out: &mut Vec<u8>, destinations: &str, stamp: Stamp, size: usize) {
    out.extend_from_slice(destinations.as_bytes());
    out.extend_from_slice(b": ");
    write_text(out, stamp, size);
    out.push(b'\n');
}

/// Appends the stamped text alone, padded to `size` bytes (at least the
/// stamp itself).
pub fn write_text(out: &mut Vec<u8>, stamp: Stamp, size: usize) {
    let text_start = out.len();
    write!(
        out,
        "i{} q{} t{}",
        stamp.sender, stamp.seq, stamp.sent_micros
    )
    .expect("writing to a Vec cannot fail");
    let text_len = out.len() - text_start;
    out.resize(out.len() + size.saturating_sub(text_len), b'.');
}

/// Reads a `from <name>: <text>` or `from <name> to <room>: <text>` line
/// whose text is stamped; `None` for anything else (an error line, a
/// foreign message). Names hold no spaces, so ` to ` can only separate the
/// sender from the room.
pub fn parse_delivery(line: &[u8]) -> Option<Delivery<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("from ")?;
    let (from, text) = rest.split_once(": ")?;
    let (from, to) = match from.split_once(" to ") {
        Some((from, room)) => (from, Some(room)),
        None => (from, None),
    };
    let mut fields = text.trim_end_matches('.').split(' ');
    let mut field = |prefix: char| fields.next()?.strip_prefix(prefix);
    let sender = field('i')?.parse().ok()?;
    let seq = field('q')?.parse().ok()?;
    let sent_micros = field('t')?.parse().ok()?;
    Some(Delivery {
        from,
        to,
        stamp: Stamp {
            sender,
            seq,
            sent_micros,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_message_parses_back_as_delivered() {
        let stamp = Stamp {
            sender: 7,
            seq: 42,
            sent_micros: 123_456,
        };
        let mut line = Vec::new();
        write_message(&mut line, "b1-3, b1-4", stamp, 64);
        let text = std::str::from_utf8(&line).unwrap();
        let (dests, body) = text.split_once(": ").unwrap();
        assert_eq!(dests, "b1-3, b1-4");
        assert_eq!(body.len(), 64 + 1, "padded text plus LF");
        let delivered = format!("from b1-7: {}", body.trim_end());
        let parsed = parse_delivery(delivered.as_bytes()).unwrap();
        assert_eq!(parsed.from, "b1-7");
        assert_eq!(parsed.to, None);
        assert_eq!(parsed.stamp, stamp);
    }

    #[test]
    fn a_room_delivery_names_its_room() {
        let parsed = parse_delivery(b"from b1-7 to #b1-r2: i7 q3 t9...").unwrap();
        assert_eq!(parsed.from, "b1-7");
        assert_eq!(parsed.to, Some("#b1-r2"));
        assert_eq!(
            parsed.stamp,
            Stamp {
                sender: 7,
                seq: 3,
                sent_micros: 9
            }
        );
    }

    #[test]
    fn other_lines_are_not_deliveries() {
        assert_eq!(parse_delivery(b"error: no such peer: b1-9"), None);
        assert_eq!(parse_delivery(b"from b1-2: hello"), None);
        assert_eq!(parse_delivery(b"welcome b1-2"), None);
    }
}
