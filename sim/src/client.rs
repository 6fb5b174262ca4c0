//! A simulated chat client: the software of one client host.
//!
//! Until the faults stop, a client holds session after session: it
//! connects, logs in (sometimes with an invalid name first, sometimes with a
//! name someone else holds), sends messages to random sets of names (online,
//! offline, itself, listed twice), malformed, oversized, non-UTF-8 and
//! blank lines, bursts, floods and lines split across writes, lingers, and
//! then closes gracefully or just drops the connection. Some sessions read
//! slowly and some stop reading after login. Every wait has a timeout, because a
//! partition in turmoil silently swallows data: a session that stops hearing
//! back simply ends, and the next one reconnects.
//!
//! After the faults stop, each client holds one final session under a name
//! of its own, sends a few messages and reads everything promptly until the
//! server's graceful shutdown ends the stream: the checker demands that
//! this session saw everything the broker sent it.
//!
//! The client asserts nothing itself; it records every byte it sent and
//! received (see [`crate::record`]) and the checker judges afterwards.
//! Its state lives outside the host's software, so a crash or a bounce of
//! the host resumes the same random sequence and message numbering.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::future::{Either, select};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use turmoil::net::TcpStream;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::faults::MAX_LASTS_MS;
use crate::record::{End, Recorder, client_source};
use crate::scenario::{OFFLINE_NAMES, PORT, SERVER_HOST, SESSION_GRACE, Scenario, final_name};

/// How long a client waits for a connection to be accepted: longer than
/// the longest hold, so held attempts do not pile up in the server's
/// backlog (see `scenario::MIN_TCP_CAPACITY`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(CONNECT_TIMEOUT.as_millis() > MAX_LASTS_MS as u128);
/// How long a client waits for the reply to a login line.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a write may wait for room in the socket.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a graceful close waits for the server's end of stream.
const CLOSE_WAIT: Duration = Duration::from_secs(4);
/// Login attempts per session before giving up on it.
const LOGIN_ATTEMPTS: usize = 3;
/// Connection attempts in the final phase.
const FINAL_ATTEMPTS: usize = 5;
/// How long final sessions wait after login for the others to log in.
const FINAL_SETTLE: Duration = Duration::from_secs(2);

/// What survives a crash of the client host.
pub struct ClientState {
    rng: ChaCha8Rng,
    /// The number of the next message this client sends.
    next_message: u64,
}

impl ClientState {
    pub fn new(seed: u64) -> Self {
        ClientState {
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_message: 0,
        }
    }
}

/// How a session reads from its socket.
#[derive(Clone, Copy, Debug)]
enum Reading {
    /// As fast as data arrives.
    Prompt,
    /// `chunk` bytes at a time with a pause after each read.
    Slow { chunk: usize, pause: Duration },
    /// Not at all once logged in.
    Stalled,
}

/// How a session's script ended.
enum Ending {
    /// Write side shut down; wait for the server to close too.
    Graceful,
    /// Drop the connection on the spot.
    Abrupt,
}

/// One client host's software.
pub struct Client {
    index: usize,
    scenario: Rc<Scenario>,
    state: Rc<RefCell<ClientState>>,
    recorder: Recorder,
    source: String,
}

impl Client {
    pub fn new(
        index: usize,
        scenario: Rc<Scenario>,
        state: Rc<RefCell<ClientState>>,
        recorder: Recorder,
    ) -> Self {
        Client {
            index,
            scenario,
            state,
            recorder,
            source: client_source(index),
        }
    }

    /// Runs the client from wherever its host (re)starts until the
    /// simulation stops.
    pub async fn run(self) -> turmoil::Result {
        let phases = self.scenario.phases.clone();
        while now() < phases.quiet_at {
            let cutoff = phases.quiet_at + SESSION_GRACE;
            let session = tokio::time::timeout(until(cutoff), self.session());
            if session.await.is_err() {
                self.note("session cut off: the fault window closed");
            }
            let pause = self.random(|rng| rng.random_range(0..=2000));
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        tokio::time::sleep(until(phases.final_at)).await;
        self.final_session().await;
        futures::future::pending().await
    }

    /// One session of the churn phase.
    async fn session(&self) {
        let Some(stream) = self.connect().await else {
            return;
        };
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let conn = self.recorder.connected(self.index, local, false);
        let reading = self.pick_reading();
        self.note(&format!("k{conn} reads {reading:?}"));
        let (reader, writer) = stream.into_split();
        let (replies, mut inbox) = mpsc::unbounded_channel();
        let logged_in = Rc::new(Cell::new(false));
        let reader = read(
            reader,
            conn,
            reading,
            replies,
            logged_in.clone(),
            self.recorder.clone(),
        );
        let script = self.script(writer, conn, &mut inbox, &logged_in);
        let (reader, script) = (std::pin::pin!(reader), std::pin::pin!(script));
        if let Either::Left((Ending::Graceful, reader)) = select(script, reader).await {
            let _ = tokio::time::timeout(CLOSE_WAIT, reader).await;
        }
    }

    /// Logs in, acts, then closes.
    async fn script(
        &self,
        mut writer: OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
        logged_in: &Cell<bool>,
    ) -> Ending {
        let Some(name) = self.login(&mut writer, conn, inbox).await else {
            return Ending::Abrupt;
        };
        logged_in.set(true);
        let behaviour = &self.scenario.behaviour;
        let actions = self.random(|rng| rng.random_range(1..=behaviour.max_actions));
        for _ in 0..actions {
            let pause = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_pause));
            tokio::time::sleep(pause).await;
            if now() >= self.scenario.phases.quiet_at {
                break;
            }
            let bytes = self.next_action(&name);
            if !self.write(&mut writer, conn, &bytes).await {
                return Ending::Abrupt;
            }
        }
        // Linger connected, so messages (and for a slow or stalled reader,
        // unread bytes) pile up.
        let linger = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_linger));
        tokio::time::sleep(linger).await;
        if self.chance(behaviour.abrupt_close) {
            self.note(&format!("k{conn} drops the connection"));
            return Ending::Abrupt;
        }
        self.note(&format!("k{conn} closes its side"));
        let _ = writer.shutdown().await;
        Ending::Graceful
    }

    /// Tries to log in, sometimes with an invalid name first; returns the
    /// name the server welcomed.
    async fn login(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> Option<String> {
        if self.chance(self.scenario.behaviour.invalid_login) {
            const INVALID: [&str; 4] = [
                "not a name",
                "a:b",
                "bad!",
                "abcdefghijklmnopqrstuvwxyz0123456",
            ];
            let invalid = INVALID[self.random(|rng| rng.random_range(0..INVALID.len()))];
            let line = self.terminate(invalid);
            if !self.write(writer, conn, &line).await {
                return None;
            }
            self.reply(inbox).await?;
        }
        for _ in 0..LOGIN_ATTEMPTS {
            let names = &self.scenario.names;
            let name = names[self.random(|rng| rng.random_range(0..names.len()))].clone();
            let padded = if self.chance(0.2) {
                format!(" {name}\t")
            } else {
                name.clone()
            };
            let line = self.terminate(&padded);
            if !self.write(writer, conn, &line).await {
                return None;
            }
            if self.reply(inbox).await?.starts_with("welcome ") {
                return Some(name);
            }
        }
        None
    }

    /// The last session: log in under a name of one's own, send a few
    /// messages, and read everything until the server shuts down.
    async fn final_session(&self) {
        let name = final_name(self.index);
        for _ in 0..FINAL_ATTEMPTS {
            let Some(stream) = self.connect().await else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let conn = self.recorder.connected(self.index, local, true);
            let (reader, mut writer) = stream.into_split();
            let (replies, mut inbox) = mpsc::unbounded_channel();
            let logged_in = Rc::new(Cell::new(false));
            let reader = read(
                reader,
                conn,
                Reading::Prompt,
                replies,
                logged_in,
                self.recorder.clone(),
            );
            let script = async {
                let line = self.terminate(&name);
                if !self.write(&mut writer, conn, &line).await {
                    return;
                }
                if self.reply(&mut inbox).await.is_none() {
                    return;
                }
                tokio::time::sleep(FINAL_SETTLE).await;
                let send_until = self.scenario.phases.send_until;
                while now() < send_until {
                    let bytes = self.final_message(&name);
                    if !self.write(&mut writer, conn, &bytes).await {
                        return;
                    }
                    let pause = self.random(|rng| rng.random_range(50..=600));
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            };
            // Reads on after the script is done: the write half stays open
            // until the server's shutdown ends the stream.
            futures::future::join(reader, script).await;
            return;
        }
        self.note("final session: could not connect");
    }

    async fn connect(&self) -> Option<TcpStream> {
        let connect = TcpStream::connect((SERVER_HOST, PORT));
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                self.note(&format!("connect failed: {error}"));
                None
            }
            Err(_) => {
                self.note("connect timed out");
                None
            }
        }
    }

    /// Waits for the next line from the server, if it comes in time.
    async fn reply(&self, inbox: &mut mpsc::UnboundedReceiver<String>) -> Option<String> {
        match tokio::time::timeout(REPLY_TIMEOUT, inbox.recv()).await {
            Ok(reply) => reply,
            Err(_) => {
                self.note("no reply in time");
                None
            }
        }
    }

    /// Writes `bytes`, sometimes in two pieces with a pause between; false
    /// if the connection failed or stayed full for the write timeout.
    async fn write(&self, writer: &mut OwnedWriteHalf, conn: usize, bytes: &[u8]) -> bool {
        let split = bytes.len() > 1 && self.chance(self.scenario.behaviour.split_write);
        let cut = if split {
            self.random(|rng| rng.random_range(1..bytes.len()))
        } else {
            bytes.len()
        };
        for piece in [&bytes[..cut], &bytes[cut..]] {
            let mut rest = piece;
            while !rest.is_empty() {
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write(rest)).await {
                    Ok(Ok(written)) if written > 0 => {
                        self.recorder.sent(conn, &rest[..written]);
                        rest = &rest[written..];
                    }
                    Ok(_) => {
                        self.note(&format!("k{conn} write failed"));
                        return false;
                    }
                    Err(_) => {
                        self.note(&format!("k{conn} write timed out"));
                        return false;
                    }
                }
            }
            if split && !piece.is_empty() {
                let pause = self.random(|rng| rng.random_range(1..=300));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
        true
    }

    /// The bytes of one action of the churn phase.
    fn next_action(&self, name: &str) -> Vec<u8> {
        let behaviour = &self.scenario.behaviour;
        let max_line = self.scenario.config.max_line;
        if self.chance(behaviour.malformed) {
            const MALFORMED: [&str; 5] = [
                "no colon at all",
                ": nobody listed",
                "ann,,bob: two commas",
                "not a name!: hi",
                " , : only blanks",
            ];
            let line = MALFORMED[self.random(|rng| rng.random_range(0..MALFORMED.len()))];
            return self.terminate(line);
        }
        if self.chance(behaviour.oversized) {
            let extra = self.random(|rng| rng.random_range(1..=2 * max_line));
            let id = self.next_id();
            let line = format!("{name}: {id} {}", "x".repeat(max_line + extra));
            return self.terminate(&line);
        }
        if self.chance(behaviour.invalid_utf8) {
            let id = self.next_id();
            let mut line = format!("{name}: {id} ").into_bytes();
            line.extend_from_slice(b"\xff\xfe\xc3");
            line.push(b'\n');
            return line;
        }
        if self.chance(behaviour.blank) {
            const BLANK: [&str; 4] = ["", "   ", "\t", "\u{3000}"];
            return self.terminate(BLANK[self.random(|rng| rng.random_range(0..BLANK.len()))]);
        }
        if self.chance(behaviour.flood) {
            let names = &self.scenario.names;
            let target = [names[self.random(|rng| rng.random_range(0..names.len()))].clone()];
            let count = self.random(|rng| rng.random_range(10..=40));
            return (0..count)
                .flat_map(|_| self.message_line(&target, behaviour.max_padding))
                .collect();
        }
        let count = if self.chance(behaviour.burst) {
            self.random(|rng| rng.random_range(2..=6))
        } else {
            1
        };
        (0..count).flat_map(|_| self.message(name)).collect()
    }

    /// One message line to a random set of names.
    fn message(&self, name: &str) -> Vec<u8> {
        let behaviour = &self.scenario.behaviour;
        let names = &self.scenario.names;
        let mut dests: Vec<String> = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=3)) {
            dests.push(names[self.random(|rng| rng.random_range(0..names.len()))].clone());
        }
        if self.chance(behaviour.self_message) {
            dests.push(name.to_string());
        }
        if self.chance(behaviour.offline_dest) {
            let offline =
                OFFLINE_NAMES[self.random(|rng| rng.random_range(0..OFFLINE_NAMES.len()))];
            dests.push(offline.to_string());
        }
        if self.chance(behaviour.duplicate_dest) {
            dests.push(dests[0].clone());
        }
        let padding = self.random(|rng| rng.random_range(0..=behaviour.max_padding));
        self.message_line(&dests, padding)
    }

    /// One message of the final session, to other final sessions.
    fn final_message(&self, name: &str) -> Vec<u8> {
        let clients = self.scenario.clients;
        let mut dests = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=3)) {
            dests.push(final_name(self.random(|rng| rng.random_range(0..clients))));
        }
        if self.chance(0.2) {
            dests.push(name.to_string());
        }
        let padding = self.random(|rng| rng.random_range(0..=32));
        self.message_line(&dests, padding)
    }

    /// `dest, dest: id padding`, with varied spacing around the commas.
    fn message_line(&self, dests: &[String], padding: usize) -> Vec<u8> {
        let separator = [", ", ",", " , "][self.random(|rng| rng.random_range(0..3))];
        let id = self.next_id();
        let filler: String = (0..padding)
            .map(|i| if i % 8 == 7 { ':' } else { '~' })
            .collect();
        let line = format!("{}: {id} {filler}", dests.join(separator));
        self.terminate(&line)
    }

    /// A fresh message id, unique in the run: `<m<client>.<number>>`. The
    /// brackets matter: a line cut short by a crash (`<m5.8`) must not
    /// pass for another message's id (`<m5.8>`).
    fn next_id(&self) -> String {
        let mut state = self.state.borrow_mut();
        state.next_message += 1;
        format!("<m{}.{}>", self.index, state.next_message)
    }

    /// `line` with its terminator: LF, or CR LF now and then.
    fn terminate(&self, line: &str) -> Vec<u8> {
        let ending = if self.chance(self.scenario.behaviour.crlf) {
            "\r\n"
        } else {
            "\n"
        };
        format!("{line}{ending}").into_bytes()
    }

    fn pick_reading(&self) -> Reading {
        let behaviour = &self.scenario.behaviour;
        if self.chance(behaviour.stalled_reader) {
            Reading::Stalled
        } else if self.chance(behaviour.slow_reader) {
            let chunk = self.random(|rng| rng.random_range(1..=64));
            let pause = self.random(|rng| rng.random_range(10..=500));
            Reading::Slow {
                chunk,
                pause: Duration::from_millis(pause),
            }
        } else {
            Reading::Prompt
        }
    }

    fn random<T>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        draw(&mut self.state.borrow_mut().rng)
    }

    fn chance(&self, probability: f64) -> bool {
        probability > 0.0 && self.random(|rng| rng.random_bool(probability))
    }

    fn note(&self, text: &str) {
        self.recorder.note(&self.source, text);
    }
}

/// Reads until the stream ends, recording every byte and passing each
/// complete line to `replies` (the login waits on them).
async fn read(
    mut reader: OwnedReadHalf,
    conn: usize,
    reading: Reading,
    replies: mpsc::UnboundedSender<String>,
    logged_in: Rc<Cell<bool>>,
    recorder: Recorder,
) {
    let size = match reading {
        Reading::Slow { chunk, .. } => chunk,
        Reading::Prompt | Reading::Stalled => 4096,
    };
    let mut buffer = vec![0u8; size];
    let mut line = Vec::new();
    loop {
        if matches!(reading, Reading::Stalled) && logged_in.get() {
            futures::future::pending::<()>().await;
        }
        let read = match reader.read(&mut buffer).await {
            Ok(0) => {
                recorder.ended(conn, End::EndOfStream);
                return;
            }
            Ok(read) => read,
            Err(_) => {
                recorder.ended(conn, End::Reset);
                return;
            }
        };
        recorder.received(conn, &buffer[..read]);
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                let _ = replies.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            } else {
                line.push(byte);
            }
        }
        if let Reading::Slow { pause, .. } = reading {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The simulated time now.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How long from now until `deadline` (zero if it has passed).
fn until(deadline: Duration) -> Duration {
    deadline.saturating_sub(now())
}
