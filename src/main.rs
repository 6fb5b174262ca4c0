//! The `chinwag` command line: `serve` runs the server, `connect` the client.
//! (The load generator is a crate of its own, `chinwag-bench`, in benches/load/.)

use std::fmt;
use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use chinwag::config::Config;
use chinwag::irc::{IRC_BODY_BYTES_MAX, IRC_LINE_BYTES_MAX, render_split};
use chinwag::journal_file::{JOURNAL_BYTES_MIN, Journal};
use chinwag::news::irc_source;
use chinwag::protocol::{
    Departure, ErrorReply, Line, MAX_NAME_CHARS, render_error, render_everyone_left, render_joined,
    render_left, render_renamed, render_room_delivery, render_welcome,
};
use chinwag::server::{Listeners, Stopped, THREADS_MAX};

/// Exit status for bad command-line input or a server that cannot start,
/// the same status clap uses for usage errors.
const USAGE_ERROR: u8 = 2;

/// Exit status when a second SIGINT or SIGTERM cut the shutdown short, so
/// what was still queued for clients may not have been delivered.
const FORCED_SHUTDOWN: u8 = 1;

/// A name character that takes the most bytes UTF-8 can (4): a name of
/// [`MAX_NAME_CHARS`] of them is the longest a server line can carry.
const WIDEST_NAME_CHAR: char = '\u{1D400}';

#[derive(Parser)]
#[command(
    name = "chinwag",
    version,
    about = "A chat server with one broker, bounded memory and a checked ordering.",
    long_about = "A chat server with one broker, bounded memory and a checked ordering.\n\n\
        Clients log in by sending a name on the first line, then send lines like\n\
        `bob, carol: hi`; bob and carol receive `from alice: hi`. See PROTOCOL.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the chat server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Chat interactively: stdin lines go to the server, its lines go to stdout.
    /// On a terminal, lines are edited with history, what arrives is printed
    /// above the line being typed, and `/quit` or Ctrl-D leaves.
    Connect {
        /// Server address to connect to.
        #[arg(value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_address)]
        address: SocketAddr,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is
    /// printed on stdout as `chinwag listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_address)]
    listen: SocketAddr,

    /// Also speak IRC, to IRC clients (irssi, WeeChat, HexChat, ii...), on
    /// this address. IRC users share names and rooms (IRC channels) with
    /// line-protocol users; IRC.md says what is supported.
    #[arg(long, value_name = "ADDR", value_parser = parse_address)]
    irc_listen: Option<SocketAddr>,

    /// Longest line accepted, in bytes, not counting the LF or CR LF. Longer
    /// lines get `error: line too long` and are skipped without being buffered.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_line, value_parser = parse_positive)]
    max_line: usize,

    /// Bytes that may queue up for one connection. A client whose message
    /// takes someone's queue past this is paused (the server stops reading
    /// from it) until that queue drains back under it.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_queue, value_parser = parse_positive)]
    max_queue: usize,

    /// Seconds a connection's queue may stay past --max-queue before it is
    /// disconnected as a slow consumer, and so the longest anyone waits on
    /// it. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Config::default().slow_timeout), value_parser = parse_positive_seconds)]
    slow_timeout: Seconds,

    /// Seconds a connection with data queued may accept no bytes before it
    /// is closed as a dead peer. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Config::default().write_timeout), value_parser = parse_positive_seconds)]
    write_timeout: Seconds,

    /// Seconds after SIGINT/SIGTERM within which the server exits, even if
    /// some clients have not read everything yet. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Config::default().shutdown_timeout), value_parser = parse_seconds)]
    shutdown_timeout: Seconds,

    /// Most connections open at once; one more gets `error: server full`
    /// and is closed at once. [default: the open-file limit (ulimit -n)
    /// minus 64 (or a quarter of a small limit), kept for the listener, the
    /// runtime and connections being refused]
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    max_connections: Option<usize>,

    /// Most connections open at once from one IP address; one more gets
    /// `error: too many connections from your address`. [default: a quarter
    /// of --max-connections]
    #[arg(long, value_name = "N", value_parser = parse_positive)]
    max_connections_per_address: Option<usize>,

    /// Seconds a connection may stay open without logging in; then it gets
    /// `error: login timed out` and is closed. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value_t = Seconds(Config::default().login_timeout), value_parser = parse_positive_seconds)]
    login_timeout: Seconds,

    /// Record every input the broker is handed, with its time, in FILE, for
    /// `chinwag-sim --journal FILE` to replay and check. FILE must not
    /// exist; it is created readable by its owner only, since it holds
    /// every line clients send.
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,

    /// Where the journal stops recording (the server runs on). A journal
    /// replays only from its start, so it is capped, not rotated.
    #[arg(long, value_name = "BYTES", default_value_t = JOURNAL_BYTES_DEFAULT, value_parser = parse_journal_bytes, requires = "journal")]
    journal_max_bytes: u64,

    /// Threads that run the server. With 1, one thread does everything
    /// (accepting, the broker, every connection's reads and writes), so a
    /// line never crosses threads. With N > 1, N worker threads share the
    /// connections and the broker while the main thread accepts; that
    /// spends more CPU per message on hand-offs between threads, and pays
    /// only when one core cannot keep up with the load (docs/performance.md).
    #[arg(long, value_name = "N", default_value_t = THREADS_DEFAULT, value_parser = parse_threads)]
    threads: NonZeroUsize,

    /// Most rooms one connection may be in at once; one more `/join` gets
    /// `error: too many rooms`.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_rooms_per_connection, value_parser = parse_positive)]
    max_rooms_per_connection: usize,

    /// Most members a room may have; one more `/join` gets `error: room
    /// full`.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_room_members, value_parser = parse_positive)]
    max_room_members: usize,
}

/// `--journal-max-bytes` unless told otherwise: 1 GiB, about 25 million
/// short lines.
const JOURNAL_BYTES_DEFAULT: u64 = 1 << 30;

/// `--threads` unless told otherwise. One thread measured more deliveries
/// per server CPU-second than two, and more per wall second, on `dm` and
/// `fanout` side by side (docs/performance.md); two did better only on a
/// healthy pair's latency beside a flood, with the load tool on the same
/// two cores. More threads pay on a machine with cores to spare and a load
/// past what one core carries.
const THREADS_DEFAULT: NonZeroUsize = NonZeroUsize::MIN;

/// Descriptors kept back from `--max-connections`' default: the listener,
/// stdio, the runtime's own, and connections being refused (each needs a
/// descriptor for the moment it takes to tell it so). At most this many,
/// and at most a quarter of a small limit.
const DESCRIPTORS_KEPT_BACK_MAX: u64 = 64;

/// The descriptors `limit` leaves for connections.
fn descriptors_for_connections(limit: u64) -> u64 {
    limit - DESCRIPTORS_KEPT_BACK_MAX.min(limit / 4)
}

/// `--max-connections-per-address` defaults to this share of
/// `--max-connections`, so that no one address takes most of the slots.
const PER_ADDRESS_SHARE_DIVISOR: usize = 4;

/// The soft open-file limit, if there is one.
fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// A duration given on the command line in seconds; shown in `--help` as
/// its number of seconds, so the defaults can come from [`Config`].
#[derive(Clone, Copy, Debug, PartialEq)]
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.as_secs_f64())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect { address } => connect(address),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = match server_config(&args) {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("error: {problem}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let _logging = init_logging("info");
    let listen = |address: SocketAddr| {
        chinwag::server::listen(address).map_err(|error| {
            eprintln!("error: cannot listen on {address}: {error}");
            ExitCode::from(USAGE_ERROR)
        })
    };
    let line = match listen(args.listen) {
        Ok(listener) => listener,
        Err(status) => return status,
    };
    let irc = match args.irc_listen.map(listen).transpose() {
        Ok(listener) => listener,
        Err(status) => return status,
    };
    let listener = Listeners { line, irc };
    let stopped = match &args.journal {
        None => chinwag::server::run(args.threads, config, listener, ()),
        Some(path) => {
            let (journal, writer) = match Journal::create(path, &config, args.journal_max_bytes) {
                Ok(created) => created,
                Err(error) => {
                    eprintln!(
                        "error: cannot create the journal {}: {error}",
                        path.display()
                    );
                    return ExitCode::from(USAGE_ERROR);
                }
            };
            tracing::info!(path = %path.display(), max_bytes = args.journal_max_bytes, "journal recording");
            let stopped = chinwag::server::run(args.threads, config, listener, journal);
            writer.finish();
            stopped
        }
    };
    match stopped {
        Ok(Stopped::Gracefully) => ExitCode::SUCCESS,
        Ok(Stopped::Forced) => ExitCode::from(FORCED_SHUTDOWN),
        Err(error) => {
            eprintln!("error: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration the flags ask for, if it can work. `--max-queue` must
/// hold the longest line the server can send: with less, a client could be
/// cut as a slow consumer for one long message (or, with a tiny queue, could
/// not even be welcomed) through no fault of its own. This bound could be a
/// method of [`Config`], next to the defaults.
fn server_config(args: &ServeArgs) -> Result<Config, String> {
    let max_line = args.max_line;
    let longest_line =
        longest_server_line(max_line, args.irc_listen.is_some()).ok_or_else(|| {
            format!(
                "--max-line {max_line} is too large: the longest line the server could \
             send would be more than {} bytes",
                usize::MAX
            )
        })?;
    if args.max_queue < longest_line {
        return Err(format!(
            "--max-queue {} is too small for --max-line {max_line}: the server can send \
             lines of up to {longest_line} bytes (a {max_line}-byte message to a room, or \
             news naming someone, with names of {MAX_NAME_CHARS} four-byte characters), so \
             --max-queue must be at least {longest_line}",
            args.max_queue
        ));
    }
    let usable = descriptor_limit().map(descriptors_for_connections);
    let max_connections = match (args.max_connections, usable) {
        (Some(asked), Some(usable)) if asked as u64 > usable => {
            return Err(format!(
                "--max-connections {asked} cannot work: the open-file limit leaves \
                 descriptors for {usable} connections (raise it with ulimit -n)"
            ));
        }
        (Some(asked), _) => asked,
        (None, Some(0)) => {
            return Err(
                "the open-file limit is too low to serve anyone: raise it with \
                        ulimit -n"
                    .to_string(),
            );
        }
        (None, Some(usable)) => usize::try_from(usable).unwrap_or(usize::MAX),
        (None, None) => Config::default().max_connections,
    };
    let max_connections_per_address = args
        .max_connections_per_address
        .unwrap_or((max_connections / PER_ADDRESS_SHARE_DIVISOR).max(1));
    Ok(Config {
        max_line,
        max_queue: args.max_queue,
        write_timeout: args.write_timeout.0,
        slow_timeout: args.slow_timeout.0,
        shutdown_timeout: args.shutdown_timeout.0,
        max_connections,
        max_connections_per_address,
        login_timeout: args.login_timeout.0,
        max_rooms_per_connection: args.max_rooms_per_connection,
        max_room_members: args.max_room_members,
    })
}

/// The longest line, LF included, that a server with this `--max-line` can
/// send, or `None` if that many bytes cannot be counted in a `usize`. It is
/// the longer of a delivery of a `max_line`-byte text (an overestimate by
/// the few bytes of the `dest:` the text came with) and the longest reply
/// that names someone, each with a name of the widest characters; every
/// other reply is a fixed, shorter text.
fn longest_server_line(max_line: usize, irc: bool) -> Option<usize> {
    let name: String = std::iter::repeat_n(WIDEST_NAME_CHAR, MAX_NAME_CHARS).collect();
    let room = format!("#{name}");
    let longest_naming_reply = [
        render_welcome(&name),
        render_error(&ErrorReply::NameTaken(name.clone())),
        render_error(&ErrorReply::NoSuchPeer(name.clone())),
        render_error(&ErrorReply::NotInRoom(room.clone())),
        render_error(&ErrorReply::AlreadyInRoom(room.clone())),
        render_error(&ErrorReply::RoomFull(room.clone())),
        render_error(&ErrorReply::NoSuchRoom(room.clone())),
        render_joined(&room, &name),
        render_left(&room, &name, Departure::SlowConsumer),
        render_everyone_left(&room),
        render_renamed(&name, &name),
    ]
    .iter()
    .map(Line::len)
    .fold(0, usize::max);
    // IRC users' lines may carry up to a whole IRC line of text, whatever
    // --max-line says.
    let text_max = if irc {
        max_line.max(IRC_BODY_BYTES_MAX)
    } else {
        max_line
    };
    let longest_delivery = render_room_delivery(&name, &room, "")
        .len()
        .checked_add(text_max)?;
    let longest = longest_delivery.max(longest_naming_reply);
    if !irc {
        return Some(longest);
    }
    // An IRC user gets a line user's long message as several PRIVMSGs of
    // at most 512 bytes, each with the whole head again; a piece may end up
    // to 3 bytes short, so as not to cut a character.
    let one_empty_line = render_split(&irc_source(&name), "PRIVMSG", &room, "").len();
    let text_per_line = IRC_LINE_BYTES_MAX - one_empty_line - 3;
    let lines = max_line.div_ceil(text_per_line);
    let longest_irc = lines.checked_mul(one_empty_line)?.checked_add(max_line)?;
    Some(longest.max(longest_irc))
}

fn connect(address: SocketAddr) -> ExitCode {
    let _logging = init_logging("warn");
    match async_std::task::block_on(chinwag::client::run(address)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines that may wait for a stderr that has stopped taking them; past
/// this, lines are dropped. About 4 MiB of typical lines.
const LOG_LINES_WAITING_MAX: usize = 16 * 1024;

/// Logs to stderr; `RUST_LOG` overrides the default level. A thread of its
/// own writes the lines out, so a stderr that blocks (a full pipe, a stalled
/// log collector) never holds up the server, whose one thread by default
/// runs everything: past [`LOG_LINES_WAITING_MAX`] lines waiting, lines are
/// dropped instead. Lines still waiting are written when the returned guard
/// is dropped.
#[must_use = "dropping the guard stops the logging"]
fn init_logging(default_level: &str) -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let (stderr, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_WAITING_MAX)
        .lossy(true)
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    guard
}

fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|error| format!("not a HOST:PORT address ({error})"))?;
    addresses
        .next()
        .ok_or_else(|| "the host name resolves to no address".to_string())
}

fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(value) => Ok(value),
        Err(error) => Err(format!("not a positive whole number ({error})")),
    }
}

fn parse_threads(text: &str) -> Result<NonZeroUsize, String> {
    let threads = parse_positive(text)?;
    if threads > THREADS_MAX {
        return Err(format!("must be at most {THREADS_MAX}"));
    }
    Ok(NonZeroUsize::new(threads).expect("parse_positive refuses 0"))
}

fn parse_journal_bytes(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(bytes) if bytes < JOURNAL_BYTES_MIN => {
            Err(format!("must be at least {JOURNAL_BYTES_MIN}"))
        }
        Ok(bytes) => Ok(bytes),
        Err(error) => Err(format!("not a whole number of bytes ({error})")),
    }
}

fn parse_seconds(text: &str) -> Result<Seconds, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    Duration::try_from_secs_f64(seconds)
        .map(Seconds)
        .map_err(|_| "must be a non-negative number of seconds, not too large".to_string())
}

fn parse_positive_seconds(text: &str) -> Result<Seconds, String> {
    let seconds = parse_seconds(text)?;
    if seconds.0.is_zero() {
        return Err("must be more than 0 seconds".to_string());
    }
    Ok(seconds)
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
    fn value_parsers_name_the_problem() {
        assert!(parse_address("nonsense").is_err());
        assert_eq!(
            parse_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(parse_positive("0").unwrap_err(), "must be at least 1");
        assert!(parse_positive("-3").is_err());
        assert_eq!(parse_seconds("0.5").unwrap().0, Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_positive_seconds("0").is_err());
    }

    #[test]
    fn the_default_timeouts_are_the_configs() {
        let Command::Serve(args) = Cli::parse_from(["chinwag", "serve"]).command else {
            panic!("not serve");
        };
        assert_eq!(args.write_timeout.0, Config::default().write_timeout);
        assert_eq!(args.shutdown_timeout.0, Config::default().shutdown_timeout);
        // Every default round-trips through its --help text.
        let shown = Seconds(Duration::from_millis(1500)).to_string();
        assert_eq!(
            parse_seconds(&shown).unwrap().0,
            Duration::from_millis(1500)
        );
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let command = Cli::try_parse_from(["chinwag", "serve"].iter().chain(flags))
            .expect("flags parse")
            .command;
        let Command::Serve(args) = command else {
            panic!("not serve");
        };
        args
    }

    #[test]
    fn the_longest_server_line_is_a_delivery_or_a_reply_naming_someone() {
        let name: String = std::iter::repeat_n(WIDEST_NAME_CHAR, MAX_NAME_CHARS).collect();
        assert!(chinwag::protocol::is_valid_name(&name));
        assert_eq!(name.len(), 128);
        // "from " + name + " to #" + name + ": " + text + "\n"
        assert_eq!(
            longest_server_line(8192, false),
            Some(5 + 128 + 5 + 128 + 2 + 8192 + 1)
        );
        // "#" + name + ": " + name + " left (slow consumer)\n" outgrows a
        // tiny delivery.
        assert_eq!(longest_server_line(1, false), Some(1 + 128 + 2 + 128 + 22));
        assert_eq!(
            longest_server_line(usize::MAX - 269, false),
            Some(usize::MAX)
        );
        assert_eq!(longest_server_line(usize::MAX - 268, false), None);
        assert_eq!(longest_server_line(usize::MAX, false), None);
        // With IRC: a 510-byte IRC text to a line user whatever --max-line,
        // and a line user's text to an IRC user in 512-byte lines that each
        // carry a head of ":" + source + " PRIVMSG " + room + " :" (406
        // bytes with the widest names), so 101 bytes of text at worst.
        assert_eq!(longest_server_line(1, true), Some(269 + 510));
        assert_eq!(
            longest_server_line(8192, true),
            Some(8192usize.div_ceil(101) * 408 + 8192)
        );
        let room = format!("#{name}");
        for text in ["x".repeat(8192), "\u{1D400}".repeat(2048)] {
            let irc = render_split(&irc_source(&name), "PRIVMSG", &room, &text);
            assert!(irc.len() <= longest_server_line(8192, true).unwrap());
        }
        // The replies that name nobody are shorter than any bound.
        for reply in [
            ErrorReply::InvalidName,
            ErrorReply::ShuttingDown,
            ErrorReply::Frame(chinwag::codec::FrameError::LineTooLong),
            ErrorReply::Frame(chinwag::codec::FrameError::InvalidUtf8),
            ErrorReply::Malformed(chinwag::protocol::MessageError::MissingColon),
            ErrorReply::Malformed(chinwag::protocol::MessageError::EmptyDestination),
            ErrorReply::Malformed(chinwag::protocol::MessageError::InvalidDestination),
        ] {
            assert!(render_error(&reply).len() < longest_server_line(1, false).unwrap());
        }
    }

    #[test]
    fn connection_limits_default_from_the_descriptor_limit() {
        let config = server_config(&serve_args(&[])).unwrap();
        let limit = descriptor_limit().expect("this machine sets an open-file limit");
        assert_eq!(
            config.max_connections as u64,
            descriptors_for_connections(limit)
        );
        assert_eq!(
            config.max_connections_per_address,
            config.max_connections / 4
        );
        let asked = serve_args(&[
            "--max-connections",
            "10",
            "--max-connections-per-address",
            "3",
        ]);
        let config = server_config(&asked).unwrap();
        assert_eq!(
            (config.max_connections, config.max_connections_per_address),
            (10, 3)
        );
        let too_many = (descriptors_for_connections(limit) + 1).to_string();
        assert_eq!(
            descriptors_for_connections(48),
            36,
            "a quarter of a small limit"
        );
        assert_eq!(descriptors_for_connections(20_000), 19_936);
        let problem = server_config(&serve_args(&["--max-connections", &too_many])).unwrap_err();
        assert!(problem.contains("ulimit -n"), "{problem}");
    }

    #[test]
    fn a_queue_too_small_for_the_longest_line_is_refused() {
        for max_queue in ["8", "4096", "8460"] {
            let problem = server_config(&serve_args(&["--max-queue", max_queue])).unwrap_err();
            assert!(
                problem.contains("--max-queue") && problem.contains("--max-line 8192"),
                "{problem}"
            );
            assert!(problem.contains("at least 8461"), "{problem}");
        }
        let config = server_config(&serve_args(&["--max-queue", "8461"])).unwrap();
        assert_eq!(config.max_queue, 8461);
        let defaults = server_config(&serve_args(&[])).unwrap();
        let derived = Config {
            max_connections: defaults.max_connections,
            max_connections_per_address: defaults.max_connections_per_address,
            ..Config::default()
        };
        assert_eq!(defaults, derived, "the flags' defaults are Config's");
        let problem =
            server_config(&serve_args(&["--max-line", &usize::MAX.to_string()])).unwrap_err();
        assert!(problem.starts_with("--max-line"), "{problem}");
    }
}
