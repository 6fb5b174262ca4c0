//! The `chinwag` command line: `serve` runs the server, `connect` the client,
//! `bench` the load generator.

mod bench;

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use chinwag::config::Config;

/// Exit status for bad command-line input or a server that cannot start,
/// the same status clap uses for usage errors.
const USAGE_ERROR: u8 = 2;

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
    Connect {
        /// Server address to connect to.
        #[arg(value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_address)]
        address: SocketAddr,
    },
    /// Load a server over loopback with a scenario, verify every delivery,
    /// and print throughput, latency, server CPU and memory.
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The bound address is
    /// printed on stdout as `chinwag listening on ADDR`.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080", value_parser = parse_address)]
    listen: SocketAddr,

    /// Longest line accepted, in bytes, not counting the LF or CR LF. Longer
    /// lines get `error: line too long` and are skipped without being buffered.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_line, value_parser = parse_positive)]
    max_line: usize,

    /// Bytes that may queue up for one connection. A connection whose queue
    /// would grow past this is disconnected as a slow consumer.
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_queue, value_parser = parse_positive)]
    max_queue: usize,

    /// Seconds a connection with data queued may accept no bytes before it
    /// is closed as a dead peer. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_positive_seconds)]
    write_timeout: Duration,

    /// Seconds after SIGINT/SIGTERM within which the server exits, even if
    /// some clients have not read everything yet. Fractions are allowed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    shutdown_timeout: Duration,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect { address } => connect(address),
        Command::Bench(args) => bench::run(args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging("info");
    let config = Config {
        max_line: args.max_line,
        max_queue: args.max_queue,
        write_timeout: args.write_timeout,
        shutdown_timeout: args.shutdown_timeout,
    };
    async_std::task::block_on(async {
        let listener = match async_std::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("error: cannot listen on {}: {error}", args.listen);
                return ExitCode::from(USAGE_ERROR);
            }
        };
        match chinwag::server::run(config, listener).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: server failed: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

fn connect(address: SocketAddr) -> ExitCode {
    init_logging("warn");
    match async_std::task::block_on(chinwag::client::run(address)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {address}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` overrides the default level.
fn init_logging(default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
        Err(error) => Err(format!("not a whole number of bytes ({error})")),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| "must be a non-negative number of seconds, not too large".to_string())
}

fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    let duration = parse_seconds(text)?;
    if duration.is_zero() {
        return Err("must be more than 0 seconds".to_string());
    }
    Ok(duration)
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
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("NaN").is_err());
        assert!(parse_positive_seconds("0").is_err());
    }
}
