//! `chinwag connect`, the interactive client, against a real server.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::support::Server;

/// A `chinwag connect` process with its stdin and stdout attached.
struct Connect {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Connect {
    fn start(server: &Server) -> Connect {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chinwag"))
            .args(["connect", &server.addr.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start chinwag connect");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Connect {
            child,
            stdin,
            stdout,
        }
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn expect(&mut self, expected: &str) {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line, format!("{expected}\n"));
    }

    /// Closes stdin and waits for the client to exit, returning the rest
    /// of its output.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let mut rest = String::new();
        while self.stdout.read_line(&mut rest).unwrap() > 0 {}
        assert!(self.child.wait().unwrap().success());
        rest
    }
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
