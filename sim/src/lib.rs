//! chinwag-sim: the chinwag server's connection shell under a deterministic
//! simulated network, with many clients, injected faults and a checker.
//!
//! One `u64` seed determines a whole run:
//!
//! ```text
//! seed ──> scenario ──> simulation (turmoil: server + clients + faults) ──> records ──> checker
//!          scenario.rs  simulation.rs, server.rs, client.rs, faults.rs      record.rs   checker.rs
//! ```
//!
//! - [`scenario`] draws the run from the seed: limits, network, client
//!   behaviours and faults, each switched on or off per seed (swarm testing).
//! - [`simulation`] builds turmoil's world and steps it, applying
//!   [`faults`] and stepping over idle time (the hosts' timers go through
//!   [`alarms`] for it). The server host ([`server`]) runs
//!   `chinwag::shell`, the same code as production, through the turmoil
//!   [`runtime`] adapter; the client hosts run [`client`]. Both ends of
//!   every connection go through [`net`], which adds a kernel's sharp
//!   edges to turmoil's streams (resets that discard unread input, small
//!   windows).
//! - [`record`] collects the broker's witness log (through the shell's
//!   `Observer`) and every byte each client sent and received, and writes
//!   the [`trace`] whose hash fingerprints the run.
//! - [`checker`] checks each witness log with the reference [`model`] and
//!   the guarantee checks the property tests use, then holds what every
//!   client sent and received against it. Failures name PROTOCOL.md's
//!   guarantees by number ([`model::guarantees::Guarantee`]).
//!
//! [`run`] does all of it for one seed; `main.rs` sweeps seeds.

pub mod alarms;
pub mod checker;
pub mod client;
pub mod faults;
pub mod journal;
pub mod net;
pub mod record;
pub mod runtime;
pub mod scenario;
pub mod server;
pub mod simulation;
pub mod trace;

/// The reference model of PROTOCOL.md and its guarantee checks, shared
/// with the property tests and the fuzz targets: the very files of
/// `tests/model/`, so there is one model to keep right. Only the modules
/// the checker needs are included: the rest serve the other harnesses (the
/// property tests' scenarios, and the fuzz checks, which need `arbitrary`).
#[path = "../../tests/model"]
pub mod model {
    pub mod framing;
    pub mod grammar;
    pub mod guarantees;
    pub mod reference;
    pub mod trace;
}

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use checker::{Broken, Coverage, Failure};
use record::Recorder;
use scenario::Scenario;
use simulation::Stepping;

/// The result of one seed.
pub struct Run {
    pub scenario: Rc<Scenario>,
    /// Every line of the trace (none if run untraced).
    pub trace: Vec<String>,
    /// The FNV-1a hash of the trace: equal for equal seeds (`None` if run
    /// untraced).
    pub hash: Option<u64>,
    /// Simulated time the run covered.
    pub simulated: Duration,
    /// What was checked, or the first thing found broken.
    pub verdict: Result<Coverage, Failure>,
}

/// Simulates and checks one seed, with its whole trace.
pub fn run(seed: u64) -> Run {
    run_with(seed, Recorder::new(), Stepping::Leaping)
}

/// Simulates and checks one seed without building its trace's text (a
/// sweep's way: a failing seed is run again with [`run`] for its trace).
/// The verdict is the same as [`run`]'s, and so are the trace line indices
/// it names.
pub fn run_untraced(seed: u64) -> Run {
    run_with(seed, Recorder::untraced(), Stepping::Leaping)
}

/// Simulates and checks one seed with its whole trace, stepping turmoil
/// one tick at a time throughout ([`Stepping::EveryTick`]): slow, the
/// reference for the tests that the usual stepping over idle time changes
/// nothing.
pub fn run_every_tick(seed: u64) -> Run {
    run_with(seed, Recorder::new(), Stepping::EveryTick)
}

fn run_with(seed: u64, recorder: Recorder, stepping: Stepping) -> Run {
    let scenario = Rc::new(Scenario::generate(seed));
    for line in scenario.describe() {
        recorder.note_at(Duration::ZERO, "scenario", &line);
    }
    // A panic outside the server's tasks (in turmoil itself, say) fails
    // the seed like any other failure instead of ending a sweep.
    let simulate = AssertUnwindSafe(|| simulation::simulate_with(&scenario, &recorder, stepping));
    let simulated = panic::catch_unwind(simulate).unwrap_or_else(|panic| {
        Err(format!(
            "the simulation panicked: {}",
            runtime::panic_message(&*panic)
        ))
    });
    let records = recorder.take();
    let last_line = records.trace.len().checked_sub(1);
    let (simulated, verdict) = match simulated {
        Ok(simulated) => (simulated, checker::check(&scenario, &records)),
        Err(failure) => {
            let detail = match records.panics.first() {
                Some(panic) => format!("{failure}: {panic}"),
                None => failure,
            };
            let failure = Failure {
                broken: Broken::Crash,
                detail,
                trace_index: last_line,
            };
            (Duration::ZERO, Err(failure))
        }
    };
    Run {
        scenario,
        hash: records.trace.hash(),
        trace: records.trace.lines().to_vec(),
        simulated,
        verdict,
    }
}

/// The command that replays `seed` and prints its trace.
pub fn replay_command(seed: u64) -> String {
    format!("cargo run -p chinwag-sim --release -- --seed {seed}")
}
