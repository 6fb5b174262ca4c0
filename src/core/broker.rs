//! The broker: the pure state machine at the heart of chinwag.
//!
//! Every fact about every connection (opened, a line read, bytes flushed,
//! closed), the shutdown request and the passing of time arrive here as one
//! [`Input`] at a time, with the time it happened, in one total order. For
//! each, the broker decides everything PROTOCOL.md decides and appends
//! [`Output`]s (lines to queue for a connection, connections to close) to a
//! buffer its caller owns. [`Broker::poll_timeout`] says when it next needs
//! an [`Input::Timeout`], in the style of quinn-proto: the caller owns the
//! timer, the broker owns the rule.
//!
//! It owns who is logged in (by connection id; names are only a lookup
//! table), who is in which room, and how many bytes are queued for each
//! connection, so flow
//! control (whose reading pauses, who is too slow, who is dead) is decided
//! here, from facts the shell reports.
//! It does no I/O, reads no clock and draws no random numbers (the crate is
//! `no_std`), so the same inputs always give the same outputs: that is what
//! lets property tests and the simulator check it. Its maps are hash maps
//! for speed (every message looks up each destination's name and
//! connection), hashed with a fixed seed rather than a random one, and the
//! places that walk a map to produce outputs (shutdown, dead peers) sort
//! first, so no hash order ever reaches an output.
//!
//! The caller must keep the legal-input contract (ARCHITECTURE.md): a fresh
//! id per `Opened`, nothing about a connection after its `Closed`, no line
//! from a connection between its `Pause` and its `Resume`, never more
//! `Flushed` than was sent, and time that never goes backwards. Breaking it
//! is a bug in the caller, and the broker panics, in release builds too,
//! rather than go on with an account it knows is wrong.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv6Addr};
use core::time::Duration;

use foldhash::fast::FixedState;
use hashbrown::HashMap;

use crate::codec::Frame;
use crate::config::Config;
use crate::news::{Dialect, News, Shared};
use crate::protocol::{self, Command, Departure, ErrorReply, Line};
use crate::time::Time;

/// Names one connection for its whole life. Chosen by the shell, never
/// reused, never derived from a login name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl core::fmt::Display for ConnId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// One fact the broker is told, with the time it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A connection was accepted from `address`, on the listener for
    /// `dialect`.
    Opened {
        conn: ConnId,
        address: IpAddr,
        dialect: Dialect,
    },
    /// A connection sent a line (or a line the codec refused).
    Line { conn: ConnId, frame: Frame },
    /// The socket accepted `bytes` more of what was queued for `conn`.
    Flushed { conn: ConnId, bytes: usize },
    /// The peer closed the connection or it failed.
    Closed { conn: ConnId },
    /// The shell let go of the socket: its draining and lingering are over,
    /// and nothing more about `conn` will come. Until then a connection the
    /// broker closed still holds a descriptor and up to `max_queue` bytes,
    /// so it still counts against the connection limits.
    Released { conn: ConnId },
    /// The server is shutting down.
    Shutdown,
    /// Time has passed: the time [`Broker::poll_timeout`] asked for, or any
    /// later one. Early or extra timeouts are harmless.
    Timeout,
}

/// One decision the shell carries out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Queue this line (terminator included) for `conn`. One delivery is one
    /// shared buffer, however many recipients it has.
    Send { conn: ConnId, line: Line },
    /// Stop reading from `conn`: a line it sent took some connection's queue
    /// past `max_queue`. The shell hands over no line from it (not even one
    /// it had already read) until `Resume`.
    Pause { conn: ConnId },
    /// Read from `conn` again: every queue its lines took past `max_queue`
    /// is back under it, or closed.
    Resume { conn: ConnId },
    /// The broker is done with `conn`: it sends nothing more to it and
    /// `name`, the name it was logged in as (if any), is free. The shell
    /// closes the socket.
    Close {
        conn: ConnId,
        reason: CloseReason,
        name: Option<Arc<str>>,
    },
}

/// Why the broker let go of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side or the connection failed.
    PeerClosed,
    /// Its queue stayed past `max_queue` for the slow timeout.
    SlowConsumer,
    /// Its socket accepted no bytes for the write timeout.
    DeadPeer,
    /// The server is shutting down.
    ShuttingDown,
    /// It was over `max_connections` or `max_connections_per_address`.
    Refused,
    /// It did not log in within the login timeout.
    LoginTimeout,
    /// An IRC client said QUIT.
    Quit,
    /// An IRC client answered no PING within the keepalive interval.
    PingTimeout,
}

impl CloseReason {
    /// Whether the shell should still try to write what is queued before
    /// closing. A slow or dead peer is cut at once: waiting on it is what the
    /// limit exists to prevent.
    pub fn flushes_queue(self) -> bool {
        !matches!(self, CloseReason::SlowConsumer | CloseReason::DeadPeer)
    }
}

/// What the broker knows about one open connection.
#[derive(Debug)]
struct Connection {
    /// The login name, once a login is accepted.
    name: Option<Arc<str>>,
    /// Bytes sent to the shell for this connection and not yet flushed.
    queued: usize,
    /// When its socket last made progress: the last flush, or the moment
    /// its queue went from empty to not. Meaningful while `queued > 0`.
    progress_at: Time,
    /// When its pending dead-peer check is due, if one is (its key in
    /// `Broker::stall_checks`).
    stall_check: Option<Time>,
    /// Where it connected from, for the per-address limit (see
    /// `address_group`).
    address: IpAddr,
    /// When it must have logged in by, until it does (its key in
    /// `Broker::login_deadlines`).
    login_deadline: Option<Time>,
    /// Since when its queue has been past `max_queue`, while it is; its
    /// slow-consumer deadline (in `Broker::slow_deadlines`) is
    /// `slow_timeout` later.
    over_since: Option<Time>,
    /// How many queues past `max_queue` its lines helped fill (its entries
    /// in `Broker::blocked`). It is paused while this is not zero.
    blocked_on: usize,
    /// The rooms it is in, in room order (its entries in `Broker::rooms`).
    rooms: BTreeSet<Arc<str>>,
    /// The wire protocol it speaks.
    dialect: Dialect,
    /// Its IRC registration and keepalive, if it speaks IRC.
    irc: Option<Box<irc::Session>>,
}

/// The members of one room, in connection id order. A room exists while it
/// has a member.
type Members = BTreeSet<ConnId>;

/// Takes the connections whose deadline in `deadlines` has come by `now`,
/// soonest first.
fn take_due(deadlines: &mut BTreeSet<(Time, ConnId)>, now: Time) -> Vec<ConnId> {
    let mut due = Vec::new();
    while let Some(&(at, conn)) = deadlines.first() {
        if at > now {
            break;
        }
        deadlines.pop_first();
        due.push(conn);
    }
    due
}

/// Takes the connections whose deadline in `deadlines` has come by `now`,
/// lets `forget` clear each one's record of that deadline, and returns them
/// in connection id order: hash order must not reach the outputs.
fn take_expired(
    deadlines: &mut BTreeSet<(Time, ConnId)>,
    connections: &mut HashMap<ConnId, Connection, FixedState>,
    now: Time,
    forget: impl Fn(&mut Connection),
) -> Vec<ConnId> {
    let mut expired = take_due(deadlines, now);
    for conn in &expired {
        let connection = connections
            .get_mut(conn)
            .expect("a closed connection's deadlines are removed");
        forget(connection);
    }
    expired.sort_unstable();
    expired
}

/// The address a connection counts against for the per-address limit: an
/// IPv4 address, or an IPv6 address's /64 prefix. One host usually holds a
/// whole /64, so counting single IPv6 addresses would let it rotate past
/// the limit. An IPv4-mapped IPv6 address counts as its IPv4 address.
fn address_group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                const HOST_BITS: u128 = (1 << 64) - 1;
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !HOST_BITS))
            }
        },
    }
}

/// The chat broker. See the module documentation.
#[derive(Debug)]
pub struct Broker {
    max_queue: usize,
    write_timeout: Duration,
    slow_timeout: Duration,
    max_connections: usize,
    max_connections_per_address: usize,
    login_timeout: Duration,
    max_rooms_per_connection: usize,
    max_room_members: usize,
    connections: HashMap<ConnId, Connection, FixedState>,
    /// Every room with its members. Always the inverse of
    /// `Connection::rooms`. Ordered, so listing rooms walks no hash order.
    rooms: BTreeMap<Arc<str>, Members>,
    /// Who holds each name. Always the inverse of `Connection::name`.
    holders: HashMap<Arc<str>, ConnId, FixedState>,
    /// Who holds a name with each confusable skeleton: the same
    /// connections as `holders`, keyed by what their names look like, so a
    /// look-alike of a held name counts as taken. Only logins read it;
    /// messages are routed by exact name.
    skeletons: HashMap<String, ConnId, FixedState>,
    /// Dead-peer checks, soonest first, at most one per connection. A check
    /// is set when a queue stops being empty and looked at when due: a
    /// connection that made progress since is checked again later, one that
    /// made none for `write_timeout` is cut. Flushes never touch this set,
    /// so the hot path pays nothing for the timer.
    stall_checks: BTreeSet<(Time, ConnId)>,
    /// Login deadlines, soonest first: one per connection not logged in.
    login_deadlines: BTreeSet<(Time, ConnId)>,
    /// IRC keepalive checks, soonest first: one per registered IRC
    /// connection (see `irc.rs`).
    irc_pings: BTreeSet<(Time, ConnId)>,
    /// Slow-consumer deadlines, soonest first: one per connection whose
    /// queue is past `max_queue`, removed when it drains back under.
    slow_deadlines: BTreeSet<(Time, ConnId)>,
    /// For each connection whose queue is past `max_queue`, the paused
    /// senders whose lines went into it since it went past, in id order:
    /// they resume when it drains back under or closes. Ordered sets, so
    /// resuming them walks no hash order.
    blocked: BTreeMap<ConnId, BTreeSet<ConnId>>,
    /// Connections closed by the broker and not yet released by the shell,
    /// with their address: they still hold a descriptor and buffers.
    releasing: HashMap<ConnId, IpAddr, FixedState>,
    /// Connections held (open or releasing) per address. Only looked up,
    /// never walked.
    per_address: HashMap<IpAddr, usize, FixedState>,
    /// The latest time an input came with; time never goes backwards.
    now: Time,
    shutting_down: bool,
}

impl Broker {
    /// A broker with `config`'s limits and timeouts.
    pub fn new(config: &Config) -> Self {
        assert!(config.max_queue >= 1, "max_queue must be at least 1");
        Broker {
            max_queue: config.max_queue,
            write_timeout: config.write_timeout,
            slow_timeout: config.slow_timeout,
            max_connections: config.max_connections,
            max_connections_per_address: config.max_connections_per_address,
            login_timeout: config.login_timeout,
            max_rooms_per_connection: config.max_rooms_per_connection,
            max_room_members: config.max_room_members,
            connections: HashMap::default(),
            rooms: BTreeMap::new(),
            holders: HashMap::default(),
            skeletons: HashMap::default(),
            stall_checks: BTreeSet::new(),
            login_deadlines: BTreeSet::new(),
            irc_pings: BTreeSet::new(),
            slow_deadlines: BTreeSet::new(),
            blocked: BTreeMap::new(),
            releasing: HashMap::default(),
            per_address: HashMap::default(),
            now: Time::ZERO,
            shutting_down: false,
        }
    }

    /// Processes one input that happened at `now`, appending its outputs to
    /// `out`.
    ///
    /// Facts about a connection the broker has already closed are stale (the
    /// shell reports them before it learns of the close) and are ignored.
    pub fn handle(&mut self, now: Time, input: &Input, out: &mut Vec<Output>) {
        assert!(
            now >= self.now,
            "time went backwards: {now} after {}",
            self.now
        );
        self.now = now;
        match *input {
            Input::Opened {
                conn,
                address,
                dialect,
            } => self.open(conn, address, dialect, out),
            Input::Line { conn, ref frame } => self.line(conn, frame, out),
            Input::Flushed { conn, bytes } => self.flushed(conn, bytes, out),
            Input::Closed { conn } => self.close(conn, CloseReason::PeerClosed, out),
            Input::Released { conn } => self.release(conn, out),
            Input::Shutdown => self.shutdown(out),
            Input::Timeout => {
                self.cut_dead_peers(out);
                self.cut_slow_consumers(out);
                self.expire_logins(out);
                self.keep_irc_alive(out);
            }
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// When the broker next needs an [`Input::Timeout`], if ever. It changes
    /// only when an input is handled, so the caller asks after each one.
    pub fn poll_timeout(&self) -> Option<Time> {
        let deadlines = [
            &self.stall_checks,
            &self.slow_deadlines,
            &self.login_deadlines,
            &self.irc_pings,
        ];
        let soonest = deadlines.into_iter().filter_map(|set| set.first());
        soonest.map(|&(due, _)| due).min()
    }

    /// The name `conn` is logged in as, if any.
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        self.connections.get(&conn)?.name.as_deref()
    }

    /// Bytes queued for `conn` and not yet flushed, if it is open.
    pub fn queued_bytes(&self, conn: ConnId) -> Option<usize> {
        Some(self.connections.get(&conn)?.queued)
    }

    /// Whether the shell has been told to stop reading from `conn`.
    pub fn is_paused(&self, conn: ConnId) -> bool {
        self.connections
            .get(&conn)
            .is_some_and(|connection| connection.blocked_on > 0)
    }

    /// How many connections the broker holds open.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Takes a new connection in, unless it is over a limit: then it is
    /// told why and closed at once, so it never holds a slot while it
    /// waits. The connection is held for that moment too, so its error
    /// line is accounted for like any other.
    fn open(&mut self, conn: ConnId, address: IpAddr, dialect: Dialect, out: &mut Vec<Output>) {
        let address = address_group(address);
        let held_before = self.connections.len() + self.releasing.len();
        let from_address = self.per_address.get(&address).copied().unwrap_or(0);
        let login_deadline = self.now + self.login_timeout;
        let connection = Connection {
            name: None,
            queued: 0,
            progress_at: self.now,
            stall_check: None,
            address,
            login_deadline: Some(login_deadline),
            over_since: None,
            blocked_on: 0,
            rooms: BTreeSet::new(),
            dialect,
            irc: (dialect == Dialect::Irc).then(Box::default),
        };
        let reused = self.connections.insert(conn, connection).is_some();
        assert!(!reused, "the shell reused connection id {conn}");
        *self.per_address.entry(address).or_default() += 1;
        self.login_deadlines.insert((login_deadline, conn));
        let refusal = if self.shutting_down {
            // Accepted just before the listener stopped: told and closed
            // like every other connection, under the same queue bound.
            Some((ErrorReply::ShuttingDown, CloseReason::ShuttingDown))
        } else if held_before >= self.max_connections {
            Some((ErrorReply::ServerFull, CloseReason::Refused))
        } else if from_address >= self.max_connections_per_address {
            Some((ErrorReply::TooManyFromAddress, CloseReason::Refused))
        } else {
            None
        };
        if let Some((error, reason)) = refusal {
            self.tell_and_close(conn, &mut Shared::new(News::Error(&error)), reason, out);
        }
    }

    fn line(&mut self, conn: ConnId, frame: &Frame, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.get(&conn) else {
            return;
        };
        // The shell holds a paused connection's lines back: past the bound
        // by what one line per sender causes is all the queues are allowed.
        assert_eq!(
            connection.blocked_on, 0,
            "the shell handed the broker a line from paused {conn}"
        );
        if connection.dialect == Dialect::Irc {
            return self.irc_line(conn, frame, out);
        }
        let sender = connection.name.clone();
        let line = match frame {
            Ok(line) => line,
            Err(error) => return self.reply_error(conn, &ErrorReply::Frame(*error), out),
        };
        if protocol::is_blank(line) {
            return;
        }
        match sender {
            None => {
                self.login(conn, line, out);
            }
            Some(_) if protocol::is_command(line) => self.command(conn, line, out),
            Some(sender) => self.message(conn, &sender, line, out),
        }
    }

    fn command(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) {
        match protocol::parse_command(line) {
            Ok(Command::Join(room)) => self.join(conn, &room, out),
            Ok(Command::Part(room)) => self.part(conn, &room, out),
            Ok(Command::Names(room)) => self.names(conn, &room, out),
            Ok(Command::Rooms) => self.list_rooms(conn, out),
            Ok(Command::Nick(name)) => self.rename(conn, name, out),
            Err(error) => self.reply_error(conn, &ErrorReply::Command(error), out),
        }
    }

    /// Makes `conn` a member of `room`, within the limits, and tells every
    /// member, the new one included. The news is the joiner's line, so the
    /// joiner pays for it.
    fn join(&mut self, conn: ConnId, room: &str, out: &mut Vec<Output>) {
        let connection = &self.connections[&conn];
        let error = if connection.rooms.contains(room) {
            Some(ErrorReply::AlreadyInRoom(room.into()))
        } else if connection.rooms.len() >= self.max_rooms_per_connection {
            Some(ErrorReply::TooManyRooms(self.max_rooms_per_connection))
        } else if self
            .rooms
            .get(room)
            .is_some_and(|members| members.len() >= self.max_room_members)
        {
            Some(ErrorReply::RoomFull(room.into()))
        } else {
            None
        };
        if let Some(error) = error {
            return self.reply_error(conn, &error, out);
        }
        let room: Arc<str> = match self.rooms.get_key_value(room) {
            Some((held, _)) => held.clone(),
            None => Arc::from(room),
        };
        let connection = self.connections.get_mut(&conn).expect("checked above");
        connection.rooms.insert(room.clone());
        let name = connection.name.clone().expect("commands come after login");
        self.rooms.entry(room.clone()).or_default().insert(conn);
        let news = News::Joined {
            room: &room,
            name: &name,
        };
        self.tell_members(&room, news, Some(conn), out);
    }

    /// Takes `conn` out of `room`, telling every member, the one leaving
    /// included.
    fn part(&mut self, conn: ConnId, room: &str, out: &mut Vec<Output>) {
        let connection = &self.connections[&conn];
        let Some(room) = connection.rooms.get(room).cloned() else {
            return self.reply_error(conn, &ErrorReply::NotInRoom(room.into()), out);
        };
        let name = connection.name.clone().expect("commands come after login");
        let news = News::Left {
            room: &room,
            name: &name,
            why: Departure::Parted,
        };
        self.tell_members(&room, news, Some(conn), out);
        self.leave(conn, &room);
    }

    /// Removes `conn` from `room`'s members, and the room if it was the last.
    fn leave(&mut self, conn: ConnId, room: &Arc<str>) {
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.rooms.remove(room);
        }
        let members = self.rooms.get_mut(room).expect("a member's room exists");
        let was_member = members.remove(&conn);
        assert!(was_member, "{conn} left {room} without being in it");
        if members.is_empty() {
            self.rooms.remove(room);
        }
    }

    /// Tells every member of `room` `news`, in connection id order.
    fn tell_members(
        &mut self,
        room: &str,
        news: News<'_>,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        // Telling a member never changes who is in the room (a queue past
        // the bound pauses, it does not close), but the set is borrowed.
        let members: Vec<ConnId> = self.rooms[room].iter().copied().collect();
        let mut news = Shared::new(news);
        for member in members {
            self.tell_shared(member, &mut news, sender, out);
        }
    }

    /// Tells `conn` `news` in its dialect, paid for by `sender` (see
    /// `enqueue`).
    fn tell(
        &mut self,
        conn: ConnId,
        news: News<'_>,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        self.tell_shared(conn, &mut Shared::new(news), sender, out);
    }

    /// Tells `conn` news it may share with others: rendered once per
    /// dialect. Nothing is sent to a closed connection, or in a dialect
    /// that has no words for the news.
    fn tell_shared(
        &mut self,
        conn: ConnId,
        news: &mut Shared<'_>,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
    ) {
        self.enqueue_rendered(conn, sender, out, |connection| {
            let recipient = connection.name.as_deref().unwrap_or("*");
            news.render(connection.dialect, recipient)
        });
    }

    /// Answers `/names`: the room's members' names, in name order.
    fn names(&mut self, conn: ConnId, room: &str, out: &mut Vec<Output>) {
        let Some(members) = self.rooms.get(room) else {
            return self.reply_error(conn, &ErrorReply::NoSuchRoom(room.into()), out);
        };
        let mut names: Vec<Arc<str>> = members
            .iter()
            .map(|member| {
                self.connections[member]
                    .name
                    .clone()
                    .expect("members are logged in")
            })
            .collect();
        names.sort_unstable();
        let names: Vec<&str> = names.iter().map(|name| &**name).collect();
        let news = News::Names {
            room,
            names: &names,
        };
        self.tell(conn, news, Some(conn), out);
    }

    /// Answers `/rooms`: the rooms `conn` is in, in room order.
    fn list_rooms(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        let rooms = self.connections[&conn].rooms.clone();
        let rooms: Vec<&str> = rooms.iter().map(|room| &**room).collect();
        self.tell(conn, News::Rooms { rooms: &rooms }, Some(conn), out);
    }

    /// Answers `/nick`: `conn` takes `wanted` by the rules of login, and it
    /// and everyone sharing a room with it are told once.
    fn rename(&mut self, conn: ConnId, wanted: &str, out: &mut Vec<Output>) {
        let Some(name) = protocol::parse_login(wanted) else {
            return self.reply_error(conn, &ErrorReply::InvalidName, out);
        };
        let skeleton = protocol::skeleton(&name);
        if self
            .skeletons
            .get(&skeleton)
            .is_some_and(|holder| *holder != conn)
        {
            let error = ErrorReply::NameTaken(name.into_owned());
            return self.reply_error(conn, &error, out);
        }
        let connection = self.connections.get_mut(&conn).expect("open");
        let old = connection.name.replace(Arc::from(name)).expect("logged in");
        let new = connection.name.clone().expect("just set");
        self.holders.remove(&old);
        self.skeletons.remove(&protocol::skeleton(&old));
        self.holders.insert(new.clone(), conn);
        self.skeletons.insert(skeleton, conn);
        let mut told = BTreeSet::from([conn]);
        for room in &self.connections[&conn].rooms {
            told.extend(self.rooms[room].iter().copied());
        }
        let mut news = Shared::new(News::Renamed {
            old: &old,
            new: &new,
        });
        for member in told {
            self.tell_shared(member, &mut news, Some(conn), out);
        }
    }

    /// Logs `conn` in with the name `line` asks for, if it is valid and
    /// free, and says whether it did.
    fn login(&mut self, conn: ConnId, line: &str, out: &mut Vec<Output>) -> bool {
        let Some(name) = protocol::parse_login(line) else {
            self.reply_error(conn, &ErrorReply::InvalidName, out);
            return false;
        };
        let skeleton = protocol::skeleton(&name);
        if self.skeletons.contains_key(&skeleton) {
            let error = ErrorReply::NameTaken(name.into_owned());
            self.reply_error(conn, &error, out);
            return false;
        }
        let name: Arc<str> = Arc::from(name);
        self.holders.insert(name.clone(), conn);
        self.skeletons.insert(skeleton, conn);
        if let Some(connection) = self.connections.get_mut(&conn) {
            connection.name = Some(name.clone());
            if let Some(deadline) = connection.login_deadline.take() {
                self.login_deadlines.remove(&(deadline, conn));
            }
        }
        let welcome = News::Welcome {
            name: &name,
            rooms_max: self.max_rooms_per_connection,
        };
        self.tell(conn, welcome, Some(conn), out);
        true
    }

    fn message(&mut self, conn: ConnId, sender: &str, line: &str, out: &mut Vec<Output>) {
        match protocol::parse_message(line) {
            Ok(message) => self.deliver(conn, sender, &message, false, out),
            Err(why) => self.reply_error(conn, &ErrorReply::Malformed(why), out),
        }
    }

    /// Delivers `message` from `conn`, logged in as `sender`, to each
    /// connection its destinations reach, once, in the form of the first
    /// destination that reaches it; and tells the sender about the
    /// destinations that reach nobody. `notice` marks an IRC NOTICE, for
    /// which IRC says no error may come back.
    fn deliver(
        &mut self,
        conn: ConnId,
        sender: &str,
        message: &protocol::Message<'_>,
        notice: bool,
        out: &mut Vec<Output>,
    ) {
        // Direct deliveries share one rendering per dialect (IRC's names
        // its recipient, so it is rendered for each).
        let mut direct = Shared::new(News::Delivery {
            sender,
            room: None,
            text: message.text,
            notice,
        });
        // Who has been reached, when a room and another destination could
        // reach someone twice. Names alone cannot: each is held by one
        // connection (and a line naming hundreds must not pay for a set).
        let destinations = &message.destinations;
        let may_overlap =
            destinations.len() > 1 && destinations.iter().any(|d| protocol::is_room(d));
        let mut reached = may_overlap.then(BTreeSet::new);
        let mut first_reach = |recipient: ConnId| match &mut reached {
            Some(reached) => reached.insert(recipient),
            None => true,
        };
        for destination in &message.destinations {
            let destination = &**destination;
            if protocol::is_room(destination) {
                if !self.connections[&conn].rooms.contains(destination) {
                    if !notice {
                        let error = ErrorReply::NotInRoom(destination.into());
                        self.reply_error(conn, &error, out);
                    }
                    continue;
                }
                let mut delivery = Shared::new(News::Delivery {
                    sender,
                    room: Some(destination),
                    text: message.text,
                    notice,
                });
                // Sending pauses at most, never closes: the members stay put.
                let members = self.rooms[destination].iter();
                let recipients: Vec<ConnId> = members
                    .copied()
                    .filter(|member| *member != conn && first_reach(*member))
                    .collect();
                for recipient in recipients {
                    self.tell_shared(recipient, &mut delivery, Some(conn), out);
                }
                continue;
            }
            match self.holders.get(destination) {
                Some(&recipient) => {
                    if first_reach(recipient) {
                        self.tell_shared(recipient, &mut direct, Some(conn), out);
                    }
                }
                None if notice => {}
                None => {
                    let error = ErrorReply::NoSuchPeer(destination.into());
                    self.reply_error(conn, &error, out);
                }
            }
        }
    }

    /// Accounts bytes the socket accepted. A queue that drains back under
    /// `max_queue` is no longer slow, and the senders it held up resume.
    fn flushed(&mut self, conn: ConnId, bytes: usize, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        // The shell can only flush what was queued: more means its
        // account and ours disagree, and every bound after is suspect.
        assert!(
            bytes <= connection.queued,
            "{conn} flushed {bytes} bytes with {} queued",
            connection.queued
        );
        connection.queued -= bytes;
        connection.progress_at = self.now;
        if connection.queued <= self.max_queue {
            if let Some(since) = connection.over_since.take() {
                self.slow_deadlines
                    .remove(&(since + self.slow_timeout, conn));
                self.unblock(conn, out);
            }
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Output>) {
        self.shutting_down = true;
        // In connection id order: hash order must not reach the outputs.
        let mut open: Vec<ConnId> = self.connections.keys().copied().collect();
        open.sort_unstable();
        let mut notice = Shared::new(News::Error(&ErrorReply::ShuttingDown));
        for conn in open {
            // Everyone leaves every room at once: one line per membership,
            // rather than one per member that leaves before it.
            let rooms = self.connections[&conn].rooms.clone();
            for room in rooms {
                let news = &mut Shared::new(News::EveryoneLeft { room: &room });
                self.tell_if_fits(conn, news, out);
            }
            self.tell_and_close(conn, &mut notice, CloseReason::ShuttingDown, out);
        }
    }

    /// Cuts every connection whose socket has accepted nothing for the
    /// write timeout while data was queued for it, in connection id order.
    /// Checks that come due for connections that did make progress are set
    /// again for when they could next expire.
    fn cut_dead_peers(&mut self, out: &mut Vec<Output>) {
        let mut dead = Vec::new();
        for conn in take_due(&mut self.stall_checks, self.now) {
            let connection = self
                .connections
                .get_mut(&conn)
                .expect("a closed connection's stall check is removed");
            connection.stall_check = None;
            if connection.queued == 0 {
                continue;
            }
            let expires = connection.progress_at + self.write_timeout;
            if expires <= self.now {
                dead.push(conn);
            } else {
                connection.stall_check = Some(expires);
                self.stall_checks.insert((expires, conn));
            }
        }
        dead.sort_unstable();
        for conn in dead {
            self.close(conn, CloseReason::DeadPeer, out);
        }
    }

    /// Cuts every connection whose queue has stayed past `max_queue` for the
    /// slow timeout, in connection id order. Its senders have been paused
    /// all that time, so it has had every chance to catch up.
    fn cut_slow_consumers(&mut self, out: &mut Vec<Output>) {
        let deadlines = &mut self.slow_deadlines;
        let slow = take_expired(deadlines, &mut self.connections, self.now, |connection| {
            connection.over_since = None
        });
        for conn in slow {
            self.close(conn, CloseReason::SlowConsumer, out);
        }
    }

    /// Closes every connection that has not logged in by its deadline,
    /// telling it why, in connection id order. Runs after `cut_dead_peers`
    /// on the same timeout, so a connection due both ways is a dead peer.
    fn expire_logins(&mut self, out: &mut Vec<Output>) {
        let deadlines = &mut self.login_deadlines;
        let expired = take_expired(deadlines, &mut self.connections, self.now, |connection| {
            connection.login_deadline = None
        });
        let mut notice = Shared::new(News::Error(&ErrorReply::LoginTimedOut));
        for conn in expired {
            self.tell_and_close(conn, &mut notice, CloseReason::LoginTimeout, out);
        }
    }

    /// Tells `conn` why it is being closed and closes it after what is
    /// queued. If even the notice does not fit in its queue, the notice is
    /// skipped rather than the bound broken, and the connection still gets
    /// every delivery the broker had processed for it: the close tells it.
    fn tell_and_close(
        &mut self,
        conn: ConnId,
        notice: &mut Shared<'_>,
        reason: CloseReason,
        out: &mut Vec<Output>,
    ) {
        self.tell_if_fits(conn, notice, out);
        self.close(conn, reason, out);
    }

    /// Tells `conn` `notice` if it fits within `max_queue`: a notice no
    /// line caused has no sender to pause, so it never goes past. Shared,
    /// so that closing every connection renders it once per dialect.
    fn tell_if_fits(&mut self, conn: ConnId, notice: &mut Shared<'_>, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.get(&conn) else {
            return;
        };
        let recipient = connection.name.as_deref().unwrap_or("*");
        let Some(line) = notice.render(connection.dialect, recipient) else {
            return;
        };
        if connection.queued + line.len() <= self.max_queue {
            // It fits, so it can take no queue past the bound: no sender to pause.
            self.enqueue(conn, line, None, out);
        }
    }

    /// Replies to `conn` about the line it just sent.
    fn reply_error(&mut self, conn: ConnId, error: &ErrorReply, out: &mut Vec<Output>) {
        self.tell(conn, News::Error(error), Some(conn), out);
    }

    /// Queues `line` for `conn`. `sender` is the connection whose line
    /// caused it, if any: when `line` takes or keeps `conn`'s queue past
    /// `max_queue`, the sender pays for it. It is paused until that queue
    /// drains back under the bound, so TCP pushes back on it alone, and
    /// `conn` is cut only if it stays past the bound for the slow timeout.
    /// The line itself is never dropped: the sender's lines already on
    /// their way when it is paused are few, so the overshoot is bounded.
    fn enqueue(&mut self, conn: ConnId, line: Line, sender: Option<ConnId>, out: &mut Vec<Output>) {
        self.enqueue_rendered(conn, sender, out, |_| Some(line));
    }

    /// [`Broker::enqueue`] for a line rendered for the connection it goes
    /// to (by `render`, which may have nothing to say to it): one lookup of
    /// the connection for both, since every delivery comes through here.
    fn enqueue_rendered(
        &mut self,
        conn: ConnId,
        sender: Option<ConnId>,
        out: &mut Vec<Output>,
        render: impl FnOnce(&Connection) -> Option<Line>,
    ) {
        let Some(connection) = self.connections.get_mut(&conn) else {
            return;
        };
        let Some(line) = render(connection) else {
            return;
        };
        let queued = connection.queued + line.len();
        if connection.queued == 0 {
            // The socket has something to do from now on: the stall clock starts.
            connection.progress_at = self.now;
            if connection.stall_check.is_none() {
                let due = self.now + self.write_timeout;
                connection.stall_check = Some(due);
                self.stall_checks.insert((due, conn));
            }
        }
        connection.queued = queued;
        let over = queued > self.max_queue;
        if over && connection.over_since.is_none() {
            connection.over_since = Some(self.now);
            self.slow_deadlines
                .insert((self.now + self.slow_timeout, conn));
        }
        out.push(Output::Send { conn, line });
        if let (true, Some(sender)) = (over, sender) {
            self.block(sender, conn, out);
        }
    }

    /// Records that `sender`'s line went into `full`'s overfull queue, and
    /// pauses `sender` if this is the first such queue it waits on.
    fn block(&mut self, sender: ConnId, full: ConnId, out: &mut Vec<Output>) {
        if !self.blocked.entry(full).or_default().insert(sender) {
            return;
        }
        let connection = self
            .connections
            .get_mut(&sender)
            .expect("a line is processed only from an open connection");
        connection.blocked_on += 1;
        if connection.blocked_on == 1 {
            out.push(Output::Pause { conn: sender });
        }
    }

    /// `full` drained back under `max_queue` or closed: the senders it held
    /// up stop waiting on it, and those waiting on nothing else resume.
    fn unblock(&mut self, full: ConnId, out: &mut Vec<Output>) {
        let Some(senders) = self.blocked.remove(&full) else {
            return;
        };
        for sender in senders {
            // A sender closed meanwhile has nothing to resume.
            let Some(connection) = self.connections.get_mut(&sender) else {
                continue;
            };
            connection.blocked_on -= 1;
            if connection.blocked_on == 0 {
                out.push(Output::Resume { conn: sender });
            }
        }
    }

    /// Forgets `conn`, frees its name and tells the shell, once.
    fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) {
        let Some(connection) = self.connections.remove(&conn) else {
            return;
        };
        if let Some(name) = &connection.name {
            let holder = self.holders.remove(name);
            assert_eq!(holder, Some(conn), "{name} was held by another connection");
            let holder = self.skeletons.remove(&protocol::skeleton(name));
            assert_eq!(
                holder,
                Some(conn),
                "{name}'s look-alikes were held by another"
            );
        }
        if let Some(due) = connection.stall_check {
            self.stall_checks.remove(&(due, conn));
        }
        if let Some(due) = connection.login_deadline {
            self.login_deadlines.remove(&(due, conn));
        }
        if let Some(since) = connection.over_since {
            self.slow_deadlines
                .remove(&(since + self.slow_timeout, conn));
        }
        if let Some(due) = connection.irc.as_ref().and_then(|irc| irc.ping_check) {
            self.irc_pings.remove(&(due, conn));
        }
        self.releasing.insert(conn, connection.address);
        let name = connection.name;
        out.push(Output::Close {
            conn,
            reason,
            name: name.clone(),
        });
        // Its senders wait on it no more. (What it was blocked on forgets it
        // lazily: `unblock` skips closed senders.)
        self.unblock(conn, out);
        let why = match reason {
            CloseReason::SlowConsumer => Departure::SlowConsumer,
            _ => Departure::Disconnected,
        };
        let mut quit = name
            .as_deref()
            .map(|name| Shared::new(News::Quit { name, why }));
        // An IRC client hears of it once, by one QUIT, however many rooms
        // it shared; a line-protocol client once per room.
        let mut quit_told = BTreeSet::new();
        for room in &connection.rooms {
            self.leave(conn, room);
            // At shutdown every room's end was told as one line each.
            if reason == CloseReason::ShuttingDown || !self.rooms.contains_key(room) {
                continue;
            }
            let (Some(name), Some(quit)) = (name.as_deref(), quit.as_mut()) else {
                unreachable!("members are logged in");
            };
            let mut left = Shared::new(News::Left { room, name, why });
            let members: Vec<ConnId> = self.rooms[room].iter().copied().collect();
            for member in members {
                // Nobody's line caused it, so nobody is paused for it: it
                // is queued whatever the queue holds, like a sender's line.
                if self.connections[&member].dialect == Dialect::Line {
                    self.tell_shared(member, &mut left, None, out);
                } else if quit_told.insert(member) {
                    self.tell_shared(member, quit, None, out);
                }
            }
        }
    }

    /// The shell let go of `conn`: it stops counting against the limits.
    fn release(&mut self, conn: ConnId, out: &mut Vec<Output>) {
        // Closed by the shell before the broker closed it (a failed write
        // is reported just before the release): close it first.
        self.close(conn, CloseReason::PeerClosed, out);
        let address = self
            .releasing
            .remove(&conn)
            .expect("the shell released a connection it never opened, or twice");
        let from_address = self
            .per_address
            .get_mut(&address)
            .expect("a held connection's address is counted");
        *from_address -= 1;
        if *from_address == 0 {
            self.per_address.remove(&address);
        }
    }

    /// The invariants every input must keep. O(connections), so debug
    /// builds only; the cheap ones are asserted where they could break.
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        for (name, conn) in &self.holders {
            let holder = self.connections.get(conn).and_then(|c| c.name.as_ref());
            assert_eq!(
                holder,
                Some(name),
                "holders and connections disagree on {name}"
            );
        }
        for (skeleton, conn) in &self.skeletons {
            let name = self.connections.get(conn).and_then(|c| c.name.as_deref());
            assert_eq!(
                name.map(protocol::skeleton).as_ref(),
                Some(skeleton),
                "skeletons and connections disagree on {skeleton}"
            );
        }
        assert_eq!(
            self.skeletons.len(),
            self.holders.len(),
            "a look-alike is held twice"
        );
        let named = self
            .connections
            .values()
            .filter(|c| c.name.is_some())
            .count();
        assert_eq!(
            named,
            self.holders.len(),
            "a name is held twice or not indexed"
        );
        let mut checks = 0;
        for (conn, connection) in &self.connections {
            if connection.queued > 0 {
                assert!(
                    connection.stall_check.is_some(),
                    "{conn} has data queued and no stall check"
                );
            }
            if let Some(due) = connection.stall_check {
                assert!(
                    self.stall_checks.contains(&(due, *conn)),
                    "{conn}'s stall check is not indexed"
                );
                checks += 1;
            }
        }
        assert_eq!(
            checks,
            self.stall_checks.len(),
            "a stall check outlived its connection"
        );
        for (conn, connection) in &self.connections {
            let waiting = connection.login_deadline;
            assert_eq!(
                waiting.is_some(),
                connection.name.is_none(),
                "{conn}'s login deadline"
            );
            if let Some(due) = waiting {
                assert!(
                    self.login_deadlines.contains(&(due, *conn)),
                    "{conn}'s deadline is not indexed"
                );
            }
        }
        let waiting = self
            .connections
            .values()
            .filter(|c| c.login_deadline.is_some());
        assert_eq!(
            waiting.count(),
            self.login_deadlines.len(),
            "a deadline outlived its connection"
        );
        for (conn, connection) in &self.connections {
            let over = connection.queued > self.max_queue;
            assert_eq!(connection.over_since.is_some(), over, "{conn}'s over_since");
            if let Some(since) = connection.over_since {
                let due = (since + self.slow_timeout, *conn);
                assert!(
                    self.slow_deadlines.contains(&due),
                    "{conn}'s slow deadline is not indexed"
                );
            }
            let waits_on = self
                .blocked
                .values()
                .filter(|senders| senders.contains(conn));
            assert_eq!(
                waits_on.count(),
                connection.blocked_on,
                "{conn}'s blocked_on"
            );
        }
        let over = self.connections.values().filter(|c| c.over_since.is_some());
        assert_eq!(
            over.count(),
            self.slow_deadlines.len(),
            "a slow deadline outlived its connection"
        );
        for full in self.blocked.keys() {
            let over = self
                .connections
                .get(full)
                .is_some_and(|c| c.over_since.is_some());
            assert!(over, "{full} holds senders up but is not past the bound");
        }
        let counted: usize = self.per_address.values().sum();
        assert_eq!(
            counted,
            self.connections.len() + self.releasing.len(),
            "per-address counts disagree"
        );
        for conn in self.releasing.keys() {
            assert!(
                !self.connections.contains_key(conn),
                "{conn} is open and releasing"
            );
        }
        if self.shutting_down {
            assert!(
                self.connections.is_empty(),
                "a connection outlived shutdown"
            );
        }
        let mut memberships = 0;
        for (room, members) in &self.rooms {
            assert!(!members.is_empty(), "{room} outlived its last member");
            assert!(
                members.len() <= self.max_room_members,
                "{room} is over full"
            );
            for member in members {
                let rooms = self.connections.get(member).map(|c| &c.rooms);
                assert!(
                    rooms.is_some_and(|rooms| rooms.contains(room)),
                    "{member} is in {room} but does not know it"
                );
            }
            memberships += members.len();
        }
        for (conn, connection) in &self.connections {
            assert!(connection.rooms.len() <= self.max_rooms_per_connection);
            assert!(
                connection.rooms.is_empty() || connection.name.is_some(),
                "{conn} is in a room without a name"
            );
        }
        let counted: usize = self.connections.values().map(|c| c.rooms.len()).sum();
        assert_eq!(counted, memberships, "rooms and connections disagree");
        let mut pings = 0;
        for (conn, connection) in &self.connections {
            assert_eq!(
                connection.irc.is_some(),
                connection.dialect == Dialect::Irc,
                "{conn}'s IRC session"
            );
            if let Some(due) = connection.irc.as_ref().and_then(|irc| irc.ping_check) {
                assert!(connection.name.is_some(), "{conn} is pinged unregistered");
                assert!(
                    self.irc_pings.contains(&(due, *conn)),
                    "{conn}'s ping check"
                );
                pings += 1;
            }
        }
        assert_eq!(
            pings,
            self.irc_pings.len(),
            "a ping check outlived its connection"
        );
    }
}

mod irc;

#[cfg(test)]
mod tests;
