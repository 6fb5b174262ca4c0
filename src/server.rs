//! The production server: the shell on async-std's real TCP and signals.
//!
//! This file is the runtime adapter DESIGN.md describes: it fills in the
//! [`Runtime`] seam with async-std, turns the listener into a stream of
//! configured sockets (TCP_NODELAY, keepalive) and turns SIGINT/SIGTERM into
//! the shutdown future. async-std is discontinued upstream; moving to smol
//! or tokio means rewriting this file and nothing else.

use std::net::SocketAddr;
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_async_std::Signals;
use socket2::{SockRef, TcpKeepalive};
use tracing::{info, warn};

use crate::config::Config;
use crate::shell::{self, Accepted, Runtime};

/// Keepalive probes start after this much silence, so a vanished peer is
/// reported by the OS within a few minutes even when nothing is written.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 6;

/// How long to pause accepting after an error such as running out of file
/// descriptors, instead of spinning on it.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// async-std's executor and timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Runtime for AsyncStd {
    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        async_std::task::spawn(task);
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async_std::task::sleep(duration))
    }
}

/// Serves on `listener` until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(config: Config, listener: TcpListener) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = signals.handle();
    let shutdown = async move {
        let mut signals = signals;
        if let Some(signal) = signals.next().await {
            info!(signal, "shutdown requested");
        }
    };
    // stdout carries this one line for scripts (port 0 picks the port);
    // logs go to stderr.
    println!("chinwag listening on {address}");
    info!(?config, "listening on {address}");
    shell::serve(AsyncStd, config, accepted(listener), shutdown).await;
    handle.close();
    Ok(())
}

/// The listener as an endless stream of configured sockets.
fn accepted(listener: TcpListener) -> impl Stream<Item = Accepted<TcpStream>> + Unpin {
    Box::pin(futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((socket, peer)) => {
                    configure(&socket, peer);
                    return Some((Accepted { socket, peer }, listener));
                }
                Err(error) => {
                    warn!(%error, "accept failed");
                    async_std::task::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            }
        }
    }))
}

/// Low latency (no Nagle delay) and dead-peer detection by the OS. Failing
/// to set either only degrades the connection, so it is logged, not fatal.
fn configure(socket: &TcpStream, peer: SocketAddr) {
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
}
