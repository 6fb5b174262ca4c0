//! The hosts' timers, as the driver sees them: how it knows that a stretch
//! of simulated time is idle and may be stepped over at once, and which
//! hosts have nothing to do in a step.
//!
//! turmoil steps every host one tick at a time, and in most steps nothing
//! happens: no timer fires and no message arrives. The driver
//! ([`crate::simulation`]) steps over such stretches in one step, and in
//! the other steps spares the hosts with nothing to do, which needs to
//! know when each host's next timer fires. tokio keeps that to itself, so
//! every timer the hosts' software sets goes through [`sleep`] and
//! [`timeout`] here, which keep its deadline (in simulated time) on this
//! thread's list, under its host, for as long as the timer lives: until it
//! is dropped, fired or cancelled, or its deadline is past.
//!
//! A timer set around this list would fire late: in the middle of a long
//! step, its host would run, but what it sent would arrive at the end of
//! the step; on a spared host, it would fire unnoticed and its task run
//! when the host next runs. Setting a timer during a long step means some
//! host ran when the driver thought none would: [`missed`] counts them,
//! and the tests hold it at zero (and hold the trace of a run stepped so
//! to the trace of the same run stepped tick by tick, every host every
//! tick).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Sleep, Timeout};

/// tokio's timers fire on the millisecond: a deadline between two fires
/// at the later. Every host's clock reads whole milliseconds since the
/// start of the simulation at each millisecond, as turmoil keeps it.
const RESOLUTION: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Alarms {
    /// For each host, how many of its live timers fire at each deadline
    /// not yet past.
    hosts: Vec<(IpAddr, BTreeMap<Duration, usize>)>,
    /// Counts the runs on this thread, so that a timer of an earlier run
    /// dropped late leaves this run's list alone.
    run: u64,
    /// Whether the driver is taking a step of more than one tick.
    leaping: bool,
    /// Timers set during such steps.
    missed: u64,
}

thread_local! {
    static ALARMS: RefCell<Alarms> = RefCell::default();
}

/// A timer on the list: takes its deadline off when dropped.
pub struct Alarm<F> {
    timer: Pin<Box<F>>,
    /// The run, host and deadline it was listed under, if it was.
    listed: Option<(u64, IpAddr, Duration)>,
}

impl<F: Future> Future for Alarm<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.timer.as_mut().poll(cx)
    }
}

impl<F> Drop for Alarm<F> {
    fn drop(&mut self) {
        let Some((run, host, deadline)) = self.listed else {
            return;
        };
        // The thread's list is gone if the thread is ending.
        let _ = ALARMS.try_with(|alarms| {
            let mut alarms = alarms.borrow_mut();
            if alarms.run != run {
                return;
            }
            let deadlines = alarms.deadlines(host);
            if let Some(count) = deadlines.get_mut(&deadline) {
                *count -= 1;
                if *count == 0 {
                    deadlines.remove(&deadline);
                }
            }
        });
    }
}

/// `tokio::time::sleep`, listed.
pub fn sleep(duration: Duration) -> Alarm<Sleep> {
    let listed = list(duration);
    Alarm {
        timer: Box::pin(tokio::time::sleep(duration)),
        listed,
    }
}

/// `tokio::time::timeout`, listed.
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Alarm<Timeout<F::IntoFuture>> {
    let listed = list(duration);
    Alarm {
        timer: Box::pin(tokio::time::timeout(duration, future)),
        listed,
    }
}

fn list(duration: Duration) -> Option<(u64, IpAddr, Duration)> {
    // Outside a host (a unit test's runtime, say) there is no driver.
    let now = turmoil::sim_elapsed()?;
    let host = turmoil::current_host()?;
    let deadline = now + duration;
    let deadline = match deadline.as_nanos() % RESOLUTION.as_nanos() {
        0 => deadline,
        late => deadline + RESOLUTION - Duration::from_nanos(late as u64),
    };
    ALARMS.with_borrow_mut(|alarms| {
        *alarms.deadlines(host).entry(deadline).or_default() += 1;
        alarms.missed += u64::from(alarms.leaping);
        Some((alarms.run, host, deadline))
    })
}

impl Alarms {
    /// `host`'s deadlines.
    fn deadlines(&mut self, host: IpAddr) -> &mut BTreeMap<Duration, usize> {
        let index = match self.hosts.iter().position(|(known, _)| *known == host) {
            Some(index) => index,
            None => {
                self.hosts.push((host, BTreeMap::new()));
                self.hosts.len() - 1
            }
        };
        &mut self.hosts[index].1
    }
}

/// The earliest deadline in `deadlines` not yet past at `now`, dropping
/// those past.
fn first(deadlines: &mut BTreeMap<Duration, usize>, now: Duration) -> Option<Duration> {
    while let Some((&deadline, _)) = deadlines.first_key_value() {
        if deadline >= now {
            return Some(deadline);
        }
        deadlines.pop_first();
    }
    None
}

/// Empties the list: a new run starts on this thread.
pub(crate) fn reset() {
    ALARMS.with_borrow_mut(|alarms| {
        alarms.hosts.clear();
        alarms.run += 1;
        alarms.leaping = false;
    });
}

/// The earliest deadline of a live timer not yet past at `now`. A timer
/// that fires at `now` has woken its task at the very end of the step to
/// `now`: the task runs in the next step.
pub(crate) fn next(now: Duration) -> Option<Duration> {
    ALARMS.with_borrow_mut(|alarms| {
        let firsts = alarms.hosts.iter_mut();
        firsts
            .filter_map(|(_, deadlines)| first(deadlines, now))
            .min()
    })
}

/// Whether a live timer of `host` fires at `now` or later but before
/// `end`; a timer that fires at `now` has woken its task at the very end of
/// the step to `now`, and the task has yet to run.
pub(crate) fn fires_before(host: IpAddr, now: Duration, end: Duration) -> bool {
    ALARMS.with_borrow_mut(|alarms| first(alarms.deadlines(host), now).is_some_and(|at| at < end))
}

/// Marks the start or the end of a step of more than one tick.
pub(crate) fn leaping(leaping: bool) {
    ALARMS.with_borrow_mut(|alarms| alarms.leaping = leaping);
}

/// How many timers hosts on this thread have set during steps of more
/// than one tick, over every run so far: zero unless some timer was not
/// listed.
pub fn missed() -> u64 {
    ALARMS.with_borrow(|alarms| alarms.missed)
}
