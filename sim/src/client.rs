//! A simulated chat client: the software of one client host.
//!
//! Until the faults stop, a client holds session after session: it
//! connects, logs in (sometimes with an invalid name first, sometimes with a
//! name someone else holds), sends messages to random sets of names (online,
//! offline, itself, listed twice), malformed, oversized, non-UTF-8 and
//! blank lines, lines of exactly `max_line` bytes, bursts, floods and lines
//! split across writes (between a CR and its LF too), lingers, and then
//! closes gracefully or just drops the connection; or, as the seed's
//! [`Framing`](crate::scenario::Framing) says, half-closes in a hurry
//! right behind its last lines. Some sessions read slowly and some stop
//! reading after login. Every wait has a timeout, because a
//! partition in turmoil silently swallows data: a session that stops hearing
//! back simply ends, and the next one reconnects.
//!
//! Some clients are hostile, as the seed's [`Hostile`] switches say: they
//! open connections that never log in (sending blank lines or nothing) and
//! wait for the login timeout to close them, write lines a few bytes at a
//! time with the LF held back (slowloris), send texts with control
//! characters, log in as look-alikes of other names, and type on through
//! the server's shutdown. A client the server refuses (`server full`, `too
//! many connections from your address`) or times out reads to the end of
//! the stream and tries again later.
//!
//! After the faults stop, each client holds one final session under a name
//! of its own, sends a few messages and reads everything promptly until the
//! server's graceful shutdown ends the stream: the checker demands that
//! this session saw everything the broker sent it. Where the connection
//! limits can be reached, the final session listens a moment before it
//! logs in, so a refusal comes before it has sent anything, and it retries
//! until it gets in or the time for sending is over.
//!
//! Where the seed has [`Rooms`](crate::scenario::Rooms), sessions also
//! `/join` and `/part` a few rooms (so they collide), send to rooms and to
//! lists mixing rooms and names, ask `/names` and `/rooms`, send commands
//! the server refuses, and now and then rename themselves with `/nick`.
//! A session follows its own name and rooms from what the server tells it
//! (`renamed`, `joined`, `left (parted)`), only to pick sensible lines: the
//! checker judges from the broker's log, not from the client's idea.
//!
//! The client asserts nothing itself; it records every byte it sent and
//! received (see [`crate::record`]) and the checker judges afterwards.
//! Its state lives outside the host's software, so a crash or a bounce of
//! the host resumes the same random sequence and message numbering.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use crate::net::{
    Net, ReadHalf as OwnedReadHalf, Stream as TcpStream, WriteHalf as OwnedWriteHalf,
};
use futures::FutureExt;
use futures::future::{Either, select};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use unicode_normalization::UnicodeNormalization;

use crate::alarms;
use crate::faults::MAX_LASTS_MS;
use crate::model::grammar;
use crate::model::grammar::irc::{self, Heard};
use crate::record::{End, Recorder, Role, Steady, client_source};
use crate::scenario::{
    Hostile, IRC_PORT, OFFLINE_NAMES, PORT, SERVER_HOST, SESSION_GRACE, Scenario, final_name,
    steady_budget,
};

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
/// How long a final session listens before it logs in when the connection
/// limits can be reached: longer than a refusal takes to arrive on the
/// healed network (at most 155 ms of latency), so a refused final session
/// has sent nothing and must see a clean end of stream.
const FINAL_LISTEN: Duration = Duration::from_millis(400);
/// A final session refused this close to the end of sending stops trying.
const FINAL_LAST_TRY: Duration = Duration::from_secs(1);
/// When, after the final sessions start, a client's extra connection that
/// never logs in opens: after its final session has connected.
const FINAL_NEVER_LOGIN_AFTER: Duration = Duration::from_secs(1);
/// A connection that never logs in stops sending blank lines this long
/// before its login deadline, so the server has read them all when it
/// closes it (a socket closed with input unread resets the connection).
const BLANK_MARGIN: Duration = Duration::from_millis(500);
/// The shortest pause before a never-login connection's first blank line:
/// longer than a refusal takes to arrive on the healed network.
const FIRST_BLANK_AFTER_MS: u64 = 400;
/// How long before the shutdown a final session typing on into it starts
/// typing fast.
const TYPIST_RUSH: Duration = Duration::from_millis(300);
/// Blank lines, as the grammar sees them.
const BLANK: [&str; 4] = ["", "   ", "\t", "\u{3000}"];

/// What a session knows of itself after login: the name it holds and the
/// rooms it is in, as the server last told it.
struct Me {
    name: String,
    rooms: BTreeSet<String>,
}

impl Me {
    fn new(name: String) -> Me {
        Me {
            name,
            rooms: BTreeSet::new(),
        }
    }

    /// Learns from one line the server sent (without its LF): a rename of
    /// itself, or its own join or part.
    fn learn(&mut self, line: &str) {
        let line = format!("{line}\n");
        if let Some((old, new)) = grammar::read_renamed(&line) {
            if old == self.name {
                self.name = new.to_string();
            }
            return;
        }
        match grammar::read_room_news(&line) {
            Some((room, grammar::RoomNews::Joined(name))) if name == self.name => {
                self.rooms.insert(room.to_string());
            }
            Some((room, grammar::RoomNews::Left(name, grammar::Departure::Parted)))
                if name == self.name =>
            {
                self.rooms.remove(room);
            }
            _ => {}
        }
    }
}

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
    /// Every `pause`, all that has arrived up to `budget` bytes: never
    /// stops, and keeps up (see `scenario::steady_budget`).
    Steady { budget: usize, pause: Duration },
}

/// How a session's script ended.
enum Ending {
    /// Write side shut down; wait for the server to close too.
    Graceful,
    /// Drop the connection on the spot.
    Abrupt,
    /// The server refused the connection or timed its login out: read to
    /// the end of the stream, then try again later.
    Closed,
}

/// Why a login did not end in a welcome.
enum LoginEnd {
    /// No reply in time, a write failed, or every name was refused.
    Failed,
    /// The server is closing the connection: refused or timed out.
    Closed,
}

/// How a final session's connection ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FinalEnd {
    /// Refused by a connection limit: try again.
    Refused,
    /// Served to the end, or failed for good.
    Done,
}

/// Where a line is written from, which decides how slowly it may go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// A churn session: split writes, and slowloris lines over seconds.
    Churn,
    /// A final session's message: split writes, and slowloris lines short
    /// enough to be done well before the shutdown.
    Final,
    /// A final session's login: split writes only.
    FinalLogin,
    /// At once, in one piece.
    Plain,
}

/// Set once a connection's reader has seen the stream end.
#[derive(Default)]
struct Ended {
    ended: Cell<bool>,
    notify: Notify,
}

impl Ended {
    fn set(&self) {
        self.ended.set(true);
        self.notify.notify_one();
    }

    fn get(&self) -> bool {
        self.ended.get()
    }
}

/// Whether `reply` says the server is closing a connection that has not
/// logged in: refused by a connection limit, or its login timed out.
fn closing(reply: &str) -> bool {
    let line = format!("{reply}\n");
    [
        grammar::SERVER_FULL,
        grammar::TOO_MANY_FROM_ADDRESS,
        grammar::LOGIN_TIMED_OUT,
    ]
    .contains(&line.as_str())
}

/// One client host's software.
pub struct Client {
    index: usize,
    scenario: Rc<Scenario>,
    state: Rc<RefCell<ClientState>>,
    recorder: Recorder,
    net: Net,
    source: String,
}

impl Client {
    pub fn new(
        index: usize,
        scenario: Rc<Scenario>,
        state: Rc<RefCell<ClientState>>,
        recorder: Recorder,
        net: Net,
    ) -> Self {
        Client {
            index,
            scenario,
            state,
            recorder,
            net,
            source: client_source(index),
        }
    }

    /// Runs the client from wherever its host (re)starts until the
    /// simulation stops.
    pub async fn run(self) -> turmoil::Result {
        let phases = self.scenario.phases.clone();
        while now() < phases.quiet_at {
            let cutoff = phases.quiet_at + SESSION_GRACE;
            let session = alarms::timeout(until(cutoff), self.churn_session());
            if session.await.is_err() {
                self.note("session cut off: the fault window closed");
            }
            let pause = self.random(|rng| rng.random_range(0..=2000));
            alarms::sleep(Duration::from_millis(pause)).await;
        }
        alarms::sleep(until(phases.final_at)).await;
        if self.hostile().final_never_login.on(self.index) {
            let never_login = async {
                alarms::sleep(FINAL_NEVER_LOGIN_AFTER).await;
                if let Some(stream) = self.connect().await {
                    self.unlogged(stream, Role::FinalNeverLogin).await;
                }
            };
            futures::future::join(self.final_session(), never_login).await;
        } else {
            self.final_session().await;
        }
        futures::future::pending().await
    }

    fn hostile(&self) -> &Hostile {
        &self.scenario.hostile
    }

    /// One turn of the churn phase: a session, or for a client that opens
    /// connections that never log in, sometimes one of those instead, or
    /// one first and a session next to it while it is open (so a limit of
    /// one connection per address refuses the second).
    async fn churn_session(&self) {
        if !self.chance(self.hostile().never_login.rate(self.index)) {
            return self.session().await;
        }
        let Some(stream) = self.connect().await else {
            return;
        };
        if self.chance(0.5) {
            self.unlogged(stream, Role::ChurnNeverLogin).await;
        } else {
            let unlogged = self.unlogged(stream, Role::ChurnNeverLogin);
            futures::future::join(unlogged, self.session()).await;
        }
    }

    /// A connection that never logs in: it sends nothing, or blank lines
    /// until shortly before its login deadline, and reads until the server
    /// closes it, waiting at most a little longer than the login timeout.
    /// The write side stays open: closing it would end the connection
    /// before the timeout does.
    async fn unlogged(&self, stream: TcpStream, role: Role) {
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let conn = self.recorder.connected(self.index, local, role);
        let talks = self.chance(0.5);
        let how = if talks { "sends blank lines" } else { "silent" };
        self.note(&format!("k{conn} never logs in: {how}"));
        let login_timeout = self.scenario.config.login_timeout;
        let stop_at = (now() + login_timeout).saturating_sub(BLANK_MARGIN);
        let (reader, mut writer) = stream.into_split();
        let (replies, _inbox) = mpsc::unbounded_channel();
        let ended = Rc::new(Ended::default());
        let reader = read(
            reader,
            conn,
            Reading::Prompt,
            replies,
            Rc::new(Cell::new(false)),
            ended,
            self.recorder.clone(),
        );
        let blanks = async {
            while talks && now() < stop_at {
                let pause = self.random(|rng| rng.random_range(FIRST_BLANK_AFTER_MS..=900));
                alarms::sleep(Duration::from_millis(pause)).await;
                if now() >= stop_at {
                    break;
                }
                let blank = BLANK[self.random(|rng| rng.random_range(0..BLANK.len()))];
                let line = self.terminate(blank);
                if !self.write(&mut writer, conn, &line, Pace::Plain).await {
                    break;
                }
            }
            futures::future::pending::<()>().await
        };
        let (reader, blanks) = (std::pin::pin!(reader), std::pin::pin!(blanks));
        let waited = alarms::timeout(login_timeout + REPLY_TIMEOUT, select(reader, blanks));
        if waited.await.is_err() {
            self.note(&format!("k{conn} still open after the login timeout"));
        }
    }

    /// One session of the churn phase: on the IRC port, for a share of
    /// the sessions of a seed with IRC on.
    async fn session(&self) {
        if self.chance(self.scenario.irc.session) {
            return self.irc_session().await;
        }
        let Some(stream) = self.connect().await else {
            return;
        };
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let conn = self.recorder.connected(self.index, local, Role::Churn);
        let reading = self.pick_reading();
        self.note(&format!("k{conn} reads {reading:?}"));
        if let Reading::Steady { budget, pause } = reading {
            self.recorder.reads_steadily(conn, Steady { budget, pause });
        }
        let (reader, writer) = stream.into_split();
        let (replies, mut inbox) = mpsc::unbounded_channel();
        let logged_in = Rc::new(Cell::new(false));
        let reader = read(
            reader,
            conn,
            reading,
            replies,
            logged_in.clone(),
            Rc::new(Ended::default()),
            self.recorder.clone(),
        );
        let steady = matches!(reading, Reading::Steady { .. });
        let script = self.script(writer, conn, &mut inbox, &logged_in, steady);
        script_then_linger(script, reader).await;
    }

    /// Logs in, acts, then closes.
    async fn script(
        &self,
        mut writer: OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
        logged_in: &Cell<bool>,
        steady: bool,
    ) -> Ending {
        let name = match self.login(&mut writer, conn, inbox).await {
            Ok(name) => name,
            Err(LoginEnd::Failed) => return Ending::Abrupt,
            Err(LoginEnd::Closed) => {
                self.note(&format!(
                    "k{conn} is being closed: reads to the end, retries later"
                ));
                return Ending::Closed;
            }
        };
        logged_in.set(true);
        let mut me = Me::new(name);
        let behaviour = &self.scenario.behaviour;
        if steady {
            // A target: it sends nothing more, and reads on for a while.
            let stay = self.random(|rng| rng.random_range(3000..=15000));
            alarms::sleep(Duration::from_millis(stay)).await;
        }
        let actions = if steady {
            0
        } else {
            self.random(|rng| rng.random_range(1..=behaviour.max_actions))
        };
        for _ in 0..actions {
            let pause = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_pause));
            alarms::sleep(pause).await;
            if now() >= self.scenario.phases.quiet_at {
                break;
            }
            catch_up(&mut me, inbox);
            if self.chance(self.hostile().burster.rate(self.index)) {
                if !self.burst(&mut writer, conn).await {
                    return Ending::Abrupt;
                }
                continue;
            }
            let bytes = self.next_action(&me);
            if !self.write(&mut writer, conn, &bytes, Pace::Churn).await {
                return Ending::Abrupt;
            }
        }
        if !steady && self.chance(self.scenario.framing.hasty_close) {
            catch_up(&mut me, inbox);
            return self.hasty_close(&mut writer, conn, &me).await;
        }
        // Linger connected, so messages (and for a slow or stalled reader,
        // unread bytes) pile up.
        let linger = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_linger));
        alarms::sleep(linger).await;
        if self.chance(behaviour.abrupt_close) {
            self.note(&format!("k{conn} drops the connection"));
            return Ending::Abrupt;
        }
        self.close_side(&mut writer, conn).await
    }

    /// Shuts the write side down, a half-close, and records it: the
    /// server owes every line sent so far processing.
    async fn close_side(&self, writer: &mut OwnedWriteHalf, conn: usize) -> Ending {
        match writer.shutdown().await {
            Ok(()) => self.recorder.half_closed(conn),
            Err(_) => self.note(&format!("k{conn} failed to close its side")),
        }
        Ending::Graceful
    }

    /// Ends a session in a hurry: sometimes a flood of messages first,
    /// sometimes a last message without its LF (a lone CR left at the end,
    /// if it had CR LF), then at once a half-close, so the end of stream
    /// arrives right behind lines the server has not processed yet (or
    /// holds back while their sender is paused). The server must process
    /// every one of them, the unterminated one included, before the close.
    async fn hasty_close(&self, writer: &mut OwnedWriteHalf, conn: usize, me: &Me) -> Ending {
        let mut bytes = Vec::new();
        if self.chance(0.5) {
            bytes.extend(self.flood(&me.rooms));
        }
        if self.chance(0.5) {
            let mut last = self.message(me);
            last.pop();
            bytes.extend(last);
        }
        self.note(&format!("k{conn} closes in a hurry"));
        if !bytes.is_empty() && !self.write(writer, conn, &bytes, Pace::Churn).await {
            return Ending::Abrupt;
        }
        self.close_side(writer, conn).await
    }

    /// Tries to log in, sometimes with an invalid name first, sometimes as
    /// a look-alike of a name in the pool; returns the name the server
    /// welcomed.
    async fn login(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> Result<String, LoginEnd> {
        if self.chance(self.scenario.behaviour.invalid_login) {
            const INVALID: [&str; 4] = [
                "not a name",
                "a:b",
                "bad!",
                "abcdefghijklmnopqrstuvwxyz0123456",
            ];
            let invalid = INVALID[self.random(|rng| rng.random_range(0..INVALID.len()))];
            let line = self.terminate(invalid);
            if !self.write(writer, conn, &line, Pace::Churn).await {
                return Err(LoginEnd::Failed);
            }
            let reply = self.reply(inbox).await.ok_or(LoginEnd::Failed)?;
            if closing(&reply) {
                return Err(LoginEnd::Closed);
            }
        }
        for _ in 0..LOGIN_ATTEMPTS {
            let names = &self.scenario.names;
            let mut name = names[self.random(|rng| rng.random_range(0..names.len()))].clone();
            if self.chance(self.hostile().look_alike.rate(self.index)) {
                name = self.look_alike(&name);
            }
            let padded = if self.chance(0.2) {
                format!(" {name}\t")
            } else {
                name.clone()
            };
            let line = self.terminate(&padded);
            if !self.write(writer, conn, &line, Pace::Churn).await {
                return Err(LoginEnd::Failed);
            }
            let reply = self.reply(inbox).await.ok_or(LoginEnd::Failed)?;
            if let Some(welcomed) = reply.strip_prefix("welcome ") {
                return Ok(welcomed.to_string());
            }
            if closing(&reply) {
                return Err(LoginEnd::Closed);
            }
        }
        Err(LoginEnd::Failed)
    }

    /// A name that looks like `name` and is spelt otherwise (for a name
    /// with nothing to swap, the same name): fullwidth letters, Cyrillic
    /// look-alikes, mathematical bold, or decomposed (NFD), which the
    /// server puts back in NFC.
    fn look_alike(&self, name: &str) -> String {
        match self.random(|rng| rng.random_range(0..4)) {
            0 => name.chars().map(fullwidth).collect(),
            1 => name.chars().map(cyrillic).collect(),
            2 => name.chars().map(mathematical_bold).collect(),
            _ => name.nfd().collect(),
        }
    }

    /// The last session: log in under a name of one's own, send a few
    /// messages, and read everything until the server shuts down. Refused
    /// by a connection limit, it reads to the end of the stream and tries
    /// again until the time for sending is nearly over.
    async fn final_session(&self) {
        let name = final_name(self.index);
        let last_try = self
            .scenario
            .phases
            .send_until
            .saturating_sub(FINAL_LAST_TRY);
        // On the IRC port, as often as a churn session.
        let irc = self.chance(self.scenario.irc.session);
        let port = if irc { IRC_PORT } else { PORT };
        let mut attempts = 0;
        while attempts < FINAL_ATTEMPTS {
            attempts += 1;
            let Some(stream) = self.connect_to(port).await else {
                alarms::sleep(Duration::from_millis(500)).await;
                continue;
            };
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let conn = self.recorder.connected(self.index, local, Role::Final);
            if irc {
                self.recorder.speaks_irc(conn);
            }
            if self.final_connection(stream, conn, &name, irc).await == FinalEnd::Done {
                return;
            }
            if now() >= last_try {
                self.note("final session: refused until too late to send");
                return;
            }
            attempts -= 1;
            let pause = self.random(|rng| rng.random_range(300..=1000));
            alarms::sleep(Duration::from_millis(pause)).await;
        }
        self.note("final session: could not connect");
    }

    /// One connection of the final session, in IRC if `irc` (which does
    /// not type into the shutdown).
    async fn final_connection(
        &self,
        stream: TcpStream,
        conn: usize,
        name: &str,
        irc: bool,
    ) -> FinalEnd {
        let (reader, mut writer) = stream.into_split();
        let (replies, mut inbox) = mpsc::unbounded_channel();
        let ended = Rc::new(Ended::default());
        let reader = read(
            reader,
            conn,
            Reading::Prompt,
            replies,
            Rc::new(Cell::new(false)),
            ended.clone(),
            self.recorder.clone(),
        );
        let script = async {
            if self.scenario.limits_connections() {
                match alarms::timeout(FINAL_LISTEN, inbox.recv()).await {
                    Ok(Some(reply)) => {
                        self.note(&format!("k{conn} refused before logging in: {reply:?}"));
                        return FinalEnd::Refused;
                    }
                    // Closed without a word: refused with no room for the notice.
                    Ok(None) => {
                        self.note(&format!("k{conn} closed before logging in"));
                        return FinalEnd::Refused;
                    }
                    Err(_) => {}
                }
            }
            if irc {
                if let Some(end) = self
                    .irc_final_login(&mut writer, conn, name, &mut inbox)
                    .await
                {
                    return end;
                }
            } else {
                let line = self.terminate(name);
                if !self.write(&mut writer, conn, &line, Pace::FinalLogin).await {
                    return FinalEnd::Done;
                }
                let Some(reply) = self.reply(&mut inbox).await else {
                    return FinalEnd::Done;
                };
                if closing(&reply) {
                    self.note(&format!("k{conn} refused: {reply:?}"));
                    return FinalEnd::Refused;
                }
            }
            alarms::sleep(FINAL_SETTLE).await;
            let rooms = self.final_rooms();
            for room in &rooms {
                let line = if irc {
                    format!("JOIN {room}\r\n").into_bytes()
                } else {
                    self.terminate(&format!("/join {room}"))
                };
                if !self.write(&mut writer, conn, &line, Pace::Final).await {
                    return FinalEnd::Done;
                }
            }
            let send_until = self.scenario.phases.send_until;
            while now() < send_until {
                let mut bytes = self.final_message(name, &rooms);
                if irc {
                    bytes = irc_privmsg(&bytes);
                }
                if !self.write(&mut writer, conn, &bytes, Pace::Final).await {
                    return FinalEnd::Done;
                }
                let pause = self.random(|rng| rng.random_range(50..=600));
                alarms::sleep(Duration::from_millis(pause)).await;
            }
            if !irc && self.hostile().typist.on(self.index) {
                self.recorder.mark_owed(conn);
                self.type_through_shutdown(&mut writer, conn, name, &rooms, &ended)
                    .await;
            }
            FinalEnd::Done
        };
        // Reads on after the script is done: the write half stays open
        // until the server's shutdown ends the stream. A refused connection
        // is read to its end, for a while.
        let (reader, script) = (std::pin::pin!(reader), std::pin::pin!(script));
        match select(script, reader).await {
            Either::Left((FinalEnd::Done, reader)) => {
                reader.await;
                FinalEnd::Done
            }
            Either::Left((FinalEnd::Refused, reader)) => {
                if alarms::timeout(CLOSE_WAIT, reader).await.is_err() {
                    self.note(&format!("k{conn} still open after the refusal"));
                }
                FinalEnd::Refused
            }
            Either::Right(((), script)) => script.await,
        }
    }

    /// Types lines and blank lines on through the shutdown's drain until
    /// the server's end of stream, then closes the write side in answer.
    /// The server keeps reading (and discarding) after its last line, so
    /// the close is clean and nothing owed is lost to a reset.
    async fn type_through_shutdown(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        name: &str,
        rooms: &[String],
        ended: &Ended,
    ) {
        self.note(&format!("k{conn} types on through the shutdown"));
        let give_up = self.scenario.phases.end_at;
        while !ended.get() && now() < give_up {
            let bytes = if self.chance(0.5) {
                self.terminate(BLANK[self.random(|rng| rng.random_range(0..BLANK.len()))])
            } else {
                self.final_message(name, rooms)
            };
            if !self.write(writer, conn, &bytes, Pace::Plain).await {
                return;
            }
            // Fast around the shutdown, so lines arrive while it drains.
            let pause = if now() + TYPIST_RUSH < self.scenario.phases.shutdown_at {
                self.random(|rng| rng.random_range(100..=300))
            } else {
                self.random(|rng| rng.random_range(5..=50))
            };
            let pause = std::pin::pin!(alarms::sleep(Duration::from_millis(pause)));
            let notified = std::pin::pin!(ended.notify.notified());
            select(notified, pause).await;
        }
        self.note(&format!("k{conn} closes its side after the end of stream"));
        let _ = writer.shutdown().await;
    }

    async fn connect(&self) -> Option<TcpStream> {
        self.connect_to(PORT).await
    }

    /// Connects to the server's `port`, giving up after a while.
    async fn connect_to(&self, port: u16) -> Option<TcpStream> {
        let connect = self.net.connect((SERVER_HOST, port));
        match alarms::timeout(CONNECT_TIMEOUT, connect).await {
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
        match alarms::timeout(REPLY_TIMEOUT, inbox.recv()).await {
            Ok(reply) => reply,
            Err(_) => {
                self.note("no reply in time");
                None
            }
        }
    }

    /// Writes `bytes`, sometimes in two pieces with a pause between, or
    /// for a slowloris client, sometimes a few bytes at a time; false if
    /// the connection failed or stayed full for the write timeout.
    async fn write(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        bytes: &[u8],
        pace: Pace,
    ) -> bool {
        if pace == Pace::Plain {
            return self.write_piece(writer, conn, bytes).await;
        }
        let one_line = bytes.iter().filter(|&&b| b == b'\n').count() == 1;
        let slowloris = self.hostile().slowloris.rate(self.index);
        if matches!(pace, Pace::Churn | Pace::Final) && one_line && self.chance(slowloris) {
            return self.write_slowly(writer, conn, bytes, pace).await;
        }
        let crlf = self.between_cr_and_lf(bytes);
        let split =
            crlf.is_some() || bytes.len() > 1 && self.chance(self.scenario.behaviour.split_write);
        let cut = match crlf {
            Some(cut) => cut,
            None if split => self.random(|rng| rng.random_range(1..bytes.len())),
            None => bytes.len(),
        };
        for piece in [&bytes[..cut], &bytes[cut..]] {
            if !self.write_piece(writer, conn, piece).await {
                return false;
            }
            if split && !piece.is_empty() {
                let pause = self.random(|rng| rng.random_range(1..=300));
                alarms::sleep(Duration::from_millis(pause)).await;
            }
        }
        true
    }

    /// Where to split `bytes` between the CR and the LF of one of its CR LFs,
    /// if this write is to be split so.
    fn between_cr_and_lf(&self, bytes: &[u8]) -> Option<usize> {
        let rate = self.scenario.framing.split_crlf;
        if rate == 0.0 || !bytes.contains(&b'\r') {
            return None;
        }
        let cuts: Vec<usize> = (1..bytes.len())
            .filter(|&i| bytes[i - 1] == b'\r' && bytes[i] == b'\n')
            .collect();
        if cuts.is_empty() || !self.chance(rate) {
            return None;
        }
        Some(cuts[self.random(|rng| rng.random_range(0..cuts.len()))])
    }

    /// Writes one line slowloris style: a few pieces of one to four bytes
    /// with pauses between, then the rest of the line but its terminator,
    /// then, after holding the line open a while longer, the terminator.
    /// In the churn phase that takes seconds; in the final phase at most
    /// about a second, so the line is processed well before the shutdown.
    async fn write_slowly(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        line: &[u8],
        pace: Pace,
    ) -> bool {
        let (max_pieces, max_pause, max_hold) = match pace {
            Pace::Final => (4, 150, 300),
            _ => (8, 700, 4000),
        };
        let terminator = if line.ends_with(b"\r\n") { 2 } else { 1 };
        let body = &line[..line.len() - terminator];
        let pieces = self.random(|rng| rng.random_range(2..=max_pieces));
        self.note(&format!("k{conn} slowloris: a {}-byte line", line.len()));
        let mut rest = body;
        for _ in 0..pieces {
            let size = self.random(|rng| rng.random_range(1..=4)).min(rest.len());
            let (piece, after) = rest.split_at(size);
            if !self.write_piece(writer, conn, piece).await {
                return false;
            }
            rest = after;
            let pause = self.random(|rng| rng.random_range(20..=max_pause));
            alarms::sleep(Duration::from_millis(pause)).await;
        }
        if !self.write_piece(writer, conn, rest).await {
            return false;
        }
        let hold = self.random(|rng| rng.random_range(0..=max_hold));
        alarms::sleep(Duration::from_millis(hold)).await;
        self.write_piece(writer, conn, &line[body.len()..]).await
    }

    /// Writes all of `piece`; false if the connection failed or stayed full
    /// for the write timeout.
    async fn write_piece(&self, writer: &mut OwnedWriteHalf, conn: usize, piece: &[u8]) -> bool {
        let mut rest = piece;
        while !rest.is_empty() {
            match alarms::timeout(WRITE_TIMEOUT, writer.write(rest)).await {
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
        true
    }

    /// A burst: 40 to 120 lines just under `max_line` to one name, written
    /// 4 to 16 lines at a time, back to back, as fast as the socket takes
    /// them. False if the connection failed or stayed full for the write
    /// timeout (a paused burster gives up).
    async fn burst(&self, writer: &mut OwnedWriteHalf, conn: usize) -> bool {
        let names = &self.scenario.names;
        let target = names[self.random(|rng| rng.random_range(0..names.len()))].clone();
        let count = self.random(|rng| rng.random_range(40..=120));
        self.note(&format!("k{conn} bursts {count} lines at {target}"));
        let max_line = self.scenario.config.max_line;
        let mut left = count;
        while left > 0 {
            let lines = self.random(|rng| rng.random_range(4..=16)).min(left);
            left -= lines;
            let mut bytes = Vec::new();
            for _ in 0..lines {
                let id = self.next_id();
                let head = format!("{target}: {id} ");
                // Just under the limit, whatever the terminator.
                let shorter = self.random(|rng| rng.random_range(1..=8));
                let filler = (max_line - shorter).saturating_sub(head.len());
                bytes.extend_from_slice(head.as_bytes());
                bytes.extend(std::iter::repeat_n(b'#', filler));
                bytes.push(b'\n');
            }
            if !self.write_piece(writer, conn, &bytes).await {
                return false;
            }
        }
        true
    }

    /// One line naming many destinations at once: the whole pool in some
    /// order, final names, offline names and repeats, as many as fit in
    /// `max_line`.
    fn fan_out(&self) -> Vec<u8> {
        let mut pool: Vec<String> = self.scenario.names.clone();
        pool.extend((0..self.scenario.clients).map(final_name));
        pool.extend(OFFLINE_NAMES.iter().map(|name| name.to_string()));
        pool.extend(self.scenario.rooms.names.iter().cloned());
        for i in (1..pool.len()).rev() {
            pool.swap(i, self.random(|rng| rng.random_range(0..=i)));
        }
        let repeats = self.random(|rng| rng.random_range(0..=3));
        for _ in 0..repeats {
            let again = pool[self.random(|rng| rng.random_range(0..pool.len()))].clone();
            pool.push(again);
        }
        let id = self.next_id();
        let room = self.scenario.config.max_line - id.len() - 4;
        let mut dests: Vec<String> = Vec::new();
        let mut used = 0;
        for name in pool {
            if used + name.len() + 1 > room {
                break;
            }
            used += name.len() + 1;
            dests.push(name);
        }
        self.terminate(&format!("{}: {id} fan", dests.join(",")))
    }

    /// The bytes of one action of the churn phase.
    fn next_action(&self, me: &Me) -> Vec<u8> {
        let behaviour = &self.scenario.behaviour;
        let max_line = self.scenario.config.max_line;
        let name = me.name.as_str();
        if let Some(command) = self.room_command(me) {
            return command;
        }
        if self.chance(self.hostile().control_text.rate(self.index)) {
            return self.control_message(name);
        }
        if self.chance(self.hostile().fan_out.rate(self.index)) {
            return self.fan_out();
        }
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
        if self.chance(self.scenario.framing.at_limit) {
            return self.line_at_limit();
        }
        if self.chance(behaviour.oversized) {
            let extra = self.random(|rng| rng.random_range(1..=2 * max_line));
            let id = self.next_id();
            let line = format!("{name}: {id} {}", "x".repeat(max_line + extra));
            let oversized = self.terminate(&line);
            if self.chance(self.scenario.framing.oversized_mid_write) {
                // Lines on both sides: the one after must be read whole.
                return [self.message(me), oversized, self.message(me)].concat();
            }
            return oversized;
        }
        if self.chance(behaviour.invalid_utf8) {
            let id = self.next_id();
            let mut line = format!("{name}: {id} ").into_bytes();
            line.extend_from_slice(b"\xff\xfe\xc3");
            line.push(b'\n');
            return line;
        }
        if self.chance(behaviour.blank) {
            return self.terminate(BLANK[self.random(|rng| rng.random_range(0..BLANK.len()))]);
        }
        if self.chance(behaviour.flood) {
            return self.flood(&me.rooms);
        }
        let count = if self.chance(behaviour.burst) {
            self.random(|rng| rng.random_range(2..=6))
        } else {
            1
        };
        (0..count).flat_map(|_| self.message(me)).collect()
    }

    /// A command about rooms or names, if this action is one: `/join` a
    /// room (one it is in, now and then, to be refused) or `/part` one
    /// (one it is not in, now and then); `/names` of a room, `/rooms`, or a
    /// line the server refuses as a command; `/nick` to a name of the pool
    /// (held by someone, often) or a look-alike of one.
    fn room_command(&self, me: &Me) -> Option<Vec<u8>> {
        let rooms = &self.scenario.rooms;
        // A session in no room joins sooner: its room messages are refused.
        let join_part = if me.rooms.is_empty() {
            (2.0 * rooms.join_part).min(1.0)
        } else {
            rooms.join_part
        };
        if self.chance(join_part) {
            let part = !me.rooms.is_empty() && self.chance(0.4);
            let room = if part && self.chance(0.9) {
                self.pick(&me.rooms.iter().cloned().collect::<Vec<_>>())
            } else {
                self.pick(&rooms.names)
            };
            let verb = if part { "/part" } else { "/join" };
            return Some(self.terminate(&format!("{verb} {room}")));
        }
        if self.chance(rooms.query) {
            const REFUSED: [&str; 4] = ["/join", "/part #a #b", "/who", "/names nobody"];
            let line = match self.random(|rng| rng.random_range(0..4)) {
                0 | 1 => format!("/names {}", self.pick(&rooms.names)),
                2 => "/rooms".to_string(),
                _ => REFUSED[self.random(|rng| rng.random_range(0..REFUSED.len()))].to_string(),
            };
            return Some(self.terminate(&line));
        }
        if self.chance(rooms.nick) {
            let mut name = self.pick(&self.scenario.names);
            if self.chance(self.hostile().look_alike.rate(self.index)) {
                name = self.look_alike(&name);
            }
            return Some(self.terminate(&format!("/nick {name}")));
        }
        None
    }

    /// The rooms a final session joins: one or two, if the seed has rooms.
    fn final_rooms(&self) -> Vec<String> {
        let rooms = &self.scenario.rooms;
        if !rooms.on() {
            return Vec::new();
        }
        let mut joined: Vec<String> = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=2)) {
            let room = self.pick(&rooms.names);
            if !joined.contains(&room) {
                joined.push(room);
            }
        }
        joined
    }

    /// One of `choices`, which is not empty.
    fn pick(&self, choices: &[String]) -> String {
        choices[self.random(|rng| rng.random_range(0..choices.len()))].clone()
    }

    /// A room to send to: mostly one the session is in, or any of the seed's.
    fn room_to_send_to(&self, rooms: &BTreeSet<String>) -> String {
        if !rooms.is_empty() && self.chance(0.8) {
            return self.pick(&rooms.iter().cloned().collect::<Vec<_>>());
        }
        self.pick(&self.scenario.rooms.names)
    }

    /// Puts `room` at a random place among `dests`, so rooms come first,
    /// last and between names.
    fn insert_room(&self, dests: &mut Vec<String>, room: String) {
        let at = self.random(|rng| rng.random_range(0..=dests.len()));
        dests.insert(at, room);
    }

    /// Many messages to one name (or room), for one write.
    fn flood(&self, rooms: &BTreeSet<String>) -> Vec<u8> {
        let names = &self.scenario.names;
        let mut target = [names[self.random(|rng| rng.random_range(0..names.len()))].clone()];
        // Into a room now and then: news of members leaving meanwhile is
        // queued past the bound, whatever it holds.
        if self.chance(self.scenario.rooms.room_dest / 4.0) {
            target = [self.room_to_send_to(rooms)];
        }
        let count = self.random(|rng| rng.random_range(10..=40));
        let padding = self.scenario.behaviour.max_padding;
        (0..count)
            .flat_map(|_| self.message_line(&target, padding))
            .collect()
    }

    /// A message to one or two names whose line is exactly `max_line`
    /// bytes, terminator not counted (half the time), or one byte shorter
    /// or longer: the codec's edge.
    fn line_at_limit(&self) -> Vec<u8> {
        let names = &self.scenario.names;
        let mut dests = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=2)) {
            dests.push(names[self.random(|rng| rng.random_range(0..names.len()))].clone());
        }
        let off_by = [1, 1, 0, 2][self.random(|rng| rng.random_range(0..4))];
        let size = self.scenario.config.max_line + off_by - 1;
        let head = format!("{}: {} ", dests.join(", "), self.next_id());
        let filler: String = (head.len()..size)
            .map(|i| if i % 8 == 7 { ':' } else { '=' })
            .collect();
        self.terminate(&format!("{head}{filler}"))
    }

    /// One message line to a random set of names, and maybe a room.
    fn message(&self, me: &Me) -> Vec<u8> {
        let name = me.name.as_str();
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
        if self.chance(self.hostile().look_alike.rate(self.index)) {
            let name = names[self.random(|rng| rng.random_range(0..names.len()))].clone();
            dests.push(self.look_alike(&name));
        }
        if self.chance(self.scenario.rooms.room_dest) {
            let room = self.room_to_send_to(&me.rooms);
            // Half the time the room alone.
            if self.chance(0.5) {
                dests.clear();
            }
            self.insert_room(&mut dests, room);
        }
        let padding = self.random(|rng| rng.random_range(0..=behaviour.max_padding));
        self.message_line(&dests, padding)
    }

    /// A message with a control character in it: in the text (refused as a
    /// whole), in a destination (an invalid name), or at the edge of the
    /// text, where the ones that are whitespace are trimmed away; or a TAB,
    /// which is allowed.
    fn control_message(&self, name: &str) -> Vec<u8> {
        const CONTROLS: [&str; 10] = [
            "\u{1b}[2J",
            "\r",
            "\u{7}",
            "\u{7f}",
            "\u{85}",
            "\u{9b}",
            "\u{202e}",
            "\u{2069}",
            "\u{0}",
            "\u{8}",
        ];
        let control = CONTROLS[self.random(|rng| rng.random_range(0..CONTROLS.len()))];
        let names = &self.scenario.names;
        let dest = if self.chance(0.3) {
            name.to_string()
        } else {
            names[self.random(|rng| rng.random_range(0..names.len()))].clone()
        };
        let id = self.next_id();
        let line = match self.random(|rng| rng.random_range(0..4)) {
            0 => format!("{dest}: {id} fake{control}from mallory: hi"),
            1 => format!("{dest}{control}: {id} in the destination"),
            2 => format!("{dest}: {control}{id} at the edge{control}"),
            _ => format!("{dest}: {id} a tab\tis fine"),
        };
        self.terminate(&line)
    }

    /// One message of the final session, to other final sessions, and
    /// maybe to a room it joined (or tried to).
    fn final_message(&self, name: &str, rooms: &[String]) -> Vec<u8> {
        let clients = self.scenario.clients;
        let mut dests = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=3)) {
            dests.push(final_name(self.random(|rng| rng.random_range(0..clients))));
        }
        if self.chance(0.2) {
            dests.push(name.to_string());
        }
        if !rooms.is_empty() && self.chance(self.scenario.rooms.room_dest) {
            let room = self.pick(rooms);
            self.insert_room(&mut dests, room);
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
        if self.chance(self.hostile().steady_reader.rate(self.index)) {
            let pause = Duration::from_millis(self.random(|rng| rng.random_range(10..=100)));
            let (config, network) = (&self.scenario.config, &self.scenario.network);
            // Every seed's slow timeout leaves room for one (a scenario test).
            let senders = self.scenario.clients - 1;
            if let Some(budget) = steady_budget(config, network, senders, pause) {
                return Reading::Steady { budget, pause };
            }
        }
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

/// IRC sessions: a small IRC vocabulary (IRC.md) on the IRC port.
impl Client {
    /// One IRC session of the churn phase: registration (`NICK` and
    /// `USER`, sometimes inside `CAP LS 302` ... `CAP END`), then `JOIN`,
    /// `PART`, `PRIVMSG` and `NOTICE` to nicks and rooms, `PING`, now and
    /// then `NICK`, and `QUIT`, a half-close or a dropped connection. It
    /// answers the server's `PING` with `PONG` between actions. It reads
    /// promptly.
    async fn irc_session(&self) {
        let Some(stream) = self.connect_to(IRC_PORT).await else {
            return;
        };
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let conn = self.recorder.connected(self.index, local, Role::Churn);
        self.recorder.speaks_irc(conn);
        let (reader, writer) = stream.into_split();
        let (replies, mut inbox) = mpsc::unbounded_channel();
        let reader = read(
            reader,
            conn,
            Reading::Prompt,
            replies,
            Rc::new(Cell::new(false)),
            Rc::new(Ended::default()),
            self.recorder.clone(),
        );
        let script = self.irc_script(writer, conn, &mut inbox);
        script_then_linger(script, reader).await;
    }

    /// Registers, acts, then quits or closes.
    async fn irc_script(
        &self,
        mut writer: OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> Ending {
        let nick = match self.irc_register(&mut writer, conn, inbox).await {
            Ok(nick) => nick,
            Err(LoginEnd::Failed) => return Ending::Abrupt,
            Err(LoginEnd::Closed) => {
                self.note(&format!("k{conn} is being closed: reads to the end"));
                return Ending::Closed;
            }
        };
        let mut me = Me::new(nick);
        let behaviour = &self.scenario.behaviour;
        let actions = self.random(|rng| rng.random_range(1..=behaviour.max_actions));
        for _ in 0..actions {
            let pause = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_pause));
            alarms::sleep(pause).await;
            if now() >= self.scenario.phases.quiet_at {
                break;
            }
            if !self.irc_catch_up(&mut writer, conn, &mut me, inbox).await {
                return Ending::Abrupt;
            }
            let bytes = self.irc_action(&me);
            if !self.write(&mut writer, conn, &bytes, Pace::Churn).await {
                return Ending::Abrupt;
            }
        }
        let linger = self.random(|rng| rng.random_range(Duration::ZERO..=behaviour.max_linger));
        alarms::sleep(linger).await;
        if !self.irc_catch_up(&mut writer, conn, &mut me, inbox).await {
            return Ending::Abrupt;
        }
        match self.random(|rng| rng.random_range(0..10)) {
            0 => {
                self.note(&format!("k{conn} drops the connection"));
                Ending::Abrupt
            }
            1 => self.close_side(&mut writer, conn).await,
            _ => {
                // The server answers with ERROR and closes: read to the end.
                let quit = b"QUIT :bye\r\n";
                if !self.write(&mut writer, conn, quit, Pace::Plain).await {
                    return Ending::Abrupt;
                }
                Ending::Closed
            }
        }
    }

    /// `NICK` and `USER` (inside `CAP LS 302` ... `CAP END` sometimes),
    /// then another `NICK` for each one refused; returns the nick `001`
    /// welcomed.
    async fn irc_register(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> Result<String, LoginEnd> {
        let names = &self.scenario.names;
        let nick = self.pick(names);
        let cap = self.chance(self.scenario.irc.cap);
        let mut lines = String::new();
        if cap {
            lines.push_str("CAP LS 302\r\n");
        }
        lines.push_str(&format!("NICK {nick}\r\nUSER {nick} 0 * :sim client\r\n"));
        if cap {
            lines.push_str("CAP END\r\n");
        }
        if !self
            .write(writer, conn, lines.as_bytes(), Pace::Churn)
            .await
        {
            return Err(LoginEnd::Failed);
        }
        let mut attempts = 1;
        loop {
            let reply = self.reply(inbox).await.ok_or(LoginEnd::Failed)?;
            let line = format!("{reply}\n");
            if let Some(Heard::Welcome(nick)) = irc::read(&line) {
                return Ok(nick.to_string());
            }
            if irc_closing(&line) {
                return Err(LoginEnd::Closed);
            }
            let refused = [" 432 ", " 433 "].iter().any(|code| line.contains(code));
            if refused && line.starts_with(&format!(":{} ", irc::SERVER)) {
                if attempts == LOGIN_ATTEMPTS {
                    return Err(LoginEnd::Failed);
                }
                attempts += 1;
                let nick = self.pick(names);
                let line = format!("NICK {nick}\r\n");
                if !self.write(writer, conn, line.as_bytes(), Pace::Churn).await {
                    return Err(LoginEnd::Failed);
                }
            }
        }
    }

    /// A final session's registration as `name`: `None` once welcomed
    /// (`001`), else how the connection ends (refused: `ERROR`).
    async fn irc_final_login(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        name: &str,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> Option<FinalEnd> {
        let mut lines = format!("NICK {name}\r\nUSER {name} 0 * :final\r\n");
        if self.chance(self.scenario.irc.cap) {
            lines = format!("CAP LS 302\r\n{lines}CAP END\r\n");
        }
        if !self
            .write(writer, conn, lines.as_bytes(), Pace::FinalLogin)
            .await
        {
            return Some(FinalEnd::Done);
        }
        loop {
            let Some(reply) = self.reply(inbox).await else {
                return Some(FinalEnd::Done);
            };
            let line = format!("{reply}\n");
            if let Some(Heard::Welcome(_)) = irc::read(&line) {
                return None;
            }
            if irc_closing(&line) {
                self.note(&format!("k{conn} refused: {reply:?}"));
                return Some(FinalEnd::Refused);
            }
        }
    }

    /// Learns from every line the server has sent since the last action
    /// (its own nick and rooms) and answers each `PING` of the server's
    /// with `PONG`; false if the answer could not be written.
    async fn irc_catch_up(
        &self,
        writer: &mut OwnedWriteHalf,
        conn: usize,
        me: &mut Me,
        inbox: &mut mpsc::UnboundedReceiver<String>,
    ) -> bool {
        while let Ok(line) = inbox.try_recv() {
            let line = format!("{line}\n");
            if line == irc::ping() {
                self.note(&format!("k{conn} answers the server's PING"));
                if !self
                    .write(writer, conn, b"PONG :chinwag\r\n", Pace::Plain)
                    .await
                {
                    return false;
                }
                continue;
            }
            match irc::read(&line) {
                Some(Heard::Renamed(old, new)) if old == me.name => me.name = new.to_string(),
                Some(Heard::Joined(name, room)) if name == me.name => {
                    me.rooms.insert(room.to_string());
                }
                Some(Heard::Parted(name, room)) if name == me.name => {
                    me.rooms.remove(room);
                }
                _ => {}
            }
        }
        true
    }

    /// The bytes of one IRC action.
    fn irc_action(&self, me: &Me) -> Vec<u8> {
        let rooms = &self.scenario.rooms;
        let join_part = if me.rooms.is_empty() {
            (2.0 * rooms.join_part).min(1.0)
        } else {
            rooms.join_part
        };
        if rooms.on() && self.chance(join_part) {
            let line = if !me.rooms.is_empty() && self.chance(0.4) {
                let mine: Vec<String> = me.rooms.iter().cloned().collect();
                format!("PART {} :later", self.pick(&mine))
            } else {
                format!("JOIN {}", self.pick(&rooms.names))
            };
            return format!("{line}\r\n").into_bytes();
        }
        let irc = &self.scenario.irc;
        if self.chance(irc.ping) {
            let id = self.next_id();
            return format!("PING :{id}\r\n").into_bytes();
        }
        if self.chance(irc.nick) {
            return format!("NICK {}\r\n", self.pick(&self.scenario.names)).into_bytes();
        }
        let names = &self.scenario.names;
        let mut targets: Vec<String> = Vec::new();
        for _ in 0..self.random(|rng| rng.random_range(1..=2)) {
            let name = self.pick(names);
            if !targets.contains(&name) {
                targets.push(name);
            }
        }
        if self.chance(self.scenario.behaviour.offline_dest) {
            let offline = OFFLINE_NAMES[self.random(|rng| rng.random_range(0..2))];
            targets.push(offline.to_string());
        }
        if self.chance(rooms.room_dest) {
            let room = self.room_to_send_to(&me.rooms);
            if self.chance(0.5) {
                targets.clear();
            }
            self.insert_room(&mut targets, room);
        }
        let command = if self.chance(irc.notice) {
            "NOTICE"
        } else {
            "PRIVMSG"
        };
        let id = self.next_id();
        let padding = self.random(|rng| rng.random_range(0..=self.scenario.behaviour.max_padding));
        let filler: String = (0..padding)
            .map(|i| if i % 8 == 7 { ':' } else { '~' })
            .collect();
        format!("{command} {} :{id} irc {filler}\r\n", targets.join(",")).into_bytes()
    }
}

/// A line-protocol message line, `dests: text`, as IRC's `PRIVMSG dests
/// :text` with CR LF (the simulated clients' destinations hold no `:`).
fn irc_privmsg(line: &[u8]) -> Vec<u8> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches(['\r', '\n']);
    let (dests, text) = line.split_once(": ").unwrap_or((line, ""));
    let targets: Vec<&str> = dests.split(',').map(str::trim).collect();
    format!("PRIVMSG {} :{text}\r\n", targets.join(",")).into_bytes()
}

/// Whether `line` (with its CR LF) is the server's `ERROR`: it is closing
/// the connection (refused, timed out or quit).
fn irc_closing(line: &str) -> bool {
    line.starts_with(&format!(":{} ERROR ", irc::SERVER)) || line.starts_with("ERROR ")
}

/// Learns from every line the server has sent a session since its last
/// action (see [`Me::learn`]). A stalled reader learns nothing.
fn catch_up(me: &mut Me, inbox: &mut mpsc::UnboundedReceiver<String>) {
    while let Ok(line) = inbox.try_recv() {
        me.learn(&line);
    }
}

/// Reads until the stream ends, recording every byte, passing each
/// complete line to `replies` (the login waits on them) and telling `ended`
/// at the end.
/// Runs a session's `script` while its `reader` reads; when the script
/// ends by closing its side, the reader goes on for at most `CLOSE_WAIT`,
/// to read what the server still sends before it closes too.
async fn script_then_linger(
    script: impl Future<Output = Ending>,
    reader: impl Future<Output = ()>,
) {
    let (reader, script) = (std::pin::pin!(reader), std::pin::pin!(script));
    if let Either::Left((Ending::Graceful | Ending::Closed, reader)) = select(script, reader).await
    {
        let _ = alarms::timeout(CLOSE_WAIT, reader).await;
    }
}

async fn read(
    reader: OwnedReadHalf,
    conn: usize,
    reading: Reading,
    replies: mpsc::UnboundedSender<String>,
    logged_in: Rc<Cell<bool>>,
    ended: Rc<Ended>,
    recorder: Recorder,
) {
    // A steady reader's loop is owed never being cut while it runs: note
    // when it stops, however it stops (the session's future dropped too).
    let _stops = matches!(reading, Reading::Steady { .. }).then(|| StopsReading {
        recorder: recorder.clone(),
        conn,
    });
    read_to_end(reader, conn, reading, replies, logged_in, recorder).await;
    ended.set();
}

/// Tells the recorder, when dropped, that a connection's reading stopped.
struct StopsReading {
    recorder: Recorder,
    conn: usize,
}

impl Drop for StopsReading {
    fn drop(&mut self) {
        self.recorder.stopped_reading(self.conn);
    }
}

async fn read_to_end(
    mut reader: OwnedReadHalf,
    conn: usize,
    reading: Reading,
    replies: mpsc::UnboundedSender<String>,
    logged_in: Rc<Cell<bool>>,
    recorder: Recorder,
) {
    let size = match reading {
        Reading::Slow { chunk, .. } => chunk,
        Reading::Steady { budget, .. } => budget,
        Reading::Prompt | Reading::Stalled => 4096,
    };
    let mut buffer = vec![0u8; size];
    let mut line = Vec::new();
    loop {
        if matches!(reading, Reading::Stalled) && logged_in.get() {
            futures::future::pending::<()>().await;
        }
        let mut read = match reader.read(&mut buffer).await {
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
        // A steady reader takes all that has arrived, up to its budget: a
        // read stops at the end of a segment.
        let mut ended = None;
        if let Reading::Steady { .. } = reading {
            while read < buffer.len() {
                match reader.read(&mut buffer[read..]).now_or_never() {
                    Some(Ok(0)) => ended = Some(End::EndOfStream),
                    Some(Ok(more)) => {
                        read += more;
                        continue;
                    }
                    Some(Err(_)) => ended = Some(End::Reset),
                    None => {}
                }
                break;
            }
        }
        recorder.received(conn, &buffer[..read]);
        for &byte in &buffer[..read] {
            if byte == b'\n' {
                let _ = replies.send(String::from_utf8_lossy(&line).into_owned());
                line.clear();
            } else {
                line.push(byte);
            }
        }
        if let Some(end) = ended {
            recorder.ended(conn, end);
            return;
        }
        if let Reading::Slow { pause, .. } | Reading::Steady { pause, .. } = reading {
            alarms::sleep(pause).await;
        }
    }
}

/// `c` in fullwidth, if it is an ASCII letter or digit.
fn fullwidth(c: char) -> char {
    if c.is_ascii_alphanumeric() {
        char::from_u32(u32::from(c) + 0xfee0).unwrap_or(c)
    } else {
        c
    }
}

/// `c` as the Cyrillic letter that looks like it, if there is one.
fn cyrillic(c: char) -> char {
    match c {
        'a' => 'а',
        'c' => 'с',
        'e' => 'е',
        'i' => 'і',
        'j' => 'ј',
        'o' => 'о',
        'p' => 'р',
        'x' => 'х',
        'y' => 'у',
        _ => c,
    }
}

/// `c` in mathematical bold, if it is a lowercase ASCII letter or a digit.
fn mathematical_bold(c: char) -> char {
    let shifted = match c {
        'a'..='z' => u32::from(c) - u32::from('a') + 0x1d41a,
        '0'..='9' => u32::from(c) - u32::from('0') + 0x1d7ce,
        _ => return c,
    };
    char::from_u32(shifted).unwrap_or(c)
}

/// The simulated time now.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// How long from now until `deadline` (zero if it has passed).
fn until(deadline: Duration) -> Duration {
    deadline.saturating_sub(now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::NAME_POOL;

    #[test]
    fn look_alikes_of_the_pool_are_valid_names_that_look_alike() {
        let swaps: [fn(&str) -> String; 4] = [
            |name| name.chars().map(fullwidth).collect(),
            |name| name.chars().map(cyrillic).collect(),
            |name| name.chars().map(mathematical_bold).collect(),
            |name| name.nfd().collect(),
        ];
        for name in NAME_POOL {
            for swap in swaps {
                let alike = swap(name);
                let login = grammar::login_name(&alike);
                assert!(login.is_some(), "{alike:?} is not a valid name");
                assert!(grammar::look_alike(name, &login.unwrap()), "{alike:?}");
            }
        }
        assert_eq!(fullwidth('a'), 'ａ');
        assert_eq!(mathematical_bold('a'), '𝐚');
        assert_eq!(cyrillic('o'), '\u{43e}');
        assert_eq!(fullwidth('.'), '.');
    }

    #[test]
    fn refusals_and_timeouts_are_closing_replies() {
        assert!(closing("error: server full"));
        assert!(closing("error: too many connections from your address"));
        assert!(closing("error: login timed out"));
        assert!(!closing("error: server shutting down"));
        assert!(!closing("error: name taken: ann"));
    }
}
