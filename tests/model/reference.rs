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

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use chinwag::broker::{CloseReason, ConnId, Input, Output};
use chinwag::config::Config;
use chinwag::protocol::Line;
use chinwag::time::Time;

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
            // The model is of the line protocol: it takes every connection
            // to speak it (the simulator's and the property tests' do).
            Input::Opened { conn, address, .. } => self.open(*conn, *address, &mut out),
            Input::Line { conn, frame } => {
                if self.open.contains_key(conn) {
                    match frame {
                        Err(error) => self.reply(*conn, grammar::frame_error(*error), &mut out),
                        Ok(line) => self.line(*conn, line, &mut out),
                    }
                }
            }
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
            }
        }
        out
    }

    /// The earliest time a rule of time could next close a connection: a
    /// dead-peer cut, a slow-consumer cut or a login timeout. The broker
    /// must ask to be woken no later than this.
    pub fn next_deadline(&self) -> Option<Time> {
        let stall =
            |c: &Connection| (c.queued > 0).then(|| c.progress_at + self.config.write_timeout);
        let slow = |c: &Connection| c.over_since.map(|since| since + self.config.slow_timeout);
        let login = |c: &Connection| {
            c.name
                .is_none()
                .then(|| c.opened_at + self.config.login_timeout)
        };
        self.open
            .values()
            .flat_map(|c| [stall(c), slow(c), login(c)])
            .flatten()
            .min()
    }

    /// A new connection is told and closed at once if the server is
    /// shutting down, full, or holding its address's share already.
    fn open(&mut self, conn: ConnId, address: IpAddr, out: &mut Vec<Output>) {
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
        };
        self.open.insert(conn, connection);
        if self.shutting_down {
            // Accepted as the listener stopped: told and closed like the rest.
            self.tell_and_close(conn, grammar::SHUTTING_DOWN, CloseReason::ShuttingDown, out);
        } else if held_before >= self.config.max_connections {
            self.tell_and_close(conn, grammar::SERVER_FULL, CloseReason::Refused, out);
        } else if from_address >= self.config.max_connections_per_address {
            let notice = grammar::TOO_MANY_FROM_ADDRESS;
            self.tell_and_close(conn, notice, CloseReason::Refused, out);
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
            let notice = grammar::LOGIN_TIMED_OUT;
            self.tell_and_close(conn, notice, CloseReason::LoginTimeout, out);
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
        let Message { destinations, text } = match grammar::parse_message(line) {
            Ok(message) => message,
            Err(why) => return self.reply(sender, grammar::refusal(why), out),
        };
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
                let error = if grammar::is_room(destination) {
                    grammar::not_in_room(destination)
                } else {
                    grammar::no_such_peer(destination)
                };
                self.reply(sender, error, out);
                continue;
            };
            let line = grammar::delivery_via(sender_name, destination, &text);
            for recipient in recipients {
                if delivered.insert(recipient) {
                    self.send(recipient, line.clone(), Some(sender), out);
                }
            }
        }
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
            Command::Join(room) => self.join(conn, name, room, out),
            Command::Part(room) => {
                if !self.is_member(conn, &room) {
                    return self.reply(conn, grammar::not_in_room(&room), out);
                }
                // The one who parts is told too, so the news goes out first.
                let news =
                    grammar::room_news(&room, &RoomNews::Left(name.to_string(), Departure::Parted));
                self.tell_room(&room, news, Some(conn), out);
                self.leave(conn, &room);
            }
            Command::Names(room) => {
                let Some(members) = self.rooms.get(&room) else {
                    return self.reply(conn, grammar::no_such_room(&room), out);
                };
                let names: Vec<&str> = members.iter().filter_map(|m| self.name(*m)).collect();
                let names = grammar::names(&room, &names);
                self.reply(conn, names, out);
            }
            Command::Rooms => {
                let rooms = self.rooms_of(conn);
                let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
                self.reply(conn, grammar::rooms(&rooms), out);
            }
            Command::Nick(new) => self.rename(conn, name, &new, out),
        }
    }

    /// Refusals in the order PROTOCOL.md's table lists them: already in
    /// the room, too many rooms, room full.
    fn join(&mut self, conn: ConnId, name: &str, room: String, out: &mut Vec<Output>) {
        if self.is_member(conn, &room) {
            return self.reply(conn, grammar::already_in_room(&room), out);
        }
        let most = self.config.max_rooms_per_connection;
        if self.rooms_of(conn).len() >= most {
            return self.reply(conn, grammar::too_many_rooms(most), out);
        }
        let members = self.rooms.get(&room).map_or(0, BTreeSet::len);
        if members >= self.config.max_room_members {
            return self.reply(conn, grammar::room_full(&room), out);
        }
        self.rooms.entry(room.clone()).or_default().insert(conn);
        let news = grammar::room_news(&room, &RoomNews::Joined(name.to_string()));
        self.tell_room(&room, news, Some(conn), out);
    }

    /// `/nick` by the rules of login: the new name is told to the renamer
    /// and, once each, to everyone sharing a room with it.
    fn rename(&mut self, conn: ConnId, old: &str, written: &str, out: &mut Vec<Output>) {
        let Some(new) = grammar::login_name(written) else {
            return self.reply(conn, grammar::invalid_name(), out);
        };
        let taken = self
            .open
            .iter()
            .filter(|(other, _)| **other != conn)
            .filter_map(|(_, c)| c.name.as_deref())
            .any(|held| grammar::look_alike(held, &new));
        if taken {
            return self.reply(conn, grammar::name_taken(&new), out);
        }
        self.open.get_mut(&conn).unwrap().name = Some(new.clone());
        let mut told: BTreeSet<ConnId> = BTreeSet::from([conn]);
        for members in self.rooms.values().filter(|m| m.contains(&conn)) {
            told.extend(members);
        }
        let line = grammar::renamed(old, &new);
        for recipient in told {
            self.send(recipient, line.clone(), Some(conn), out);
        }
    }

    /// Sends `news` to every member of `room`, charged to `sender`.
    fn tell_room(
        &mut self,
        room: &str,
        news: String,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        let members: Vec<ConnId> = self.rooms[room].iter().copied().collect();
        for member in members {
            self.send(member, news.clone(), sender, out);
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
            // Room lines are notices too: each only if it fits.
            let mut notices: Vec<String> = self
                .rooms_of(conn)
                .iter()
                .map(|room| grammar::room_news(room, &RoomNews::EveryoneLeft))
                .collect();
            notices.push(grammar::SHUTTING_DOWN.to_string());
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
            // An IRC client's quit or ping timeout (IRC.md) reads to line
            // clients as a disconnect; the model's own connections speak
            // the line protocol and never close those ways.
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
            for room in left {
                let news = grammar::room_news(room, &RoomNews::Left(name.clone(), departure));
                self.tell_room(room, news, None, out);
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
