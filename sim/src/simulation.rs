//! The driver: builds the simulated world for a scenario and runs it.
//!
//! One turmoil `Sim`, seeded from the scenario, with a server host and one
//! host per client. The driver steps it on the simulated clock until the
//! scenario's end, carrying out the fault timeline between steps: a tick at
//! a time where anything happens, and over the idle stretches between in
//! one step each, to the same effect ([`Stepping`]). Everything runs on
//! this one thread; nothing reads the real clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use crate::alarms;
use crate::client::{Client, ClientState};
use crate::faults;
use crate::net::Net;
use crate::record::Recorder;
use crate::scenario::{SERVER_HOST, Scenario, client_host};
use crate::server::{self, ShutdownSwitch};

/// A fixed start for the simulated wall clock, so nothing depends on today.
const EPOCH: Duration = Duration::from_secs(1_700_000_000);

/// How long the run goes on, beyond the network's latency, once the server
/// has shut down for good: the clients read what was in flight (the end of
/// stream included) and close their sides; after that nothing can happen
/// that the checker reads.
const AFTER_LAST_SHUTDOWN: Duration = Duration::from_secs(1);

/// How the driver steps turmoil's world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stepping {
    /// A tick at a time where something happens, running only the hosts
    /// with something to do, and over the stretches between in one step
    /// each: the same run as [`Stepping::EveryTick`], many times faster.
    Leaping,
    /// One tick at a time throughout, as turmoil steps by itself: the
    /// reference the tests hold [`Stepping::Leaping`] to.
    EveryTick,
}

/// Runs `scenario` to its end, recording into `recorder`; returns the
/// simulated time run. Steps [`Stepping::Leaping`]: see [`simulate_with`].
pub fn simulate(scenario: &Rc<Scenario>, recorder: &Recorder) -> Result<Duration, String> {
    simulate_with(scenario, recorder, Stepping::Leaping)
}

/// Runs `scenario` to its end, stepping as `stepping` says, recording into
/// `recorder`; returns the simulated time run. The end is the scenario's `end_at`, or sooner: once
/// the last shutdown has returned (the server's software has ended after
/// the last action of the timeline), the network's latency and
/// [`AFTER_LAST_SHUTDOWN`] later. Fails if a host's software fails or a
/// server task panics.
///
/// Leaping, a step covers as many ticks as nothing happens in (see
/// [`idle_ticks`]): in a tick where no timer fires, no message arrives, no
/// host was woken by another and the timeline has nothing to do, every
/// host only waits, and turmoil can run such ticks in one step with the
/// same result. Most ticks are such: a seed with a 1 ms tick has about one
/// in fifty where anything happens. And in a step where something happens,
/// the hosts with nothing to do (no timer of theirs fires, nothing arrives,
/// not woken) are spared it (`Sim::step_ticks_idle`).
pub fn simulate_with(
    scenario: &Rc<Scenario>,
    recorder: &Recorder,
    stepping: Stepping,
) -> Result<Duration, String> {
    let network = &scenario.network;
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(network.turmoil_seed)
        .epoch(UNIX_EPOCH + EPOCH)
        .tick_duration(network.tick)
        .min_message_latency(network.min_latency)
        .max_message_latency(network.max_latency)
        .tcp_capacity(network.tcp_capacity);
    if network.random_order {
        builder.enable_random_order();
    }
    let mut sim = builder.build();

    let switch = ShutdownSwitch::default();
    let net = Net::new(
        network.model,
        network.max_latency,
        network.tcp_capacity,
        recorder.clone(),
    );
    {
        let (config, recorder, switch) = (scenario.config, recorder.clone(), switch.clone());
        let net = net.clone();
        sim.host(SERVER_HOST, move || {
            server::run(config, recorder.clone(), switch.clone(), net.clone())
        });
    }
    for index in 0..scenario.clients {
        let state = Rc::new(RefCell::new(ClientState::new(scenario.client_seeds[index])));
        let (scenario, recorder, net) = (scenario.clone(), recorder.clone(), net.clone());
        sim.host(client_host(index), move || {
            let (scenario, state) = (scenario.clone(), state.clone());
            Client::new(index, scenario, state, recorder.clone(), net.clone()).run()
        });
    }

    let actions = faults::timeline(scenario);
    let mut next = 0;
    let mut end = scenario.phases.end_at;
    alarms::reset();
    // The hosts' software has not run yet: the first step is an ordinary one.
    let mut acted = true;
    while sim.elapsed() < end {
        while let Some((at, action)) = actions.get(next)
            && *at <= sim.elapsed()
        {
            let done = faults::apply(&mut sim, action, network, scenario.clients, &switch);
            recorder.note_at(sim.elapsed(), "driver", &done);
            next += 1;
            acted = true;
        }
        if next == actions.len()
            && end == scenario.phases.end_at
            && !sim.is_host_running(SERVER_HOST)
        {
            let after = sim.elapsed() + network.max_latency + AFTER_LAST_SHUTDOWN;
            end = end.min(after);
        }
        // An action may have given a host work (a restart, a shutdown), and
        // a host may have woken another (a listener accepting a
        // connection): the next step is then an ordinary one.
        let next_action = actions.get(next).map(|(at, _)| *at);
        let ticks = if stepping == Stepping::EveryTick || acted || sim.is_woken() {
            1
        } else {
            idle_ticks(&sim, network.tick, next_action, end)
        };
        acted = false;
        alarms::leaping(ticks > 1);
        let stepped = match stepping {
            Stepping::EveryTick => sim.step(),
            // A host none of whose timers fires in the step, with nothing
            // delivered to it and not woken, only waits: turmoil spares
            // it the step and brings its clock up to date when it next runs.
            Stepping::Leaping => {
                let (now, end) = (sim.elapsed(), sim.elapsed() + network.tick * ticks);
                sim.step_ticks_idle(ticks, |host| !alarms::fires_before(host, now, end))
            }
        };
        alarms::leaping(false);
        stepped.map_err(|error| format!("host software failed: {error}"))?;
        if recorder.has_panicked() {
            return Err("a server task panicked".to_string());
        }
    }
    Ok(sim.elapsed())
}

/// How many ticks the next step may cover: as many as run by with nothing
/// to do, so that the step does what that many single ticks would, in one
/// step. At least one.
///
/// A step of `n` ticks from `now` runs every host from `now` to `now + n *
/// tick`, and first hands over every message due by its end. So it may
/// not reach past a message falling due (which ticks would hand over at
/// the start of the tick it falls due in), nor past the start of the tick
/// a timer fires in (timers fire inside a step at their own instants,
/// also at its end, when what they wake runs in the next step, as with
/// ticks), nor past the first tick boundary at or after the next fault
/// action or the end (where ticks would stop for them).
fn idle_ticks(
    sim: &turmoil::Sim<'_>,
    tick: Duration,
    next_action: Option<Duration>,
    end: Duration,
) -> u32 {
    let now = sim.elapsed();
    let ticks_to = |at: Duration, round_up: bool| -> u128 {
        let (gap, tick) = (at.saturating_sub(now).as_nanos(), tick.as_nanos());
        if round_up {
            gap.div_ceil(tick)
        } else {
            gap / tick
        }
    };
    let mut ticks = ticks_to(end, true);
    if let Some(at) = next_action {
        ticks = ticks.min(ticks_to(at, true));
    }
    if let Some(deadline) = alarms::next(now) {
        ticks = ticks.min(ticks_to(deadline, false));
    }
    if let Some(due) = sim.next_delivery() {
        // The ticks that end before the message falls due.
        let gap = due.saturating_sub(now).as_nanos();
        ticks = ticks.min(gap.saturating_sub(1) / tick.as_nanos());
    }
    u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
}
