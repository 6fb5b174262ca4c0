//! Faults: what can go wrong, when it does, and how it is done to turmoil.
//!
//! [`generate`] draws a seed's faults (swarm style: each kind is switched on
//! or off per seed). [`timeline`] turns them into timed [`Action`]s, each
//! fault a start and an end, plus the healing of everything when the fault
//! window closes and the graceful shutdown at the end of the run.
//! [`apply`] carries one action out on the simulation between two steps.
//!
//! turmoil black-holes TCP data during a partition (nothing is resent), so a
//! partition breaks the streams crossing it for good: clients notice through
//! their timeouts and reconnect, and the broker cuts the server's end as a
//! dead peer once its write timeout passes with data queued and none flushed.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use turmoil::Sim;

use crate::scenario::{Network, SERVER_HOST, Scenario, client_host};
use crate::server::ShutdownSwitch;

/// Faults start no earlier than this, so the first logins happen healthily.
const WINDOW_START: Duration = Duration::from_secs(1);

/// The longest a link or client fault lasts, in milliseconds.
pub const MAX_LASTS_MS: u64 = 8000;

/// One fault, starting at `at`.
#[derive(Clone, Debug)]
pub struct Fault {
    pub at: Duration,
    pub kind: FaultKind,
}

/// Which traffic a partition drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Both,
    ToClient,
    ToServer,
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Drop all traffic on the link between the server and a client.
    Partition {
        client: usize,
        direction: Direction,
        lasts: Duration,
    },
    /// Hold all traffic on the link, then deliver it at once.
    Hold { client: usize, lasts: Duration },
    /// Raise the link's maximum latency (jitter grows with it).
    Latency {
        client: usize,
        max: Duration,
        lasts: Duration,
    },
    /// Make the link fail at random, breaking the streams on it.
    Flaky {
        client: usize,
        fail_rate: f64,
        lasts: Duration,
    },
    /// Crash a client host: its software and sockets vanish; it restarts later.
    ClientCrash { client: usize, down_for: Duration },
    /// Restart a client host's software at once.
    ClientBounce { client: usize },
    /// Crash the server host: every connection and all state is lost.
    ServerCrash { down_for: Duration },
    /// Shut the server down gracefully, then start it again.
    ServerRestart { down_for: Duration },
}

/// The names of every kind of fault, for coverage reports.
pub const KINDS: [&str; 8] = [
    "partition",
    "hold",
    "latency",
    "flaky",
    "client-crash",
    "client-bounce",
    "server-crash",
    "server-restart",
];

impl FaultKind {
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Partition { .. } => "partition",
            FaultKind::Hold { .. } => "hold",
            FaultKind::Latency { .. } => "latency",
            FaultKind::Flaky { .. } => "flaky",
            FaultKind::ClientCrash { .. } => "client-crash",
            FaultKind::ClientBounce { .. } => "client-bounce",
            FaultKind::ServerCrash { .. } => "server-crash",
            FaultKind::ServerRestart { .. } => "server-restart",
        }
    }

    fn lasts(&self) -> Duration {
        match *self {
            FaultKind::Partition { lasts, .. }
            | FaultKind::Hold { lasts, .. }
            | FaultKind::Latency { lasts, .. }
            | FaultKind::Flaky { lasts, .. } => lasts,
            FaultKind::ClientCrash { down_for, .. }
            | FaultKind::ServerCrash { down_for }
            | FaultKind::ServerRestart { down_for } => down_for,
            FaultKind::ClientBounce { .. } => Duration::ZERO,
        }
    }
}

impl Fault {
    /// When the fault is undone.
    pub fn ends_at(&self) -> Duration {
        self.at + self.kind.lasts()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = crate::trace::format_time(self.at);
        write!(f, "{} at {at}: {:?}", self.kind.name(), self.kind)
    }
}

/// Draws the faults of one seed, all over before `quiet_at`.
pub fn generate(rng: &mut ChaCha8Rng, clients: usize, quiet_at: Duration) -> Vec<Fault> {
    let window = quiet_at - WINDOW_START;
    let mut faults = Vec::new();
    // Link and client faults may overlap one another freely.
    for kind in 0..6 {
        if !rng.random_bool(0.5) {
            continue;
        }
        for _ in 0..rng.random_range(1..=3) {
            let at = WINDOW_START + window.mul_f64(rng.random_range(0.0..0.9));
            let room = quiet_at - at;
            let lasts = room.min(Duration::from_millis(rng.random_range(500..=MAX_LASTS_MS)));
            let client = rng.random_range(0..clients);
            let kind = match kind {
                0 => FaultKind::Partition {
                    client,
                    direction: [Direction::Both, Direction::ToClient, Direction::ToServer]
                        [rng.random_range(0..3)],
                    lasts,
                },
                1 => FaultKind::Hold { client, lasts },
                2 => FaultKind::Latency {
                    client,
                    max: Duration::from_millis(rng.random_range(200..=3000)),
                    lasts,
                },
                3 => FaultKind::Flaky {
                    client,
                    fail_rate: rng.random_range(0.01..=0.2),
                    lasts,
                },
                4 => FaultKind::ClientCrash {
                    client,
                    down_for: lasts,
                },
                _ => FaultKind::ClientBounce { client },
            };
            faults.push(Fault { at, kind });
        }
    }
    // Server faults take turns: the server is back before the next one.
    let mut free_from = WINDOW_START;
    for _ in 0..rng.random_range(0..=2) {
        let down_for = Duration::from_millis(rng.random_range(3500..=6000));
        let latest = quiet_at.saturating_sub(down_for);
        if latest <= free_from {
            break;
        }
        let at = free_from + (latest - free_from).mul_f64(rng.random_range(0.0..1.0));
        let kind = if rng.random_bool(0.5) {
            FaultKind::ServerCrash { down_for }
        } else {
            FaultKind::ServerRestart { down_for }
        };
        faults.push(Fault { at, kind });
        free_from = at + down_for;
    }
    faults.sort_by_key(|fault| fault.at);
    faults
}

/// One change to the simulated world, carried out between two steps.
#[derive(Clone, Debug)]
pub enum Action {
    Partition(usize, Direction),
    Repair(usize),
    Hold(usize),
    Release(usize),
    SetMaxLatency(usize, Duration),
    SetFailRate(usize, f64),
    CrashClient(usize),
    BounceClient(usize),
    CrashServer,
    ShutdownServer,
    StartServer,
    /// Undo every fault: links healthy, hosts running.
    HealAll,
}

/// Every action of the run in time order: the faults' starts and ends, the
/// healing at `quiet_at` and the graceful shutdown at `shutdown_at`.
pub fn timeline(scenario: &Scenario) -> Vec<(Duration, Action)> {
    let baseline = scenario.network.max_latency;
    let mut actions = Vec::new();
    for fault in &scenario.faults {
        let (start, end) = match fault.kind {
            FaultKind::Partition {
                client, direction, ..
            } => (
                Action::Partition(client, direction),
                Some(Action::Repair(client)),
            ),
            FaultKind::Hold { client, .. } => (Action::Hold(client), Some(Action::Release(client))),
            FaultKind::Latency { client, max, .. } => (
                Action::SetMaxLatency(client, max),
                Some(Action::SetMaxLatency(client, baseline)),
            ),
            FaultKind::Flaky {
                client, fail_rate, ..
            } => (
                Action::SetFailRate(client, fail_rate),
                Some(Action::SetFailRate(client, 0.0)),
            ),
            FaultKind::ClientCrash { client, .. } => (
                Action::CrashClient(client),
                Some(Action::BounceClient(client)),
            ),
            FaultKind::ClientBounce { client } => (Action::BounceClient(client), None),
            FaultKind::ServerCrash { .. } => (Action::CrashServer, Some(Action::StartServer)),
            FaultKind::ServerRestart { .. } => (Action::ShutdownServer, Some(Action::StartServer)),
        };
        actions.push((fault.at, start));
        if let Some(end) = end {
            actions.push((fault.ends_at(), end));
        }
    }
    actions.push((scenario.phases.quiet_at, Action::HealAll));
    actions.push((scenario.phases.shutdown_at, Action::ShutdownServer));
    // Stable: a fault that ends when another starts keeps its order.
    actions.sort_by_key(|(at, _)| *at);
    actions
}

/// Carries out `action`; returns what was done, for the trace.
pub fn apply(
    sim: &mut Sim<'_>,
    action: &Action,
    network: &Network,
    clients: usize,
    shutdown: &ShutdownSwitch,
) -> String {
    let server = SERVER_HOST;
    match *action {
        Action::Partition(client, direction) => {
            let host = client_host(client);
            match direction {
                Direction::Both => sim.partition(server, host.as_str()),
                Direction::ToClient => sim.partition_oneway(server, host.as_str()),
                Direction::ToServer => sim.partition_oneway(host.as_str(), server),
            }
            format!("partition {host} ({direction:?})")
        }
        Action::Repair(client) => {
            let host = client_host(client);
            sim.repair(server, host.as_str());
            format!("repair {host}")
        }
        Action::Hold(client) => {
            let host = client_host(client);
            sim.hold(server, host.as_str());
            format!("hold {host}")
        }
        Action::Release(client) => {
            let host = client_host(client);
            sim.release(server, host.as_str());
            format!("release {host}")
        }
        Action::SetMaxLatency(client, max) => {
            let host = client_host(client);
            sim.set_link_max_message_latency(server, host.as_str(), max);
            format!("max latency {max:?} on {host}")
        }
        Action::SetFailRate(client, rate) => {
            let host = client_host(client);
            sim.set_link_fail_rate(server, host.as_str(), rate);
            if rate == 0.0 {
                sim.repair(server, host.as_str());
            }
            format!("fail rate {rate:.3} on {host}")
        }
        Action::CrashClient(client) => {
            let host = client_host(client);
            sim.crash(host.as_str());
            format!("crash {host}")
        }
        Action::BounceClient(client) => {
            let host = client_host(client);
            sim.bounce(host.as_str());
            format!("bounce {host}")
        }
        Action::CrashServer => {
            sim.crash(server);
            "crash server".to_string()
        }
        Action::ShutdownServer => {
            if shutdown.trigger() {
                "graceful shutdown of server".to_string()
            } else {
                "graceful shutdown of server (not running)".to_string()
            }
        }
        // Like `systemctl start` on a running unit: nothing. Two restart
        // faults can overlap (the second's shutdown comes before the
        // first's start has run the server, and finds nothing to stop), or
        // a drain can outlast a restart's pause; bouncing the server then
        // would be a crash no fault planned, and the checker would rightly
        // blame the server for the resets.
        Action::StartServer if sim.is_host_running(server) => {
            "start server (already running)".to_string()
        }
        Action::StartServer => {
            sim.bounce(server);
            "start server".to_string()
        }
        Action::HealAll => {
            for client in 0..clients {
                let host = client_host(client);
                sim.release(server, host.as_str());
                sim.repair(server, host.as_str());
                sim.set_link_fail_rate(server, host.as_str(), 0.0);
                sim.set_link_max_message_latency(server, host.as_str(), network.max_latency);
                if !sim.is_host_running(host.as_str()) {
                    sim.bounce(host.as_str());
                }
            }
            if !sim.is_host_running(server) {
                sim.bounce(server);
            }
            "heal all links and restart stopped hosts".to_string()
        }
    }
}
