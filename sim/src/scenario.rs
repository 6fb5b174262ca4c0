//! The scenario: everything about one run, drawn from one `u64` seed.
//!
//! This is swarm testing: besides drawing the usual random choices, each
//! seed switches whole behaviours and faults on or off and picks their
//! rates, so one seed hammers oversized lines and partitions while another
//! runs clean logins with a server crash. The scenario is plain data; the
//! clients ([`crate::client`]) and the driver ([`crate::simulation`]) act it
//! out, drawing their moment-to-moment choices from RNGs seeded here.
//!
//! A run has three phases on the simulated clock:
//!
//! ```text
//! 0 ──faults and client churn──> quiet_at ──grace──> final_at ──send──> send_until
//!        ──> shutdown_at (graceful server shutdown) ──> end_at
//! ```
//!
//! Until `quiet_at` clients come and go and faults strike. At `quiet_at`
//! every fault is healed; from `final_at` each client holds one last session
//! that must see everything sent to it (liveness), and at `shutdown_at` the
//! server shuts down gracefully, which every final session must see end
//! cleanly.

use std::time::Duration;

use chinwag::config::Config;
use chinwag::shell::WRITE_BATCH_BYTES_MAX;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::{self, Fault};
use crate::net::Model;

/// The simulated server's host name.
pub const SERVER_HOST: &str = "server";
/// The port the server listens on.
pub const PORT: u16 = 7000;

/// The port the server listens on for IRC (`--irc-listen`).
pub const IRC_PORT: u16 = 6667;

/// The host name of client `index`.
pub fn client_host(index: usize) -> String {
    format!("client{index}")
}

/// The login name client `index` uses in its final session. No other
/// session uses it, so the final sessions never collide.
pub fn final_name(index: usize) -> String {
    format!("z{index}")
}

/// Names the clients log in with before the final phase. When there are
/// fewer names in the pool than clients, logins collide.
pub(crate) const NAME_POOL: [&str; 16] = [
    "ann", "bob", "cyd", "dee", "eve", "fay", "gus", "hal", "ivy", "jo", "kai", "lu", "mo", "ned",
    "zoë", "名前",
];
/// Valid names that nobody ever logs in with.
pub const OFFLINE_NAMES: [&str; 2] = ["nobody", "ghost.1"];

/// The most clients a scenario has.
pub const MAX_CLIENTS: usize = 8;

/// The smallest TCP capacity drawn: small, so slow readers fill it, but
/// above the listener backlog the clients can build up. A client has one
/// connection attempt pending at a time (its connect timeout outlasts any
/// hold), plus the odd attempt abandoned by a crash during a hold.
pub const MIN_TCP_CAPACITY: usize = MAX_CLIENTS + 4;

/// How long a session that is still running when the faults stop has to
/// finish before it is cut off.
pub const SESSION_GRACE: Duration = Duration::from_secs(5);

/// One run, fully determined by its seed.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    /// The server's limits: small, so that they are reached.
    pub config: Config,
    pub network: Network,
    pub clients: usize,
    /// Seeds for each client's own RNG, one per client.
    pub client_seeds: Vec<u64>,
    pub behaviour: Behaviour,
    /// The login names of the churn phase.
    pub names: Vec<String>,
    pub faults: Vec<Fault>,
    pub phases: Phases,
    /// Hostile client behaviours, each switched on for some clients.
    pub hostile: Hostile,
    /// Lines at the codec's edges, and sessions that half-close with lines
    /// outstanding.
    pub framing: Framing,
    /// Rooms the clients join, part, send to and ask about, and renames.
    pub rooms: Rooms,
    /// Churn sessions that speak IRC on [`IRC_PORT`] instead.
    pub irc: Irc,
}

/// The simulated network's baseline, before faults.
#[derive(Clone, Debug)]
pub struct Network {
    /// Simulated time per turmoil step.
    pub tick: Duration,
    pub min_latency: Duration,
    pub max_latency: Duration,
    /// Segments a TCP stream may have unread before writes wait. turmoil
    /// uses the same number as the listener's backlog, and panics when
    /// connection attempts overflow it; see [`MIN_TCP_CAPACITY`].
    pub tcp_capacity: usize,
    /// Whether turmoil runs the hosts in a random order each step.
    pub random_order: bool,
    /// Seed for turmoil's own RNG (latencies, random order, link failures).
    pub turmoil_seed: u64,
    /// The sharp edges the network model adds to turmoil ([`crate::net`]),
    /// each switched on for half the seeds.
    pub model: Model,
}

/// The simulated clock's milestones; see the module documentation.
#[derive(Clone, Debug)]
pub struct Phases {
    pub quiet_at: Duration,
    pub final_at: Duration,
    pub send_until: Duration,
    pub shutdown_at: Duration,
    pub end_at: Duration,
}

/// What clients do, as probabilities. Zero means the behaviour is switched
/// off for this seed.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Per session: try an invalid login name first.
    pub invalid_login: f64,
    /// Per message: the sender lists itself.
    pub self_message: f64,
    /// Per message: a destination nobody holds.
    pub offline_dest: f64,
    /// Per message: one destination listed twice.
    pub duplicate_dest: f64,
    /// Per action: a line the grammar refuses.
    pub malformed: f64,
    /// Per action: a line longer than `max_line`.
    pub oversized: f64,
    /// Per action: a line that is not UTF-8.
    pub invalid_utf8: f64,
    /// Per action: a blank line.
    pub blank: f64,
    /// Per action: several messages in one write.
    pub burst: f64,
    /// Per action: many messages to one name in one write.
    pub flood: f64,
    /// Per write: split it in two with a pause between.
    pub split_write: f64,
    /// Per line: end it with CR LF.
    pub crlf: f64,
    /// Per session: read in small pieces with pauses.
    pub slow_reader: f64,
    /// Per session: stop reading after login.
    pub stalled_reader: f64,
    /// Per session: drop the connection instead of closing it.
    pub abrupt_close: f64,
    /// Most filler characters after a message's id.
    pub max_padding: usize,
    /// Most actions in one session.
    pub max_actions: u32,
    /// Longest pause between two actions.
    pub max_pause: Duration,
    /// Longest a session stays connected after its last action.
    pub max_linger: Duration,
}

impl Scenario {
    /// Draws the scenario for `seed`.
    pub fn generate(seed: u64) -> Scenario {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut config = Config {
            max_line: rng.random_range(96..=256),
            max_queue: rng.random_range(512..=8192),
            write_timeout: Duration::from_millis(rng.random_range(1000..=5000)),
            shutdown_timeout: Duration::from_millis(rng.random_range(1000..=3000)),
            // The connection limits and login timeout start as the defaults,
            // far above what the clients open and longer than a client stays
            // unlogged; `limit_connections` tightens them for some seeds.
            ..Config::default()
        };
        let min_latency = Duration::from_millis(rng.random_range(0..=5));
        let network = Network {
            // Fine ticks interleave more finely but cost more steps per second.
            tick: Duration::from_millis([1, 2, 5, 5, 10, 10][rng.random_range(0..6)]),
            min_latency,
            max_latency: min_latency + Duration::from_millis(rng.random_range(1..=150)),
            tcp_capacity: [MIN_TCP_CAPACITY, 16, 32, 64][rng.random_range(0..4)],
            random_order: rng.random_bool(0.5),
            turmoil_seed: rng.random(),
            // Drawn after everything else (below).
            model: Model::TURMOIL,
        };
        let clients = rng.random_range(2..=MAX_CLIENTS);
        let client_seeds = (0..clients).map(|_| rng.random()).collect();
        let behaviour = Behaviour::generate(&mut rng, config.max_line);
        let pool = rng.random_range((clients / 2).max(1)..=(2 * clients).min(NAME_POOL.len()));
        let mut names: Vec<String> = NAME_POOL.iter().map(|name| name.to_string()).collect();
        for i in (1..names.len()).rev() {
            names.swap(i, rng.random_range(0..=i));
        }
        names.truncate(pool);

        let quiet_at = Duration::from_secs(rng.random_range(15..=35));
        let final_at = quiet_at + SESSION_GRACE + Duration::from_secs(1);
        let send_until = final_at + Duration::from_secs(6);
        let shutdown_at = send_until + Duration::from_secs(3);
        let end_at = shutdown_at + config.shutdown_timeout + Duration::from_secs(2);
        let phases = Phases {
            quiet_at,
            final_at,
            send_until,
            shutdown_at,
            end_at,
        };
        let faults = faults::generate(&mut rng, clients, quiet_at);
        // Drawn last, so that every seed kept the network, clients and
        // faults it had before these were drawn (see `sim/tests/seeds.rs`).
        tighten(&mut rng, &mut config);
        // Drawn after everything else, for the same reason.
        limit_connections(&mut rng, &mut config, clients);
        let hostile = Hostile::generate(&mut rng, &config, clients);
        // Drawn after everything else, for the same reason.
        config.slow_timeout = Duration::from_millis(rng.random_range(SLOW_TIMEOUT_MS));
        // Drawn after everything else, for the same reason.
        let framing = Framing::generate(&mut rng);
        // Drawn after everything else, for the same reason.
        let mut network = network;
        network.model = draw_model(&mut rng, &config, clients, &hostile);
        // Drawn after everything else, for the same reason.
        let rooms = Rooms::generate(&mut rng, &mut config);
        // Drawn after everything else, for the same reason.
        let irc = Irc::generate(&mut rng);
        Scenario {
            seed,
            config,
            network,
            clients,
            client_seeds,
            behaviour,
            names,
            faults,
            phases,
            hostile,
            framing,
            rooms,
            irc,
        }
    }

    /// Whether this seed's connection limits are drawn small enough to be
    /// reached (see [`limit_connections`]).
    pub fn limits_connections(&self) -> bool {
        let defaults = Config::default();
        self.config.max_connections != defaults.max_connections
            || self.config.max_connections_per_address != defaults.max_connections_per_address
    }

    /// A multi-line summary for the head of the trace.
    pub fn describe(&self) -> Vec<String> {
        let network = &self.network;
        let mut lines = vec![
            format!("seed {} with {} clients", self.seed, self.clients),
            format!("config {:?}", self.config),
            format!(
                "network tick {:?} latency {:?}..{:?} tcp capacity {} random order {} model {:?}",
                network.tick,
                network.min_latency,
                network.max_latency,
                network.tcp_capacity,
                network.random_order,
                network.model,
            ),
            format!("names {:?}", self.names),
            format!("behaviour {:?}", self.behaviour),
            format!("hostile {:?}", self.hostile),
            format!("framing {:?}", self.framing),
            format!("rooms {:?}", self.rooms),
            format!("phases {:?}", self.phases),
        ];
        lines.extend(self.faults.iter().map(|fault| format!("planned {fault}")));
        lines
    }
}

impl Behaviour {
    fn generate(rng: &mut ChaCha8Rng, max_line: usize) -> Behaviour {
        Behaviour {
            invalid_login: swarm(rng, 0.1, 0.5),
            self_message: swarm(rng, 0.1, 0.4),
            offline_dest: swarm(rng, 0.05, 0.3),
            duplicate_dest: swarm(rng, 0.05, 0.3),
            malformed: swarm(rng, 0.02, 0.15),
            oversized: swarm(rng, 0.02, 0.1),
            invalid_utf8: swarm(rng, 0.02, 0.1),
            blank: swarm(rng, 0.02, 0.1),
            burst: swarm(rng, 0.05, 0.3),
            flood: swarm(rng, 0.02, 0.1),
            split_write: swarm(rng, 0.05, 0.3),
            crlf: swarm(rng, 0.1, 0.5),
            slow_reader: swarm(rng, 0.1, 0.5),
            stalled_reader: swarm(rng, 0.05, 0.3),
            abrupt_close: swarm(rng, 0.1, 0.5),
            max_padding: rng.random_range(0..=max_line / 2),
            max_actions: rng.random_range(3..=30),
            max_pause: Duration::from_millis(rng.random_range(10..=800)),
            max_linger: Duration::from_millis(rng.random_range(0..=8000)),
        }
    }
}

/// Lines at the edges of the codec, and sessions that end with lines
/// still on their way, as probabilities (zero: off). Each is switched off
/// for half the seeds (swarm testing); a client draws nothing for a
/// behaviour that is off, so such seeds run as they did before these
/// existed.
#[derive(Clone, Debug)]
pub struct Framing {
    /// Per action: a message whose line is exactly `max_line` bytes (its
    /// terminator not counted), or one byte shorter or longer.
    pub at_limit: f64,
    /// Per oversized line: it goes in the middle of its write, between two
    /// messages, not at its end.
    pub oversized_mid_write: f64,
    /// Per write holding a CR LF: split it between the CR and the LF.
    pub split_crlf: f64,
    /// Per churn session that closes gracefully: it half-closes at once
    /// after its last action (no lingering), often after a burst or
    /// a flood and with an unterminated last line, so the end of stream
    /// arrives right behind lines the server has yet to process. Every one
    /// of them must be processed before the broker hears of the close.
    pub hasty_close: f64,
}

impl Framing {
    fn generate(rng: &mut ChaCha8Rng) -> Framing {
        Framing {
            at_limit: swarm(rng, 0.05, 0.3),
            oversized_mid_write: swarm(rng, 0.3, 1.0),
            split_crlf: swarm(rng, 0.2, 0.8),
            hasty_close: swarm(rng, 0.2, 0.8),
        }
    }
}

/// The rooms clients use. Few, so members collide in them; one outside
/// ASCII, so room order (UTF-8 bytes) is not just ASCII order.
pub const ROOM_POOL: [&str; 4] = ["#a", "#b", "#c", "#ça"];

/// Rooms, as probabilities (zero: off). Off for a quarter of the seeds;
/// a client draws nothing for a behaviour that is off, so those seeds run
/// as they did before rooms existed.
#[derive(Clone, Debug, Default)]
pub struct Rooms {
    /// The rooms of this seed: the first two to four of [`ROOM_POOL`]
    /// (none when rooms are off).
    pub names: Vec<String>,
    /// Per action: a `/join` or a `/part`. The final sessions join one or
    /// two rooms whenever this is on, so the shutdown's `everyone left`
    /// lines are seen.
    pub join_part: f64,
    /// Per message: a room among its destinations (the sender's, mostly).
    pub room_dest: f64,
    /// Per action: `/names`, `/rooms`, or a command the server refuses.
    pub query: f64,
    /// Per action: `/nick` to a name of the pool or a look-alike of one.
    /// Churn sessions only: the final sessions keep their names.
    pub nick: f64,
}

impl Rooms {
    /// Draws the rooms, and for a third of the seeds each, tight room
    /// limits (one or two rooms per connection, two or three members per
    /// room), so that `too many rooms` and `room full` are reached.
    fn generate(rng: &mut ChaCha8Rng, config: &mut Config) -> Rooms {
        if rng.random_ratio(1, 4) {
            return Rooms::default();
        }
        let rooms = rng.random_range(2..=ROOM_POOL.len());
        if rng.random_ratio(1, 3) {
            config.max_rooms_per_connection = rng.random_range(1..=2);
        }
        if rng.random_ratio(1, 3) {
            config.max_room_members = rng.random_range(2..=3);
        }
        Rooms {
            names: ROOM_POOL[..rooms]
                .iter()
                .map(|room| room.to_string())
                .collect(),
            join_part: rng.random_range(0.05..=0.3),
            room_dest: rng.random_range(0.2..=0.7),
            query: rng.random_range(0.02..=0.1),
            nick: swarm(rng, 0.01, 0.05),
        }
    }

    /// Whether clients use rooms at all in this seed.
    pub fn on(&self) -> bool {
        !self.names.is_empty()
    }
}

/// IRC sessions, as probabilities (zero: off). On for a third of the
/// seeds; a client draws nothing for a behaviour that is off, so the other
/// seeds run as they did before IRC sessions existed.
#[derive(Clone, Debug, Default)]
pub struct Irc {
    /// Per churn session: it connects to [`IRC_PORT`] and speaks IRC.
    pub session: f64,
    /// Per IRC session: `CAP LS 302` before `NICK` and `USER`, `CAP END`
    /// after.
    pub cap: f64,
    /// Per IRC message: a `NOTICE` instead of a `PRIVMSG`.
    pub notice: f64,
    /// Per IRC action: a `PING` of the client's own.
    pub ping: f64,
    /// Per IRC action: `NICK` to another name of the pool.
    pub nick: f64,
}

impl Irc {
    fn generate(rng: &mut ChaCha8Rng) -> Irc {
        if !rng.random_ratio(1, 3) {
            return Irc::default();
        }
        Irc {
            session: rng.random_range(0.2..=0.5),
            cap: rng.random_range(0.2..=0.6),
            notice: rng.random_range(0.05..=0.2),
            ping: rng.random_range(0.02..=0.1),
            nick: rng.random_range(0.01..=0.05),
        }
    }

    /// Whether any session speaks IRC in this seed.
    pub fn on(&self) -> bool {
        self.session > 0.0
    }
}

/// Makes the queue bound or the write timeout tight for some seeds. A
/// quarter get a tiny queue, 20 to 64 bytes: any welcome fits, a long
/// delivery does not, and the shutdown notice (28 bytes) fits only an
/// almost empty queue, or none at all below 28, so slow-consumer cuts and
/// shutdowns without the notice are common. Another quarter get a small
/// one, up to 511 bytes. A third get a write timeout under a second, so
/// partitions, holds and stalled readers end in dead-peer cuts.
fn tighten(rng: &mut ChaCha8Rng, config: &mut Config) {
    match rng.random_range(0..4) {
        0 => config.max_queue = rng.random_range(TINY_QUEUE),
        1 => config.max_queue = rng.random_range(*TINY_QUEUE.end() + 1..512),
        _ => {}
    }
    if rng.random_ratio(1, 3) {
        config.write_timeout = Duration::from_millis(rng.random_range(200..1000));
    }
}

/// Makes the connection limits and the login timeout small for some
/// seeds: for one seed in three each, `max_connections` near the number of
/// clients (a client's connection that never logs in, a reconnect racing
/// the close of the last session, or a stale connection a partition left
/// open takes the last slot) and `max_connections_per_address` of 1 or 2
/// (every client host has an address of its own, so that client's second
/// connection is refused while its first is open); and a login timeout of
/// 1 to 5 seconds for one seed in three, or three in four of the seeds
/// with a limit. turmoil never resends a FIN a partition dropped and has
/// no keepalive, so a session abandoned during a partition stays open on
/// the server, holding a slot, until the login timeout closes it (or, if
/// it had logged in, until something is sent to it or the shutdown).
fn limit_connections(rng: &mut ChaCha8Rng, config: &mut Config, clients: usize) {
    let mut limited = false;
    if rng.random_ratio(1, 3) {
        config.max_connections = rng.random_range(clients..=clients + 2);
        limited = true;
    }
    if rng.random_ratio(1, 3) {
        config.max_connections_per_address = rng.random_range(1..=2);
        limited = true;
    }
    let short_timeout = if limited {
        rng.random_ratio(3, 4)
    } else {
        rng.random_ratio(1, 3)
    };
    if short_timeout {
        config.login_timeout = Duration::from_millis(rng.random_range(1000..=5000));
    }
}

/// The longest login timeout under which clients open connections that
/// never log in: they wait for the timeout to close them.
pub const SHORT_LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Hostile client behaviours. Each is a per-seed switch: off, or on at some
/// rate for some of the clients (at least one).
#[derive(Clone, Debug)]
pub struct Hostile {
    /// Per churn session: a connection that never logs in (it sends blank
    /// lines or nothing), alone or next to the session. On only with a
    /// short login timeout, which must close it.
    pub never_login: Switch,
    /// Per line (a login, a message): written a few bytes at a time over
    /// seconds, the LF held back a while longer.
    pub slowloris: Switch,
    /// Per action: a message with a control character in it.
    pub control_text: Switch,
    /// Per login and per destination: a look-alike of a name in the pool
    /// (fullwidth, Cyrillic, mathematical bold, or decomposed).
    pub look_alike: Switch,
    /// The final session goes on typing lines and blank lines through the
    /// shutdown's drain, until it reads the end of stream.
    pub typist: Switch,
    /// In the final phase, one more connection that never logs in, next to
    /// the final session. On only with a short login timeout.
    pub final_never_login: Switch,
    /// Per action: a burst of many lines near `max_line` to one name,
    /// written as fast as the socket takes them.
    pub burster: Switch,
    /// Per action: one line naming many destinations at once.
    pub fan_out: Switch,
    /// Per churn session: read steadily, a budget of bytes at regular
    /// intervals, fast enough to be owed never being cut (see
    /// [`steady_budget`]), and send nothing after the login: a target.
    pub steady_reader: Switch,
}

impl Hostile {
    fn generate(rng: &mut ChaCha8Rng, config: &Config, clients: usize) -> Hostile {
        let short_timeout = config.login_timeout <= SHORT_LOGIN_TIMEOUT;
        let mut hostile = Hostile {
            never_login: Switch::draw(rng, clients, 0.1, 0.4),
            slowloris: Switch::draw(rng, clients, 0.05, 0.3),
            control_text: Switch::draw(rng, clients, 0.05, 0.2),
            look_alike: Switch::draw(rng, clients, 0.1, 0.4),
            typist: Switch::draw(rng, clients, 1.0, 1.0),
            final_never_login: Switch::draw(rng, clients, 1.0, 1.0),
            burster: Switch::draw(rng, clients, 0.02, 0.1),
            fan_out: Switch::draw(rng, clients, 0.05, 0.3),
            steady_reader: Switch::draw(rng, clients, 0.3, 0.8),
        };
        if !short_timeout {
            hostile.never_login = Switch::default();
            hostile.final_never_login = Switch::default();
        }
        hostile
    }
}

/// One hostile behaviour: off, or on at `rate` for the clients listed.
#[derive(Clone, Default)]
pub struct Switch {
    pub rate: f64,
    pub clients: Vec<usize>,
}

impl Switch {
    /// On for one seed in three, at a rate from `low` to `high`, for each
    /// client with even odds (at least one).
    fn draw(rng: &mut ChaCha8Rng, clients: usize, low: f64, high: f64) -> Switch {
        if !rng.random_ratio(1, 3) {
            return Switch::default();
        }
        let rate = rng.random_range(low..=high);
        let mut chosen: Vec<usize> = (0..clients).filter(|_| rng.random_bool(0.5)).collect();
        if chosen.is_empty() {
            chosen.push(rng.random_range(0..clients));
        }
        Switch {
            rate,
            clients: chosen,
        }
    }

    /// The rate for `client`: zero unless it is one of the clients chosen.
    pub fn rate(&self, client: usize) -> f64 {
        if self.clients.contains(&client) {
            self.rate
        } else {
            0.0
        }
    }

    /// Whether `client` behaves so at all.
    pub fn on(&self, client: usize) -> bool {
        self.rate(client) > 0.0
    }

    /// Whether any client behaves so.
    pub fn any(&self) -> bool {
        self.rate > 0.0 && !self.clients.is_empty()
    }
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.any() {
            write!(f, "{:.3} for clients {:?}", self.rate, self.clients)
        } else {
            f.write_str("off")
        }
    }
}

/// The slow timeouts drawn, in milliseconds: around the write timeouts
/// (0.2 to 5 s), so stalled readers are cut either way, and at least 1.5 s,
/// so that many seeds leave room for a steady reader (see
/// [`steady_budget`]).
pub const SLOW_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1500..=6000;

/// Slack in the slow timeout that a steady reader's budget leaves over:
/// the broker's timer, the Flushed report and the step it takes.
pub const STEADY_MARGIN: Duration = Duration::from_millis(300);

/// The most bytes one line of a simulated client puts in another
/// connection's queue beyond the line itself: `from `, a sender name of at
/// most 16 bytes, `: ` and the LF.
pub const DELIVERY_OVERHEAD: usize = 32;

/// The smallest per-interval read budget with which a steady reader,
/// reading every `pause` on a healthy link while `senders` others send to
/// it, is never cut as a slow consumer; `None` if no budget can (the slow
/// timeout is too short for that many senders, the latency and the pause),
/// and then no steady reader is drawn.
///
/// The argument: the broker cuts a queue that stays past `max_queue` for
/// the slow timeout. While it is past, each sender adds at most one line
/// to it (the line pauses it until the queue is back under), so it holds at
/// most `full = max_queue + senders * (max_line + DELIVERY_OVERHEAD)`
/// bytes, less than one write batch ([`WRITE_BATCH_BYTES_MAX`]). The
/// shell's writer, blocked on turmoil's flow control, writes all that is
/// queued as one segment whenever it gets a credit, and a credit comes back
/// each time the reader starts a new segment: it finishes the one it is in
/// (`ceil(full / budget)` intervals of at most `pause + tick`) and waits
/// at most the latency plus a tick for the next. After each credit the
/// queue holds only lines that came after its batch was built, one per
/// sender at most, so within `senders + 2` credits it is back under the
/// bound. The budget fits that many rounds in the slow timeout less
/// [`STEADY_MARGIN`].
pub fn steady_budget(
    config: &Config,
    network: &Network,
    senders: usize,
    pause: Duration,
) -> Option<usize> {
    let full = steady_queue_max(config, senders);
    debug_assert!(full < WRITE_BATCH_BYTES_MAX);
    // One credit must carry the whole queue (see `draw_model`).
    if network
        .model
        .segment_bytes
        .is_some_and(|segment| segment < full)
    {
        return None;
    }
    let interval = pause + network.tick;
    let rounds = u32::try_from(senders + 2).ok()?;
    let round = config.slow_timeout.checked_sub(STEADY_MARGIN)? / rounds;
    let reading = round.checked_sub(network.max_latency + network.tick)?;
    // Intervals to finish a segment, plus one to start the next.
    let intervals = (reading.as_nanos() / interval.as_nanos()) as usize;
    let intervals = intervals.checked_sub(1).filter(|&n| n > 0)?;
    Some(full.div_ceil(intervals))
}

/// The queue bounds of the tightest seeds.
pub const TINY_QUEUE: std::ops::RangeInclusive<usize> = 20..=64;

/// The segments drawn for the seeds with small windows, in bytes: a
/// stream then holds at most `tcp_capacity` of them, 6 to 262 KiB.
pub const SEGMENT_BYTES: std::ops::RangeInclusive<usize> = 256..=4096;

/// Draws the network model's sharp edges, each on for half the seeds: a
/// reset after a close with input unread discards what the peer had not
/// read, a write to a closed peer draws a reset that does the same, and
/// small windows (segments of [`SEGMENT_BYTES`]). A seed with steady
/// readers gets segments big enough for the whole queue of one, so that
/// [`steady_budget`]'s argument (one credit writes all that is queued)
/// still holds.
fn draw_model(rng: &mut ChaCha8Rng, config: &Config, clients: usize, hostile: &Hostile) -> Model {
    let reset_on_unread_close = rng.random_bool(0.5);
    let reset_on_write_to_closed = rng.random_bool(0.5);
    let segment_bytes = rng.random_bool(0.5).then(|| {
        let segment = rng.random_range(SEGMENT_BYTES);
        if hostile.steady_reader.any() {
            let senders = clients.saturating_sub(1);
            segment.max(steady_queue_max(config, senders))
        } else {
            segment
        }
    });
    Model {
        reset_on_unread_close,
        reset_on_write_to_closed,
        segment_bytes,
    }
}

/// The most a steady reader's queue holds while past `max_queue` with
/// `senders` others sending to it (see [`steady_budget`]).
pub fn steady_queue_max(config: &Config, senders: usize) -> usize {
    config.max_queue + senders * (config.max_line + DELIVERY_OVERHEAD)
}

/// Half the seeds switch a behaviour off; the others pick its rate.
fn swarm(rng: &mut ChaCha8Rng, low: f64, high: f64) -> f64 {
    if rng.random_bool(0.5) {
        rng.random_range(low..=high)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_scenario() {
        let one = Scenario::generate(7).describe();
        assert_eq!(one, Scenario::generate(7).describe());
        assert_ne!(one, Scenario::generate(8).describe());
    }

    #[test]
    fn phases_are_in_order_and_faults_end_before_quiet() {
        for seed in 0..200 {
            let scenario = Scenario::generate(seed);
            let phases = &scenario.phases;
            assert!(phases.quiet_at < phases.final_at);
            assert!(phases.final_at < phases.send_until);
            assert!(phases.send_until < phases.shutdown_at);
            assert!(phases.shutdown_at < phases.end_at);
            for fault in &scenario.faults {
                assert!(fault.ends_at() <= phases.quiet_at, "seed {seed}: {fault}");
            }
            assert!(!scenario.names.is_empty());
        }
    }

    #[test]
    fn some_seeds_have_tight_limits() {
        let configs: Vec<Config> = (0..200)
            .map(|seed| Scenario::generate(seed).config)
            .collect();
        let notice = "error: server shutting down\n".len();
        assert!(configs.iter().any(|c| c.max_queue < notice));
        assert!(configs.iter().any(|c| TINY_QUEUE.contains(&c.max_queue)));
        assert!(configs.iter().any(|c| c.max_queue >= 512));
        assert!(
            configs
                .iter()
                .any(|c| c.write_timeout < Duration::from_secs(1))
        );
        assert!(configs.iter().all(|c| c.max_queue >= *TINY_QUEUE.start()));
    }

    #[test]
    fn some_seeds_have_connection_limits_and_hostile_clients() {
        let scenarios: Vec<Scenario> = (0..200).map(Scenario::generate).collect();
        let defaults = Config::default();
        let limited = scenarios.iter().filter(|s| s.limits_connections()).count();
        assert!(
            (50..150).contains(&limited),
            "{limited} of 200 seeds limited"
        );
        assert!(
            scenarios
                .iter()
                .any(|s| s.config.max_connections == s.clients)
        );
        assert!(
            scenarios
                .iter()
                .any(|s| s.config.max_connections_per_address == 1)
        );
        assert!(
            scenarios
                .iter()
                .any(|s| s.config.login_timeout < Duration::from_secs(2))
        );
        assert!(
            scenarios
                .iter()
                .any(|s| s.config.login_timeout == defaults.login_timeout)
        );
        for s in &scenarios {
            let hostile = &s.hostile;
            let switches = [
                &hostile.never_login,
                &hostile.slowloris,
                &hostile.control_text,
                &hostile.look_alike,
                &hostile.typist,
                &hostile.final_never_login,
                &hostile.burster,
                &hostile.fan_out,
                &hostile.steady_reader,
            ];
            for switch in switches {
                assert!(switch.clients.iter().all(|&c| c < s.clients));
                assert!(!switch.any() || !switch.clients.is_empty());
            }
            if s.config.login_timeout > SHORT_LOGIN_TIMEOUT {
                assert!(!hostile.never_login.any() && !hostile.final_never_login.any());
            }
        }
        let on = |pick: fn(&Hostile) -> &Switch| scenarios.iter().any(|s| pick(&s.hostile).any());
        assert!(on(|h| &h.never_login));
        assert!(on(|h| &h.slowloris));
        assert!(on(|h| &h.control_text));
        assert!(on(|h| &h.look_alike));
        assert!(on(|h| &h.typist));
        assert!(on(|h| &h.final_never_login));
        assert!(on(|h| &h.burster));
        assert!(on(|h| &h.fan_out));
        assert!(on(|h| &h.steady_reader));
    }

    #[test]
    fn half_the_seeds_draw_each_framing_edge() {
        let scenarios: Vec<Scenario> = (0..200).map(Scenario::generate).collect();
        let rates: [fn(&Framing) -> f64; 4] = [
            |f| f.at_limit,
            |f| f.oversized_mid_write,
            |f| f.split_crlf,
            |f| f.hasty_close,
        ];
        for rate in rates {
            let on = scenarios.iter().filter(|s| rate(&s.framing) > 0.0).count();
            assert!((60..140).contains(&on), "{on} of 200 seeds");
        }
    }

    #[test]
    fn most_seeds_have_rooms_and_some_tight_room_limits() {
        let scenarios: Vec<Scenario> = (0..200).map(Scenario::generate).collect();
        let with_rooms = scenarios.iter().filter(|s| s.rooms.on()).count();
        assert!(
            (120..180).contains(&with_rooms),
            "{with_rooms} of 200 seeds"
        );
        let defaults = Config::default();
        for s in &scenarios {
            assert!(s.rooms.names.len() <= ROOM_POOL.len());
            assert!(s.rooms.on() || s.rooms.join_part == 0.0 && s.rooms.room_dest == 0.0);
            if !s.rooms.on() {
                assert_eq!(
                    s.config.max_rooms_per_connection,
                    defaults.max_rooms_per_connection
                );
            }
        }
        assert!(
            scenarios
                .iter()
                .any(|s| s.config.max_rooms_per_connection == 1)
        );
        assert!(scenarios.iter().any(|s| s.config.max_room_members == 2));
        assert!(scenarios.iter().any(|s| s.rooms.nick > 0.0));
    }

    #[test]
    fn half_the_seeds_draw_each_network_edge() {
        let scenarios: Vec<Scenario> = (0..200).map(Scenario::generate).collect();
        let edges: [fn(&Model) -> bool; 3] = [
            |m| m.reset_on_unread_close,
            |m| m.reset_on_write_to_closed,
            |m| m.segment_bytes.is_some(),
        ];
        for edge in edges {
            let on = scenarios.iter().filter(|s| edge(&s.network.model)).count();
            assert!((60..140).contains(&on), "{on} of 200 seeds");
        }
        let all_off = scenarios
            .iter()
            .filter(|s| s.network.model == Model::TURMOIL)
            .count();
        assert!(all_off > 0, "no seed runs on turmoil's network as it is");
    }

    #[test]
    fn seeds_with_steady_readers_and_small_segments_keep_their_budget() {
        for s in (0..300).map(Scenario::generate) {
            if s.hostile.steady_reader.any() && s.network.model.segment_bytes.is_some() {
                let senders = s.clients - 1;
                let pause = Duration::from_millis(10);
                let budget = steady_budget(&s.config, &s.network, senders, pause);
                let without = Network {
                    model: Model::TURMOIL,
                    ..s.network.clone()
                };
                assert_eq!(budget, steady_budget(&s.config, &without, senders, pause));
            }
        }
    }

    #[test]
    fn many_seeds_have_a_steady_budget() {
        let with_budget = (0..300)
            .map(Scenario::generate)
            .filter(|s| {
                assert!(SLOW_TIMEOUT_MS.contains(&(s.config.slow_timeout.as_millis() as u64)));
                let senders = s.clients - 1;
                // Small segments come big enough only where steady readers
                // are drawn (`draw_model`): this is about the slow timeout.
                let network = Network {
                    model: Model::TURMOIL,
                    ..s.network.clone()
                };
                steady_budget(&s.config, &network, senders, Duration::from_millis(10)).is_some()
            })
            .count();
        assert!(with_budget >= 100, "only {with_budget} of 300 seeds");
    }
}
