//! `chinwag-bench`: a load generator for the chinwag server that verifies
//! while it measures.
//!
//! A crate of its own in the workspace (`benches/load/`), so that the
//! server binary carries none of its dependencies. It is a client of the
//! server, nothing more: it speaks the wire protocol (PROTOCOL.md) over
//! loopback, and takes the server's default limits from
//! [`chinwag::config::Config`]. Run it with
//!
//! ```sh
//! cargo build --release                                 # the server it spawns
//! cargo run --release -p chinwag-bench -- --spawn dm
//! ```
//!
//! It loads a running server (`--addr`), or one it spawns itself
//! (`--spawn`: the `chinwag` binary beside its own executable, or
//! `--server-bin PATH`), and runs one scenario:
//!
//! | scenario | what it does | what it checks |
//! | --- | --- | --- |
//! | `dm` | C clients each send M messages to K seeded-random names | every delivery arrives once, in per-sender order, correctly attributed |
//! | `fanout` | S senders each send M messages to all C clients | the same |
//! | `room` | C clients join R rooms (all, or J each drawn from the seed); S senders each send M messages to their rooms in turn (chinwag only) | the joins settle in one order; every member gets every message of its rooms once, in per-sender order, `from <sender> to <room>`; no sender gets its own |
//! | `slow` | one client never reads while others flood it (they are paused, and it is cut after the server's slow timeout); a healthy pair pings | the slow client is cut; the pair's messages all arrive in order |
//! | `idle` | C logged-in connections held open | every login is welcomed and the server still delivers |
//!
//! Each run prints a summary table and then one JSON line with the same
//! figures, and exits non-zero if verification failed. Server CPU time and
//! memory come from `/proc/<pid>` when the server's pid is known
//! (`--server-pid`, or implied by `--spawn`). docs/performance.md has the
//! figures measured with it.
//!
//! The load generator uses plain threads. `dm`, `fanout` and `room` run two, however
//! many clients there are (one epoll reader, one writer), so the bench costs
//! less CPU than the server and adds few scheduling delays of its own;
//! `slow` has a thread per role, and idle connections need no thread at all.
//!
//! Files, one concept each: [`target`] (the server under test), [`probe`]
//! (its CPU and memory), [`client`] (connecting and logging in), [`text`]
//! (what a message carries), [`verify`] (the delivery checker), [`stats`]
//! (latency percentiles), [`report`] (table and JSON), [`traffic`] (the
//! engine behind `dm`, `fanout` and `room`), [`dialect`] (other servers' protocols,
//! for comparing: `--dialect tutorial|redis|nats`), and one file per
//! scenario.

mod client;
mod dialect;
mod dm;
mod fanout;
mod idle;
mod probe;
mod report;
mod room;
mod slow;
mod stats;
mod target;
mod text;
mod traffic;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chinwag::config::Config;
use clap::{Args, Parser, Subcommand};

/// Exit status when verification failed: something was lost, duplicated,
/// reordered or misattributed.
const VERIFICATION_FAILED: u8 = 1;
/// Exit status when the run could not happen (no server, bad options).
const RUN_FAILED: u8 = 2;

/// The command line: where the server is, then the scenario.
#[derive(Parser)]
#[command(
    name = "chinwag-bench",
    version,
    about = "Load a chinwag server over loopback with a scenario, verify every delivery, \
             and print throughput, latency, server CPU and memory."
)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,

    #[command(subcommand)]
    scenario: Scenario,
}

/// Which server to load, and how to read its CPU time and memory.
#[derive(Args)]
struct ServerArgs {
    /// Address of a running chinwag server (loopback only).
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    addr: SocketAddr,

    /// The protocol of that server: chinwag, the async-std tutorial's a-chat
    /// (`tutorial`), or redis or nats pub/sub (see dialect.rs). Only `dm`
    /// and `fanout` speak other dialects than chinwag; `room`, `slow` and
    /// `idle` are chinwag-only.
    #[arg(long, global = true, value_enum, default_value_t = dialect::Dialect::Chinwag)]
    dialect: dialect::Dialect,

    /// Pid of that server, to report its CPU time and memory from /proc.
    #[arg(long, global = true, value_name = "PID")]
    server_pid: Option<u32>,

    /// Spawn `chinwag serve --listen 127.0.0.1:0` for this run instead of
    /// using --addr, and stop it afterwards. Implies --server-pid.
    #[arg(long, global = true)]
    spawn: bool,

    /// With --spawn: the server binary to run, e.g. an older build to
    /// compare against. Default: the `chinwag` binary beside this one
    /// (target/release/chinwag for a release build).
    #[arg(long, global = true, value_name = "PATH", requires = "spawn")]
    server_bin: Option<PathBuf>,

    /// The server's --max-queue in bytes: passed on with --spawn, and used
    /// by `slow` to tell when the slow client's queue passed it.
    #[arg(long, global = true, value_name = "BYTES", default_value_t = Config::default().max_queue)]
    max_queue: usize,

    /// The server's --slow-timeout in seconds: passed on with --spawn if
    /// given (leave it out for a server older than the flag), and checked
    /// by `slow` against --duration. The server's own default is 10 s, so
    /// `slow` against a spawned server needs a shorter one, e.g. 1.
    #[arg(long, global = true, value_name = "SECS")]
    slow_timeout: Option<f64>,

    /// Give up (and fail) if the run has not finished after this many seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 120)]
    timeout: u64,

    /// Seed for every random choice (which names each message goes to,
    /// which rooms each client joins).
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum Scenario {
    /// C clients each send M messages to K random names, pipelined.
    Dm(dm::DmArgs),
    /// S senders each send M messages to all C clients.
    Fanout(fanout::FanoutArgs),
    /// C clients join R rooms; S senders each send M messages to their
    /// rooms in turn; every member verifies every message of its rooms
    /// (chinwag only).
    Room(room::RoomArgs),
    /// One client never reads while others flood it; a healthy pair pings.
    Slow(slow::SlowArgs),
    /// C logged-in idle connections held open; reports RSS per connection.
    Idle(idle::IdleArgs),
}

fn main() -> ExitCode {
    let args = Cli::parse();
    raise_fd_limit();
    let target = match target::Target::start(&args.server) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(RUN_FAILED);
        }
    };
    if target.dialect != dialect::Dialect::Chinwag {
        let scenario = match args.scenario {
            Scenario::Room(_) => Some("room"),
            Scenario::Slow(_) => Some("slow"),
            Scenario::Idle(_) => Some("idle"),
            Scenario::Dm(_) | Scenario::Fanout(_) => None,
        };
        if let Some(scenario) = scenario {
            eprintln!(
                "error: {scenario} is chinwag-only (--dialect chinwag); \
                 only dm and fanout speak other dialects"
            );
            return ExitCode::from(RUN_FAILED);
        }
    }
    let deadline = Duration::from_secs(args.server.timeout);
    let seed = args.server.seed;
    let result = match args.scenario {
        Scenario::Dm(dm) => dm.run(&target, seed, deadline),
        Scenario::Fanout(fanout) => fanout.run(&target, deadline),
        Scenario::Room(room) => room.run(&target, seed, deadline),
        Scenario::Slow(slow) => slow.run(
            &target,
            args.server.max_queue,
            args.server.slow_timeout,
            deadline,
        ),
        Scenario::Idle(idle) => idle.run(&target, deadline),
    };
    match result {
        Ok(report) => {
            report.print();
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(VERIFICATION_FAILED)
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(RUN_FAILED)
        }
    }
}

/// Raises this process's open-file limit to its hard limit: thousands of
/// connections need thousands of descriptors, and a server spawned with
/// --spawn inherits the raised limit. Failing leaves the limit as it was;
/// connecting then fails with a clear error.
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_servers() {
        let cli = Cli::try_parse_from(["chinwag-bench", "dm"]).unwrap();
        assert_eq!(cli.server.max_queue, Config::default().max_queue);
        assert!(!cli.server.spawn);
    }

    #[test]
    fn server_options_go_before_or_after_the_scenario() {
        let cli = Cli::try_parse_from(["chinwag-bench", "dm", "--spawn", "-c", "4"]).unwrap();
        assert!(cli.server.spawn);
        assert!(Cli::try_parse_from(["chinwag-bench", "--server-bin", "x", "dm"]).is_err());
    }

    #[test]
    fn the_dialect_defaults_to_chinwag_and_goes_anywhere() {
        let cli = Cli::try_parse_from(["chinwag-bench", "dm"]).unwrap();
        assert_eq!(cli.server.dialect, dialect::Dialect::Chinwag);
        let cli = Cli::try_parse_from(["chinwag-bench", "fanout", "--dialect", "nats"]).unwrap();
        assert_eq!(cli.server.dialect, dialect::Dialect::Nats);
        assert!(Cli::try_parse_from(["chinwag-bench", "--dialect", "irc", "dm"]).is_err());
    }

    #[test]
    fn room_takes_its_shape_and_the_traffic_options() {
        let line = [
            "chinwag-bench",
            "room",
            "-c",
            "50",
            "--rooms",
            "3",
            "-j",
            "2",
        ];
        let cli = Cli::try_parse_from(line.iter().chain(&["-s", "5", "-m", "9", "--window", "8"]));
        assert!(matches!(cli.unwrap().scenario, Scenario::Room(_)));
    }
}
