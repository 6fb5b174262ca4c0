//! `idle`: C logged-in connections held open; what each one costs the server.
//!
//! The server's RSS is read before the first connection and after the last
//! login; the difference divided by C is the cost of one idle connection.
//! Connections come from 127.0.0.1, 127.0.0.2, ... (`--per-source` each),
//! since one source address has only about 28,000 ephemeral ports towards
//! one server port. Both this process and the server need an open-file
//! limit above C (`ulimit -n`; the bench raises its own soft limit to the
//! hard one, and a `--spawn`ed server inherits it).
//!
//! Verification: every login is welcomed, and with all C open the first
//! and the last connection can still message each other.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use socket2::SockRef;

use super::client;
use super::report::Report;
use super::target::Target;
use super::verify::{Fault, Faults};

/// Time for the server to settle (finish processing logins, return freed
/// memory) before its RSS is read.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Args)]
pub struct IdleArgs {
    /// Connections to open, log in and hold.
    #[arg(long, short = 'c', default_value_t = 1000)]
    clients: usize,

    /// Seconds to hold them all open before closing.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    hold: f64,

    /// Connections per source address (127.0.0.1, then 127.0.0.2, ...).
    #[arg(long, default_value_t = 10_000)]
    per_source: usize,

    /// Threads opening connections in parallel.
    #[arg(long, default_value_t = 4)]
    threads: usize,
}

impl IdleArgs {
    pub fn run(self, target: &Target, deadline: Duration) -> io::Result<Report> {
        if self.clients < 2 || self.threads == 0 || self.per_source == 0 {
            return Err(io::Error::other(
                "idle needs --clients >= 2, --threads >= 1 and --per-source >= 1",
            ));
        }
        let deadline = Instant::now() + deadline;
        let memory_before = target.probe.map(|probe| probe.memory()).transpose()?;
        let progress = ProgressBar::new(self.clients as u64);
        progress.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} logged in, {per_sec}")
                .expect("the template is valid"),
        );
        let started = Instant::now();
        let (connections, mut faults) = self.open_all(target, deadline, &progress);
        let login_time = started.elapsed();
        progress.finish_and_clear();

        let mut report = Report::new("idle");
        report.count(
            "connections",
            "connections logged in",
            connections.len() as u64,
            "",
        );
        report.rate(
            "logins_per_sec",
            "logins per second",
            connections.len() as f64 / login_time.as_secs_f64(),
            "/s",
        );
        if faults.is_empty() {
            thread::sleep(SETTLE);
            if let (Some(probe), Some(before)) = (target.probe, memory_before) {
                let after = probe.memory()?;
                let growth = after.rss.saturating_sub(before.rss);
                report.mebibytes(
                    "server_rss_before_mib",
                    "server RSS before",
                    before.rss as f64,
                );
                report.mebibytes(
                    "server_rss_mib",
                    "server RSS with all open",
                    after.rss as f64,
                );
                report.rate(
                    "rss_per_connection_bytes",
                    "server RSS per idle connection",
                    growth as f64 / connections.len() as f64,
                    "B",
                );
            }
            if let Err(fault) = still_delivers(&connections) {
                faults.push(fault);
            }
            thread::sleep(Duration::from_secs_f64(self.hold.max(0.0)));
        }
        report.faults(faults);
        Ok(report)
    }

    /// Opens and logs in every connection, `threads` at a time.
    fn open_all(
        &self,
        target: &Target,
        deadline: Instant,
        progress: &ProgressBar,
    ) -> (Vec<(String, TcpStream)>, Faults) {
        let opened = Mutex::new(Vec::with_capacity(self.clients));
        let faults = Mutex::new(Faults::default());
        thread::scope(|scope| {
            for first in 0..self.threads {
                let (opened, faults) = (&opened, &faults);
                scope.spawn(move || {
                    for i in (first..self.clients).step_by(self.threads) {
                        if Instant::now() > deadline {
                            let fault = Fault::Other("timed out opening connections".into());
                            return faults.lock().expect("no panics").push(fault);
                        }
                        let name = client::name(i);
                        match open(target, self.source(i), &name) {
                            Ok(stream) => opened.lock().expect("no panics").push((i, name, stream)),
                            Err(error) => {
                                let fault = Fault::Other(format!("connection {i}: {error}"));
                                return faults.lock().expect("no panics").push(fault);
                            }
                        }
                        progress.inc(1);
                    }
                });
            }
        });
        let mut opened = opened.into_inner().expect("no panics");
        opened.sort_unstable_by_key(|&(i, _, _)| i);
        let connections = opened.into_iter().map(|(_, n, s)| (n, s)).collect();
        (connections, faults.into_inner().expect("no panics"))
    }

    /// The source address of connection `i`: 127.0.0.1 for the first
    /// `per_source`, then 127.0.0.2, and so on.
    fn source(&self, i: usize) -> IpAddr {
        let block = u8::try_from(i / self.per_source).unwrap_or(u8::MAX - 1);
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + block))
    }
}

fn open(target: &Target, source: IpAddr, name: &str) -> io::Result<TcpStream> {
    let mut stream = client::connect(target.addr, Some(source))?;
    // Reset instead of a graceful close at the end: tens of thousands of
    // ports left in TIME_WAIT would starve the next run of ports.
    SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
    client::login(&mut stream, name)?;
    Ok(stream)
}

/// With every connection open, the first and the last still exchange a
/// message each way.
fn still_delivers(connections: &[(String, TcpStream)]) -> Result<(), Fault> {
    let (Some(first), Some(last)) = (connections.first(), connections.last()) else {
        return Err(Fault::Other("no connections to check".into()));
    };
    for (sender, recipient) in [(first, last), (last, first)] {
        let ((from, mut to_server), (to, mut from_server)) =
            ((&sender.0, &sender.1), (&recipient.0, &recipient.1));
        let failed = |error: io::Error| Fault::Other(format!("{from} -> {to}: {error}"));
        to_server
            .write_all(format!("{to}: ping\n").as_bytes())
            .map_err(failed)?;
        let expected = format!("from {from}: ping\n");
        let mut got = vec![0; expected.len()];
        from_server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(failed)?;
        from_server.read_exact(&mut got).map_err(failed)?;
        if got != expected.as_bytes() {
            let got = String::from_utf8_lossy(&got);
            return Err(Fault::Other(format!(
                "{to} expected {expected:?}, got {got:?}"
            )));
        }
    }
    Ok(())
}
