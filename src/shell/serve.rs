//! The server's life cycle: accept connections until shutdown, then drain.
//!
//! Runtime-agnostic: the caller brings the runtime, the stream of accepted
//! sockets and a future that completes when shutdown is requested. On
//! shutdown the accept loop stops, the broker tells every connection and
//! closes it after what it had already processed, and `serve` returns once
//! every connection is closed and the broker task has ended (so its
//! observer has seen the last input), or `shutdown_timeout` has passed,
//! whichever comes first.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{FutureExt, SinkExt, Stream, StreamExt, pin_mut, select_biased};
use tracing::{debug, info, warn};

use super::broker_task::{Observer, ToBroker, run_broker};
use super::connection::run_connection;
use super::runtime::Runtime;
use crate::broker::{Broker, ConnId};
use crate::config::Config;
use crate::news::Dialect;

/// How many events may wait in the broker's queue (each event is one read's
/// worth of lines, at most about 1 KiB plus one long line), besides the one
/// slot each connection always has. When it is full, readers wait, and TCP
/// flow control pushes back on their peers. Short, because a quiet
/// connection's line waits behind whatever a flood has queued: the load
/// tool's `slow` scenario measured the healthy pair's median latency 8x
/// lower at 64 than at 1024, with throughput the same within noise.
const BROKER_QUEUE: usize = 64;

/// A socket the runtime accepted, ready to serve. Closing it for writing
/// (`AsyncWriteExt::close`) must send the peer an end of stream while
/// reading goes on: a graceful close relies on that half-close.
pub struct Accepted<S> {
    pub socket: S,
    pub peer: SocketAddr,
    /// The wire protocol of the listener that accepted it.
    pub dialect: Dialect,
}

/// Serves connections from `incoming` until `shutdown` completes or
/// `incoming` ends, then shuts down gracefully.
pub async fn serve<R, S, I, F>(runtime: R, config: Config, incoming: I, shutdown: F)
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    I: Stream<Item = Accepted<S>> + Unpin,
    F: Future<Output = ()>,
{
    serve_observed(runtime, config, incoming, shutdown, ()).await
}

/// [`serve`], with an observer that sees every event the broker processes.
pub async fn serve_observed<R, S, I, F, O>(
    runtime: R,
    config: Config,
    mut incoming: I,
    shutdown: F,
    observer: O,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    I: Stream<Item = Accepted<S>> + Unpin,
    F: Future<Output = ()>,
    O: Observer,
{
    let (mut broker, queue) = mpsc::channel(BROKER_QUEUE);
    let (reports, reports_received) = mpsc::unbounded();
    let core = Broker::new(&config);
    // Dropped when the broker task ends.
    let (broker_running, broker_ended) = oneshot::channel::<Infallible>();
    runtime.spawn(
        run_broker(runtime.clone(), core, queue, reports_received, observer)
            .map(move |()| drop(broker_running)),
    );
    // Each connection task holds a clone; the receiver ends when all are
    // gone. Unbounded, since cloning its sender allocates nothing (a
    // bounded sender's clone does, for every idle connection).
    let (connections_open, mut all_connections_closed) = mpsc::unbounded::<Infallible>();

    let shutdown = shutdown.fuse();
    pin_mut!(shutdown);
    let mut next_conn = 1;
    loop {
        let accepted = select_biased! {
            () = shutdown => break,
            accepted = incoming.next().fuse() => accepted,
        };
        let Some(accepted) = accepted else {
            warn!("listener closed");
            break;
        };
        let conn = ConnId(next_conn);
        next_conn += 1;
        let (peer, dialect) = (accepted.peer, accepted.dialect);
        debug!(%conn, %peer, ?dialect, "connection accepted");
        let connection = run_connection(
            runtime.clone(),
            conn,
            accepted,
            dialect.max_line(&config),
            config.write_timeout,
            broker.clone(),
            reports.clone(),
        );
        let open = connections_open.clone();
        // A combinator, not an `async` block, which would hold the
        // connection's future twice over (captured, and being polled):
        // the future is most of what an idle connection costs.
        runtime.spawn(connection.map(move |()| drop(open)));
    }

    info!("shutting down");
    drop(incoming);
    drop(reports);
    let drained = async move {
        let _ = broker.send(ToBroker::Shutdown).await;
        drop(broker);
        drop(connections_open);
        let _ = all_connections_closed.next().await;
        // With every connection gone, nothing holds the broker's queue
        // open: it processes what is left and ends, its observer (the
        // journal) with it.
        let _ = broker_ended.await;
    }
    .fuse();
    let deadline = runtime.sleep(config.shutdown_timeout).fuse();
    pin_mut!(drained, deadline);
    select_biased! {
        () = drained => info!("shutdown complete: every connection drained"),
        () = deadline => warn!(
            timeout = ?config.shutdown_timeout,
            "shutdown timed out: closing connections that did not drain"
        ),
    }
}
