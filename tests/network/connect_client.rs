//! `chinwag connect`, the interactive client, against a real server, and
//! against a fake one that sends what no chinwag server would: control
//! characters, invalid UTF-8 and a line with no end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

/// How long the client may take to print what it was sent, or to exit.
const CLIENT_LIMIT: Duration = Duration::from_secs(20);

/// A `chinwag connect` process with its stdin and stdout attached, killed
/// when dropped.
struct Connect {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Connect {
    fn start(server: &Server) -> Connect {
        Connect::start_at(server.addr)
    }

    fn start_at(addr: SocketAddr) -> Connect {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chinwag"))
            .args(["connect", &addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start chinwag connect");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Connect {
            child,
            stdin,
            stdout,
        }
    }

    fn type_line(&mut self, line: &str) {
        self.type_bytes(format!("{line}\n").as_bytes());
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn stdout(&mut self) -> &mut BufReader<ChildStdout> {
        self.stdout.as_mut().expect("stdout not handed out")
    }

    fn expect(&mut self, expected: &str) {
        let mut line = String::new();
        self.stdout().read_line(&mut line).unwrap();
        assert_eq!(line, format!("{expected}\n"));
    }

    /// What the client prints, a read at a time, from a thread: a client
    /// that prints nothing fails a test after a while instead of hanging it.
    fn printed(&mut self) -> mpsc::Receiver<Vec<u8>> {
        let mut stdout = self.stdout.take().expect("stdout not handed out");
        let (printed, output) = mpsc::channel();
        thread::spawn(move || {
            let mut chunk = vec![0; 64 * 1024];
            while let Ok(read @ 1..) = stdout.read(&mut chunk) {
                if printed.send(chunk[..read].to_vec()).is_err() {
                    break;
                }
            }
        });
        output
    }

    /// Waits at most [`CLIENT_LIMIT`] for the client to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < CLIENT_LIMIT, "the client did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Closes stdin and waits for the client to exit, returning the rest
    /// of its output.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        while self.stdout().read_line(&mut rest).unwrap() > 0 {}
        assert!(self.child.wait().unwrap().success());
        rest
    }
}

impl Drop for Connect {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-connection server on loopback that runs `script` on the
/// connection it accepts.
fn fake_server(script: impl FnOnce(TcpStream) + Send + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the client connects");
        script(stream);
    });
    addr
}

#[test]
fn two_connect_clients_chat() {
    let server = Server::start(&[]);
    let mut alice = Connect::start(&server);
    let mut bob = Connect::start(&server);
    alice.type_line("alice");
    alice.expect("welcome alice");
    bob.type_line("bob");
    bob.expect("welcome bob");
    alice.type_line("bob: hi bob");
    bob.expect("from alice: hi bob");
    bob.type_line("alice: hi alice");
    alice.expect("from bob: hi alice");
    assert_eq!(alice.finish(), "");
    assert_eq!(bob.finish(), "");
}

#[test]
fn piped_input_gets_all_its_replies_before_the_client_exits() {
    let server = Server::start(&[]);
    let mut client = Connect::start(&server);
    client.type_line("carol");
    client.type_line("carol: one");
    client.type_line("nobody: two");
    assert_eq!(
        client.finish(),
        "welcome carol\nfrom carol: one\nerror: no such peer: nobody\n"
    );
}

#[test]
fn connecting_to_a_closed_port_fails_with_a_message() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_chinwag"))
        .args(["connect", &addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn stdin_goes_to_the_server_as_it_is_and_the_server_judges_it() {
    let server = Server::start(&[]);
    let mut client = Connect::start(&server);
    client.type_bytes(b"alice\n\xff\xfe not utf-8\nalice: still here\n");
    assert_eq!(
        client.finish(),
        "welcome alice\nerror: invalid utf-8\nfrom alice: still here\n"
    );
}

#[test]
fn control_characters_from_the_server_are_shown_escaped() {
    let addr = fake_server(|mut stream| {
        let sent: &[&[u8]] = &[
            b"welcome x\n",
            // A CR would let mallory's line overwrite alice's on a terminal.
            b"from alice: x\rfrom mallory: y\n",
            // ESC sequences, BEL, VT, DEL and NUL; TAB is harmless.
            b"from a: \x1b[2J\x1b]0;title\x07\x0b\x7f\x00\tend\n",
            // C1 controls (NEL, CSI) and bidi controls, as UTF-8.
            "from a: \u{85}\u{9b}31m \u{202e}txt.exe\u{202c} \u{2066}x\u{2069}\n".as_bytes(),
            // Invalid UTF-8, and a character cut in two by a flush.
            b"from a: \xff\xc3( \xe2\x82",
        ];
        for piece in sent {
            stream.write_all(piece).unwrap();
            stream.flush().unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        stream.write_all(b"\xac \xe2\x82\n").unwrap();
    });
    let client = Connect::start_at(addr);
    assert_eq!(
        client.finish(),
        concat!(
            "welcome x\n",
            "from alice: x\\rfrom mallory: y\n",
            "from a: \\x1b[2J\\x1b]0;title\\x07\\x0b\\x7f\\x00\tend\n",
            "from a: \\u{85}\\u{9b}31m \\u{202e}txt.exe\\u{202c} \\u{2066}x\\u{2069}\n",
            "from a: \\xff\\xc3( \u{20ac} \\xe2\\x82\n",
        )
    );
}

#[test]
fn a_line_with_no_end_is_printed_as_it_arrives_in_bounded_memory() {
    /// Far more than the client may hold.
    const ENDLESS_LINE_BYTES: usize = 64 * 1024 * 1024;
    /// The client's peak memory must stay under this.
    const CLIENT_PEAK_RSS_KIB_MAX: u64 = 32 * 1024;
    let (finish, finished) = mpsc::channel::<()>();
    let addr = fake_server(move |mut stream| {
        stream.write_all(b"welcome x\nfrom a: ").unwrap();
        let piece = vec![b'a'; 1024 * 1024];
        for _ in 0..ENDLESS_LINE_BYTES / piece.len() {
            if stream.write_all(&piece).is_err() {
                return;
            }
        }
        // The line ends only once the test has seen it all printed.
        let _ = finished.recv_timeout(CLIENT_LIMIT);
        let _ = stream.write_all(b"\n");
    });
    let mut client = Connect::start_at(addr);
    let output = client.printed();
    let expected_head = b"welcome x\nfrom a: ";
    let mut head = Vec::new();
    let mut body_bytes = 0;
    let deadline = Instant::now() + CLIENT_LIMIT;
    while body_bytes < ENDLESS_LINE_BYTES {
        let wait = deadline.saturating_duration_since(Instant::now());
        let Ok(piece) = output.recv_timeout(wait) else {
            panic!("printed {body_bytes} of {ENDLESS_LINE_BYTES} bytes of an unterminated line");
        };
        let in_head = (expected_head.len() - head.len()).min(piece.len());
        head.extend_from_slice(&piece[..in_head]);
        assert!(expected_head.starts_with(&head), "{head:?}");
        let body = &piece[in_head..];
        assert!(body.iter().all(|&byte| byte == b'a'), "{body:?}");
        body_bytes += body.len();
    }
    let peak_kib = peak_rss_kib(client.child.id());
    assert!(
        peak_kib < CLIENT_PEAK_RSS_KIB_MAX,
        "the client's peak memory was {peak_kib} KiB"
    );
    finish.send(()).unwrap();
    let rest = output
        .recv_timeout(CLIENT_LIMIT)
        .expect("the end of the line");
    assert_eq!(rest, b"\n");
    let status = client.wait_exit();
    assert!(status.success(), "{status}");
}

/// The peak resident memory of process `pid`, in KiB, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}
