//! Wire dialects, so that `dm` and `fanout` can load other servers with the
//! same traffic and the same verification as chinwag (`--dialect`).
//!
//! A dialect does three things for the engine in [`traffic`](super::traffic):
//! it logs a connected socket in ([`Dialect::login`]), it encodes one
//! message to its destinations ([`Dialect::encode`]), and it turns the bytes
//! a client receives back into the lines chinwag would have delivered,
//! `from SENDER: TEXT` without the LF ([`Decoder`]), which the verifier
//! then checks as usual. Whatever the decoder cannot read as a delivery it
//! hands on as a line of its own, which the verifier reports as unexpected.
//!
//! | dialect | login (and its barrier) | a message to K names | a message to everyone (`fanout`) |
//! | --- | --- | --- | --- |
//! | `chinwag` | `NAME`, wait for `welcome NAME` | one line `n1, n2: TEXT` | one line naming every client |
//! | `tutorial` (async-std's a-chat) | `NAME`, then `NAME: login`, wait for its delivery | as chinwag | as chinwag |
//! | `redis` (pub/sub, RESP3) | `HELLO 3`, `SUBSCRIBE NAME [ALL]`, wait for the confirmations | K `PUBLISH n SENDER: TEXT`, in one write | one `PUBLISH ALL SENDER: TEXT` |
//! | `nats` | `CONNECT`, `SUB NAME`, [`SUB ALL`], `PING`, wait for `PONG` | K `PUB n SENDER: TEXT`, in one write | one `PUB ALL SENDER: TEXT` |
//!
//! Pub/sub servers know nothing of senders, so for redis and nats the
//! payload is `SENDER: TEXT`: exactly what chinwag's recipient gets after
//! `from `, and the decoder puts `from ` in front. `ALL` is a channel of
//! this run that every client subscribes to when the plan sends everything
//! to everyone; that is how pub/sub does a fanout (one publish, C
//! deliveries), where chinwag and a-chat get one line naming all C clients.
//! A delivery is, for every dialect, one stamped message arriving at one
//! client.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::ValueEnum;

use super::client;
use super::text::{self, Stamp};

/// How long a login may take before the run gives up on it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The text a `tutorial` client sends itself to learn that it is logged in.
const TUTORIAL_BARRIER: &str = "login";

/// Which server protocol the bench speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Dialect {
    /// chinwag (PROTOCOL.md).
    #[default]
    Chinwag,
    /// The async-std tutorial's `a-chat` server: chinwag's lines, but no
    /// welcome.
    Tutorial,
    /// redis-server pub/sub over RESP3: a channel per client.
    Redis,
    /// nats-server: a subject per client.
    Nats,
}

/// Where a message goes: the plan's names, or every client, which
/// pub/sub dialects reach with one publish to `channel`, or a chinwag room
/// (`room` is chinwag-only: main refuses it for other dialects).
#[derive(Clone, Copy)]
pub enum Route<'a> {
    Names(&'a [&'a str]),
    Everyone {
        names: &'a [&'a str],
        channel: &'a str,
    },
    Room(&'a str),
}

impl Dialect {
    /// Connects to `addr` and logs in as `name`, also subscribing to
    /// `everyone` (pub/sub dialects) if given. Returns once the server has
    /// surely processed the login, with nothing after it read.
    pub fn connect_as(
        self,
        addr: SocketAddr,
        name: &str,
        everyone: Option<&str>,
    ) -> io::Result<TcpStream> {
        let mut stream = client::connect(addr, None)?;
        match self {
            Dialect::Chinwag => client::login(&mut stream, name)?,
            _ => {
                stream.set_read_timeout(Some(LOGIN_TIMEOUT))?;
                self.login(&mut stream, name, everyone)
                    .map_err(|error| match error.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::other(
                            format!("login as {name}: no answer within {LOGIN_TIMEOUT:?}"),
                        ),
                        _ => error,
                    })?;
                stream.set_read_timeout(None)?;
            }
        }
        Ok(stream)
    }

    fn login(self, stream: &mut TcpStream, name: &str, everyone: Option<&str>) -> io::Result<()> {
        match self {
            Dialect::Chinwag => client::login(stream, name),
            Dialect::Tutorial => {
                // a-chat says nothing on login; a message to oneself comes
                // back only once the broker has registered the name.
                stream.write_all(format!("{name}\n{name}: {TUTORIAL_BARRIER}\n").as_bytes())?;
                let expected = format!("from {name}: {TUTORIAL_BARRIER}\n");
                let mut reply = vec![0; expected.len()];
                stream.read_exact(&mut reply)?;
                if reply != expected.as_bytes() {
                    return Err(io::Error::other(format!(
                        "login as {name} got {:?}, not its own message",
                        String::from_utf8_lossy(&reply)
                    )));
                }
                Ok(())
            }
            Dialect::Redis => {
                let mut command = format!("HELLO 3\r\nSUBSCRIBE {name}");
                if let Some(channel) = everyone {
                    command = format!("{command} {channel}");
                }
                stream.write_all(format!("{command}\r\n").as_bytes())?;
                let channels = 1 + usize::from(everyone.is_some());
                redis_handshake(stream, name, channels)
            }
            Dialect::Nats => {
                let mut command = format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":true}}\r\n\
                     SUB {name} 1\r\n"
                );
                if let Some(subject) = everyone {
                    command.push_str(&format!("SUB {subject} 2\r\n"));
                }
                command.push_str("PING\r\n");
                stream.write_all(command.as_bytes())?;
                nats_handshake(stream, name)
            }
        }
    }

    /// Appends message `stamp` of `sender` to `route`, its text padded to
    /// `size` bytes, as one write's worth of bytes.
    pub fn encode(self, out: &mut Vec<u8>, sender: &str, route: Route, stamp: Stamp, size: usize) {
        match self {
            Dialect::Chinwag | Dialect::Tutorial => {
                let names = match route {
                    Route::Names(names) | Route::Everyone { names, .. } => names,
                    Route::Room(room) => &[room][..],
                };
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.extend_from_slice(b", ");
                    }
                    out.extend_from_slice(name.as_bytes());
                }
                out.extend_from_slice(b": ");
                text::write_text(out, stamp, size);
                out.push(b'\n');
            }
            Dialect::Redis | Dialect::Nats => {
                let mut payload = Vec::with_capacity(sender.len() + 2 + size);
                payload.extend_from_slice(sender.as_bytes());
                payload.extend_from_slice(b": ");
                text::write_text(&mut payload, stamp, size);
                let channels = match route {
                    Route::Names(names) => names,
                    Route::Everyone { channel, .. } | Route::Room(channel) => &[channel][..],
                };
                for channel in channels {
                    if self == Dialect::Redis {
                        resp_command(out, &[b"PUBLISH", channel.as_bytes(), &payload]);
                    } else {
                        out.extend_from_slice(
                            format!("PUB {channel} {}\r\n", payload.len()).as_bytes(),
                        );
                        out.extend_from_slice(&payload);
                        out.extend_from_slice(b"\r\n");
                    }
                }
            }
        }
    }

    /// A decoder for what a logged-in client of this dialect receives.
    pub fn decoder(self) -> Decoder {
        Decoder {
            dialect: self,
            line: Vec::new(),
            pings: 0,
        }
    }
}

/// Appends a RESP command (an array of bulk strings).
fn resp_command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// Reads HELLO's reply and one `subscribe` confirmation per channel.
fn redis_handshake(stream: &mut TcpStream, name: &str, channels: usize) -> io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0; 4096];
    let mut start = 0;
    let mut confirmed = 0;
    let mut hello = false;
    while !(hello && confirmed == channels) {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            return Err(io::Error::other(format!(
                "login as {name}: redis closed the connection"
            )));
        }
        buffer.extend_from_slice(&chunk[..read]);
        while let Some(end) = resp_value_end(&buffer, start).map_err(io::Error::other)? {
            let frame = &buffer[start..end];
            match frame[0] {
                b'%' | b'*' if !hello => hello = true,
                b'>' if resp_strings(frame).next() == Some(Some(b"subscribe")) => {
                    confirmed += 1;
                }
                _ => {
                    return Err(io::Error::other(format!(
                        "login as {name}: redis answered {:?} (RESP3 needs redis 6 or later)",
                        String::from_utf8_lossy(frame)
                    )));
                }
            }
            start = end;
        }
    }
    if start != buffer.len() {
        return Err(io::Error::other(format!(
            "login as {name}: redis sent more than the handshake"
        )));
    }
    Ok(())
}

/// Reads `INFO` and the `PONG` that answers the login's `PING`.
fn nats_handshake(stream: &mut TcpStream, name: &str) -> io::Result<()> {
    let mut reader = BufReader::new(&*stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::other(format!(
                "login as {name}: nats closed the connection"
            )));
        }
        match line.trim_end() {
            "PONG" => break,
            "+OK" => {}
            other if other.starts_with("INFO ") => {}
            other => {
                return Err(io::Error::other(format!(
                    "login as {name}: nats answered {other:?}"
                )));
            }
        }
    }
    if !reader.buffer().is_empty() {
        return Err(io::Error::other(format!(
            "login as {name}: nats sent more than the handshake"
        )));
    }
    Ok(())
}

/// Turns the bytes a logged-in client receives into chinwag's delivery
/// lines, and counts the server's pings that want a `PONG` (nats).
pub struct Decoder {
    dialect: Dialect,
    /// Scratch for a line put together from a payload.
    line: Vec<u8>,
    /// Pings received and not yet taken with [`Decoder::take_pings`].
    pings: u32,
}

impl Decoder {
    /// Decodes every complete unit at the start of `bytes`, calling
    /// `on_line` for each line; returns the bytes consumed (the rest is an
    /// unfinished unit, to be given again with more after it).
    pub fn decode(&mut self, bytes: &[u8], on_line: &mut impl FnMut(&[u8])) -> usize {
        match self.dialect {
            Dialect::Chinwag | Dialect::Tutorial => split_lines(bytes, on_line),
            Dialect::Redis => self.decode_resp(bytes, on_line),
            Dialect::Nats => self.decode_nats(bytes, on_line),
        }
    }

    /// The number of `PING`s received since the last call.
    pub fn take_pings(&mut self) -> u32 {
        std::mem::take(&mut self.pings)
    }

    /// Hands on `from ` + `payload`.
    fn deliver(&mut self, payload: &[u8], on_line: &mut impl FnMut(&[u8])) {
        self.line.clear();
        self.line.extend_from_slice(b"from ");
        self.line.extend_from_slice(payload);
        on_line(&self.line);
    }

    fn decode_resp(&mut self, bytes: &[u8], on_line: &mut impl FnMut(&[u8])) -> usize {
        let mut start = 0;
        loop {
            let end = match resp_value_end(bytes, start) {
                Ok(Some(end)) => end,
                Ok(None) => return start,
                Err(error) => {
                    // Unparseable: hand the rest on as a line, so the run fails.
                    on_line(format!("{error}: {:?}", String::from_utf8_lossy(bytes)).as_bytes());
                    return bytes.len();
                }
            };
            let frame = &bytes[start..end];
            match frame[0] {
                // A PUBLISH's reply: how many subscribers got it.
                b':' => {}
                b'>' => {
                    let mut strings = resp_strings(frame);
                    match [(); 4].map(|()| strings.next()) {
                        [
                            Some(Some(b"message")),
                            Some(_channel),
                            Some(Some(payload)),
                            None,
                        ] => {
                            self.deliver(payload, on_line);
                        }
                        _ => on_line(trim_crlf(frame)),
                    }
                }
                _ => on_line(trim_crlf(frame)),
            }
            start = end;
        }
    }

    fn decode_nats(&mut self, bytes: &[u8], on_line: &mut impl FnMut(&[u8])) -> usize {
        let mut start = 0;
        while let Some(lf) = memchr::memchr(b'\n', &bytes[start..]) {
            let header = trim_crlf(&bytes[start..start + lf + 1]);
            let body = start + lf + 1;
            if let Some(fields) = header.strip_prefix(b"MSG ") {
                // MSG <subject> <sid> [reply-to] <#bytes>
                let Some(len) = fields
                    .rsplit(|&b| b == b' ')
                    .next()
                    .and_then(|len| std::str::from_utf8(len).ok()?.parse::<usize>().ok())
                else {
                    on_line(header);
                    start = body;
                    continue;
                };
                if bytes.len() < body + len + 2 {
                    return start;
                }
                if &bytes[body + len..body + len + 2] != b"\r\n" {
                    on_line(b"nats: a MSG payload not followed by CRLF");
                }
                self.deliver(&bytes[body..body + len], on_line);
                start = body + len + 2;
                continue;
            }
            match header {
                b"PING" => self.pings += 1,
                b"PONG" | b"+OK" => {}
                _ if header.starts_with(b"INFO ") => {}
                _ => on_line(header),
            }
            start = body;
        }
        start
    }
}

/// Calls `on_line` for every LF-terminated line (without its LF); returns
/// the bytes consumed.
fn split_lines(bytes: &[u8], on_line: &mut impl FnMut(&[u8])) -> usize {
    let mut start = 0;
    while let Some(lf) = memchr::memchr(b'\n', &bytes[start..]) {
        on_line(&bytes[start..start + lf]);
        start += lf + 1;
    }
    start
}

fn trim_crlf(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Where the RESP3 value starting at `start` ends: `Ok(None)` if `bytes`
/// does not hold all of it yet.
fn resp_value_end(bytes: &[u8], start: usize) -> Result<Option<usize>, String> {
    let Some(lf) = memchr::memchr(b'\n', bytes.get(start..).unwrap_or_default()) else {
        return Ok(None);
    };
    let header = trim_crlf(&bytes[start..start + lf + 1]);
    let after = start + lf + 1;
    let Some(&kind) = header.first() else {
        return Err("an empty RESP line".into());
    };
    let count = || -> Result<i64, String> {
        std::str::from_utf8(&header[1..])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad RESP length {:?}", String::from_utf8_lossy(header)))
    };
    match kind {
        // Simple string, error, integer, null, double, boolean, big number.
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(after)),
        // Blob string, blob error, verbatim string.
        b'$' | b'!' | b'=' => {
            let len = count()?;
            if len < 0 {
                return Ok(Some(after));
            }
            let end = after + len as usize + 2;
            Ok((bytes.len() >= end).then_some(end))
        }
        // Array, set, push; map and attribute have two values per entry.
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let len = count()?;
            let values = if matches!(kind, b'%' | b'|') {
                len * 2
            } else {
                len
            };
            let mut end = after;
            for _ in 0..values.max(0) {
                match resp_value_end(bytes, end)? {
                    Some(next) => end = next,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute precedes the value it describes.
                return resp_value_end(bytes, end);
            }
            Ok(Some(end))
        }
        _ => Err(format!(
            "not RESP: {:?}",
            String::from_utf8_lossy(&header[..header.len().min(40)])
        )),
    }
}

/// The elements of a complete aggregate frame, in order: blob and simple
/// strings as their bytes, anything else as `None`.
fn resp_strings(frame: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    let mut at = memchr::memchr(b'\n', frame).map_or(frame.len(), |lf| lf + 1);
    std::iter::from_fn(move || {
        let end = resp_value_end(frame, at).ok()??;
        let element = &frame[at..end];
        at = end;
        Some(match element[0] {
            b'$' => {
                let lf = memchr::memchr(b'\n', element).expect("a complete value");
                Some(&element[lf + 1..element.len() - 2])
            }
            b'+' => Some(trim_crlf(&element[1..])),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` to a decoder in pieces of `piece` bytes, as reads
    /// would, and collects the lines.
    fn decode_in_pieces(dialect: Dialect, bytes: &[u8], piece: usize) -> (Vec<String>, u32) {
        let mut decoder = dialect.decoder();
        let mut lines = Vec::new();
        let mut pending = Vec::new();
        let mut pings = 0;
        for chunk in bytes.chunks(piece) {
            pending.extend_from_slice(chunk);
            let consumed = decoder.decode(&pending, &mut |line: &[u8]| {
                lines.push(String::from_utf8(line.to_vec()).unwrap());
            });
            pending.drain(..consumed);
            pings += decoder.take_pings();
        }
        assert!(pending.is_empty(), "everything was consumed");
        (lines, pings)
    }

    fn stamp(seq: u32) -> Stamp {
        Stamp {
            sender: 2,
            seq,
            sent_micros: 99,
        }
    }

    #[test]
    fn line_dialects_write_chinwags_line() {
        let mut out = Vec::new();
        let names = ["b1-3", "b1-4"];
        Dialect::Tutorial.encode(&mut out, "b1-2", Route::Names(&names), stamp(5), 12);
        assert_eq!(out, b"b1-3, b1-4: i2 q5 t99...\n");
        out.clear();
        let everyone = Route::Everyone {
            names: &names,
            channel: "b1-all",
        };
        Dialect::Chinwag.encode(&mut out, "b1-2", everyone, stamp(5), 0);
        assert_eq!(out, b"b1-3, b1-4: i2 q5 t99\n");
        out.clear();
        Dialect::Chinwag.encode(&mut out, "b1-2", Route::Room("#b1-r0"), stamp(5), 0);
        assert_eq!(out, b"#b1-r0: i2 q5 t99\n");
    }

    #[test]
    fn redis_publishes_once_per_name_or_once_to_everyone() {
        let mut out = Vec::new();
        Dialect::Redis.encode(&mut out, "b1-2", Route::Names(&["x", "yz"]), stamp(5), 0);
        let one = |channel: &str| {
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n$15\r\nb1-2: i2 q5 t99\r\n",
                channel.len()
            )
        };
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            one("x") + &one("yz")
        );
        out.clear();
        let everyone = Route::Everyone {
            names: &["x", "yz"],
            channel: "all",
        };
        Dialect::Redis.encode(&mut out, "b1-2", everyone, stamp(5), 0);
        assert_eq!(String::from_utf8(out).unwrap(), one("all"));
    }

    #[test]
    fn nats_publishes_once_per_name() {
        let mut out = Vec::new();
        Dialect::Nats.encode(&mut out, "b1-2", Route::Names(&["x", "y"]), stamp(5), 0);
        assert_eq!(
            out,
            b"PUB x 15\r\nb1-2: i2 q5 t99\r\nPUB y 15\r\nb1-2: i2 q5 t99\r\n"
        );
    }

    #[test]
    fn redis_pushes_become_delivery_lines_however_the_reads_split() {
        let stream: &[u8] = b":1\r\n\
            >3\r\n$7\r\nmessage\r\n$4\r\nb1-3\r\n$15\r\nb1-2: i2 q5 t99\r\n\
            :3\r\n\
            >3\r\n$7\r\nmessage\r\n$6\r\nb1-all\r\n$9\r\nb1-7: a\r\n\r\n";
        for piece in 1..=stream.len() {
            let (lines, pings) = decode_in_pieces(Dialect::Redis, stream, piece);
            assert_eq!(
                lines,
                ["from b1-2: i2 q5 t99", "from b1-7: a\r\n"],
                "read {piece} bytes at a time"
            );
            assert_eq!(pings, 0);
        }
    }

    #[test]
    fn redis_errors_and_other_pushes_are_handed_on_to_fail_the_run() {
        let (lines, _) = decode_in_pieces(
            Dialect::Redis,
            b"-ERR unknown command\r\n>3\r\n$11\r\nunsubscribe\r\n$1\r\nx\r\n:0\r\n",
            3,
        );
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], "-ERR unknown command");
        assert!(lines[1].starts_with(">3"));
    }

    #[test]
    fn resp3_values_of_every_shape_are_measured() {
        let hello = b"%2\r\n+server\r\n$5\r\nredis\r\n+modules\r\n*0\r\n";
        assert_eq!(resp_value_end(hello, 0), Ok(Some(hello.len())));
        assert_eq!(resp_value_end(&hello[..hello.len() - 1], 0), Ok(None));
        assert_eq!(resp_value_end(b"$-1\r\n", 0), Ok(Some(5)));
        assert_eq!(resp_value_end(b"_\r\n:7\r\n", 3), Ok(Some(7)));
        assert_eq!(resp_value_end(b"|1\r\n+a\r\n+b\r\n:1\r\n", 0), Ok(Some(16)));
        assert!(resp_value_end(b"?\r\n", 0).is_err());
        let push = b">3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n";
        let strings: Vec<_> = resp_strings(push).collect();
        assert_eq!(strings, [Some(&b"subscribe"[..]), Some(b"x"), None]);
    }

    #[test]
    fn nats_msgs_become_delivery_lines_and_pings_are_counted() {
        let stream: &[u8] = b"PING\r\n\
            MSG b1-3 1 15\r\nb1-2: i2 q5 t99\r\n\
            +OK\r\nINFO {\"a\":1}\r\n\
            MSG b1-all 2 _INBOX.x 9\r\nb1-7: a\r\n\r\n\
            PONG\r\nPING\r\n";
        for piece in 1..=stream.len() {
            let (lines, pings) = decode_in_pieces(Dialect::Nats, stream, piece);
            assert_eq!(
                lines,
                ["from b1-2: i2 q5 t99", "from b1-7: a\r\n"],
                "read {piece} bytes at a time"
            );
            assert_eq!(pings, 2, "read {piece} bytes at a time");
        }
    }

    #[test]
    fn nats_errors_are_handed_on() {
        let (lines, _) = decode_in_pieces(Dialect::Nats, b"-ERR 'Slow Consumer'\r\n", 4);
        assert_eq!(lines, ["-ERR 'Slow Consumer'"]);
    }

    #[test]
    fn a_decoded_publish_verifies_like_a_chinwag_delivery() {
        let mut out = Vec::new();
        Dialect::Nats.encode(&mut out, "b1-2", Route::Names(&["b1-3"]), stamp(5), 64);
        let published = out.strip_prefix(b"PUB b1-3 70\r\n").unwrap().to_vec();
        let mut received = b"MSG b1-3 1 70\r\n".to_vec();
        received.extend_from_slice(&published);
        let (lines, _) = decode_in_pieces(Dialect::Nats, &received, 7);
        let delivery = text::parse_delivery(lines[0].as_bytes()).unwrap();
        assert_eq!(delivery.from, "b1-2");
        assert_eq!(delivery.stamp, stamp(5));
    }
}
