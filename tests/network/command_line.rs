//! PROTOCOL.md "Command line": flags, help, and clear errors for bad input.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::Server;

/// How long one command may run: a refused flag must stop `serve` at
/// start-up, not leave it serving.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Runs chinwag, killing it if it is still running after [`EXIT_LIMIT`].
fn chinwag(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chinwag"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chinwag");
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > EXIT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chinwag {args:?} was still running after {EXIT_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect chinwag's output")
}

fn assert_usage_error(args: &[&str], mentions: &str) {
    let output = chinwag(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(mentions), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn an_unparsable_address_is_a_usage_error() {
    assert_usage_error(&["serve", "--listen", "not-an-address"], "--listen");
    assert_usage_error(&["connect", "127.0.0.1:notaport"], "ADDR");
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_usage_error(&["serve", "--listen", &addr], "cannot listen on");
}

#[test]
fn zero_limits_are_refused() {
    assert_usage_error(&["serve", "--max-line", "0"], "--max-line");
    assert_usage_error(&["serve", "--max-queue", "0"], "--max-queue");
    assert_usage_error(&["serve", "--write-timeout", "0"], "--write-timeout");
    assert_usage_error(&["serve", "--shutdown-timeout=-1"], "--shutdown-timeout");
    assert_usage_error(&["serve", "--max-line", "lots"], "--max-line");
}

#[test]
fn a_queue_too_small_for_the_longest_line_is_refused() {
    // The longest line a server with the default --max-line 8192 sends is
    // "from " + a 32-character name of 4-byte characters + " to #" + such
    // a name + ": " + 8192 bytes + "\n": 8461 bytes. 8 bytes cannot even
    // hold a welcome.
    for max_queue in ["8", "4096", "8460"] {
        let args = ["serve", "--listen", "127.0.0.1:0", "--max-queue", max_queue];
        assert_usage_error(&args, "--max-queue");
        assert_usage_error(&args, "--max-line 8192");
        assert_usage_error(&args, "at least 8461");
    }
    // Room news naming someone, "#" + such a name + ": " + such a name +
    // " left (slow consumer)\n" (281 bytes), is the longest line when lines
    // are short.
    let args = ["serve", "--listen", "127.0.0.1:0", "--max-line", "8"];
    assert_usage_error(
        &[&args[..], &["--max-queue", "280"]].concat(),
        "at least 281",
    );
}

#[test]
fn the_smallest_queue_allowed_carries_the_longest_message() {
    let server = Server::start(&["--max-queue", "8461"]);
    // Two names, and a room, of 32 four-byte characters each.
    let name = "\u{1D400}".repeat(32);
    let other = "\u{1D401}".repeat(32);
    let room = format!("#{}", "\u{1D402}".repeat(32));
    let mut widest = server.login(&name);
    let mut member = server.login(&other);
    widest.send(&format!("/join {room}"));
    widest.expect(&format!("{room}: {name} joined"));
    member.send(&format!("/join {room}"));
    widest.expect(&format!("{room}: {other} joined"));
    member.expect(&format!("{room}: {other} joined"));
    // One line of exactly --max-line bytes, to the room.
    let head = format!("{room}: ");
    let text = "m".repeat(8192 - head.len());
    widest.send(&format!("{head}{text}"));
    member.expect(&format!("from {name} to {room}: {text}"));
    widest.send(&format!("{room}: still here"));
    member.expect(&format!("from {name} to {room}: still here"));
}

#[test]
fn limits_past_what_can_be_counted_are_refused() {
    let too_long = usize::MAX.to_string();
    for (flag, value) in [
        ("--max-line", too_long.as_str()),
        ("--shutdown-timeout", "1e300"),
        ("--shutdown-timeout", "inf"),
        ("--shutdown-timeout", "NaN"),
        ("--write-timeout", "1e300"),
        ("--write-timeout", "1e-12"),
    ] {
        assert_usage_error(&["serve", "--listen", "127.0.0.1:0", flag, value], flag);
    }
}

#[test]
fn serve_help_explains_every_flag_and_its_default() {
    let output = chinwag(&["serve", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "--listen <ADDR>",
        "[default: 127.0.0.1:8080]",
        "--max-line <BYTES>",
        "[default: 8192]",
        "--max-queue <BYTES>",
        "[default: 1048576]",
        "--write-timeout <SECS>",
        "[default: 30]",
        "--shutdown-timeout <SECS>",
        "[default: 5]",
    ] {
        assert!(help.contains(expected), "missing {expected:?} in:\n{help}");
    }
}

#[test]
fn top_level_help_lists_the_subcommands() {
    let output = chinwag(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("serve") && help.contains("connect"), "{help}");
}

#[test]
fn a_journal_is_never_written_over_an_existing_file() {
    let dir = std::env::temp_dir().join(format!("chinwag-cli-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("existing");
    std::fs::write(&path, b"an earlier incident").unwrap();
    let path = path.to_str().unwrap();
    let listen = ["serve", "--listen", "127.0.0.1:0", "--journal"];
    assert_usage_error(
        &[&listen[..], &[path]].concat(),
        "cannot create the journal",
    );
    assert_eq!(std::fs::read(path).unwrap(), b"an earlier incident");
    let cap = ["--journal-max-bytes", "100"];
    let fresh = dir.join("fresh");
    let fresh = fresh.to_str().unwrap();
    assert_usage_error(&[&listen[..], &[fresh], &cap].concat(), "at least 4096");
    assert_usage_error(&["serve", "--journal-max-bytes", "8192"], "--journal");
}

#[test]
fn thread_counts_past_the_limits_are_refused() {
    assert_usage_error(&["serve", "--threads", "0"], "--threads");
    assert_usage_error(&["serve", "--threads", "1025"], "at most 1024");
    assert_usage_error(&["serve", "--threads", "many"], "--threads");
}

/// The names of the server's threads, from /proc.
#[cfg(target_os = "linux")]
fn thread_names(server: &Server) -> Vec<String> {
    let tasks = format!("/proc/{}/task", server.pid());
    let mut names: Vec<String> = std::fs::read_dir(tasks)
        .unwrap()
        .map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap())
        .map(|name| name.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
#[cfg(target_os = "linux")]
fn threads_sets_how_many_workers_run_the_server_and_the_order_holds_on_any() {
    for (flags, workers) in [(&[][..], 0), (&["--threads", "3"][..], 3)] {
        let server = Server::start(flags);
        let mut bob = server.login("bob");
        let mut alice = server.login("alice");
        let names = thread_names(&server);
        let running = names
            .iter()
            .filter(|name| name.starts_with("worker-"))
            .count();
        assert_eq!(running, workers, "{flags:?}: threads {names:?}");
        // Lines from one sender arrive in the order sent, whichever
        // threads read, process and write them.
        for seq in 0..500 {
            alice.send(&format!("bob: {seq}"));
        }
        for seq in 0..500 {
            bob.expect(&format!("from alice: {seq}"));
        }
    }
}
