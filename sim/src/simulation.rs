//! The driver: builds the simulated world for a scenario and runs it.
//!
//! One turmoil `Sim`, seeded from the scenario, with a server host and one
//! host per client. The driver steps it tick by tick on the simulated clock
//! until the scenario's end, carrying out the fault timeline between steps.
//! Everything runs on this one thread; nothing reads the real clock.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

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

/// Runs `scenario` to its end, recording into `recorder`; returns the
/// simulated time run. The end is the scenario's `end_at`, or sooner: once
/// the last shutdown has returned (the server's software has ended after
/// the last action of the timeline), the network's latency and
/// [`AFTER_LAST_SHUTDOWN`] later. Fails if a host's software fails or a
/// server task panics.
pub fn simulate(scenario: &Rc<Scenario>, recorder: &Recorder) -> Result<Duration, String> {
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
    while sim.elapsed() < end {
        while let Some((at, action)) = actions.get(next)
            && *at <= sim.elapsed()
        {
            let done = faults::apply(&mut sim, action, network, scenario.clients, &switch);
            recorder.note_at(sim.elapsed(), "driver", &done);
            next += 1;
        }
        if next == actions.len()
            && end == scenario.phases.end_at
            && !sim.is_host_running(SERVER_HOST)
        {
            let after = sim.elapsed() + network.max_latency + AFTER_LAST_SHUTDOWN;
            end = end.min(after);
        }
        sim.step()
            .map_err(|error| format!("host software failed: {error}"))?;
        if recorder.has_panicked() {
            return Err("a server task panicked".to_string());
        }
    }
    Ok(sim.elapsed())
}
