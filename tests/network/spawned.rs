//! A `chinwag serve` started from a command the test shapes (its stdout, its
//! descriptor limit), with its log read as it is written. It finds the
//! listening address in the log, so it works whatever happens to stdout.
//! Every wait is bounded, and the process is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long the server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct Spawned {
    child: Child,
    log: Receiver<String>,
    /// The log lines up to and including the one with the address.
    pub startup_log: Vec<String>,
    pub addr: SocketAddr,
}

impl Spawned {
    /// Runs `command` (which must run `chinwag serve`) with stderr piped, and
    /// waits for the address in its log.
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chinwag serve");
        let stderr = child.stderr.take().unwrap();
        let (lines, log) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_LIMIT;
        let mut startup_log = Vec::new();
        let addr = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = log.recv_timeout(wait) else {
                let _ = child.kill();
                let status = child.wait();
                panic!("no address logged (exit status {status:?}); log: {startup_log:#?}");
            };
            let addr = line
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok());
            startup_log.push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
        Spawned {
            child,
            log,
            startup_log,
            addr,
        }
    }

    /// The log lines written since the last look, without waiting.
    pub fn new_log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits at most `limit` for the server to exit, looking at least once.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if start.elapsed() >= limit {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
