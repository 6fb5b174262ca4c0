//! Support for the real-network tests: the built `chinwag` binary as a
//! child process on a loopback port, and line-oriented blocking clients.
//!
//! Every wait is bounded: sockets have read timeouts and polls have a fixed
//! number of attempts, so a broken server fails a test instead of hanging it.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// How long any single read may wait before the test fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags for a queue bound so large that only a timeout can cut a reader
/// who never reads, and lines long enough to fill buffers quickly.
pub const HUGE_QUEUE: [&str; 4] = ["--max-queue", "268435456", "--max-line", "65536"];

/// The length of one line of `Server::flood_a_client_who_never_reads`.
pub const FLOOD_LINE_BYTES: usize = 60_000;

/// A `chinwag serve` process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The IRC listener's address, when started with `--irc-listen`.
    pub irc_addr: Option<SocketAddr>,
}

impl Server {
    /// Starts the server on a free loopback port with extra flags. With
    /// `--irc-listen`, it also reads the IRC listener's address, which the
    /// server prints on the line after its first.
    pub fn start(flags: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chinwag"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chinwag serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let addr = read_address(&mut stdout, "chinwag listening on ");
        let irc_addr = flags
            .contains(&"--irc-listen")
            .then(|| read_address(&mut stdout, "chinwag listening for IRC on "));
        Server {
            child,
            addr,
            irc_addr,
        }
    }

    /// The IRC listener's address; panics if the server has none.
    pub fn irc_addr(&self) -> SocketAddr {
        self.irc_addr.expect("started with --irc-listen")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Connects and logs in, asserting the welcome.
    pub fn login(&self, name: &str) -> Client {
        let mut client = self.connect();
        client.log_in(name);
        client
    }

    /// Logs in bob, with a tiny window, and alice, who sends bob `lines`
    /// lines of `FLOOD_LINE_BYTES` that he never reads: a few hundred fill
    /// every kernel buffer between the server and bob. Returns both.
    pub fn flood_a_client_who_never_reads(&self, lines: usize) -> (Client, Client) {
        let bob = self.login_small_window("bob");
        let mut alice = self.login("alice");
        alice.send_many(&format!("bob: {}", "w".repeat(FLOOD_LINE_BYTES)), lines);
        (bob, alice)
    }

    /// Connects with a tiny receive buffer and logs in: a client that
    /// stalls the server's writes soon after it stops reading.
    pub fn login_small_window(&self, name: &str) -> Client {
        self.login_with_window(name, 4096)
    }

    /// Connects with a receive buffer of `bytes` and logs in.
    pub fn login_with_window(&self, name: &str, bytes: usize) -> Client {
        login_with_buffers(self.addr, name, Some(bytes), None)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits at most `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The server's peak resident memory, in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one line of the server's stdout, `prefix` and an address.
fn read_address(stdout: &mut impl BufRead, prefix: &str) -> SocketAddr {
    let mut banner = String::new();
    stdout
        .read_line(&mut banner)
        .expect("read the listening line");
    banner
        .trim()
        .strip_prefix(prefix)
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address after {prefix:?} in {banner:?}"))
}

/// Connects to `addr` with the given kernel buffer sizes (the system's,
/// autotuned, where `None`) and logs in as `name`. Small buffers make
/// flow control show quickly: a receive buffer on a client that stops
/// reading, a send buffer on a client whose writes should stall.
pub fn login_with_buffers(
    addr: SocketAddr,
    name: &str,
    receive: Option<usize>,
    send: Option<usize>,
) -> Client {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if let Some(bytes) = receive {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    if let Some(bytes) = send {
        socket.set_send_buffer_size(bytes).unwrap();
    }
    socket.connect(&addr.into()).unwrap();
    let mut client = Client::from_stream(TcpStream::from(socket));
    client.log_in(name);
    client
}

/// A blocking line client.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        Client::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let writer = stream.try_clone().unwrap();
        Client {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Sends `line` with an LF.
    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\n").as_bytes());
    }

    /// Sends `line` `count` times.
    pub fn send_many(&mut self, line: &str, count: usize) {
        for _ in 0..count {
            self.send(line);
        }
    }

    pub fn log_in(&mut self, name: &str) {
        self.send(name);
        self.expect(&format!("welcome {name}"));
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write to server");
    }

    /// Writes copies of `line` (which ends with LF) until the server stops
    /// taking them: until no byte is accepted for `stall`, or `limit`
    /// bytes were written without such a stall. Returns the bytes written
    /// and, if the writes stalled, the unwritten rest of the copy they
    /// stalled in (empty if none), which must be sent before anything else.
    pub fn write_until_stalled(
        &mut self,
        line: &[u8],
        stall: Duration,
        limit: usize,
    ) -> (usize, Option<Vec<u8>>) {
        self.writer.set_write_timeout(Some(stall)).unwrap();
        let mut total = 0;
        let mut rest = None;
        'lines: while total < limit {
            let mut sent = 0;
            while sent < line.len() {
                match self.writer.write(&line[sent..]) {
                    Ok(0) => panic!("the server closed while we wrote"),
                    Ok(bytes) => {
                        sent += bytes;
                        total += bytes;
                    }
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                    {
                        rest = Some(line[sent..].to_vec());
                        break 'lines;
                    }
                    Err(error) => panic!("writing to server: {error}"),
                }
            }
        }
        self.writer.set_write_timeout(None).unwrap();
        (total, rest)
    }

    /// The next line from the server, without its LF; `None` at end of stream.
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert_eq!(line.pop(), Some(b'\n'), "unterminated line {line:?}");
                Some(String::from_utf8(line).expect("server sent invalid UTF-8"))
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(error) => panic!("reading from server: {error}"),
        }
    }

    /// Whether `name` is gone, as this client, logged in as `me`, learns it:
    /// it messages `name` and itself, and reads up to its own copy. Once
    /// `name` is gone, lines still on their way to it (a flood the server is
    /// working through) and the probe each bring an error about it.
    pub fn probe_is_gone(&mut self, me: &str, name: &str) -> bool {
        self.send(&format!("{name}, {me}: probe"));
        let own_copy = format!("from {me}: probe");
        let error = format!("error: no such peer: {name}");
        let mut gone = false;
        loop {
            match self.next_line() {
                Some(line) if line == own_copy => return gone,
                Some(line) if line == error => gone = true,
                other => panic!("{me} got {other:?}"),
            }
        }
    }

    /// Asserts the next line is `expected`.
    pub fn expect(&mut self, expected: &str) {
        assert_eq!(self.next_line().as_deref(), Some(expected));
    }

    /// Asserts the next line starts with `prefix`, and returns it.
    pub fn expect_prefix(&mut self, prefix: &str) -> String {
        let line = self.next_line().expect("a line, not end of stream");
        assert!(
            line.starts_with(prefix),
            "{line:?} should start with {prefix:?}"
        );
        line
    }

    /// Asserts the server closes the connection next, after no more lines.
    pub fn expect_closed(&mut self) {
        assert_eq!(self.next_line(), None, "expected the server to close");
    }

    /// Closes our sending side; the server sees end of stream.
    pub fn finish_sending(&mut self) {
        self.writer.shutdown(Shutdown::Write).unwrap();
    }

    pub fn raw_stream(&self) -> &TcpStream {
        &self.writer
    }

    /// Reads exactly `buffer.len()` bytes, whatever lines they cut.
    pub fn read_exact_bytes(&mut self, buffer: &mut [u8]) {
        self.reader.read_exact(buffer).expect("read from server");
    }

    /// Drains bytes until end of stream or reset, returning how many.
    pub fn drain_bytes(&mut self) -> usize {
        let mut total = 0;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.reader.read(&mut chunk) {
                Ok(0) => return total,
                Ok(read) => total += read,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {
                    return total;
                }
                Err(error) => panic!("draining: {error}"),
            }
        }
    }
}

/// Retries `attempt` until it returns true, at most `tries` times with a
/// short pause between, for effects that land once the server processes a
/// close it has not seen yet.
pub fn eventually(tries: u32, mut attempt: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if attempt() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}
