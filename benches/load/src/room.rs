//! `room`: C clients join R rooms, then S senders each send M messages to
//! their rooms (chinwag only: PROTOCOL.md, "Rooms").
//!
//! Each client joins J of the R rooms: all of them by default, else J
//! drawn from the seed. Sender `s` sends its messages to its own rooms in
//! turn (message `q` to its `q mod J`-th room, in room order), as one line
//! `#room: TEXT`, which becomes one delivery, `from s to #room: TEXT`, for
//! every other member of the room; the sender gets no copy. Recipients
//! check, as in `dm` and `fanout`, that every message of every room they
//! are in arrives once, in per-sender order, attributed to its sender, and
//! that it names the room it was sent to.
//!
//! Before the clock starts the joins settle, in three steps:
//!
//! 1. every client sends its `/join`s, in one write;
//! 2. every client reads until it has seen its own `#room: NAME joined`
//!    for each of its rooms: once all have, every join is processed;
//! 3. every client sends itself a message and reads until it comes back.
//!    Processed after every join, it reaches each client after all the
//!    join news for it (everything sent to one connection leaves in the
//!    broker's order), so the traffic starts on clean streams.
//!
//! Meanwhile each member records who it saw join each of its rooms, in
//! order. A member sees exactly the joins processed from its own on, in
//! the room's one order, so the lists of a room's n members must be the
//! suffixes, of lengths n down to 1, of one order of its members, each
//! starting with the member's own join ([`check_join_order`]).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use polling::{Event, Events, PollMode, Poller};

use super::client::{self, LineReader};
use super::dm::splitmix64;
use super::report::Report;
use super::target::Target;
use super::traffic::{self, Plan, TrafficArgs};
use super::verify::{Fault, Faults};

/// The joins settle, or the run fails, once clients have waited this long
/// without a line.
const SETTLE_QUIET: Duration = Duration::from_secs(10);
/// How long a poll for setup lines waits before checking the clock.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long a write of the setup backs off when a send buffer is full.
const WRITE_BACKOFF: Duration = Duration::from_micros(100);
/// The text a client sends itself once every join is processed.
const SYNC: &str = "sync";

#[derive(Args)]
pub struct RoomArgs {
    /// Clients, every one a member of its rooms.
    #[arg(long, short = 'c', default_value_t = 200)]
    clients: usize,

    /// Rooms, joined before the clock starts; a member sees every join
    /// after its own, so setup grows with the square of a room's members.
    #[arg(long, short = 'r', default_value_t = 4)]
    rooms: usize,

    /// Rooms each client joins, drawn from the seed (default: all of them).
    #[arg(long, short = 'j', value_name = "J")]
    joins: Option<usize>,

    /// Senders, the first S of the clients.
    #[arg(long, short = 's', default_value_t = 20)]
    senders: usize,

    /// Messages each sender sends, to its rooms in turn.
    #[arg(long, short = 'm', default_value_t = 500)]
    messages: u32,

    #[command(flatten)]
    traffic: TrafficArgs,
}

impl RoomArgs {
    pub fn run(self, target: &Target, seed: u64, deadline: Duration) -> io::Result<Report> {
        let joins = self.joins.unwrap_or(self.rooms);
        if self.rooms == 0 || joins == 0 || joins > self.rooms {
            return Err(io::Error::other("room needs 1 <= --joins <= --rooms"));
        }
        if self.senders == 0 || self.senders > self.clients {
            return Err(io::Error::other("room needs 1 <= --senders <= --clients"));
        }
        let rooms = (0..self.rooms)
            .map(|room| format!("#{}", client::name(format_args!("r{room}"))))
            .collect();
        let plan = RoomPlan::new(
            self.clients,
            self.senders,
            self.messages,
            rooms,
            joins,
            seed,
        );
        traffic::run("room", target, &plan, self.traffic, deadline)
    }
}

struct RoomPlan {
    clients: usize,
    senders: usize,
    messages: u32,
    /// The rooms' names, `#` and a name.
    rooms: Vec<String>,
    /// The rooms of each client, in ascending order.
    joined: Vec<Vec<usize>>,
    /// The members of each room, in ascending order.
    members: Vec<Vec<usize>>,
}

impl RoomPlan {
    fn new(
        clients: usize,
        senders: usize,
        messages: u32,
        rooms: Vec<String>,
        joins: usize,
        seed: u64,
    ) -> Self {
        let joined: Vec<Vec<usize>> = (0..clients)
            .map(|client| draw_rooms(seed, client, rooms.len(), joins))
            .collect();
        let mut members = vec![Vec::new(); rooms.len()];
        for (client, rooms) in joined.iter().enumerate() {
            for &room in rooms {
                members[room].push(client);
            }
        }
        RoomPlan {
            clients,
            senders,
            messages,
            rooms,
            joined,
            members,
        }
    }

    /// The room message `seq` of `sender` goes to.
    fn room_of(&self, sender: usize, seq: u32) -> usize {
        let rooms = &self.joined[sender];
        rooms[seq as usize % rooms.len()]
    }

    fn is_member(&self, client: usize, room: usize) -> bool {
        self.joined[client].binary_search(&room).is_ok()
    }
}

/// The `joins` rooms of `client`, drawn from `0..rooms` (all of them if
/// `joins == rooms`), in ascending order.
fn draw_rooms(seed: u64, client: usize, rooms: usize, joins: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..rooms).collect();
    let mut state = seed ^ (client as u64) << 32 ^ 0x0072_6f6f_6d73; // "rooms"
    // A partial Fisher-Yates shuffle: the first `joins` are the draw.
    for i in 0..joins {
        let j = i + (splitmix64(&mut state) % (rooms - i) as u64) as usize;
        all.swap(i, j);
    }
    all.truncate(joins);
    all.sort_unstable();
    all
}

impl Plan for RoomPlan {
    fn clients(&self) -> usize {
        self.clients
    }

    fn senders(&self) -> usize {
        self.senders
    }

    fn messages(&self) -> u32 {
        self.messages
    }

    fn destinations(&self, sender: usize, seq: u32, out: &mut Vec<usize>) {
        let room = self.room_of(sender, seq);
        out.extend(self.members[room].iter().filter(|&&m| m != sender));
    }

    fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool {
        recipient != sender && self.is_member(recipient, self.room_of(sender, seq))
    }

    fn room(&self, sender: usize, seq: u32) -> Option<&str> {
        Some(&self.rooms[self.room_of(sender, seq)])
    }

    fn describe(&self, report: &mut Report) {
        report.count("rooms", "rooms", self.rooms.len() as u64, "");
        let memberships = self.joined.iter().map(Vec::len).sum::<usize>();
        report.count("memberships", "memberships", memberships as u64, "");
    }

    fn prepare(
        &self,
        readers: &mut [LineReader],
        names: &[String],
        faults: &mut Faults,
    ) -> io::Result<()> {
        let mut settling = Settling::new(self, names);
        for (client, reader) in readers.iter().enumerate() {
            let mut commands = String::new();
            for &room in &self.joined[client] {
                commands.push_str(&format!("/join {}\n", self.rooms[room]));
            }
            write_all(reader.stream(), commands.as_bytes())?;
        }
        settling.read_until(readers, Step::Joined)?;
        if settling.faults.is_empty() {
            for (reader, name) in readers.iter().zip(names) {
                write_all(reader.stream(), format!("{name}: {SYNC}\n").as_bytes())?;
            }
            settling.read_until(readers, Step::Synced)?;
        }
        if settling.faults.is_empty() {
            settling.check_join_order();
        }
        faults.extend(settling.faults);
        Ok(())
    }
}

/// What the setup waits for each client to have seen.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Its own join line of each of its rooms.
    Joined,
    /// The message it sent itself after every client's joins.
    Synced,
}

/// The joins settling: what each client has seen of them.
struct Settling<'a> {
    plan: &'a RoomPlan,
    names: &'a [String],
    /// Each room's index by name.
    room_index: HashMap<&'a str, usize>,
    /// For each client and each of its rooms (as in `plan.joined`), the
    /// names it saw join, in order.
    seen: Vec<Vec<Vec<String>>>,
    /// How many of its own joins each client has seen.
    own: Vec<usize>,
    /// Whether each client has had its message to itself back.
    synced: Vec<bool>,
    faults: Faults,
}

impl<'a> Settling<'a> {
    fn new(plan: &'a RoomPlan, names: &'a [String]) -> Self {
        let room_index = plan
            .rooms
            .iter()
            .enumerate()
            .map(|(index, room)| (room.as_str(), index))
            .collect();
        Settling {
            plan,
            names,
            room_index,
            seen: plan
                .joined
                .iter()
                .map(|r| vec![Vec::new(); r.len()])
                .collect(),
            own: vec![0; plan.clients],
            synced: vec![false; plan.clients],
            faults: Faults::default(),
        }
    }

    fn done(&self, client: usize, step: Step) -> bool {
        match step {
            Step::Joined => self.own[client] >= self.plan.joined[client].len(),
            Step::Synced => self.synced[client],
        }
    }

    /// Takes one line `client` received during the setup: a join in one
    /// of its rooms, or its message to itself; anything else is a fault.
    fn line(&mut self, client: usize, line: &[u8]) {
        let name = &self.names[client];
        let text = std::str::from_utf8(line).unwrap_or("");
        if !self.synced[client] {
            if text.strip_prefix("from ") == Some(format!("{name}: {SYNC}").as_str()) {
                self.synced[client] = true;
                return;
            }
            let join = text
                .strip_suffix(" joined")
                .and_then(|join| join.split_once(": "))
                .and_then(|(room, who)| Some((*self.room_index.get(room)?, who)));
            if let Some((room, who)) = join
                && let Ok(mine) = self.plan.joined[client].binary_search(&room)
            {
                if who == name {
                    self.own[client] += 1;
                }
                self.seen[client][mine].push(who.to_string());
                return;
            }
        }
        let line = String::from_utf8_lossy(line).into_owned();
        let recipient = client;
        self.faults.push(Fault::Unexpected { recipient, line });
    }

    /// Polls every client's socket until each is `step` done, a fault is
    /// found, or no line has come for [`SETTLE_QUIET`].
    fn read_until(&mut self, readers: &mut [LineReader], step: Step) -> io::Result<()> {
        let mut waiting = (0..readers.len()).filter(|&c| !self.done(c, step)).count();
        let poller = Poller::new()?;
        for (client, reader) in readers.iter().enumerate() {
            // SAFETY: every socket is deleted from the poller before this
            // returns, and the sockets outlive that.
            unsafe {
                poller.add_with_mode(reader.stream(), Event::readable(client), PollMode::Level)?;
            }
        }
        let mut events = Events::new();
        let mut last_line = Instant::now();
        let mut outcome = Ok(());
        while waiting > 0 && self.faults.is_empty() {
            events.clear();
            if let Err(error) = poller.wait(&mut events, Some(POLL_EVERY)) {
                outcome = Err(error);
                break;
            }
            for event in events.iter() {
                let client = event.key;
                let was_done = self.done(client, step);
                let drained = traffic::drain(&mut readers[client], |line| {
                    last_line = Instant::now();
                    self.line(client, line);
                });
                if let Err(stopped) = drained {
                    self.faults.push(stopped.for_client(client));
                    break;
                }
                if !was_done && self.done(client, step) {
                    waiting -= 1;
                }
            }
            if waiting > 0 && last_line.elapsed() > SETTLE_QUIET {
                let client = (0..readers.len())
                    .find(|&c| !self.done(c, step))
                    .expect("some client is waiting");
                let what = match step {
                    Step::Joined => "its own joins",
                    Step::Synced => "its message to itself",
                };
                self.faults.push(Fault::Other(format!(
                    "client {client} (and {} more) has not seen {what} after {SETTLE_QUIET:?} \
                     without a line",
                    waiting - 1
                )));
            }
        }
        for reader in readers.iter() {
            poller.delete(reader.stream())?;
        }
        outcome
    }

    /// Checks, room by room, that the members saw the joins in one order.
    fn check_join_order(&mut self) {
        for (room, members) in self.plan.members.iter().enumerate() {
            let seen: Vec<(&str, &[String])> = members
                .iter()
                .map(|&member| {
                    let mine = self.plan.joined[member]
                        .binary_search(&room)
                        .expect("a member's rooms hold the room");
                    (self.names[member].as_str(), &self.seen[member][mine][..])
                })
                .collect();
            if let Err(fault) = check_join_order(&self.plan.rooms[room], &seen) {
                self.faults.push(Fault::Other(fault));
            }
        }
    }
}

/// Checks that what each member of `room` saw join it, `(member, names in
/// order)`, is one order: the members' lists are the suffixes, of lengths n
/// down to 1, of one list of all n members, each starting with the
/// member's own name.
fn check_join_order(room: &str, seen: &[(&str, &[String])]) -> Result<(), String> {
    let mut seen = seen.to_vec();
    seen.sort_by_key(|(_, joins)| std::cmp::Reverse(joins.len()));
    let Some(&(_, longest)) = seen.first() else {
        return Ok(());
    };
    let n = seen.len();
    for (i, &(member, joins)) in seen.iter().enumerate() {
        if joins.len() != n - i {
            let counts: Vec<usize> = seen.iter().map(|(_, joins)| joins.len()).collect();
            return Err(format!(
                "the {n} members of {room} saw {counts:?} joins, not {n} down to 1"
            ));
        }
        if joins.first().map(String::as_str) != Some(member) {
            return Err(format!(
                "{member} saw {:?} join {room} before itself",
                joins.first().map_or("", String::as_str)
            ));
        }
        if joins != &longest[i..] {
            return Err(format!(
                "{member} saw the joins of {room} in another order than the others"
            ));
        }
    }
    Ok(())
}

/// Writes all of `bytes` to a non-blocking socket, backing off while its
/// send buffer is full.
fn write_all(mut socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let give_up = Instant::now() + SETTLE_QUIET;
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(0) => return Err(io::Error::other("the server closed a connection")),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > give_up {
                    return Err(io::Error::other("the server took no setup line for 10 s"));
                }
                thread::sleep(WRITE_BACKOFF);
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{Delivery, Stamp};
    use crate::verify::{Expectation, Inbox};

    /// 5 clients `c0`..`c4`, 3 rooms `#r0`..`#r2`, 2 senders, 6 messages.
    fn plan(joins: usize) -> RoomPlan {
        let rooms = (0..3).map(|r| format!("#r{r}")).collect();
        RoomPlan::new(5, 2, 6, rooms, joins, 7)
    }

    fn names() -> Vec<String> {
        (0..5).map(|c| format!("c{c}")).collect()
    }

    /// The plan with its clients' names, as the engine checks it.
    struct Named(RoomPlan, Vec<String>);

    impl Expectation for Named {
        fn senders(&self) -> usize {
            self.0.senders
        }
        fn name(&self, client: usize) -> &str {
            &self.1[client]
        }
        fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool {
            self.0.addresses(sender, seq, recipient)
        }
        fn room(&self, sender: usize, seq: u32) -> Option<&str> {
            Plan::room(&self.0, sender, seq)
        }
    }

    #[test]
    fn every_client_joins_every_room_by_default() {
        let plan = plan(3);
        assert!(plan.joined.iter().all(|rooms| rooms == &[0, 1, 2]));
        assert!(
            plan.members
                .iter()
                .all(|members| members == &[0, 1, 2, 3, 4])
        );
    }

    #[test]
    fn a_seeded_subset_is_distinct_sorted_and_the_same_every_time() {
        let plan = plan(2);
        for (client, rooms) in plan.joined.iter().enumerate() {
            assert_eq!(rooms.len(), 2);
            assert!(rooms[0] < rooms[1] && rooms[1] < 3);
            assert_eq!(rooms, &draw_rooms(7, client, 3, 2));
            for room in 0..3 {
                let member = plan.members[room].contains(&client);
                assert_eq!(member, rooms.contains(&room));
                assert_eq!(plan.is_member(client, room), member);
            }
        }
        let other_seed: Vec<_> = (0..50).map(|c| draw_rooms(8, c, 3, 2)).collect();
        let this_seed: Vec<_> = (0..50).map(|c| draw_rooms(7, c, 3, 2)).collect();
        assert_ne!(other_seed, this_seed);
    }

    #[test]
    fn a_sender_sends_to_its_rooms_in_turn_and_reaches_the_other_members() {
        for joins in 1..=3 {
            let plan = plan(joins);
            for sender in 0..2 {
                let mine = &plan.joined[sender];
                for seq in 0..6 {
                    let room = plan.room_of(sender, seq);
                    assert_eq!(room, mine[seq as usize % mine.len()]);
                    assert_eq!(Plan::room(&plan, sender, seq), Some(&*format!("#r{room}")));
                    let mut destinations = Vec::new();
                    plan.destinations(sender, seq, &mut destinations);
                    assert!(!destinations.contains(&sender));
                    for recipient in 0..5 {
                        let reached = destinations.contains(&recipient);
                        assert_eq!(
                            reached,
                            recipient != sender && plan.is_member(recipient, room)
                        );
                        assert_eq!(plan.addresses(sender, seq, recipient), reached);
                    }
                }
            }
        }
    }

    fn delivery<'a>(from: &'a str, to: Option<&'a str>, sender: usize, seq: u32) -> Delivery<'a> {
        let stamp = Stamp {
            sender,
            seq,
            sent_micros: 0,
        };
        Delivery { from, to, stamp }
    }

    /// Client 2 (in every room) checks `deliveries` and finishes.
    fn check(deliveries: &[Delivery]) -> Vec<Fault> {
        let named = Named(plan(3), names());
        let mut inbox = Inbox::new(2, 2);
        for &delivery in deliveries {
            inbox.receive(&named, delivery);
        }
        let faults = inbox.finish(|_| 6);
        faults.shown().to_vec()
    }

    /// Every message of both senders, as client 2 should get them:
    /// message q of each sender goes to `#r(q mod 3)`.
    fn all_of_them() -> Vec<Delivery<'static>> {
        let rooms = ["#r0", "#r1", "#r2"];
        (0..6)
            .flat_map(|seq| {
                let to = Some(rooms[seq as usize % 3]);
                [delivery("c0", to, 0, seq), delivery("c1", to, 1, seq)]
            })
            .collect()
    }

    #[test]
    fn every_message_of_every_room_once_in_order_passes() {
        assert_eq!(check(&all_of_them()), []);
    }

    #[test]
    fn a_message_to_the_wrong_room_or_to_no_room_is_detected() {
        let mut deliveries = all_of_them();
        deliveries[2].to = Some("#r2");
        deliveries[3].to = None;
        let faults = check(&deliveries);
        assert!(faults.contains(&Fault::WrongRoom {
            recipient: 2,
            sender: 0,
            seq: 1,
            to: Some("#r2".into())
        }));
        assert!(faults.contains(&Fault::WrongRoom {
            recipient: 2,
            sender: 1,
            seq: 1,
            to: None
        }));
    }

    #[test]
    fn a_lost_repeated_or_reordered_room_message_is_detected() {
        let mut lost = all_of_them();
        lost.remove(4);
        assert!(matches!(
            check(&lost)[..],
            [Fault::Missing {
                sender: 0,
                received: 5,
                ..
            }]
        ));
        let mut repeated = all_of_them();
        repeated.insert(5, repeated[4]);
        assert!(matches!(
            check(&repeated)[..],
            [Fault::Duplicate { seq: 2, .. }]
        ));
        let mut reordered = all_of_them();
        reordered.swap(4, 6);
        assert!(matches!(
            check(&reordered)[0],
            Fault::OutOfOrder {
                sender: 0,
                seq: 2,
                after: 3,
                ..
            }
        ));
    }

    #[test]
    fn a_sender_getting_its_own_room_message_is_detected() {
        let named = Named(plan(3), names());
        let mut inbox = Inbox::new(0, 2);
        assert!(!inbox.receive(&named, delivery("c0", Some("#r0"), 0, 0)));
        let faults = inbox.finish(|sender| [0, 6][sender]);
        assert_eq!(
            faults.shown()[0],
            Fault::Misdelivered {
                recipient: 0,
                sender: 0,
                seq: 0
            }
        );
    }

    #[test]
    fn a_non_member_getting_a_room_message_is_detected() {
        let plan = plan(1);
        let sender = 0;
        let room = plan.joined[sender][0];
        let outsider = (0..5).find(|&c| !plan.is_member(c, room)).unwrap();
        let to = format!("#r{room}");
        let named = Named(plan, names());
        let mut inbox = Inbox::new(outsider, 2);
        assert!(!inbox.receive(&named, delivery("c0", Some(&to), 0, 0)));
    }

    fn lists(seen: &[(&'static str, &[&str])]) -> Vec<(&'static str, Vec<String>)> {
        seen.iter()
            .map(|(member, joins)| (*member, joins.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn order(seen: &[(&'static str, &[&str])]) -> Result<(), String> {
        let lists = lists(seen);
        let seen: Vec<(&str, &[String])> = lists.iter().map(|(m, j)| (*m, &j[..])).collect();
        check_join_order("#r", &seen)
    }

    #[test]
    fn joins_seen_in_one_order_pass() {
        // b joined first, then c, then a.
        let seen = [
            ("a", &["a"][..]),
            ("b", &["b", "c", "a"][..]),
            ("c", &["c", "a"][..]),
        ];
        assert_eq!(order(&seen), Ok(()));
        assert_eq!(order(&[]), Ok(()));
    }

    #[test]
    fn joins_seen_in_two_orders_or_missing_or_before_ones_own_fail() {
        let two_orders = [
            ("a", &["a"][..]),
            ("b", &["b", "a", "c"][..]),
            ("c", &["c", "a"][..]),
        ];
        assert!(order(&two_orders).unwrap_err().contains("another order"));
        let missing = [("a", &["a"][..]), ("b", &["b", "a"][..]), ("c", &["c"][..])];
        assert!(order(&missing).unwrap_err().contains("[2, 1, 1]"));
        let before_own = [("a", &["b", "a"][..]), ("b", &["b"][..])];
        assert!(order(&before_own).unwrap_err().contains("before itself"));
    }

    #[test]
    fn setup_lines_are_joins_of_ones_rooms_then_ones_own_message() {
        let plan = plan(2);
        let names = names();
        let mut settling = Settling::new(&plan, &names);
        let [mine, _] = plan.joined[3][..] else {
            panic!("client 3 is in two rooms")
        };
        let other = (0..3).find(|r| !plan.joined[3].contains(r)).unwrap();
        settling.line(3, format!("#r{mine}: c3 joined").as_bytes());
        settling.line(3, format!("#r{mine}: c1 joined").as_bytes());
        assert_eq!(settling.seen[3][0], ["c3", "c1"]);
        assert_eq!(settling.own[3], 1);
        assert!(!settling.done(3, Step::Joined));
        assert!(settling.faults.is_empty());
        settling.line(3, format!("#r{other}: c1 joined").as_bytes());
        settling.line(3, b"error: room full: #r0");
        settling.line(3, b"from c3: sync");
        assert!(settling.done(3, Step::Synced));
        settling.line(3, b"from c3: sync");
        let lines: Vec<_> = settling
            .faults
            .shown()
            .iter()
            .map(|fault| match fault {
                Fault::Unexpected { recipient: 3, line } => line.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            lines,
            [
                format!("#r{other}: c1 joined"),
                "error: room full: #r0".into(),
                "from c3: sync".into()
            ]
        );
    }
}
