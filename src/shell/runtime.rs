//! The runtime seam: the only things the shell needs from an async runtime.
//!
//! async-std fills it in production (`crate::server`, with `crate::tcp`),
//! turmoil's simulated world under tokio fills it in `sim/`. Keeping it this
//! small is what makes moving production to smol or tokio a change of those
//! two files.

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::time::Time;

/// Task spawning, timers and a clock, from whichever runtime hosts the shell.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Runs `task` concurrently until it finishes.
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Completes after `duration` of this runtime's time (simulated time
    /// under the simulator).
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;

    /// The current time on the same clock as `sleep`, from an origin fixed
    /// when the runtime value was made. The broker is handed this with
    /// every input; it never reads a clock itself.
    fn now(&self) -> Time;
}
