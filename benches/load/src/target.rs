//! The server under test: an address, and a pid when its CPU time and
//! memory can be read.
//!
//! Either the user started it (`--addr`, optionally `--server-pid`) or the
//! bench spawns `chinwag serve --listen 127.0.0.1:0` itself (`--spawn`),
//! reads the bound address from its `listening on` line, and stops it with
//! SIGTERM when the run ends. The spawned binary is `--server-bin`, or else
//! the `chinwag` binary cargo put beside this one.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ServerArgs;
use super::dialect::Dialect;
use super::probe::Probe;

/// How long a spawned server gets to print its address, and to exit after
/// SIGTERM before it is killed.
const SPAWN_GRACE: Duration = Duration::from_secs(10);

/// The server a scenario talks to.
pub struct Target {
    pub addr: SocketAddr,
    /// The protocol it speaks.
    pub dialect: Dialect,
    /// Reads the server's CPU time and memory, if its pid is known.
    pub probe: Option<Probe>,
    /// The server process, if this run spawned it.
    child: Option<Child>,
}

impl Target {
    /// Spawns the server or checks the given address, as `args` say.
    pub fn start(args: &ServerArgs) -> io::Result<Target> {
        if args.spawn {
            if args.dialect != Dialect::Chinwag {
                return Err(io::Error::other(
                    "--spawn only spawns chinwag: start other servers yourself and \
                     give --addr and --server-pid",
                ));
            }
            return spawn(args);
        }
        if !args.addr.ip().is_loopback() {
            return Err(io::Error::other(format!(
                "{} is not a loopback address: the bench only targets 127.0.0.0/8 or ::1",
                args.addr
            )));
        }
        Ok(Target {
            addr: args.addr,
            dialect: args.dialect,
            probe: args.server_pid.map(Probe::new),
            child: None,
        })
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let Some(child) = &mut self.child else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill only sends a signal to the process we spawned.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + SPAWN_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The server binary cargo builds into the same directory as this one
/// (`target/release/chinwag` beside `target/release/chinwag-bench`).
fn default_server_bin(this_exe: &Path) -> PathBuf {
    this_exe.with_file_name(format!("chinwag{}", std::env::consts::EXE_SUFFIX))
}

fn spawn(args: &ServerArgs) -> io::Result<Target> {
    let binary = match &args.server_bin {
        Some(path) => path.clone(),
        None => {
            let binary = default_server_bin(&std::env::current_exe()?);
            if !binary.is_file() {
                return Err(io::Error::other(format!(
                    "no server binary at {}: build it first (`cargo build --release` \
                     for a release bench, `cargo build` for a debug one), \
                     or name one with --server-bin PATH",
                    binary.display()
                )));
            }
            binary
        }
    };
    let mut command = Command::new(&binary);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--max-queue"])
        .arg(args.max_queue.to_string());
    if let Some(seconds) = args.slow_timeout {
        command.arg("--slow-timeout").arg(seconds.to_string());
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| io::Error::other(format!("cannot run {}: {error}", binary.display())))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // The server prints its address once it accepts connections. Reading
    // blocks, so it happens on a thread the deadline below can abandon; the
    // thread keeps draining stdout so the server never writes to a closed pipe.
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some((_, addr)) = line.split_once("listening on ") {
                let _ = found.send(addr.trim().parse::<SocketAddr>());
            }
        }
    });
    match address.recv_timeout(SPAWN_GRACE) {
        Ok(Ok(addr)) => Ok(Target {
            addr,
            dialect: Dialect::Chinwag,
            probe: Some(Probe::new(child.id())),
            child: Some(child),
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other(format!(
                "{} did not print `listening on ADDR`",
                binary.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_server_is_the_chinwag_binary_beside_this_one() {
        let exe = Path::new("target/release/chinwag-bench");
        assert_eq!(
            default_server_bin(exe),
            Path::new(&format!(
                "target/release/chinwag{}",
                std::env::consts::EXE_SUFFIX
            ))
        );
    }
}
