//! The production server: the shell on async-std's runtime, real TCP and
//! signals.
//!
//! This file is the production runtime adapter (ARCHITECTURE.md): it fills
//! in the [`Runtime`] seam with async-std's timers, an executor on the
//! number of threads `--threads` asks for, and the clock; binds the
//! listener (with a backlog deep enough for a burst of connects), turns it
//! into a stream of configured sockets (TCP_NODELAY, keepalive,
//! TCP_USER_TIMEOUT, see `tcp.rs`) and turns SIGINT/SIGTERM into the
//! shutdown future; a second signal abandons the drain.
//!
//! async-std is a facade over two crates, and where the facade hides what
//! the server needs, this file and `tcp.rs` use them directly: async-io,
//! its reactor (sockets, registered for readiness), and async-executor,
//! its executor (async-std chooses the thread count itself, and has no
//! stable way to run tasks on the calling thread). async-std is
//! discontinued upstream and these two crates are smol's; moving to smol
//! or tokio means rewriting these two files and nothing else.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use async_io::Async;
use futures::channel::oneshot;
use futures::future::{self, BoxFuture};
use futures::{FutureExt, Stream, StreamExt, pin_mut, select_biased};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_async_std::Signals;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::news::Dialect;
use crate::shell::{self, Accepted, Observer, Runtime};
use crate::tcp;
use crate::time::Time;

/// Connections the kernel completes and holds for the accept loop. std's
/// 128 made a burst of 1,000 connects wait for SYN retransmits (5 s); the
/// kernel caps this at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG_CONNECTIONS: i32 = 1024;

/// Keepalive probes start after this much silence, so a vanished peer is
/// reported by the OS within a few minutes even when nothing is written.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// TCP_USER_TIMEOUT is this many write timeouts. It is a backstop for what
/// the broker cannot see (lines already in kernel buffers when a peer
/// freezes), so it is looser than the broker's own rule, which decides the
/// ordinary cases with a reason in the log. It must be: the kernel counts
/// a window that reopens by less than one segment as no progress, and on
/// loopback, where a segment can be 64 KiB, a small-window reader that
/// reads steadily but slowly looks stuck to it for a while.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT_PER_WRITE_TIMEOUT: u32 = 2;

/// The range TCP_USER_TIMEOUT can express: it counts whole milliseconds,
/// 0 means the system default (minutes), and Linux refuses values past
/// `i32::MAX`.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT_MIN: Duration = Duration::from_millis(1);
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
const TCP_USER_TIMEOUT_MAX: Duration = Duration::from_millis(i32::MAX as u64);

/// How long to pause accepting after an error such as running out of file
/// descriptors, instead of spinning on it.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// While accepting keeps failing (every [`ACCEPT_ERROR_BACKOFF`]), at most
/// one warning per this interval: the first failure, then a summary.
const ACCEPT_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The most threads `--threads` may ask for: past the cores a machine has,
/// more threads only add hand-offs between them.
pub const THREADS_MAX: usize = 1024;

/// async-std's timers, an executor and the monotonic clock: a handle to
/// the process's one runtime, which [`run`] starts.
///
/// The handle is zero-sized on purpose. Every connection's future holds
/// copies of its runtime (the connection's, its writer's), so each byte
/// here costs several per idle connection.
#[derive(Clone, Copy, Debug)]
pub struct AsyncStd(());

/// What [`AsyncStd`] handles: set once, by [`AsyncStd::start`].
static STARTED: OnceLock<Started> = OnceLock::new();

#[derive(Debug)]
struct Started {
    /// Where [`Runtime::now`] counts from.
    origin: Instant,
    executor: Executor,
}

/// Where [`AsyncStd`] runs the tasks it is given (`--threads`).
#[derive(Debug)]
enum Executor {
    /// On the thread that called [`run`], beside the accept loop: one
    /// thread does everything, so a line never crosses threads and no
    /// hand-off ever wakes another.
    Local(ThreadId),
    /// On a pool of worker threads; the thread that called [`run`] only
    /// accepts.
    Pool(async_executor::Executor<'static>),
}

thread_local! {
    /// The tasks of [`Executor::Local`], run by [`run`]'s `block_on`.
    static LOCAL_TASKS: async_executor::LocalExecutor<'static> =
        const { async_executor::LocalExecutor::new() };
}

impl AsyncStd {
    /// Starts the runtime for `threads` threads, with its clock starting
    /// now. With one, tasks run on the calling thread, which must then
    /// drive them ([`run`] does); with more, this starts a pool of that
    /// many workers, which live as long as the process. Fails if a thread
    /// cannot start.
    ///
    /// # Panics
    ///
    /// If called twice: a process has one runtime.
    fn start(threads: NonZeroUsize) -> io::Result<Self> {
        let executor = if threads.get() == 1 {
            Executor::Local(thread::current().id())
        } else {
            Executor::Pool(async_executor::Executor::new())
        };
        let started = Started {
            origin: Instant::now(),
            executor,
        };
        STARTED.set(started).expect("a process starts one runtime");
        if threads.get() > 1 {
            // Returns once every worker runs, so a server that says it is
            // listening has its threads (named, for `top`) in place.
            let running = Arc::new(Barrier::new(threads.get() + 1));
            for worker in 1..=threads.get() {
                let running = running.clone();
                thread::Builder::new()
                    .name(format!("worker-{worker}"))
                    .spawn(move || {
                        running.wait();
                        let Executor::Pool(pool) = &AsyncStd::started().executor else {
                            unreachable!("workers are started for a pool");
                        };
                        async_io::block_on(pool.run(future::pending::<()>()))
                    })?;
            }
            running.wait();
        }
        Ok(AsyncStd(()))
    }

    fn started() -> &'static Started {
        STARTED.get().expect("an AsyncStd exists only once started")
    }
}

impl Runtime for AsyncStd {
    /// A task that panics ends the process. An executor would otherwise
    /// either drop the task or lose the thread running it, and a server
    /// whose broker task is gone goes on accepting connections it can never
    /// serve; the broker panics only when its legal-input contract is
    /// broken, and then carrying on is the one wrong answer.
    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        // A combinator, not an `async` block: a block would hold the task
        // twice over (once captured, once being polled), doubling the
        // memory of every idle connection.
        let guarded = AssertUnwindSafe(task).catch_unwind().map(|finished| {
            // The panic hook has already printed the message and location.
            if finished.is_err() {
                std::process::abort();
            }
        });
        match &AsyncStd::started().executor {
            &Executor::Local(owner) => {
                // A task spawned on another thread would wait for that
                // thread to run its local tasks, which it never does.
                assert_eq!(
                    thread::current().id(),
                    owner,
                    "a one-thread server spawns only on its own thread"
                );
                LOCAL_TASKS.with(|tasks| tasks.spawn(guarded).detach());
            }
            Executor::Pool(pool) => pool.spawn(guarded).detach(),
        }
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(duration))
    }

    fn now(&self) -> Time {
        Time::from_origin(AsyncStd::started().origin.elapsed())
    }
}

/// How [`run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// After SIGINT or SIGTERM: drained, or cut short by `--shutdown-timeout`.
    Gracefully,
    /// A second signal came during the drain, which was abandoned.
    Forced,
}

/// Binds a listener on `address`, with room in its backlog for a burst of
/// connects.
pub fn listen(address: SocketAddr) -> io::Result<Async<TcpListener>> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std's bind does: a restarted server can take its port back while
    // connections of the old one linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG_CONNECTIONS)?;
    Async::new(TcpListener::from(socket))
}

/// The listeners a server accepts on: the line protocol's, and IRC's if
/// `--irc-listen` asks for one.
pub struct Listeners {
    pub line: Async<TcpListener>,
    pub irc: Option<Async<TcpListener>>,
}

/// Serves on `listeners` with `threads` threads until SIGINT or SIGTERM,
/// then shuts down gracefully, unless a second signal comes first.
/// `observer` sees every broker input (the journal, or `()`). Blocks the
/// calling thread, which accepts connections and, with one thread, runs
/// everything else too.
///
/// # Panics
///
/// If called twice: a process has one runtime.
pub fn run(
    threads: NonZeroUsize,
    config: Config,
    listeners: Listeners,
    observer: impl Observer,
) -> io::Result<Stopped> {
    let runtime = AsyncStd::start(threads)?;
    let served = serve(runtime, threads, config, listeners, observer);
    LOCAL_TASKS.with(|tasks| async_io::block_on(tasks.run(served)))
}

async fn serve(
    runtime: AsyncStd,
    threads: NonZeroUsize,
    config: Config,
    listeners: Listeners,
    observer: impl Observer,
) -> io::Result<Stopped> {
    let address = listeners.line.get_ref().local_addr()?;
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let (shutdown_requested, shutdown) = oneshot::channel();
    announce("listening on", address);
    info!(?config, threads, "listening on {address}");
    let line = accepted(listeners.line, Dialect::Line, config.write_timeout);
    let incoming = match listeners.irc {
        Some(irc) => {
            let address = irc.get_ref().local_addr()?;
            announce("listening for IRC on", address);
            info!("listening for IRC on {address}");
            let irc = accepted(irc, Dialect::Irc, config.write_timeout);
            futures::stream::select(line, irc).left_stream()
        }
        None => line.right_stream(),
    };
    let served =
        shell::serve_observed(runtime, config, incoming, shutdown.map(|_| ()), observer).fuse();
    let second_signal = watch_signals(signals, shutdown_requested).fuse();
    pin_mut!(served, second_signal);
    Ok(select_biased! {
        () = served => Stopped::Gracefully,
        () = second_signal => Stopped::Forced,
    })
}

/// Writes `chinwag listening on ADDR` (and `chinwag listening for IRC on
/// ADDR`) on stdout, for scripts that listen on port 0 (logs go to
/// stderr). stdout may be a closed pipe; the server works without it, so
/// failing to write is a warning, not a reason to stop.
fn announce(what: &str, address: SocketAddr) {
    let mut stdout = io::stdout().lock();
    if let Err(error) = writeln!(stdout, "chinwag {what} {address}").and_then(|()| stdout.flush()) {
        warn!(%error, "cannot write the listening address to stdout");
    }
}

/// Requests the shutdown on the first SIGINT or SIGTERM, and completes on
/// the second: an operator who signals again will not wait for the drain.
async fn watch_signals(mut signals: Signals, shutdown_requested: oneshot::Sender<()>) {
    // The stream ends only when its handle is closed, which nothing does.
    let Some(signal) = signals.next().await else {
        return future::pending().await;
    };
    info!(
        signal,
        "shutdown requested; a second SIGINT or SIGTERM exits at once"
    );
    let _ = shutdown_requested.send(());
    let Some(signal) = signals.next().await else {
        return future::pending().await;
    };
    warn!(
        signal,
        "second signal: exiting without finishing the shutdown"
    );
}

/// The listener as an endless stream of configured sockets, each to speak
/// `dialect`.
fn accepted(
    listener: Async<TcpListener>,
    dialect: Dialect,
    write_timeout: Duration,
) -> impl Stream<Item = Accepted<tcp::Socket>> + Unpin {
    let warnings = WarningLimiter::new(ACCEPT_WARNING_INTERVAL);
    Box::pin(futures::stream::unfold(
        (listener, warnings),
        move |(listener, mut warnings)| async move {
            loop {
                match listener.accept().await {
                    Ok((socket, peer)) => {
                        configure(socket.get_ref(), peer, write_timeout);
                        let socket = tcp::Socket::new(socket);
                        let accepted = Accepted {
                            socket,
                            peer,
                            dialect,
                        };
                        return Some((accepted, (listener, warnings)));
                    }
                    // Failures of one connection (aborted before it was
                    // accepted, refused by a firewall rule): take the next.
                    Err(error) if !is_resource_exhaustion(&error) => {
                        debug!(%error, "accept failed for one connection");
                    }
                    Err(error) => {
                        if let Some(not_logged) = warnings.failed(Instant::now()) {
                            warn!(
                                %error,
                                failures_not_logged_since_last_warning = not_logged,
                                "accept failed (retrying every {ACCEPT_ERROR_BACKOFF:?}, \
                                 warning at most every {ACCEPT_WARNING_INTERVAL:?})"
                            );
                        }
                        async_std::task::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                }
            }
        },
    ))
}

/// Rate-limits the warnings about a recurring failure: the first is logged,
/// then at most one per interval, each saying how many it held back.
#[derive(Debug)]
struct WarningLimiter {
    interval: Duration,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl WarningLimiter {
    fn new(interval: Duration) -> Self {
        WarningLimiter {
            interval,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// A failure at `now`: `Some(held back since the last logged one)` if
    /// this one is to be logged, `None` if it is held back.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        let logged_recently = self
            .last_logged
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval);
        if logged_recently {
            self.suppressed += 1;
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Whether an accept failed for want of descriptors, buffers or memory: the
/// failures that retrying at once would only repeat, so the loop backs off.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    use rustix::io::Errno;
    let exhausted = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM];
    Errno::from_io_error(error).is_some_and(|errno| exhausted.contains(&errno))
}

/// Low latency (no Nagle delay) and dead-peer detection by the OS: keepalive
/// for a silent peer, and TCP_USER_TIMEOUT from the write timeout, so the
/// kernel also gives up on a frozen peer (data unacknowledged, or a zero
/// window) instead of retrying for many minutes, even after the server has
/// closed the socket. Failing to set any of them only degrades the
/// connection, so it is logged, not fatal.
fn configure(socket: &TcpStream, peer: SocketAddr, write_timeout: Duration) {
    if let Err(error) = socket.set_nodelay(true) {
        warn!(%peer, %error, "cannot set TCP_NODELAY");
    }
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    if let Err(error) = SockRef::from(socket).set_tcp_keepalive(&keepalive) {
        warn!(%peer, %error, "cannot enable TCP keepalive");
    }
    set_user_timeout(socket, peer, write_timeout);
}

/// TCP_USER_TIMEOUT, clamped into what the option can express.
#[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
fn set_user_timeout(socket: &TcpStream, peer: SocketAddr, write_timeout: Duration) {
    let user_timeout = write_timeout
        .saturating_mul(TCP_USER_TIMEOUT_PER_WRITE_TIMEOUT)
        .clamp(TCP_USER_TIMEOUT_MIN, TCP_USER_TIMEOUT_MAX);
    if let Err(error) = SockRef::from(socket).set_tcp_user_timeout(Some(user_timeout)) {
        warn!(%peer, %error, "cannot set TCP_USER_TIMEOUT");
    }
}

/// Other systems have no TCP_USER_TIMEOUT: keepalive and the write timeout
/// are all there is.
#[cfg(not(any(target_os = "android", target_os = "fuchsia", target_os = "linux")))]
fn set_user_timeout(_: &TcpStream, _: SocketAddr, _: Duration) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_accept_failure_is_logged_then_one_summary_per_interval() {
        let interval = Duration::from_secs(10);
        let mut warnings = WarningLimiter::new(interval);
        let start = Instant::now();
        let at = |millis| start + Duration::from_millis(millis);
        assert_eq!(warnings.failed(at(0)), Some(0));
        for millis in (100..10_000).step_by(100) {
            assert_eq!(warnings.failed(at(millis)), None, "at {millis} ms");
        }
        // 99 held back; the next failure an interval after the last warning
        // is logged with their count.
        assert_eq!(warnings.failed(at(10_000)), Some(99));
        assert_eq!(warnings.failed(at(10_100)), None);
        // After a quiet spell, the first failure is logged at once.
        assert_eq!(warnings.failed(at(60_000)), Some(1));
        assert_eq!(warnings.failed(at(60_000)), None);
    }

    #[test]
    fn only_running_out_of_resources_backs_the_accept_loop_off() {
        use rustix::io::Errno;
        assert!(is_resource_exhaustion(&io::Error::from(Errno::MFILE)));
        assert!(is_resource_exhaustion(&io::Error::from(Errno::NOBUFS)));
        assert!(!is_resource_exhaustion(&io::Error::from(
            Errno::CONNABORTED
        )));
        assert!(!is_resource_exhaustion(&io::Error::other(
            "not from the OS"
        )));
    }

    #[test]
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    fn accepted_sockets_time_out_unacknowledged_data_after_twice_the_write_timeout() {
        for (write_timeout, expected) in [
            (Duration::from_millis(2500), Duration::from_millis(5000)),
            (Duration::from_micros(10), TCP_USER_TIMEOUT_MIN),
            (Duration::from_secs(u64::MAX), TCP_USER_TIMEOUT_MAX),
        ] {
            async_std::task::block_on(async {
                let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
                let address = listener.get_ref().local_addr().unwrap();
                let _client = std::net::TcpStream::connect(address).unwrap();
                let mut sockets = accepted(listener, Dialect::Line, write_timeout);
                let Accepted { socket, .. } = sockets.next().await.unwrap();
                let socket = SockRef::from(socket.get_ref());
                assert_eq!(socket.tcp_user_timeout().unwrap(), Some(expected));
                assert!(socket.tcp_nodelay().unwrap());
                assert!(socket.keepalive().unwrap());
            });
        }
    }
}
