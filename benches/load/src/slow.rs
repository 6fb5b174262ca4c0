//! `slow`: a client that never reads, flooded by others, while a healthy
//! pair measures its own latency.
//!
//! The slow client logs in and never reads. Flooders send it large messages
//! as fast as the server takes them, until the server cuts it as a slow
//! consumer; the flooders learn of the cut from `error: no such peer`.
//! Once its queue is past `--max-queue` the server pauses the flooders
//! (it stops reading from them, so their writes block) and cuts the slow
//! client only after its `--slow-timeout`; each flooder reads its replies
//! on a thread of its own, so a blocked write holds up nothing else.
//! (A server older than `--slow-timeout` cuts at once instead.)
//! The slow client then closes its socket and logs in again under a fresh
//! name (`slow<n>`, so each error names the cycle it belongs to), and the
//! flood moves on to the new name, for `--duration` seconds. Meanwhile a
//! healthy pair sends one stamped message every `--interval-ms`, checks that
//! every one arrives once and in order, and times each. Flooders pause from
//! a cut until the next login: flooding a name nobody holds only earns
//! error replies.
//!
//! Figures: the server's peak RSS above its idle baseline (sampled every
//! few milliseconds), how long after the flooders had sent `--max-queue`
//! bytes for a slow client the cut was seen (an upper bound on the
//! server's reaction: kernel socket buffers absorb some bytes first; with
//! the pause, about the slow timeout), and the healthy pair's latency.

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;

use super::client::{self, LineReader};
use super::report::Report;
use super::stats::Latencies;
use super::target::Target;
use super::text::{self, Stamp};
use super::verify::{Expectation, Fault, Faults, Inbox};

/// How often the server's RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);
/// How long readers block before checking whether the run is over.
const READ_POLL: Duration = Duration::from_millis(50);
/// Bytes of flood lines per write.
const FLOOD_BATCH: usize = 64 * 1024;
/// The pair's last messages get this long to arrive after the run.
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct SlowArgs {
    /// Clients flooding the slow one.
    #[arg(long, default_value_t = 4)]
    flooders: usize,

    /// Bytes of text per flood message.
    #[arg(long, value_name = "BYTES", default_value_t = 1000)]
    size: usize,

    /// Seconds to flood.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    duration: f64,

    /// Milliseconds between the healthy pair's messages.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    interval_ms: f64,
}

/// One slow client's life: logged in, flooded, cut.
struct Cycle {
    name: String,
    /// Bytes of deliveries the flooders have sent this slow client.
    flooded: u64,
    /// When `flooded` reached the server's `--max-queue`.
    passed: Option<Instant>,
    /// When a flooder first heard the slow client was gone.
    cut: Option<Instant>,
    /// The flood ended before the server cut it, and the tool closed its
    /// socket: a `no such peer` for it after that is no cut.
    abandoned: bool,
}

/// The flood's state, shared by the slow client and the flooders.
struct Flood {
    cycles: Mutex<Vec<Cycle>>,
    /// Signalled when a cycle's cut is seen.
    cut: Condvar,
    max_queue: u64,
    /// The flood is over: everyone stops.
    over: AtomicBool,
}

impl Flood {
    fn cycles(&self) -> std::sync::MutexGuard<'_, Vec<Cycle>> {
        self.cycles.lock().expect("no thread panics holding it")
    }
}

/// The healthy pair: `ping` sends every message to `pong`.
struct Pair {
    names: [String; 2],
}

impl Expectation for Pair {
    fn senders(&self) -> usize {
        1
    }
    fn name(&self, client: usize) -> &str {
        &self.names[client]
    }
    fn addresses(&self, _sender: usize, _seq: u32, recipient: usize) -> bool {
        recipient == 1
    }
}

impl SlowArgs {
    pub fn run(
        self,
        target: &Target,
        max_queue: usize,
        slow_timeout: Option<f64>,
        deadline: Duration,
    ) -> io::Result<Report> {
        let duration = Duration::from_secs_f64(self.duration.max(0.0));
        if duration + DRAIN > deadline {
            return Err(io::Error::other("--duration does not fit in --timeout"));
        }
        if slow_timeout.is_some_and(|slow| slow >= self.duration) {
            return Err(io::Error::other(
                "--duration must be longer than --slow-timeout, or no slow client is ever cut",
            ));
        }
        let interval = Duration::from_secs_f64(self.interval_ms.max(0.001) / 1e3);
        let pings = (duration.as_secs_f64() / interval.as_secs_f64()) as u32;
        let pair = Pair {
            names: [client::name("ping"), client::name("pong")],
        };
        let ping = client::connect_as(target.addr, &pair.names[0])?;
        let pong = LineReader::new(client::connect_as(target.addr, &pair.names[1])?);
        let mut flooders = Vec::new();
        for i in 0..self.flooders {
            let name = client::name(format!("flood{i}"));
            let stream = client::connect_as(target.addr, &name)?;
            flooders.push((name, stream));
        }
        let flood = Flood {
            cycles: Mutex::new(Vec::new()),
            cut: Condvar::new(),
            max_queue: max_queue as u64,
            over: AtomicBool::new(false),
        };
        let baseline = target.probe.map(|probe| probe.memory()).transpose()?;
        let epoch = Instant::now();

        let (peak_rss, pair_result, faults) = thread::scope(|scope| -> io::Result<_> {
            let flood = &flood;
            let sampler = scope.spawn(|| sample_peak_rss(target, flood));
            let pair = &pair;
            let pong = scope.spawn(move || receive_pings(pong, pair, pings, epoch, duration));
            let slow = scope.spawn(move || slow_client(target, flood));
            let mut floods = Vec::new();
            for (name, stream) in flooders {
                let reader = LineReader::new(stream.try_clone()?);
                let size = self.size;
                floods.push(scope.spawn(move || send_flood(&name, stream, size, flood)));
                floods.push(scope.spawn(move || hear_cuts(reader, flood)));
            }
            let ping_result = send_pings(ping, &pair.names[1], pings, interval, epoch);
            // The flood runs for the whole duration, however long pinging took.
            thread::sleep((epoch + duration).saturating_duration_since(Instant::now()));
            flood.over.store(true, Ordering::Relaxed);
            flood.cut.notify_all();
            let mut faults = Faults::default();
            for handle in floods.into_iter().chain([slow]) {
                if let Err(fault) = handle.join().expect("bench threads do not panic") {
                    faults.push(fault);
                }
            }
            if let Err(fault) = ping_result {
                faults.push(fault);
            }
            let peak = sampler.join().expect("bench threads do not panic");
            let pair_result = pong.join().expect("bench threads do not panic");
            Ok((peak, pair_result, faults))
        })?;

        let mut report = Report::new("slow");
        let mut faults = faults;
        let (pair_latencies, pair_faults) = pair_result;
        faults.extend(pair_faults);
        let cycles = flood.cycles.into_inner().expect("no thread panicked");
        let cut_count = cycles.iter().filter(|cycle| cycle.cut.is_some()).count();
        if cut_count == 0 {
            faults.push(Fault::Other(
                "the slow client was never cut (is the server's --slow-timeout \
                 longer than --duration?)"
                    .into(),
            ));
        }
        let mut cut_after_pass = Latencies::default();
        for cycle in &cycles {
            if let (Some(passed), Some(cut)) = (cycle.passed, cycle.cut) {
                cut_after_pass.record(cut.saturating_duration_since(passed).as_micros() as u64);
            }
        }
        let flooded: u64 = cycles.iter().map(|cycle| cycle.flooded).sum();
        report.count("slow_clients_cut", "slow clients cut", cut_count as u64, "");
        report.mebibytes(
            "flooded_mib",
            "bytes flooded at slow clients",
            flooded as f64,
        );
        report.latency(
            "cut_after_max_queue",
            "cut after max-queue",
            cut_after_pass.summary(),
        );
        if let (Some(baseline), Some(peak)) = (baseline, peak_rss) {
            report.mebibytes(
                "server_rss_idle_mib",
                "server RSS idle",
                baseline.rss as f64,
            );
            report.mebibytes(
                "server_rss_peak_above_idle_mib",
                "server RSS peak above idle",
                peak.saturating_sub(baseline.rss) as f64,
            );
        }
        report.latency(
            "pair_latency",
            "healthy pair latency",
            pair_latencies.summary(),
        );
        report.faults(faults);
        Ok(report)
    }
}

/// The highest RSS seen while the flood runs.
fn sample_peak_rss(target: &Target, flood: &Flood) -> Option<u64> {
    let probe = target.probe?;
    let mut peak = 0;
    while !flood.over.load(Ordering::Relaxed) {
        peak = peak.max(probe.memory().ok()?.rss);
        thread::sleep(SAMPLE_EVERY);
    }
    Some(peak)
}

/// Logs in under a fresh name, never reads, and once the flooders hear of
/// the cut, closes the socket and starts the next cycle.
fn slow_client(target: &Target, flood: &Flood) -> Result<(), Fault> {
    while !flood.over.load(Ordering::Relaxed) {
        let cycle = flood.cycles().len();
        let name = client::name(format!("slow{cycle}"));
        let socket = client::connect_as(target.addr, &name)
            .map_err(|error| Fault::Other(format!("slow client {name}: {error}")))?;
        let mut cycles = flood.cycles();
        cycles.push(Cycle {
            name,
            flooded: 0,
            passed: None,
            cut: None,
            abandoned: false,
        });
        while cycles[cycle].cut.is_none() && !flood.over.load(Ordering::Relaxed) {
            cycles = flood
                .cut
                .wait_timeout(cycles, READ_POLL)
                .expect("no thread panics holding it")
                .0;
        }
        cycles[cycle].abandoned = cycles[cycle].cut.is_none();
        drop(cycles);
        // Closing with unread data resets the connection at once.
        drop(socket);
    }
    Ok(())
}

/// Floods the current slow client with `size`-byte messages.
fn send_flood(name: &str, mut socket: TcpStream, size: usize, flood: &Flood) -> Result<(), Fault> {
    let text = ".".repeat(size);
    let delivered = ("from : \n".len() + name.len() + size) as u64;
    let mut batch = Vec::with_capacity(FLOOD_BATCH);
    while !flood.over.load(Ordering::Relaxed) {
        // Flood the newest slow client until its cut is heard; between a
        // cut and the next login, flooding would only earn error replies.
        let current = {
            let cycles = flood.cycles();
            let last = cycles.last().filter(|cycle| cycle.cut.is_none());
            last.map(|last| (cycles.len() - 1, last.name.clone()))
        };
        let Some((cycle, slow)) = current else {
            thread::sleep(Duration::from_millis(1));
            continue;
        };
        batch.clear();
        let mut lines = 0;
        while batch.len() < FLOOD_BATCH {
            writeln!(batch, "{slow}: {text}").expect("writing to a Vec cannot fail");
            lines += 1;
        }
        socket
            .write_all(&batch)
            .map_err(|error| Fault::Other(format!("flooder {name}: {error}")))?;
        let mut cycles = flood.cycles();
        let cycle = &mut cycles[cycle];
        cycle.flooded += lines * delivered;
        if cycle.passed.is_none() && cycle.flooded >= flood.max_queue {
            cycle.passed = Some(Instant::now());
        }
    }
    Ok(())
}

/// Reads a flooder's replies: each `no such peer` names a slow client the
/// server has cut.
fn hear_cuts(mut reader: LineReader, flood: &Flood) -> Result<(), Fault> {
    reader
        .stream()
        .set_read_timeout(Some(READ_POLL))
        .map_err(|error| Fault::Other(error.to_string()))?;
    let mut unexpected = None;
    // Errors come by the thousand per cut; only the first needs the lock.
    let mut last_heard = String::new();
    while !flood.over.load(Ordering::Relaxed) && unexpected.is_none() {
        let read = reader.read_lines(|line| {
            let line = String::from_utf8_lossy(line);
            let Some(gone) = line.strip_prefix("error: no such peer: ") else {
                unexpected.get_or_insert_with(|| line.into_owned());
                return;
            };
            if gone == last_heard {
                return;
            }
            last_heard = gone.to_string();
            let mut cycles = flood.cycles();
            match cycles.iter_mut().find(|cycle| cycle.name == gone) {
                Some(cycle) if cycle.abandoned => {}
                Some(cycle) => {
                    cycle.cut.get_or_insert_with(Instant::now);
                    flood.cut.notify_all();
                }
                None => {
                    unexpected.get_or_insert_with(|| line.into_owned());
                }
            }
        });
        match read {
            Ok(0) => return Err(Fault::Other("the server closed a flooder".into())),
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => return Err(Fault::Other(format!("a flooder could not read: {error}"))),
        }
    }
    match unexpected {
        Some(line) => Err(Fault::Other(format!("a flooder got {line:?}"))),
        None => Ok(()),
    }
}

/// Sends `count` stamped messages to `pong`, one every `interval`, each
/// stamped with its due time.
fn send_pings(
    mut ping: TcpStream,
    pong: &str,
    count: u32,
    interval: Duration,
    epoch: Instant,
) -> Result<(), Fault> {
    let mut line = Vec::new();
    for seq in 0..count {
        let due = interval * seq;
        thread::sleep(due.saturating_sub(epoch.elapsed()));
        line.clear();
        let stamp = Stamp {
            sender: 0,
            seq,
            sent_micros: due.as_micros() as u64,
        };
        text::write_message(&mut line, pong, stamp, 0);
        ping.write_all(&line)
            .map_err(|error| Fault::Other(format!("the healthy pair could not send: {error}")))?;
    }
    Ok(())
}

/// Receives and checks the healthy pair's messages, timing each.
fn receive_pings(
    mut pong: LineReader,
    pair: &Pair,
    count: u32,
    epoch: Instant,
    duration: Duration,
) -> (Latencies, Faults) {
    let mut inbox = Inbox::new(1, 1);
    let mut latencies = Latencies::default();
    let mut received = 0;
    let mut faults = Faults::default();
    if let Err(error) = pong.stream().set_read_timeout(Some(READ_POLL)) {
        faults.push(Fault::Other(error.to_string()));
    }
    let give_up = epoch + duration + DRAIN;
    while received < count && Instant::now() < give_up {
        let read = pong.read_lines(|line| {
            let Some(delivery) = text::parse_delivery(line) else {
                return inbox.unexpected(line);
            };
            if inbox.receive(pair, delivery) {
                let now = epoch.elapsed().as_micros() as u64;
                latencies.record(now.saturating_sub(delivery.stamp.sent_micros));
                received += 1;
            }
        });
        match read {
            Ok(0) => {
                faults.push(Fault::Other("the server closed the healthy pair".into()));
                break;
            }
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => {
                faults.push(Fault::Other(format!(
                    "the healthy pair could not read: {error}"
                )));
                break;
            }
        }
    }
    faults.extend(inbox.finish(|_| count));
    (latencies, faults)
}
