//! One bench client's socket: connecting, logging in, reading lines.
//!
//! Names are `b<run>-<suffix>`, where `<run>` is unique to this bench
//! process, so runs against a long-lived server never collide.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Socket, Type};

use super::dialect::{Decoder, Dialect};

/// How long a login may take before the run gives up on it.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a [`LineReader`] reads at once; a burst of deliveries is usually
/// taken in one read.
const READ_BUFFER: usize = 64 * 1024;

/// The login name of client `suffix` in this run.
pub fn name(suffix: impl std::fmt::Display) -> String {
    // The pid tells concurrent runs apart, the clock successive ones.
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        format!(
            "{:x}",
            (u64::from(std::process::id()) << 12 ^ seconds) & 0xff_ffff
        )
    });
    format!("b{run}-{suffix}")
}

/// Connects to `addr`, from `source` if given (one source address has only
/// about 28,000 ephemeral ports towards one server port).
pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    socket.connect(&addr.into())?;
    let stream = TcpStream::from(socket);
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Logs in as `name` and waits for the welcome. Only the welcome's exact
/// bytes are read, so nothing that follows it is consumed here.
pub fn login(stream: &mut TcpStream, name: &str) -> io::Result<()> {
    stream.write_all(format!("{name}\n").as_bytes())?;
    let expected = format!("welcome {name}\n");
    let mut reply = vec![0; expected.len()];
    stream.set_read_timeout(Some(LOGIN_TIMEOUT))?;
    let read = stream.read_exact(&mut reply);
    stream.set_read_timeout(None)?;
    read.map_err(|error| match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::other(format!(
            "login as {name}: no welcome within {LOGIN_TIMEOUT:?} \
             (a server out of file descriptors accepts no more connections)"
        )),
        _ => error,
    })?;
    if reply != expected.as_bytes() {
        let reply = String::from_utf8_lossy(&reply);
        return Err(io::Error::other(format!(
            "login as {name} got {reply:?}, not a welcome"
        )));
    }
    Ok(())
}

/// Connects and logs in as `name`.
pub fn connect_as(addr: SocketAddr, name: &str) -> io::Result<TcpStream> {
    let mut stream = connect(addr, None)?;
    login(&mut stream, name).map(|()| stream)
}

/// Reads a socket a buffer at a time and hands out complete lines, as its
/// dialect's [`Decoder`] makes them out.
pub struct LineReader {
    stream: TcpStream,
    decoder: Decoder,
    buffer: Vec<u8>,
    /// Bytes of `buffer` holding data not yet handed out (an unfinished line).
    filled: usize,
}

impl LineReader {
    /// A reader of chinwag's lines.
    pub fn new(stream: TcpStream) -> Self {
        LineReader::with_decoder(stream, Dialect::Chinwag.decoder())
    }

    pub fn with_decoder(stream: TcpStream, decoder: Decoder) -> Self {
        LineReader {
            stream,
            decoder,
            buffer: vec![0; READ_BUFFER],
            filled: 0,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Pings the server sent that want an answer (see [`Decoder`]).
    pub fn take_pings(&mut self) -> u32 {
        self.decoder.take_pings()
    }

    /// Reads once, calling `on_line` with every line completed (without its
    /// LF). Returns the bytes read: 0 means the server closed the connection.
    pub fn read_lines(&mut self, mut on_line: impl FnMut(&[u8])) -> io::Result<usize> {
        if self.filled == self.buffer.len() {
            // A line longer than the buffer: make room for the rest of it.
            self.buffer.resize(self.buffer.len() * 2, 0);
        }
        let read = self.stream.read(&mut self.buffer[self.filled..])?;
        let end = self.filled + read;
        let start = self.decoder.decode(&self.buffer[..end], &mut on_line);
        self.buffer.copy_within(start..end, 0);
        self.filled = end - start;
        Ok(read)
    }
}
