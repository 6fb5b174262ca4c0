//! `chinwag connect` on a terminal: a line editor, with what the server
//! sends printed above the line being typed.
//!
//! [`super::run`] comes here only when both stdin and stdout are terminals
//! (and rustyline can drive them); otherwise the client stays plain line in,
//! line out. Three threads share the work:
//!
//! ```text
//! editor thread (blocking)     async task (async-std)          printer thread (blocking)
//! rustyline readline --line--> send_typed --> server
//!                              show_replies <-- server
//!                              Escaper, whole lines --text--> ExternalPrinter::print
//! ```
//!
//! - The editor thread runs rustyline's `readline` with a prompt saying who
//!   you are (`name> `, then `alice> ` once the server said `welcome
//!   alice`), keeps an in-memory history, and hands each line to the async
//!   task through a bounded channel. `/quit` or Ctrl-D on an empty line ends
//!   the session; Ctrl-C discards the line being typed and gives a fresh
//!   prompt, as a shell does. Every other line, `/join #rust` included, goes
//!   to the server as typed.
//! - The async task sends those lines, and reads the server. What it reads
//!   is escaped by the same [`Escaper`] as in plain mode, gathered into
//!   whole lines (rustyline ends every print with a line break), and handed
//!   to the printer thread through a bounded channel; a full channel stops
//!   the reads, so a terminal that cannot keep up slows the server's
//!   sending to this client (its flow control), not the client's memory.
//! - The printer thread calls rustyline's external printer, which prints
//!   above the prompt and redraws the prompt and the line being typed.
//!
//! The session ends when the user quits (the connection is half-closed and
//! the client prints what the server still sends until it closes, for at
//! most [`QUIT_WAIT`]) or when the server closes. Then the terminal's mode
//! is restored, even if the editor thread is still in `readline`, and the
//! process exits.

use std::io::{self as std_io, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use async_std::channel::{self, Receiver, Sender};
use async_std::io::prelude::*;
use async_std::net::TcpStream;
use futures::{FutureExt, select_biased};
use rustix::termios::{OptionalActions, Termios, tcgetattr, tcsetattr};
use rustyline::error::ReadlineError;
use rustyline::history::MemHistory;
use rustyline::{Config, Editor, ExternalPrinter};

use super::{CLIENT_PRINT_CHUNK_BYTES, Error, Escaper};

/// Lines typed but not yet sent; the editor waits when this many are queued.
const TYPED_QUEUE: usize = 16;

/// Pieces of text read but not yet printed; reading the server waits when
/// this many are queued. Each is at most about [`HELD_TEXT_BYTES`] plus one
/// read's escaped text.
const PRINT_QUEUE: usize = 32;

/// The most escaped text held back waiting for the end of its line. A line
/// longer than this (no chinwag server sends one with its default limits)
/// is printed in pieces, each on a line of its own.
const HELD_TEXT_BYTES: usize = CLIENT_PRINT_CHUNK_BYTES;

/// Lines kept in the in-session history.
const HISTORY_LINES: usize = 1000;

/// A typed line longer than this is sent but not kept in the history: the
/// server's default line limit, so the history holds at most about 8 MiB.
const HISTORY_LINE_BYTES: usize = 8192;

/// How long, after a line is sent before login, the next prompt waits for
/// the server's answer (`welcome NAME` or an error), so that it can show
/// the name. A server slower than this leaves `name> ` until the next line.
const LOGIN_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// How long after `/quit` or Ctrl-D the client waits for the server to
/// close the connection, printing what it still sends.
const QUIT_WAIT: Duration = Duration::from_secs(3);

/// How long the client waits for the last text to be printed before it
/// exits.
const PRINT_DRAIN_WAIT: Duration = Duration::from_secs(2);

/// The line that ends the session instead of being sent.
const QUIT: &str = "/quit";

/// The prompt before login.
const LOGIN_PROMPT: &str = "name> ";

type LineEditor = Editor<(), MemHistory>;

/// rustyline's printer for this platform, whose type it does not name.
type Printer = Box<dyn ExternalPrinter + Send>;

/// The terminal, ready for a session: a line editor, its external printer,
/// and the terminal mode to put back at the end.
pub(super) struct Terminal {
    editor: LineEditor,
    printer: Printer,
    saved_mode: Termios,
}

impl Terminal {
    /// Sets up the line editor, or `None` if rustyline cannot drive this
    /// terminal (`TERM=dumb`, say): then the client stays plain.
    pub(super) fn open() -> Option<Terminal> {
        let saved_mode = tcgetattr(std_io::stdin()).ok()?;
        let config = Config::builder()
            .max_history_size(HISTORY_LINES)
            .ok()?
            .history_ignore_dups(true)
            .ok()?
            .auto_add_history(false)
            // Pasted lines arrive as typed lines, one each; and nothing but
            // the termios mode is left to restore if the session ends
            // while a line is being typed.
            .bracketed_paste(false)
            .build();
        let mut editor = LineEditor::with_history(config, MemHistory::new()).ok()?;
        let printer = Box::new(editor.create_external_printer().ok()?);
        Some(Terminal {
            editor,
            printer,
            saved_mode,
        })
    }
}

/// What the editor thread hands the async task.
enum Typed {
    Line(String),
    Failed(std_io::Error),
}

/// What the three threads share about the session.
#[derive(Default)]
struct Session {
    state: Mutex<State>,
    /// Signalled when the server answers a login line.
    answered: Condvar,
}

#[derive(Default)]
struct State {
    /// The name the server welcomed, escaped as it was printed.
    name: Option<String>,
    /// How many lines the server sent before login that answer a login
    /// line (`welcome ...` or `error: ...`).
    answers: u64,
    /// Whether the editor thread is in `readline`, the terminal in its mode.
    reading: bool,
}

impl Session {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn prompt(&self) -> String {
        match &self.state().name {
            Some(name) => format!("{name}> "),
            None => LOGIN_PROMPT.to_owned(),
        }
    }

    /// Notes a line the server sent (escaped, without its LF): a welcome,
    /// an answer to a login line, or a rename of ours (`/nick`).
    fn saw_line(&self, line: &str) {
        let mut state = self.state();
        if let Some(name) = &state.name {
            // Names hold no space, and only one connection holds a name, so
            // `renamed <our name> to ...` is ours.
            let renamed = line
                .strip_prefix("renamed ")
                .and_then(|r| r.split_once(" to "));
            if let Some((old, new)) = renamed
                && old == name
            {
                state.name = Some(new.to_owned());
            }
            return;
        }
        if let Some(name) = line.strip_prefix("welcome ") {
            state.name = Some(name.to_owned());
        } else if !line.starts_with("error: ") {
            return;
        }
        state.answers += 1;
        self.answered.notify_all();
    }

    /// Waits at most `limit` for the server to answer once more than
    /// `answers` times, or to have welcomed us.
    fn wait_for_answer(&self, answers: u64, limit: Duration) {
        let state = self.state();
        let _ = self
            .answered
            .wait_timeout_while(state, limit, |state| {
                state.name.is_none() && state.answers == answers
            })
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Runs a session on `terminal` with the server at `address`.
pub(super) async fn run(terminal: Terminal, address: SocketAddr) -> Result<(), Error> {
    let server = |error| Error::Server(address, error);
    let stream = TcpStream::connect(address).await.map_err(server)?;
    stream.set_nodelay(true).map_err(server)?;

    let Terminal {
        editor,
        printer,
        saved_mode,
    } = terminal;
    let session = Arc::new(Session::default());
    let _restore = RestoreMode {
        saved_mode,
        session: session.clone(),
    };
    let (typed, typed_lines) = channel::bounded(TYPED_QUEUE);
    let (shown, shown_text) = channel::bounded(PRINT_QUEUE);
    // Kept until the session ends: the editor owns the other end of the
    // printer's hand-off, so dropping it early could fail a print.
    let editor = {
        let session = session.clone();
        thread::Builder::new()
            .name("chinwag-editor".into())
            .spawn(move || edit(editor, &session, &typed))
            .map_err(Error::Stdin)?
    };
    let printing = thread::Builder::new()
        .name("chinwag-printer".into())
        .spawn(move || print(printer, &shown_text))
        .map_err(Error::Stdout)?;

    let to_server = send_typed(&stream, address, typed_lines).fuse();
    let from_server = show_replies(&stream, address, &session, shown).fuse();
    futures::pin_mut!(to_server, from_server);
    let mut result = select_biased! {
        result = from_server => result,
        result = to_server => match result {
            Ok(()) => async_std::future::timeout(QUIT_WAIT, from_server)
                .await
                .unwrap_or(Ok(())),
            Err(error) => Err(error),
        },
    };
    // `from_server` is done or dropped, so the printer's queue is closed:
    // let it print what is left.
    let deadline = Instant::now() + PRINT_DRAIN_WAIT;
    while !printing.is_finished() && Instant::now() < deadline {
        async_std::task::sleep(Duration::from_millis(10)).await;
    }
    if printing.is_finished()
        && let Ok(Err(error)) = printing.join()
    {
        result = result.and(Err(Error::Stdout(error)));
    }
    drop(editor);
    result
}

/// Puts the terminal's mode back when the session ends, for when the editor
/// thread is still in `readline` (the server closed): the process exits
/// without waiting for it. (After `/quit`, rustyline has put it back and
/// this changes nothing.)
struct RestoreMode {
    saved_mode: Termios,
    session: Arc<Session>,
}

impl Drop for RestoreMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std_io::stdin(), OptionalActions::Now, &self.saved_mode);
        if self.session.state().reading {
            // The cursor is on the prompt line: leave it for the shell.
            let _ = std_io::stdout().write_all(b"\n");
            let _ = std_io::stdout().flush();
        }
    }
}

/// The editor thread: reads lines until `/quit`, Ctrl-D or a failure, and
/// hands them to the async task. Returns the editor so that it outlives
/// the session.
fn edit(mut editor: LineEditor, session: &Session, typed: &Sender<Typed>) -> LineEditor {
    loop {
        let prompt = session.prompt();
        session.state().reading = true;
        let read = editor.readline(&prompt);
        session.state().reading = false;
        let line = match read {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(ReadlineError::Io(error)) => {
                let _ = typed.send_blocking(Typed::Failed(error));
                break;
            }
            Err(error) => {
                let _ = typed.send_blocking(Typed::Failed(std_io::Error::other(error)));
                break;
            }
        };
        if line.trim() == QUIT {
            break;
        }
        if line.len() <= HISTORY_LINE_BYTES && !line.trim().is_empty() {
            let _ = editor.add_history_entry(line.as_str());
        }
        // A line before login is a login line: wait for its answer, so the
        // next prompt can show the name.
        let login = {
            let state = session.state();
            (state.name.is_none() && !line.trim().is_empty()).then_some(state.answers)
        };
        if typed.send_blocking(Typed::Line(line)).is_err() {
            break;
        }
        if let Some(answers) = login {
            session.wait_for_answer(answers, LOGIN_ANSWER_WAIT);
        }
    }
    editor
}

/// The printer thread: prints each piece of text above the prompt.
fn print(mut printer: Printer, text: &Receiver<String>) -> std_io::Result<()> {
    while let Ok(text) = text.recv_blocking() {
        printer.print(text).map_err(|error| match error {
            ReadlineError::Io(error) => error,
            error => std_io::Error::other(error),
        })?;
    }
    Ok(())
}

/// Sends each typed line with an LF; when the editor is done, half-closes
/// the connection.
async fn send_typed(
    mut stream: &TcpStream,
    address: SocketAddr,
    typed: Receiver<Typed>,
) -> Result<(), Error> {
    let server = |error| Error::Server(address, error);
    while let Ok(typed) = typed.recv().await {
        match typed {
            Typed::Line(mut line) => {
                line.push('\n');
                stream.write_all(line.as_bytes()).await.map_err(server)?;
            }
            Typed::Failed(error) => return Err(Error::Stdin(error)),
        }
    }
    stream.shutdown(std::net::Shutdown::Write).map_err(server)
}

/// Reads the server until it closes, handing whole escaped lines to the
/// printer thread.
async fn show_replies(
    mut stream: &TcpStream,
    address: SocketAddr,
    session: &Session,
    shown: Sender<String>,
) -> Result<(), Error> {
    let mut chunk = vec![0; CLIENT_PRINT_CHUNK_BYTES];
    let mut escaper = Escaper::default();
    let mut lines = Lines::default();
    loop {
        let read = stream
            .read(&mut chunk)
            .await
            .map_err(|error| Error::Server(address, error))?;
        let text = if read == 0 {
            let pushed = lines.push(&escaper.finish());
            pushed.into_iter().chain(lines.finish()).collect()
        } else {
            Vec::from_iter(lines.push(&escaper.push(&chunk[..read])))
        };
        for piece in text {
            for line in piece.lines() {
                session.saw_line(line);
            }
            if shown.send(piece).await.is_err() {
                // The printer failed; `run` reports why.
                return Ok(());
            }
        }
        if read == 0 {
            return Ok(());
        }
    }
}

/// Gathers escaped text into whole lines, holding at most
/// [`HELD_TEXT_BYTES`] of a line whose end has not arrived.
#[derive(Debug, Default)]
struct Lines {
    held: String,
}

impl Lines {
    /// The text ready to print after `text`: whole lines, each piece ending
    /// with an LF, or a piece of an overlong line.
    fn push(&mut self, text: &str) -> Option<String> {
        self.held.push_str(text);
        if self.held.len() >= HELD_TEXT_BYTES {
            return Some(std::mem::take(&mut self.held));
        }
        let end = self.held.rfind('\n')? + 1;
        let rest = self.held.split_off(end);
        Some(std::mem::replace(&mut self.held, rest))
    }

    /// What is left at the end of the stream.
    fn finish(&mut self) -> Option<String> {
        Some(std::mem::take(&mut self.held)).filter(|held| !held.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_printed_whole() {
        let mut lines = Lines::default();
        assert_eq!(lines.push("welcome al"), None);
        assert_eq!(lines.push("ice\nfrom b"), Some("welcome alice\n".into()));
        assert_eq!(
            lines.push("ob: hi\nfrom bob: a\nfrom"),
            Some("from bob: hi\nfrom bob: a\n".into())
        );
        assert_eq!(lines.finish(), Some("from".into()));
        assert_eq!(lines.finish(), None);
    }

    #[test]
    fn an_overlong_line_is_printed_in_pieces() {
        let mut lines = Lines::default();
        let long = "x".repeat(HELD_TEXT_BYTES - 1);
        assert_eq!(lines.push(&long), None);
        assert_eq!(lines.push("yz"), Some(format!("{long}yz")));
        assert_eq!(lines.push("\n"), Some("\n".into()));
    }

    #[test]
    fn the_prompt_shows_the_welcomed_name() {
        let session = Session::default();
        assert_eq!(session.prompt(), "name> ");
        session.saw_line("error: name taken: alice");
        assert_eq!(session.prompt(), "name> ");
        assert_eq!(session.state().answers, 1);
        session.saw_line("welcome alice2");
        assert_eq!(session.prompt(), "alice2> ");
        // Later welcomes cannot rename us, nor others' renames.
        session.saw_line("welcome mallory");
        session.saw_line("from bob: welcome x");
        session.saw_line("renamed bob to alice3");
        assert_eq!(session.prompt(), "alice2> ");
        // Our own `/nick` does.
        session.saw_line("renamed alice2 to alicia");
        assert_eq!(session.prompt(), "alicia> ");
    }

    #[test]
    fn waiting_for_a_login_answer_is_bounded() {
        let session = Session::default();
        let start = Instant::now();
        session.wait_for_answer(0, Duration::from_millis(50));
        assert!(start.elapsed() >= Duration::from_millis(50));
        session.saw_line("welcome a");
        let start = Instant::now();
        session.wait_for_answer(0, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
