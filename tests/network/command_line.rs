//! PROTOCOL.md "Command line": flags, help, and clear errors for bad input.

use std::net::TcpListener;
use std::process::{Command, Output};

fn chinwag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chinwag"))
        .args(args)
        .output()
        .expect("run chinwag")
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
