//! The server host: the production connection shell, run inside turmoil.
//!
//! [`run`] is the server host's software. turmoil calls it again whenever
//! the host is (re)started, and each call is a new incarnation: a fresh
//! broker with no memory of the last one, as after a real crash. It serves
//! with `chinwag::shell::serve_observed`, the very function the production
//! binary runs, plugging in the turmoil runtime adapter, the simulated
//! listener, a shutdown switch the driver can flip, and an observer that
//! writes the broker's witness log.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use chinwag::config::Config;
use chinwag::news::Dialect;
use chinwag::shell::serve_observed;
use futures::channel::oneshot;
use turmoil::net::TcpListener;

use crate::net::Net;
use crate::record::{Recorder, server_source};
use crate::runtime::{Turmoil, accepted};
use crate::scenario::{IRC_PORT, PORT};

/// Lets the driver request a graceful shutdown of the running server.
#[derive(Clone, Default)]
pub struct ShutdownSwitch(Arc<Mutex<Option<oneshot::Sender<()>>>>);

impl ShutdownSwitch {
    /// Called by each incarnation as it starts: the returned receiver fires
    /// when the driver flips the switch.
    fn arm(&self) -> oneshot::Receiver<()> {
        let (flip, fired) = oneshot::channel();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(flip);
        fired
    }

    /// Requests a graceful shutdown; false if no server is listening for it.
    pub fn trigger(&self) -> bool {
        let flip = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        flip.is_some_and(|flip| flip.send(()).is_ok())
    }
}

/// The server host's software: one incarnation, from start to shutdown.
pub async fn run(
    config: Config,
    recorder: Recorder,
    switch: ShutdownSwitch,
    net: Net,
) -> turmoil::Result {
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
    let irc_listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, IRC_PORT)).await?;
    let incarnation = recorder.begin_incarnation(&config);
    let on_accept = |recorder: &Recorder| {
        let recorder = recorder.clone();
        move |peer| recorder.accepted(incarnation, peer)
    };
    // Both listeners, merged as production merges them (`src/server.rs`):
    // each accepted socket is reported as the merged stream yields it, so
    // the accept order recorded is the order the shell numbers them in.
    let line = accepted(listener, net.clone(), Dialect::Line, on_accept(&recorder));
    let irc = accepted(irc_listener, net, Dialect::Irc, on_accept(&recorder));
    let fired = switch.arm();
    let shutdown = async move {
        // A dropped switch is not a request: keep serving.
        if fired.await.is_err() {
            futures::future::pending::<()>().await;
        }
    };
    serve_observed(
        Turmoil::new(recorder.clone()),
        config,
        futures::stream::select(line, irc),
        shutdown,
        recorder.observer(incarnation),
    )
    .await;
    recorder.note(&server_source(incarnation), "serve returned");
    Ok(())
}
