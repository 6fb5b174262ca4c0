//! The reference model: the simplest description of PROTOCOL.md that is
//! obviously correct, to hold the broker's every output against.
//!
//! It keeps, for each open connection, the name it holds, the bytes queued
//! for it and which over-full queues its lines went into, and for each
//! input says what the server must send, close, pause and resume. Rooms
//! are plain data, each room with the set of its members, and exist while
//! that set is not empty. Names, the rooms a connection is in, and who is
//! paused, are found by scanning, never through an index that could drift
//! out of step with them.
//!
//! A connection speaks the dialect it was opened with: PROTOCOL.md's line
//! protocol, or IRC.md's IRC, whose registration, commands and keepalive
//! are mapped onto the same names, rooms and deliveries. What one
//! connection's action tells others is decided once, as [`News`], and said
//! to each recipient in its own dialect. Of IRC's commands the model
//! covers those the scenarios send (IRC.md's registration, PRIVMSG,
//! NOTICE, JOIN, PART, NAMES, NICK, AWAY, PING, PONG, PASS, QUIT and
//! unknown ones); TOPIC, MODE, WHO, WHOIS and LIST are not modelled.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use chinwag::broker::{CloseReason, ConnId, Input, Output};
use chinwag::codec::{Frame, FrameError};
use chinwag::config::Config;
use chinwag::irc::ParseError;
use chinwag::news::Dialect;
use chinwag::protocol::Line;
use chinwag::time::Time;

use super::grammar::irc;
use super::grammar::{self, Command, Departure, Message, RoomNews};

/// What the protocol remembers about one open connection.
struct Connection {
    name: Option<String>,
    queued: usize,
    /// When its socket last made progress: the last flush, or when its
    /// queue last went from empty to not.
    progress_at: Time,
    address: IpAddr,
    opened_at: Time,
    /// Since when its queue has been past `max_queue`, while it is.
    over_since: Option<Time>,
    /// The open connections whose over-full queues this one's lines went
    /// into: it is paused while there is one.
    blocked_on: BTreeSet<ConnId>,
    /// IRC's registration and keepalive, for an IRC connection.
    irc: Option<IrcSession>,
}

/// What IRC.md's registration and keepalive remember of one connection.
#[derive(Default)]
struct IrcSession {
    /// Before registration: the nick NICK asked for (valid and free when
    /// asked), whether USER came, and whether `CAP LS` holds registration
    /// until `CAP END`.
    nick: Option<String>,
    user: bool,
    negotiating: bool,
    /// When the client last sent a line, and when it was pinged since.
    last_heard: Time,
    pinged_at: Option<Time>,
}

/// What one connection's action tells others, before it is said in each
/// recipient's dialect.
enum News<'a> {
    /// A message from `sender`, to `room` or directly; `notice` for an IRC
    /// NOTICE, which line-protocol readers get as any message.
    Delivery {
        sender: &'a str,
        room: Option<&'a str>,
        text: &'a str,
        notice: bool,
    },
    Room(&'a str, RoomNews),
    Renamed(&'a str, &'a str),
}

/// Whether two connections count as one address for the per-address
/// limit: the same IPv4 address (an IPv4-mapped IPv6 one included), or
/// IPv6 addresses in the same /64.
fn same_address(a: IpAddr, b: IpAddr) -> bool {
    match (a.to_canonical(), b.to_canonical()) {
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        (a, b) => a == b,
    }
}

/// The protocol as a plain state machine over the broker's inputs.
pub struct Model {
    config: Config,
    open: BTreeMap<ConnId, Connection>,
    /// Each room that exists, by its name (so in room order), with its
    /// members: never an empty set.
    rooms: BTreeMap<String, BTreeSet<ConnId>>,
    /// Connections closed and not yet let go of by the shell, with their
    /// address: they still count against the connection limits.
    releasing: BTreeMap<ConnId, IpAddr>,
    now: Time,
    shutting_down: bool,
}

impl Model {
    /// A model of a server with `config`'s limits and timeouts.
    pub fn new(config: &Config) -> Self {
        Model {
            config: *config,
            open: BTreeMap::new(),
            rooms: BTreeMap::new(),
            releasing: BTreeMap::new(),
            now: Time::ZERO,
            shutting_down: false,
        }
    }

    /// What the server must do for `input` at time `now`, in the order it
    /// must do it.
    pub fn step(&mut self, now: Time, input: &Input) -> Vec<Output> {
        self.now = now;
        let mut out = Vec::new();
        match input {
            Input::Opened {
                conn,
                address,
                dialect,
            } => self.open(*conn, *address, *dialect, &mut out),
            Input::Line { conn, frame } => match self.open.get(conn).map(|c| c.irc.is_some()) {
                Some(true) => self.irc_line(*conn, frame, &mut out),
                Some(false) => match frame {
                    Err(error) => self.reply(*conn, grammar::frame_error(*error), &mut out),
                    Ok(line) => self.line(*conn, line, &mut out),
                },
                None => {}
            },
            Input::Flushed { conn, bytes } => {
                if let Some(connection) = self.open.get_mut(conn) {
                    connection.queued -= bytes;
                    connection.progress_at = now;
                    if connection.queued <= self.config.max_queue && connection.over_since.is_some()
                    {
                        connection.over_since = None;
                        self.unblock(*conn, &mut out);
                    }
                }
            }
            Input::Closed { conn } => self.close(*conn, CloseReason::PeerClosed, &mut out),
            Input::Released { conn } => {
                self.close(*conn, CloseReason::PeerClosed, &mut out);
                self.releasing.remove(conn);
            }
            Input::Shutdown => self.shutdown(&mut out),
            Input::Timeout => {
                self.cut_dead_peers(&mut out);
                self.cut_slow_consumers(&mut out);
                self.expire_logins(&mut out);
                self.keep_irc_alive(&mut out);
            }
        }
        out
    }

    /// The earliest time a rule of time could next act: a dead-peer cut, a
    /// slow-consumer cut, a login timeout, or IRC's keepalive (a PING, or
    /// the close of a client that did not answer one). The broker must ask
    /// to be woken no later than this.
    pub fn next_deadline(&self) -> Option<Time> {
        let stall =
            |c: &Connection| (c.queued > 0).then(|| c.progress_at + self.config.write_timeout);
        let slow = |c: &Connection| c.over_since.map(|since| since + self.config.slow_timeout);
        let login = |c: &Connection| {
            c.name
                .is_none()
                .then(|| c.opened_at + self.config.login_timeout)
        };
        let keepalive = |c: &Connection| {
            let irc = c.irc.as_ref().filter(|_| c.name.is_some())?;
            let since = irc.pinged_at.unwrap_or(irc.last_heard);
            Some(since + irc::PING_IDLE)
        };
        self.open
            .values()
            .flat_map(|c| [stall(c), slow(c), login(c), keepalive(c)])
            .flatten()
            .min()
    }

    /// A new connection is told and closed at once if the server is
    /// shutting down, full, or holding its address's share already.
    fn open(&mut self, conn: ConnId, address: IpAddr, dialect: Dialect, out: &mut Vec<Output>) {
        let held_before = self.open.len() + self.releasing.len();
        let held_addresses = self.open.values().map(|c| c.address);
        let held_addresses = held_addresses.chain(self.releasing.values().copied());
        let from_address = held_addresses
            .filter(|held| same_address(*held, address))
            .count();
        let connection = Connection {
            name: None,
            queued: 0,
            progress_at: self.now,
            address,
            opened_at: self.now,
            over_since: None,
            blocked_on: BTreeSet::new(),
            irc: (dialect == Dialect::Irc).then(IrcSession::default),
        };
        self.open.insert(conn, connection);
        if self.shutting_down {
            // Accepted as the listener stopped: told and closed like the rest.
            let notice = self.closing(conn, grammar::SHUTTING_DOWN);
            self.tell_and_close(conn, &notice, CloseReason::ShuttingDown, out);
        } else if held_before >= self.config.max_connections {
            let notice = self.closing(conn, grammar::SERVER_FULL);
            self.tell_and_close(conn, &notice, CloseReason::Refused, out);
        } else if from_address >= self.config.max_connections_per_address {
            let notice = self.closing(conn, grammar::TOO_MANY_FROM_ADDRESS);
            self.tell_and_close(conn, &notice, CloseReason::Refused, out);
        }
    }

    /// A connection that has not logged in within the login timeout is
    /// told and closed, in connection id order.
    fn expire_logins(&mut self, out: &mut Vec<Output>) {
        let due = self.now;
        let login_timeout = self.config.login_timeout;
        let expired: Vec<ConnId> = self
            .open
            .iter()
            .filter(|(_, c)| c.name.is_none() && c.opened_at + login_timeout <= due)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in expired {
            let notice = self.closing(conn, grammar::LOGIN_TIMED_OUT);
            self.tell_and_close(conn, &notice, CloseReason::LoginTimeout, out);
        }
    }

    fn line(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        if grammar::is_blank(line) {
            return;
        }
        match self.open[&conn].name.clone() {
            None => self.login(conn, line, out),
            Some(sender) if grammar::is_command(line) => self.command(conn, &sender, line, out),
            Some(sender) => self.message(conn, &sender, line, out),
        }
    }

    fn login(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        match grammar::login_name(line) {
            None => self.reply(conn, grammar::invalid_name(), out),
            Some(name) if self.look_alike_held(&name) => {
                self.reply(conn, grammar::name_taken(&name), out)
            }
            Some(name) => {
                let welcome = grammar::welcome(&name);
                self.open.get_mut(&conn).unwrap().name = Some(name);
                self.reply(conn, welcome, out);
            }
        }
    }

    /// Each connection the destinations reach gets one line, in the form
    /// of the first destination that reaches it; the sender gets an error
    /// for each name not logged in and each room it is not in, in the
    /// order listed.
    fn message(&mut self, sender: ConnId, sender_name: &str, line: &str, out: &mut Vec<Output>) {
        match grammar::parse_message(line) {
            Ok(Message { destinations, text }) => {
                self.deliver(sender, sender_name, &destinations, &text, false, out)
            }
            Err(why) => self.reply(sender, grammar::refusal(why), out),
        }
    }

    /// Delivers `text` from `sender` to what `destinations` reach, each
    /// connection once, in the form of the first destination that reaches
    /// it, said in its dialect; the sender gets an error for each name not
    /// logged in and each room it is not in, in the order listed (none for
    /// an IRC NOTICE, which IRC.md says never gets one).
    fn deliver(
        &mut self,
        sender: ConnId,
        sender_name: &str,
        destinations: &[String],
        text: &str,
        notice: bool,
        out: &mut Vec<Output>,
    ) {
        // Who each destination reaches is decided once, at the point the
        // message is processed; a cut it causes along the way changes
        // nothing.
        let reached: Vec<Option<Vec<ConnId>>> = destinations
            .iter()
            .map(|d| self.reached_by(sender, d))
            .collect();
        let mut delivered: BTreeSet<ConnId> = BTreeSet::new();
        for (destination, reached) in destinations.iter().zip(reached) {
            let Some(recipients) = reached else {
                if notice {
                    continue;
                }
                let (line, code, why) = if grammar::is_room(destination) {
                    let line = grammar::not_in_room(destination);
                    (line, "442", "You're not on that channel")
                } else {
                    (
                        grammar::no_such_peer(destination),
                        "401",
                        "No such nick/channel",
                    )
                };
                let error = self.said_to(sender, line, |me| {
                    irc::numeric(me, code, &[destination], why)
                });
                self.reply(sender, error, out);
                continue;
            };
            let room = grammar::is_room(destination).then_some(destination.as_str());
            let news = News::Delivery {
                sender: sender_name,
                room,
                text,
                notice,
            };
            for recipient in recipients {
                if delivered.insert(recipient) {
                    self.tell(recipient, &news, Some(sender), out);
                }
            }
        }
    }

    /// `line` if `conn` speaks the line protocol, else what `irc` says to
    /// its nick (`*` before it has one).
    fn said_to(&self, conn: ConnId, line: String, irc: impl FnOnce(&str) -> String) -> String {
        let connection = &self.open[&conn];
        match connection.irc {
            None => line,
            Some(_) => irc(connection.name.as_deref().unwrap_or("*")),
        }
    }

    /// The notice a connection closed for `why` (a line-protocol `error: `
    /// line) gets: as it is, or as IRC's `ERROR`.
    fn closing(&self, conn: ConnId, why: &str) -> String {
        let text = why.trim_start_matches("error: ").trim_end_matches('\n');
        self.said_to(conn, why.to_string(), |_| irc::error(text))
    }

    /// Tells `conn` `news` in its dialect, charged to `sender`. IRC has no
    /// words for a member's disconnect per room (a QUIT says it once) nor
    /// for the shutdown's room news.
    fn tell(
        &mut self,
        conn: ConnId,
        news: &News<'_>,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        let Some(connection) = self.open.get(&conn) else {
            return;
        };
        let line = match (connection.irc.is_some(), news) {
            (
                false,
                News::Delivery {
                    sender, room, text, ..
                },
            ) => {
                let text = irc::strip_formatting(text);
                match room {
                    Some(room) => grammar::room_delivery(sender, room, &text),
                    None => grammar::delivery(sender, &text),
                }
            }
            (false, News::Room(room, news)) => grammar::room_news(room, news),
            (false, News::Renamed(old, new)) => grammar::renamed(old, new),
            (
                true,
                News::Delivery {
                    sender,
                    room,
                    text,
                    notice,
                },
            ) => {
                let me = connection.name.as_deref().unwrap_or("*");
                irc::delivery(sender, *notice, room.unwrap_or(me), text)
            }
            (true, News::Room(room, RoomNews::Joined(name))) => irc::joined(name, room),
            (true, News::Room(room, RoomNews::Left(name, Departure::Parted))) => {
                irc::parted(name, room)
            }
            (true, News::Room(..)) => return,
            (true, News::Renamed(old, new)) => irc::nick(old, new),
        };
        self.send(conn, line, sender, out);
    }

    /// The connections `destination` reaches when `sender` lists it: the
    /// holder of a name, or a room's members but the sender. `None` if it
    /// is an error: a name nobody holds, or a room the sender is not in.
    fn reached_by(&self, sender: ConnId, destination: &str) -> Option<Vec<ConnId>> {
        if !grammar::is_room(destination) {
            return self.holder(destination).map(|holder| vec![holder]);
        }
        let members = self.rooms.get(destination)?;
        if !members.contains(&sender) {
            return None;
        }
        Some(members.iter().copied().filter(|m| *m != sender).collect())
    }

    fn command(&mut self, conn: ConnId, name: &str, line: &str, out: &mut Vec<Output>) {
        let command = match grammar::parse_command(line) {
            Ok(command) => command,
            Err(why) => return self.reply(conn, grammar::command_refusal(why), out),
        };
        match command {
            Command::Join(room) => {
                self.join(conn, name, room, out);
            }
            Command::Part(room) => {
                if !self.is_member(conn, &room) {
                    return self.reply(conn, grammar::not_in_room(&room), out);
                }
                self.part(conn, name, &room, out);
            }
            Command::Names(room) => {
                if !self.rooms.contains_key(&room) {
                    return self.reply(conn, grammar::no_such_room(&room), out);
                }
                self.names(conn, &room, out);
            }
            Command::Rooms => {
                let rooms = self.rooms_of(conn);
                let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
                self.reply(conn, grammar::rooms(&rooms), out);
            }
            Command::Nick(new) => self.rename(conn, name, &new, out),
        }
    }

    /// Leaves `room`, which `conn` is in; the one who parts is told too,
    /// so the news goes out first.
    fn part(&mut self, conn: ConnId, name: &str, room: &str, out: &mut Vec<Output>) {
        let news = RoomNews::Left(name.to_string(), Departure::Parted);
        self.tell_room(room, &News::Room(room, news), Some(conn), out);
        self.leave(conn, room);
    }

    /// The members of `room`, which exists, in the asker's dialect: one
    /// `names` line, or IRC's `353`s and `366`.
    fn names(&mut self, conn: ConnId, room: &str, out: &mut Vec<Output>) {
        let members = &self.rooms[room];
        let names: Vec<&str> = members.iter().filter_map(|m| self.name(*m)).collect();
        let names = self.said_to(conn, grammar::names(room, &names), |me| {
            irc::names(me, room, &names)
        });
        self.reply(conn, names, out);
    }

    /// Refusals in the order PROTOCOL.md's table lists them: already in
    /// the room, too many rooms, room full; IRC says each with its numeric
    /// (an IRC JOIN skips a room it is in before it gets here). Says
    /// whether it joined.
    fn join(&mut self, conn: ConnId, name: &str, room: String, out: &mut Vec<Output>) -> bool {
        if self.is_member(conn, &room) {
            self.reply(conn, grammar::already_in_room(&room), out);
            return false;
        }
        let most = self.config.max_rooms_per_connection;
        if self.rooms_of(conn).len() >= most {
            // IRC's 405 names the channel, which IRC clients show.
            let text = format!("You have joined too many channels (at most {most})");
            let refusal = self.said_to(conn, grammar::too_many_rooms(most), |me| {
                irc::numeric(me, "405", &[&room], &text)
            });
            self.reply(conn, refusal, out);
            return false;
        }
        let members = self.rooms.get(&room).map_or(0, BTreeSet::len);
        if members >= self.config.max_room_members {
            let refusal = self.said_to(conn, grammar::room_full(&room), |me| {
                irc::numeric(me, "471", &[&room], "Cannot join channel (room full)")
            });
            self.reply(conn, refusal, out);
            return false;
        }
        self.rooms.entry(room.clone()).or_default().insert(conn);
        let news = News::Room(&room, RoomNews::Joined(name.to_string()));
        self.tell_room(&room, &news, Some(conn), out);
        true
    }

    /// `/nick` by the rules of login: the new name is told to the renamer
    /// and, once each, to everyone sharing a room with it.
    fn rename(&mut self, conn: ConnId, old: &str, written: &str, out: &mut Vec<Output>) {
        let Some(new) = grammar::login_name(written) else {
            // IRC's 432 names the refused nick, which IRC clients show.
            let refusal = self.said_to(conn, grammar::invalid_name(), |me| {
                irc::numeric(me, "432", &[written], "Erroneous nickname")
            });
            return self.reply(conn, refusal, out);
        };
        let taken = self
            .open
            .iter()
            .filter(|(other, _)| **other != conn)
            .filter_map(|(_, c)| c.name.as_deref())
            .any(|held| grammar::look_alike(held, &new));
        if taken {
            let refusal = self.said_to(conn, grammar::name_taken(&new), |me| {
                irc::numeric(me, "433", &[&new], "Nickname is already in use")
            });
            return self.reply(conn, refusal, out);
        }
        self.open.get_mut(&conn).unwrap().name = Some(new.clone());
        let mut told: BTreeSet<ConnId> = BTreeSet::from([conn]);
        for members in self.rooms.values().filter(|m| m.contains(&conn)) {
            told.extend(members);
        }
        for recipient in told {
            self.tell(recipient, &News::Renamed(old, &new), Some(conn), out);
        }
    }

    /// Tells every member of `room` `news`, charged to `sender`.
    fn tell_room(
        &mut self,
        room: &str,
        news: &News<'_>,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        let members: Vec<ConnId> = self.rooms[room].iter().copied().collect();
        for member in members {
            self.tell(member, news, sender, out);
        }
    }

    /// Takes `conn` out of `room`, which is gone once it has no members.
    fn leave(&mut self, conn: ConnId, room: &str) {
        let members = self.rooms.get_mut(room).unwrap();
        members.remove(&conn);
        if members.is_empty() {
            self.rooms.remove(room);
        }
    }

    fn is_member(&self, conn: ConnId, room: &str) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains(&conn))
    }

    /// The rooms `conn` is in, in room order.
    fn rooms_of(&self, conn: ConnId) -> Vec<String> {
        let rooms = self.rooms.iter().filter(|(_, m)| m.contains(&conn));
        rooms.map(|(room, _)| room.clone()).collect()
    }

    fn name(&self, conn: ConnId) -> Option<&str> {
        self.open.get(&conn).and_then(|c| c.name.as_deref())
    }

    /// A connection with data queued whose socket has accepted nothing for
    /// the write timeout is a dead peer: cut, in connection id order.
    fn cut_dead_peers(&mut self, out: &mut Vec<Output>) {
        let dead: Vec<ConnId> = self
            .open
            .iter()
            .filter(|(_, c)| c.queued > 0 && c.progress_at + self.config.write_timeout <= self.now)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in dead {
            self.close(conn, CloseReason::DeadPeer, out);
        }
    }

    /// A connection whose queue has been past `max_queue` for the slow
    /// timeout is a slow consumer: cut, in connection id order.
    fn cut_slow_consumers(&mut self, out: &mut Vec<Output>) {
        let slow: Vec<ConnId> = self
            .open
            .iter()
            .filter(|(_, c)| {
                c.over_since
                    .is_some_and(|since| since + self.config.slow_timeout <= self.now)
            })
            .map(|(conn, _)| *conn)
            .collect();
        for conn in slow {
            self.close(conn, CloseReason::SlowConsumer, out);
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Output>) {
        self.shutting_down = true;
        let open: Vec<ConnId> = self.open.keys().copied().collect();
        for conn in open {
            // Room lines are notices too: each only if it fits. IRC has no
            // words for them: its ERROR says it all.
            let rooms = self.rooms_of(conn);
            let rooms = rooms.iter().filter(|_| self.open[&conn].irc.is_none());
            let mut notices: Vec<String> = rooms
                .map(|room| grammar::room_news(room, &RoomNews::EveryoneLeft))
                .collect();
            notices.push(self.closing(conn, grammar::SHUTTING_DOWN));
            self.tell_all_and_close(conn, &notices, CloseReason::ShuttingDown, out);
        }
    }

    /// Tells `conn` why it is closed and closes it in a way that still
    /// writes what was queued. A connection with no room left for the
    /// notice is closed the same way, without the notice: the queue bound
    /// holds, and what was already processed still goes out.
    fn tell_and_close(
        &mut self,
        conn: ConnId,
        notice: &str,
        reason: CloseReason,
        out: &mut Vec<Output>,
    ) {
        self.tell_all_and_close(conn, &[notice.to_string()], reason, out);
    }

    /// Like `tell_and_close`, with several notices in order, each sent if
    /// it fits then: PROTOCOL.md's rule is per notice ("no room left for a
    /// notice ... without the notice"), so a shorter one may still go out
    /// after a longer one did not.
    fn tell_all_and_close(
        &mut self,
        conn: ConnId,
        notices: &[String],
        reason: CloseReason,
        out: &mut Vec<Output>,
    ) {
        for notice in notices {
            let fits = self
                .open
                .get(&conn)
                .is_some_and(|c| c.queued + notice.len() <= self.config.max_queue);
            if fits {
                self.send(conn, notice.clone(), None, out);
            }
        }
        self.close(conn, reason, out);
    }

    /// Sends `conn` a reply to the line it just sent.
    fn reply(&mut self, conn: ConnId, line: String, out: &mut Vec<Output>) {
        self.send(conn, line, Some(conn), out);
    }

    /// Queues `line` for `conn`, always. If that leaves `conn`'s queue past
    /// `max_queue`, the connection whose line caused it (`sender`) is
    /// paused until `conn` drains back under the bound or closes, and the
    /// slow clock of `conn` runs from the moment it went past. Nothing is
    /// sent to a connection that is not open.
    fn send(&mut self, conn: ConnId, line: String, sender: Option<ConnId>, out: &mut Vec<Output>) {
        let now = self.now;
        let Some(connection) = self.open.get_mut(&conn) else {
            return;
        };
        if connection.queued == 0 {
            connection.progress_at = now;
        }
        connection.queued += line.len();
        let over = connection.queued > self.config.max_queue;
        if over && connection.over_since.is_none() {
            connection.over_since = Some(now);
        }
        out.push(Output::Send {
            conn,
            line: Line::from(line),
        });
        if let (true, Some(sender)) = (over, sender) {
            let sender_state = self.open.get_mut(&sender).unwrap();
            let was_paused = !sender_state.blocked_on.is_empty();
            sender_state.blocked_on.insert(conn);
            if !was_paused {
                out.push(Output::Pause { conn: sender });
            }
        }
    }

    /// `full` is no longer past the bound (it drained, or closed): whoever
    /// waited on it alone resumes, in connection id order.
    fn unblock(&mut self, full: ConnId, out: &mut Vec<Output>) {
        for (conn, connection) in &mut self.open {
            if connection.blocked_on.remove(&full) && connection.blocked_on.is_empty() {
                out.push(Output::Resume { conn: *conn });
            }
        }
    }

    /// Forgets an open connection (freeing its name and its places in
    /// rooms) and says so, once. The members left in its rooms are told
    /// why it left, one line per room in room order, charged to nobody:
    /// there is no sender to pause. At shutdown they are not, since
    /// everyone leaves.
    fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) {
        let Some(connection) = self.open.remove(&conn) else {
            return;
        };
        self.releasing.insert(conn, connection.address);
        let rooms = self.rooms_of(conn);
        for room in &rooms {
            self.leave(conn, room);
        }
        let departure = match reason {
            // An IRC client's quit or ping timeout (IRC.md) reads to others
            // as a disconnect.
            CloseReason::PeerClosed
            | CloseReason::DeadPeer
            | CloseReason::Quit
            | CloseReason::PingTimeout => Some(Departure::Disconnected),
            CloseReason::SlowConsumer => Some(Departure::SlowConsumer),
            CloseReason::ShuttingDown | CloseReason::Refused | CloseReason::LoginTimeout => None,
        };
        let name = connection.name.clone().map(Arc::from);
        out.push(Output::Close { conn, reason, name });
        // PROTOCOL.md leaves the order of a resume (no line) and the news
        // to one connection open; the model follows the broker's choice:
        // those waiting on the closed queue resume first.
        self.unblock(conn, out);
        if let (Some(departure), Some(name)) = (departure, connection.name) {
            // A room it was the last member of is gone, with nobody to tell.
            let left: Vec<&String> = rooms
                .iter()
                .filter(|r| self.rooms.contains_key(*r))
                .collect();
            // IRC members hear it once, by a QUIT at the first room they
            // shared with it; line-protocol members once per room.
            let mut quit_told: BTreeSet<ConnId> = BTreeSet::new();
            for room in left {
                let news = News::Room(room, RoomNews::Left(name.clone(), departure));
                let members: Vec<ConnId> = self.rooms[room].iter().copied().collect();
                for member in members {
                    if self.open[&member].irc.is_none() {
                        self.tell(member, &news, None, out);
                    } else if quit_told.insert(member) {
                        self.send(member, irc::quit(&name, departure), None, out);
                    }
                }
            }
        }
    }

    /// Whether the server must not read from `conn` now.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.open
            .get(&conn)
            .is_some_and(|c| !c.blocked_on.is_empty())
    }

    /// Whether some connection holds a name that looks like `name`.
    fn look_alike_held(&self, name: &str) -> bool {
        let held = self.open.values().filter_map(|c| c.name.as_deref());
        held.into_iter().any(|held| grammar::look_alike(held, name))
    }

    /// The connection logged in as `name`, if any.
    fn holder(&self, name: &str) -> Option<ConnId> {
        let holds = |(_, c): &(&ConnId, &Connection)| c.name.as_deref() == Some(name);
        self.open.iter().find(holds).map(|(conn, _)| *conn)
    }
}

/// IRC.md: registration, commands and keepalive.
impl Model {
    fn irc_mut(&mut self, conn: ConnId) -> &mut IrcSession {
        let connection = self.open.get_mut(&conn).unwrap();
        connection.irc.as_mut().unwrap()
    }

    /// The nick `conn` holds, or `*` before registration, as numerics say.
    fn me(&self, conn: ConnId) -> String {
        self.name(conn).unwrap_or("*").to_string()
    }

    fn numeric(
        &mut self,
        conn: ConnId,
        code: &str,
        params: &[&str],
        text: &str,
        out: &mut Vec<Output>,
    ) {
        let line = irc::numeric(&self.me(conn), code, params, text);
        self.reply(conn, line, out);
    }

    /// One line from an IRC connection. Every line, even one refused,
    /// proves the client is there.
    fn irc_line(&mut self, conn: ConnId, frame: &Frame, out: &mut Vec<Output>) {
        let now = self.now;
        let session = self.irc_mut(conn);
        session.last_heard = now;
        session.pinged_at = None;
        let line = match frame {
            Ok(line) => line,
            Err(FrameError::LineTooLong) => {
                return self.numeric(conn, "417", &[], "Input line was too long", out);
            }
            Err(FrameError::InvalidUtf8) => {
                let notice = irc::server_notice(&self.me(conn), "invalid utf-8");
                return self.reply(conn, notice, out);
            }
        };
        let message = match chinwag::irc::parse(line) {
            Ok(message) => message,
            Err(ParseError::Empty) => return,
            Err(ParseError::TooLong | ParseError::TagsTooLong) => {
                return self.numeric(conn, "417", &[], "Input line was too long", out);
            }
            // IRC.md is silent on a line that is no IRC message; the model
            // pins the server's notice, as it pins error wordings.
            Err(why) => {
                let notice =
                    irc::server_notice(&self.me(conn), &format!("not an IRC message: {why}"));
                return self.reply(conn, notice, out);
            }
        };
        let params: Vec<&str> = message.params.clone();
        let registered = self.name(conn).is_some();
        match message.command.to_ascii_uppercase().as_str() {
            "CAP" => self.irc_cap(conn, &params, out),
            "NICK" => self.irc_nick(conn, &params, out),
            "USER" => self.irc_user(conn, &params, out),
            "PING" => self.reply(conn, irc::pong(params.first().copied().unwrap_or("")), out),
            "PONG" | "PASS" => {}
            "QUIT" => {
                let notice = irc::error("closing link (you quit)");
                self.tell_and_close(conn, &notice, CloseReason::Quit, out);
            }
            _ if !registered => self.numeric(conn, "451", &[], "You have not registered", out),
            "PRIVMSG" => self.irc_message(conn, &params, false, out),
            "NOTICE" => self.irc_message(conn, &params, true, out),
            "JOIN" => self.irc_join(conn, &params, out),
            "PART" => self.irc_part(conn, &params, out),
            "NAMES" => {
                // IRC.md is silent on a channel that does not exist, and
                // on NAMES with none: the server ends the (empty) list.
                let list = params.first().copied().unwrap_or("*");
                for channel in list.split(',') {
                    if self.rooms.contains_key(channel) {
                        self.names(conn, channel, out);
                    } else {
                        self.numeric(conn, "366", &[channel], "End of /NAMES list", out);
                    }
                }
            }
            "AWAY" => match params.first() {
                Some(away) if !away.is_empty() => {
                    self.numeric(conn, "306", &[], "You have been marked as being away", out)
                }
                _ => self.numeric(
                    conn,
                    "305",
                    &[],
                    "You are no longer marked as being away",
                    out,
                ),
            },
            word @ ("TOPIC" | "MODE" | "WHO" | "WHOIS" | "LIST") => {
                panic!("the reference model does not cover IRC's {word}")
            }
            _ => self.numeric(conn, "421", &[message.command], "Unknown command", out),
        }
    }

    /// CAP: no capabilities. `CAP LS` before registration holds it until
    /// `CAP END`.
    fn irc_cap(&mut self, conn: ConnId, params: &[&str], out: &mut Vec<Output>) {
        let me = self.me(conn);
        let subcommand = params.first().copied().unwrap_or("");
        match subcommand.to_ascii_uppercase().as_str() {
            "LS" => {
                if self.name(conn).is_none() {
                    self.irc_mut(conn).negotiating = true;
                }
                self.reply(conn, irc::cap(&me, "LS", ""), out);
            }
            "LIST" => self.reply(conn, irc::cap(&me, "LIST", ""), out),
            "REQ" => {
                let asked = params.get(1).copied().unwrap_or("");
                self.reply(conn, irc::cap(&me, "NAK", asked), out);
            }
            "END" => {
                self.irc_mut(conn).negotiating = false;
                self.irc_register(conn, out);
            }
            _ => self.numeric(conn, "410", &[subcommand], "Invalid CAP command", out),
        }
    }

    /// NICK: before registration the nick to register with, judged at once
    /// by the rules of login; after, a rename.
    fn irc_nick(&mut self, conn: ConnId, params: &[&str], out: &mut Vec<Output>) {
        let Some(&wanted) = params.first().filter(|nick| !nick.is_empty()) else {
            return self.numeric(conn, "431", &[], "No nickname given", out);
        };
        if let Some(old) = self.name(conn).map(str::to_string) {
            return self.rename(conn, &old, wanted, out);
        }
        let Some(nick) = grammar::login_name(wanted) else {
            return self.numeric(conn, "432", &[wanted], "Erroneous nickname", out);
        };
        if self.look_alike_held(&nick) {
            return self.numeric(conn, "433", &[&nick], "Nickname is already in use", out);
        }
        self.irc_mut(conn).nick = Some(nick);
        self.irc_register(conn, out);
    }

    fn irc_user(&mut self, conn: ConnId, params: &[&str], out: &mut Vec<Output>) {
        if self.name(conn).is_some() {
            return self.numeric(conn, "462", &[], "You may not reregister", out);
        }
        if params.len() < 4 {
            return self.numeric(conn, "461", &["USER"], "Not enough parameters", out);
        }
        self.irc_mut(conn).user = true;
        self.irc_register(conn, out);
    }

    /// Registers once NICK and USER have come and no CAP negotiation holds
    /// it: a login with the nick, which may have been taken since NICK
    /// (then it is forgotten, and another NICK is needed).
    fn irc_register(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let session = self.irc_mut(conn);
        if !session.user || session.negotiating || session.nick.is_none() {
            return;
        }
        let nick = session.nick.take().unwrap();
        if self.look_alike_held(&nick) {
            return self.numeric(conn, "433", &[&nick], "Nickname is already in use", out);
        }
        let welcome = irc::welcome_burst(&nick, self.config.max_rooms_per_connection);
        self.open.get_mut(&conn).unwrap().name = Some(nick);
        self.reply(conn, welcome, out);
    }

    /// PRIVMSG and NOTICE: the line protocol's delivery, with IRC's
    /// formatting codes allowed in the text. A NOTICE never gets an error.
    fn irc_message(&mut self, conn: ConnId, params: &[&str], notice: bool, out: &mut Vec<Output>) {
        let command = if notice { "NOTICE" } else { "PRIVMSG" };
        let (targets, text) = match params {
            [] if notice => return,
            [] => {
                let why = format!("No recipient given ({command})");
                return self.numeric(conn, "411", &[], &why, out);
            }
            [_] | [_, ""] if notice => return,
            [_] | [_, ""] => return self.numeric(conn, "412", &[], "No text to send", out),
            [targets, text, ..] => (*targets, *text),
        };
        // IRC.md does not order the refusals: the server judges the text
        // before the targets.
        if !irc::is_allowed_text(text) {
            if !notice {
                let why = "control characters are not allowed in messages";
                let refusal = irc::server_notice(&self.me(conn), why);
                self.reply(conn, refusal, out);
            }
            return;
        }
        let mut destinations: Vec<String> = Vec::new();
        for target in targets.split(',').filter(|t| !t.is_empty()) {
            match irc::canonical(target) {
                Some(destination) => {
                    if !destinations.contains(&destination) {
                        destinations.push(destination);
                    }
                }
                None if notice => {}
                None if target.starts_with('#') => {
                    self.numeric(conn, "403", &[target], "No such channel", out)
                }
                None => self.numeric(conn, "401", &[target], "No such nick/channel", out),
            }
        }
        let sender = self.me(conn);
        self.deliver(conn, &sender, &destinations, text, notice, out);
    }

    /// The valid rooms of a channel list, in NFC; each invalid one gets
    /// `403` first.
    fn irc_rooms(&mut self, conn: ConnId, list: &str, out: &mut Vec<Output>) -> Vec<String> {
        let mut rooms = Vec::new();
        for channel in list.split(',').filter(|c| !c.is_empty()) {
            match irc::canonical(channel).filter(|room| grammar::is_room(room)) {
                Some(room) => rooms.push(room),
                None => self.numeric(conn, "403", &[channel], "No such channel", out),
            }
        }
        rooms
    }

    /// JOIN: each channel as `/join` (one already joined is skipped), then
    /// its names; `JOIN 0` parts every channel.
    fn irc_join(&mut self, conn: ConnId, params: &[&str], out: &mut Vec<Output>) {
        let Some(&list) = params.first() else {
            return self.numeric(conn, "461", &["JOIN"], "Not enough parameters", out);
        };
        let name = self.me(conn);
        if list == "0" {
            for room in self.rooms_of(conn) {
                self.part(conn, &name, &room, out);
            }
            return;
        }
        for room in self.irc_rooms(conn, list, out) {
            if !self.is_member(conn, &room) && self.join(conn, &name, room.clone(), out) {
                self.names(conn, &room, out);
            }
        }
    }

    /// PART: each channel as `/part`; the reason is not passed on.
    fn irc_part(&mut self, conn: ConnId, params: &[&str], out: &mut Vec<Output>) {
        let Some(&list) = params.first() else {
            return self.numeric(conn, "461", &["PART"], "Not enough parameters", out);
        };
        let name = self.me(conn);
        for room in self.irc_rooms(conn, list, out) {
            if !self.rooms.contains_key(&room) {
                self.numeric(conn, "403", &[&room], "No such channel", out);
            } else if !self.is_member(conn, &room) {
                self.numeric(conn, "442", &[&room], "You're not on that channel", out);
            } else {
                self.part(conn, &name, &room, out);
            }
        }
    }

    /// IRC's keepalive: a registered client quiet for `PING_IDLE` is sent
    /// a PING (whatever its queue holds: IRC.md makes it unconditional),
    /// and closed if it then says nothing for as long again, in connection
    /// id order.
    fn keep_irc_alive(&mut self, out: &mut Vec<Output>) {
        let now = self.now;
        let registered = self.open.iter().filter(|(_, c)| c.name.is_some());
        let sessions = registered.filter_map(|(conn, c)| Some((*conn, c.irc.as_ref()?)));
        let due: Vec<(ConnId, bool)> = sessions
            .filter_map(|(conn, irc)| match irc.pinged_at {
                None => (irc.last_heard + irc::PING_IDLE <= now).then_some((conn, false)),
                Some(at) => (at + irc::PING_IDLE <= now).then_some((conn, true)),
            })
            .collect();
        for (conn, pinged) in due {
            if pinged {
                let notice = irc::error("ping timeout");
                self.tell_and_close(conn, &notice, CloseReason::PingTimeout, out);
            } else {
                self.irc_mut(conn).pinged_at = Some(now);
                self.send(conn, irc::ping(), None, out);
            }
        }
    }
}

/// `outputs` by the connection each concerns, each connection's in order:
/// what the broker and the model must agree on for one input. The order
/// between different connections is the shell's business, not the
/// protocol's.
pub fn per_connection(outputs: &[Output]) -> BTreeMap<ConnId, Vec<&Output>> {
    let mut by_conn: BTreeMap<ConnId, Vec<&Output>> = BTreeMap::new();
    for output in outputs {
        let (Output::Send { conn, .. }
        | Output::Close { conn, .. }
        | Output::Pause { conn }
        | Output::Resume { conn }) = output;
        by_conn.entry(*conn).or_default().push(output);
    }
    by_conn
}
