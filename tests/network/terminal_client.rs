//! `chinwag connect` on a terminal, as a person sees it: the client runs in
//! a detached tmux session of a fixed size, keys are typed with
//! `send-keys`, and the screen is read with `capture-pane`. Skipped, with
//! a printed reason, where tmux is not installed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{Server, eventually};

/// How long the screen may take to show what is awaited.
const SCREEN_LIMIT: Duration = Duration::from_secs(20);

/// A tmux server of its own (its own socket, no configuration file) running
/// one command in a detached session; killed, and its socket removed, when
/// dropped, so a failing test leaves nothing behind.
struct Tmux {
    socket: String,
    /// The socket's file, which tmux leaves behind.
    socket_path: Option<PathBuf>,
    /// Where the command's exit status is written when it exits. tmux's own
    /// record of it (`pane_dead`) can lag: under load a client that had
    /// exited was seen still unreaped by tmux 20 s later.
    status_path: PathBuf,
}

impl Tmux {
    /// Starts `command` in a `width` x `height` pane, or `None`, with the
    /// reason printed, if tmux cannot be run.
    fn start(command: &[&str], width: u16, height: u16) -> Option<Tmux> {
        match Command::new("tmux").arg("-V").output() {
            Ok(output) if output.status.success() => {}
            _ => {
                eprintln!("skipped: tmux is not installed (it drives the terminal test)");
                return None;
            }
        }
        static SESSIONS: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "chinwag-test-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, Ordering::Relaxed)
        );
        let status_path = std::env::temp_dir().join(format!("{socket}.status"));
        let mut tmux = Tmux {
            socket,
            socket_path: None,
            status_path,
        };
        let (width, height) = (width.to_string(), height.to_string());
        let mut args = vec![
            "new-session",
            "-d",
            "-s",
            "test",
            "-x",
            &width,
            "-y",
            &height,
            "--",
            "sh",
            "-c",
            // Runs the command, then writes its status whole (`mv`).
            r#"status=$1; shift; "$@"; echo $? > "$status.part" && mv "$status.part" "$status""#,
            "sh",
        ];
        let status_path = tmux.status_path.to_str().expect("a UTF-8 temp path");
        args.push(status_path);
        args.extend(command);
        tmux.run(&args);
        let path = tmux
            .run(&["display-message", "-p", "#{socket_path}"])
            .stdout;
        tmux.socket_path = Some(PathBuf::from(String::from_utf8_lossy(&path).trim()));
        // Keep the pane once its command exits, so that a test failing
        // after an early exit can still show the screen.
        tmux.run(&["set-option", "-t", "test", "remain-on-exit", "on"]);
        Some(tmux)
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env("TERM", "xterm")
            .output()
            .expect("run tmux");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Types `text` as it is, without Enter.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "test", "-l", text]);
    }

    /// Presses a key by its tmux name (`Enter`, `C-c`).
    fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "test", key]);
    }

    /// The screen's lines, without trailing blanks.
    fn screen(&self) -> Vec<String> {
        let output = self.run(&["capture-pane", "-p", "-t", "test"]);
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim_end().to_owned())
            .collect()
    }

    /// Waits at most [`SCREEN_LIMIT`] for the screen to satisfy `shows`,
    /// and returns it; fails the test with the last screen otherwise.
    fn wait_for(&self, what: &str, shows: impl Fn(&[String]) -> bool) -> Vec<String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if shows(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < SCREEN_LIMIT,
                "the screen never showed {what}:\n{}",
                screen.join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits at most [`SCREEN_LIMIT`] for the pane's command to exit, and
    /// returns its exit status.
    fn wait_exit(&self) -> String {
        let start = Instant::now();
        loop {
            if let Ok(status) = std::fs::read_to_string(&self.status_path) {
                return status.trim().to_owned();
            }
            assert!(
                start.elapsed() < SCREEN_LIMIT,
                "the client did not exit:\n{}",
                self.screen().join("\n")
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(&self.status_path);
    }
}

/// Whether `screen` has a line that is exactly `line`.
fn has_line(screen: &[String], line: &str) -> bool {
    screen.iter().any(|shown| shown == line)
}

#[test]
fn an_incoming_line_is_printed_above_the_line_being_typed() {
    let server = Server::start(&[]);
    let address = server.addr.to_string();
    let Some(tmux) = Tmux::start(
        &[env!("CARGO_BIN_EXE_chinwag"), "connect", &address],
        100,
        20,
    ) else {
        return;
    };

    tmux.wait_for("the login prompt", |screen| has_line(screen, "name>"));
    tmux.type_text("alice");
    tmux.press("Enter");
    tmux.wait_for("the welcome and a prompt with the name", |screen| {
        has_line(screen, "welcome alice") && has_line(screen, "alice>")
    });

    let typed = "alice> bob: I am typing a long sent";
    tmux.type_text("bob: I am typing a long sent");
    tmux.wait_for("the partial line", |screen| has_line(screen, typed));

    let mut bob = server.login("bob");
    bob.send("alice: interrupting you");
    let screen = tmux.wait_for("bob's message", |screen| {
        has_line(screen, "from bob: interrupting you")
    });
    let message = screen
        .iter()
        .position(|line| line == "from bob: interrupting you");
    let prompt = screen.iter().position(|line| line == typed);
    assert!(
        message.is_some() && prompt > message,
        "the message should be above the intact partial line:\n{}",
        screen.join("\n")
    );

    tmux.type_text("ence");
    tmux.press("Enter");
    bob.expect("from alice: I am typing a long sentence");

    // A line starting with `/` goes to the server as typed.
    tmux.type_text("/join #rust");
    tmux.press("Enter");
    tmux.wait_for("the server's answer to /join", |screen| {
        screen
            .iter()
            .any(|line| line.starts_with("#rust: alice joined"))
    });

    tmux.type_text("/quit");
    tmux.press("Enter");
    assert_eq!(
        tmux.wait_exit(),
        "0",
        "the client should exit with status 0"
    );
    assert!(
        eventually(200, || bob.probe_is_gone("bob", "alice")),
        "alice's connection should be closed after /quit"
    );
}
