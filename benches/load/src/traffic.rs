//! The engine behind `dm`, `fanout` and `room`: clients that send planned
//! messages and verify everything they receive.
//!
//! A [`Plan`] says who sends what to whom. The engine logs every client in
//! first (so no message finds its destination missing), lets the plan
//! prepare them ([`Plan::prepare`]: `room` joins its rooms), then runs two
//! threads, however many clients there are, so the load generator costs
//! little and its own scheduling delays stay out of the latencies:
//!
//! - one reader polls every client's socket (epoll, via `polling`), checks
//!   each delivery with the client's [`Inbox`] and times it from its stamp;
//! - one writer sends for every sender. Closed loop (the default): each
//!   sender keeps at most `--window` messages in flight, a message being in
//!   flight until every one of its deliveries has arrived, and the reader
//!   hands the window back as they do. Open loop (`--rate`): each message
//!   has a due time set by the rate and is stamped with it, so latency
//!   includes any time the writer fell behind (no coordinated omission).
//!
//! The server's [`Dialect`] logs clients in, encodes messages and decodes
//! what arrives into chinwag's delivery lines, so the same traffic and the
//! same checks run against other servers too.

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use polling::{Event, Events, PollMode, Poller};

use super::client::{self, LineReader};
use super::dialect::{Dialect, Route};
use super::probe::Probe;
use super::report::Report;
use super::stats::Latencies;
use super::target::Target;
use super::text::{self, Stamp};
use super::verify::{Expectation, Fault, Faults, Inbox};

/// At most this many lines of one sender go into one write.
const MAX_BATCH: usize = 256;
/// The reader and a waiting writer wake at least this often to check
/// whether the run is over.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// Once every sender is done, the reader waits this long for more before
/// it declares what has not arrived missing.
const QUIET_AFTER_SENDERS: Duration = Duration::from_secs(3);
/// How long the writer backs off when a socket's send buffer is full.
const WRITE_BACKOFF: Duration = Duration::from_micros(100);

/// How the traffic is sent, common to `dm` and `fanout`.
#[derive(Args, Clone, Copy, Debug)]
pub struct TrafficArgs {
    /// Messages each sender may have in flight (closed loop).
    #[arg(long, default_value_t = 64)]
    pub window: usize,

    /// Open loop: send at this many deliveries per second in total, on a
    /// fixed schedule, instead of as fast as the window allows.
    #[arg(long, value_name = "DELIVERIES_PER_SEC")]
    pub rate: Option<f64>,

    /// Bytes of text per message (at least the stamp it carries).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
}

/// Who sends what to whom. Senders are clients `0..senders()`.
pub trait Plan: Sync {
    fn clients(&self) -> usize;
    fn senders(&self) -> usize;
    /// Messages each sender sends.
    fn messages(&self) -> u32;
    /// Appends the distinct destinations of message `seq` of `sender`.
    fn destinations(&self, sender: usize, seq: u32, out: &mut Vec<usize>);
    /// Whether message `seq` of `sender` goes to `recipient`.
    fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool;
    /// Whether every message goes to every client, which pub/sub dialects
    /// send as one publish to a channel they all subscribe to.
    fn to_everyone(&self) -> bool {
        false
    }
    /// The room message `seq` of `sender` is sent to, if it goes to a room
    /// (its destinations are then the room's other members) rather than to
    /// the names of its destinations.
    fn room(&self, _sender: usize, _seq: u32) -> Option<&str> {
        None
    }
    /// Adds the plan's own figures to the report, after the common ones.
    fn describe(&self, _report: &mut Report) {}
    /// Readies the logged-in clients before the first message is sent and
    /// before the clock starts, on their non-blocking sockets; `names` are
    /// their login names. Faults of the server's making go to `faults`; an
    /// error is a run that cannot go on.
    fn prepare(
        &self,
        _readers: &mut [LineReader],
        _names: &[String],
        _faults: &mut Faults,
    ) -> io::Result<()> {
        Ok(())
    }
}

/// A plan together with the login names of its clients.
struct Named<'a, P> {
    plan: &'a P,
    names: Vec<String>,
}

impl<P: Plan> Expectation for Named<'_, P> {
    fn senders(&self) -> usize {
        self.plan.senders()
    }
    fn name(&self, client: usize) -> &str {
        &self.names[client]
    }
    fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool {
        self.plan.addresses(sender, seq, recipient)
    }
    fn room(&self, sender: usize, seq: u32) -> Option<&str> {
        self.plan.room(sender, seq)
    }
}

/// What the reader and the writer share.
struct Shared<'a, P> {
    named: Named<'a, P>,
    dialect: Dialect,
    /// The channel every client subscribes to if the plan is to everyone.
    everyone: Option<String>,
    /// Held by whoever writes to a sender's socket: the writer, or the
    /// reader answering the server's pings.
    write_locks: Vec<Mutex<()>>,
    args: TrafficArgs,
    windows: Windows,
    /// Time zero of the message stamps.
    epoch: Instant,
    deadline: Instant,
    /// Set when a thread gives up, so the other stops waiting.
    abort: AtomicBool,
    senders_done: AtomicBool,
    progress: ProgressBar,
}

impl<P> Shared<'_, P> {
    fn over(&self) -> bool {
        self.abort.load(Ordering::Relaxed) || Instant::now() > self.deadline
    }
}

/// What the reader found.
struct Received {
    deliveries: u64,
    latencies: Latencies,
    faults: Faults,
    last_arrival: Option<Instant>,
}

/// Runs `plan` against the target and reports throughput, latency, server
/// CPU and memory, and the verdict.
pub fn run(
    scenario: &'static str,
    target: &Target,
    plan: &impl Plan,
    args: TrafficArgs,
    deadline: Duration,
) -> io::Result<Report> {
    let names: Vec<String> = (0..plan.clients()).map(client::name).collect();
    let everyone = plan.to_everyone().then(|| client::name("all"));
    let mut readers = Vec::with_capacity(names.len());
    let mut writers = Vec::with_capacity(plan.senders());
    for (client, name) in names.iter().enumerate() {
        let stream = target
            .dialect
            .connect_as(target.addr, name, everyone.as_deref())?;
        // The reader polls; the writer must never block on one socket
        // while others wait (see `write_all`).
        stream.set_nonblocking(true)?;
        if client < plan.senders() {
            writers.push(stream.try_clone()?);
        }
        readers.push(LineReader::with_decoder(stream, target.dialect.decoder()));
    }
    let mut prepared = Faults::default();
    plan.prepare(&mut readers, &names, &mut prepared)?;
    if !prepared.is_empty() {
        // The traffic would only pile faults on faults: report these.
        let mut report = Report::new(scenario);
        report.count("clients", "clients", plan.clients() as u64, "");
        report.faults(prepared);
        return Ok(report);
    }
    let expected = expected_counts(plan);
    let total: u64 = expected.iter().flatten().map(|&n| u64::from(n)).sum();
    let per_message = total as f64 / (plan.senders() as f64 * f64::from(plan.messages()));
    let capacity = (args.window as f64 * per_message).ceil() as usize;

    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} deliveries, {per_sec}, eta {eta}")
            .expect("the template is valid"),
    );
    let epoch = Instant::now();
    let shared = Shared {
        named: Named { plan, names },
        dialect: target.dialect,
        everyone,
        write_locks: (0..plan.senders()).map(|_| Mutex::new(())).collect(),
        args,
        windows: Windows::new(plan.senders(), capacity),
        epoch,
        deadline: epoch + deadline,
        abort: AtomicBool::new(false),
        senders_done: AtomicBool::new(false),
        progress,
    };
    let server_cpu_before = target.probe.map(|probe| probe.cpu_time()).transpose()?;
    let own_probe = Probe::new(std::process::id());
    let own_cpu_before = own_probe.cpu_time()?;

    let (received, sent) = thread::scope(|scope| {
        let shared = &shared;
        let expected = &expected;
        let reader = scope.spawn(move || read(readers, expected, shared));
        let sent = send(writers, shared);
        shared.senders_done.store(true, Ordering::Release);
        if sent.is_err() {
            shared.abort.store(true, Ordering::Relaxed);
        }
        let received = reader
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (received, sent)
    });
    shared.progress.finish_and_clear();
    let own_cpu = own_probe.cpu_time()? - own_cpu_before;
    let server_cpu = match (target.probe, server_cpu_before) {
        (Some(probe), Some(before)) => Some(probe.cpu_time()? - before),
        _ => None,
    };

    let mut report = Report::new(scenario);
    let mut faults = received.faults;
    if let Err(fault) = sent {
        faults.push(fault);
    }
    let deliveries = received.deliveries;
    let elapsed = received.last_arrival.unwrap_or(epoch) - epoch;
    report.count("clients", "clients", plan.clients() as u64, "");
    report.count("senders", "senders", plan.senders() as u64, "");
    report.count(
        "messages",
        "messages per sender",
        plan.messages().into(),
        "",
    );
    plan.describe(&mut report);
    report.count("deliveries", "deliveries verified", deliveries, "");
    report.millis("elapsed_ms", "elapsed", elapsed);
    report.rate(
        "deliveries_per_sec",
        "deliveries per second",
        deliveries as f64 / elapsed.as_secs_f64(),
        "/s",
    );
    if let Some(cpu) = server_cpu.filter(|cpu| !cpu.is_zero()) {
        report.millis("server_cpu_ms", "server CPU time", cpu);
        report.rate(
            "deliveries_per_server_cpu_sec",
            "deliveries per server CPU-second",
            deliveries as f64 / cpu.as_secs_f64(),
            "/s",
        );
    }
    report.millis("bench_cpu_ms", "bench (load generator) CPU time", own_cpu);
    report.latency("latency", "latency", received.latencies.summary());
    if let Some(probe) = target.probe {
        let memory = probe.memory()?;
        report.mebibytes("server_rss_mib", "server RSS", memory.rss as f64);
        report.mebibytes("server_peak_rss_mib", "server peak RSS", memory.peak as f64);
    }
    report.faults(faults);
    Ok(report)
}

/// How many messages each recipient should get from each sender:
/// `expected[recipient][sender]`.
fn expected_counts(plan: &impl Plan) -> Vec<Vec<u32>> {
    let mut expected = vec![vec![0; plan.senders()]; plan.clients()];
    let mut destinations = Vec::new();
    let messages =
        (0..plan.senders()).flat_map(|sender| (0..plan.messages()).map(move |seq| (sender, seq)));
    for (sender, seq) in messages {
        destinations.clear();
        plan.destinations(sender, seq, &mut destinations);
        for &recipient in &destinations {
            expected[recipient][sender] += 1;
        }
    }
    expected
}

/// The writer: sends every sender's messages, closed or open loop.
fn send<P: Plan>(mut sockets: Vec<TcpStream>, shared: &Shared<P>) -> Result<(), Fault> {
    match shared.args.rate {
        None => send_windowed(&mut sockets, shared),
        Some(rate) => send_on_schedule(&mut sockets, shared, rate),
    }
}

/// Closed loop: round after round, every sender sends as many messages as
/// its window allows, one write each; with no room anywhere the writer
/// waits for the reader to hand some back.
fn send_windowed<P: Plan>(sockets: &mut [TcpStream], shared: &Shared<P>) -> Result<(), Fault> {
    let plan = shared.named.plan;
    let mut next = vec![0; sockets.len()];
    let mut batch = Vec::new();
    let mut destinations = Vec::new();
    let mut unfinished = sockets.len();
    while unfinished > 0 {
        let mut wrote = false;
        for (sender, socket) in sockets.iter_mut().enumerate() {
            batch.clear();
            let mut lines = 0;
            while next[sender] < plan.messages() && lines < MAX_BATCH {
                destinations.clear();
                plan.destinations(sender, next[sender], &mut destinations);
                if !shared.windows.try_acquire(sender, destinations.len()) {
                    break;
                }
                let sent_micros = shared.epoch.elapsed().as_micros() as u64;
                append_message(
                    &mut batch,
                    shared,
                    sender,
                    next[sender],
                    &destinations,
                    sent_micros,
                );
                next[sender] += 1;
                lines += 1;
            }
            if lines > 0 {
                write_all(socket, &batch, sender, shared)?;
                wrote = true;
                if next[sender] == plan.messages() {
                    unfinished -= 1;
                    shared.windows.finish(sender);
                }
            }
        }
        if !wrote && !shared.windows.wait_for_room(shared) {
            return Err(Fault::Other(
                "the writer stopped: the run timed out or the reader failed".into(),
            ));
        }
    }
    Ok(())
}

/// Open loop: `rate` deliveries per second across all senders. Message
/// `seq` of `sender` is due at tick `seq * senders + sender`, so senders
/// take turns evenly; everything due is written at once, stamped with its
/// due time.
fn send_on_schedule<P: Plan>(
    sockets: &mut [TcpStream],
    shared: &Shared<P>,
    rate: f64,
) -> Result<(), Fault> {
    let plan = shared.named.plan;
    let senders = sockets.len();
    let mut destinations = Vec::new();
    plan.destinations(0, 0, &mut destinations);
    let tick = Duration::from_secs_f64(destinations.len() as f64 / rate);
    let ticks = senders as u64 * u64::from(plan.messages());
    let due = |tick_number: u64| tick.mul_f64(tick_number as f64);
    let mut batches = vec![Vec::new(); senders];
    let mut next = 0;
    while next < ticks {
        let now = shared.epoch.elapsed();
        if now < due(next) {
            thread::sleep(due(next) - now);
            continue;
        }
        if shared.over() {
            return Err(Fault::Other("the writer stopped early".into()));
        }
        while next < ticks && due(next) <= now {
            let (sender, seq) = (
                (next % senders as u64) as usize,
                (next / senders as u64) as u32,
            );
            destinations.clear();
            plan.destinations(sender, seq, &mut destinations);
            let sent_micros = due(next).as_micros() as u64;
            append_message(
                &mut batches[sender],
                shared,
                sender,
                seq,
                &destinations,
                sent_micros,
            );
            next += 1;
        }
        for (sender, batch) in batches.iter_mut().enumerate() {
            if !batch.is_empty() {
                write_all(&mut sockets[sender], batch, sender, shared)?;
                batch.clear();
            }
        }
    }
    Ok(())
}

fn append_message<P: Plan>(
    batch: &mut Vec<u8>,
    shared: &Shared<P>,
    sender: usize,
    seq: u32,
    destinations: &[usize],
    sent_micros: u64,
) {
    let stamp = Stamp {
        sender,
        seq,
        sent_micros,
    };
    let from = &shared.named.names[sender];
    let size = shared.args.size;
    if let Some(room) = shared.named.plan.room(sender, seq) {
        // One line to the room, whatever its members.
        let route = Route::Room(room);
        return shared.dialect.encode(batch, from, route, stamp, size);
    }
    let names: Vec<&str> = destinations
        .iter()
        .map(|&d| shared.named.names[d].as_str())
        .collect();
    let route = match &shared.everyone {
        Some(channel) => Route::Everyone {
            names: &names,
            channel,
        },
        None => Route::Names(&names),
    };
    shared.dialect.encode(batch, from, route, stamp, size);
}

/// Writes all of `bytes` to a non-blocking socket, backing off while its
/// send buffer is full (the server is pushing back).
fn write_all<P>(
    socket: &mut TcpStream,
    mut bytes: &[u8],
    sender: usize,
    shared: &Shared<P>,
) -> Result<(), Fault> {
    let _writing = shared.write_locks[sender]
        .lock()
        .expect("no thread panics holding it");
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(0) => return Err(Fault::Other(format!("client {sender}: the server closed"))),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if shared.over() {
                    return Err(Fault::Other(format!("client {sender}: sending timed out")));
                }
                thread::sleep(WRITE_BACKOFF);
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(Fault::Other(format!(
                    "client {sender} could not send: {error}"
                )));
            }
        }
    }
    Ok(())
}

/// The reader: polls every client's socket and checks every delivery until
/// all expected have come or the run is over.
fn read<P: Plan>(
    mut readers: Vec<LineReader>,
    expected: &[Vec<u32>],
    shared: &Shared<P>,
) -> Received {
    let mut received = Received {
        deliveries: 0,
        latencies: Latencies::default(),
        faults: Faults::default(),
        last_arrival: None,
    };
    let poller = match register(&readers) {
        Ok(poller) => poller,
        Err(error) => {
            received
                .faults
                .push(Fault::Other(format!("cannot poll: {error}")));
            shared.abort.store(true, Ordering::Relaxed);
            return received;
        }
    };
    let senders = shared.named.senders();
    let mut inboxes: Vec<Inbox> = (0..readers.len()).map(|r| Inbox::new(r, senders)).collect();
    let mut missing: Vec<u64> = expected
        .iter()
        .map(|row| row.iter().map(|&n| u64::from(n)).sum())
        .collect();
    let mut incomplete = missing.iter().filter(|&&n| n > 0).count();
    let mut open = vec![true; readers.len()];
    // Deliveries per sender since the windows were last handed back.
    let mut arrived = vec![0; senders];
    // Server pings each client has not answered yet (nats).
    let mut unanswered = vec![0; readers.len()];
    let mut events = Events::new();
    let mut last_data = Instant::now();
    while incomplete > 0 && received.faults.is_empty() {
        events.clear();
        if let Err(error) = poller.wait(&mut events, Some(POLL_EVERY)) {
            received
                .faults
                .push(Fault::Other(format!("cannot poll: {error}")));
            break;
        }
        let before = received.deliveries;
        for event in events.iter() {
            let client = event.key;
            let inbox = &mut inboxes[client];
            let outcome = drain(&mut readers[client], |line| {
                let Some(delivery) = text::parse_delivery(line) else {
                    return inbox.unexpected(line);
                };
                if inbox.receive(&shared.named, delivery) {
                    let now = shared.epoch.elapsed().as_micros() as u64;
                    let latency = now.saturating_sub(delivery.stamp.sent_micros);
                    received.latencies.record(latency);
                    received.deliveries += 1;
                    arrived[delivery.stamp.sender] += 1;
                    missing[client] -= 1;
                    if missing[client] == 0 {
                        incomplete -= 1;
                    }
                }
            });
            if let Err(fault) = outcome {
                received.faults.push(fault.for_client(client));
                open[client] = false;
                let _ = poller.delete(readers[client].stream());
            }
            unanswered[client] += readers[client].take_pings();
        }
        answer_pings(&readers, &mut unanswered, shared);
        let now = Instant::now();
        if received.deliveries > before {
            last_data = now;
            received.last_arrival = Some(now);
            shared.windows.release(&mut arrived);
            shared.progress.inc(received.deliveries - before);
        } else {
            let senders_done = shared.senders_done.load(Ordering::Acquire);
            if shared.over() || (senders_done && now - last_data > QUIET_AFTER_SENDERS) {
                break;
            }
        }
    }
    if !received.faults.is_empty() {
        shared.abort.store(true, Ordering::Relaxed);
    }
    for (reader, _) in readers.iter().zip(&open).filter(|(_, open)| **open) {
        let _ = poller.delete(reader.stream());
    }
    for (recipient, inbox) in inboxes.into_iter().enumerate() {
        received
            .faults
            .extend(inbox.finish(|sender| expected[recipient][sender]));
    }
    received
}

/// Answers the server's pings with `PONG`, unless the writer is busy with
/// the socket: then they wait for the next round.
fn answer_pings<P>(readers: &[LineReader], unanswered: &mut [u32], shared: &Shared<P>) {
    for (client, owed) in unanswered.iter_mut().enumerate() {
        if *owed == 0 {
            continue;
        }
        let _writing = match shared.write_locks.get(client).map(Mutex::try_lock) {
            Some(Ok(guard)) => Some(guard),
            Some(Err(_)) => continue,
            None => None,
        };
        let pongs = b"PONG\r\n".repeat(*owed as usize);
        let mut bytes = &pongs[..];
        let mut socket = readers[client].stream();
        while !bytes.is_empty() && !shared.over() {
            match socket.write(bytes) {
                Ok(written) => bytes = &bytes[written..],
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    thread::sleep(WRITE_BACKOFF);
                }
                Err(_) => break,
            }
        }
        *owed = 0;
    }
}

/// A poller watching every reader's socket, keyed by client index.
fn register(readers: &[LineReader]) -> io::Result<Poller> {
    let poller = Poller::new()?;
    for (client, reader) in readers.iter().enumerate() {
        // SAFETY: every socket is deleted from the poller before `read`
        // returns, and the sockets outlive that.
        unsafe { poller.add_with_mode(reader.stream(), Event::readable(client), PollMode::Level)? };
    }
    Ok(poller)
}

/// Why a client's socket stopped being read.
pub enum Stopped {
    Closed,
    Failed(io::Error),
}

impl Stopped {
    pub fn for_client(self, client: usize) -> Fault {
        Fault::Other(match self {
            Stopped::Closed => format!("the server closed the connection of client {client}"),
            Stopped::Failed(error) => format!("client {client} could not read: {error}"),
        })
    }
}

/// Reads a non-blocking socket until it has nothing more for now.
pub fn drain(reader: &mut LineReader, mut on_line: impl FnMut(&[u8])) -> Result<(), Stopped> {
    loop {
        match reader.read_lines(&mut on_line) {
            Ok(0) => return Err(Stopped::Closed),
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(Stopped::Failed(error)),
        }
    }
}

/// Deliveries each sender may have in flight: taken by the writer when a
/// message is sent, handed back by the reader as its deliveries arrive.
///
/// The writer, once out of room everywhere, is woken only when some
/// unfinished sender has half its window free again, so it writes batches
/// instead of a message per wake-up.
struct Windows {
    state: Mutex<WindowState>,
    freed: Condvar,
    capacity: usize,
}

struct WindowState {
    in_flight: Vec<usize>,
    /// Senders with messages still to send.
    unfinished: Vec<bool>,
}

impl Windows {
    fn new(senders: usize, capacity: usize) -> Self {
        Windows {
            state: Mutex::new(WindowState {
                in_flight: vec![0; senders],
                unfinished: vec![true; senders],
            }),
            freed: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, WindowState> {
        self.state.lock().expect("no thread panics holding it")
    }

    /// Takes room for `deliveries` of `sender` if there is some. A message
    /// larger than the whole window still goes when nothing else is in
    /// flight.
    fn try_acquire(&self, sender: usize, deliveries: usize) -> bool {
        let mut state = self.lock();
        let in_flight = &mut state.in_flight[sender];
        let fits = *in_flight == 0 || *in_flight + deliveries <= self.capacity;
        if fits {
            *in_flight += deliveries;
        }
        fits
    }

    /// Marks `sender` as having sent everything.
    fn finish(&self, sender: usize) {
        self.lock().unfinished[sender] = false;
    }

    /// Waits until some unfinished sender has half its window free; false
    /// if the run ends first.
    fn wait_for_room<P>(&self, shared: &Shared<P>) -> bool {
        let mut state = self.lock();
        while !self.has_room(&state) {
            if shared.over() {
                return false;
            }
            state = self
                .freed
                .wait_timeout(state, POLL_EVERY)
                .expect("no thread panics holding it")
                .0;
        }
        true
    }

    /// Hands back `arrived[sender]` deliveries for every sender, and zeroes
    /// the counts.
    fn release(&self, arrived: &mut [usize]) {
        let mut state = self.lock();
        for (in_flight, arrived) in state.in_flight.iter_mut().zip(arrived.iter_mut()) {
            *in_flight = in_flight.saturating_sub(*arrived);
            *arrived = 0;
        }
        if self.has_room(&state) {
            self.freed.notify_one();
        }
    }

    fn has_room(&self, state: &WindowState) -> bool {
        let low_water = self.capacity / 2;
        state
            .in_flight
            .iter()
            .zip(&state.unfinished)
            .any(|(&in_flight, &unfinished)| unfinished && in_flight <= low_water)
    }
}
