//! The turmoil adapter for the shell's runtime seam.
//!
//! The shell (`chinwag::shell`) needs four things from a runtime: spawn,
//! sleep, the time and a stream of accepted sockets. Inside a turmoil host
//! they come from the host's own tokio runtime, whose clock is paused and
//! advanced by turmoil: `tokio::task::spawn_local` runs a task on the host
//! (so a host crash drops it), `tokio::time::sleep` waits simulated time, the
//! time is read off the same paused clock, and turmoil's simulated
//! `TcpStream`s become `futures::io` sockets through tokio-util's `compat`
//! adapters. Nothing here touches async-std or the real clock.
//!
//! Tasks go on the host's `LocalSet`, where turmoil runs the host's
//! software, not on its tokio runtime with `tokio::task::spawn`: a crash
//! drops the runtime's tasks shard by shard, and a task's shard is its
//! tokio task id, drawn from a counter shared by the whole process. The
//! order the server's sockets closed in, and so the rest of the run, then
//! depended on how many tasks earlier seeds in the process (or seeds on
//! other threads) had spawned: a seed run in a sweep could differ from its
//! replay. The `LocalSet` keeps its tasks in one list and drops them in
//! the order they were spawned.
//!
//! A task that panics (a failed `debug_assert!` in the broker, say) would
//! otherwise die quietly inside tokio and leave the server hanging; the
//! adapter catches the panic and records it, and the run fails with it.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chinwag::news::Dialect;
use chinwag::shell::{Accepted, Runtime};
use chinwag::time::Time;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use turmoil::net::TcpListener;

use crate::net::{Net, Side, Stream};
use crate::record::Recorder;

/// The shell's runtime inside a turmoil host.
#[derive(Clone)]
pub struct Turmoil {
    recorder: Recorder,
    /// The origin of [`Runtime::now`]: the host's simulated time when the
    /// runtime was made, that is when this server incarnation started.
    origin: tokio::time::Instant,
}

impl Turmoil {
    /// A runtime that reports panicking tasks to `recorder`. Must be made
    /// inside a turmoil host, whose clock it reads.
    pub fn new(recorder: Recorder) -> Self {
        Turmoil {
            recorder,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Runtime for Turmoil {
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let recorder = self.recorder.clone();
        tokio::task::spawn_local(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                recorder.panicked(panic_message(&*panic));
            }
        });
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(crate::alarms::sleep(duration))
    }

    /// The host's paused tokio clock, which `sleep` waits on and turmoil
    /// advances one tick per step.
    fn now(&self) -> Time {
        Time::from_origin(self.origin.elapsed())
    }
}

/// The message a panic was raised with.
pub fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}

/// A socket as the shell sees it: turmoil's, with the network model's
/// sharp edges ([`crate::net`]).
pub type Socket = Compat<Stream>;

/// The listener as the stream of accepted sockets the shell serves, each
/// marked `dialect` (the listener's protocol). Each peer address is
/// reported to `on_accept` as the stream yields it, which is the order the
/// shell numbers connections in, also when two listeners' streams are
/// merged.
pub fn accepted(
    listener: TcpListener,
    net: Net,
    dialect: Dialect,
    on_accept: impl FnMut(SocketAddr) + 'static,
) -> impl futures::Stream<Item = Accepted<Socket>> + Unpin {
    Box::pin(futures::stream::unfold(
        (listener, net, on_accept),
        move |(listener, net, mut on_accept)| async move {
            // turmoil's accept fails only when the host is going away.
            let (socket, peer) = listener.accept().await.ok()?;
            on_accept(peer);
            let socket = net.wrap(socket, Side::Acceptor).compat();
            let accepted = Accepted {
                socket,
                peer,
                dialect,
            };
            Some((accepted, (listener, net, on_accept)))
        },
    ))
}
