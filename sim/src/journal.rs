//! Replaying a production journal: a recorded run checked offline.
//!
//! `chinwag serve --journal FILE` records every input its broker was handed,
//! with its time and the configuration (`chinwag::journal`). [`replay`]
//! feeds them to a fresh broker, which decides again exactly what the
//! server decided (it is deterministic), and checks the run the way the
//! simulator checks each of its servers: the same reference model, step by
//! step, and every guarantee of PROTOCOL.md over the whole run
//! ([`checker::check_log`]). Only the clients' side is missing: a journal
//! holds what the broker saw, not what the sockets carried.
//!
//! A journal that ends without an end record (the process was killed), or
//! is cut in the middle of a record, is replayed up to its last whole
//! record. A broker panic on a recorded input panics the replay at that
//! same record, which makes a production crash a deterministic test case.

use std::panic::{self, AssertUnwindSafe};

use chinwag::broker::{Broker, Output};
use chinwag::config::Config;
use chinwag::journal::{DecodeError, EndReason, Reader, Record};
use chinwag::time::Time;

use crate::checker::{self, Coverage, Failure};
use crate::model::trace::{Trace, TraceStep};
use crate::runtime::panic_message;

/// What a replayed journal held.
pub struct Replayed {
    /// The configuration the recorded server ran with.
    pub config: Config,
    /// The broker inputs replayed.
    pub inputs: usize,
    /// The time of the last record, since the server started.
    pub last_at: Time,
    /// Why the journal ended, if it says.
    pub end: Option<EndReason>,
    /// Where it was cut short or damaged, if it was: the records before it
    /// were replayed.
    pub damage: Option<DecodeError>,
    /// What was checked, or the first thing found broken.
    pub verdict: Result<Coverage, Failure>,
}

/// Why a journal could not be replayed at all.
pub enum Unreplayable {
    /// The header is not a journal's.
    Header(DecodeError),
    /// The broker panicked on input `index` (from 0), as the recorded one
    /// may have.
    BrokerPanicked { index: usize, message: String },
    /// The reference model or a guarantee check panicked: a bug in them
    /// that this journal shows.
    CheckPanicked { message: String },
}

/// Replays the journal in `bytes` through a fresh broker and checks the
/// run against the reference model and every guarantee.
pub fn replay(bytes: &[u8]) -> Result<Replayed, Unreplayable> {
    let (config, reader) = Reader::open(bytes).map_err(Unreplayable::Header)?;
    let mut broker = Broker::new(&config);
    let mut log = Trace {
        config,
        steps: Vec::new(),
    };
    let mut end = None;
    let mut damage = None;
    let mut last_at = Time::ZERO;
    for record in reader {
        match record {
            Ok(Record::Input { at, input }) => {
                let mut outputs: Vec<Output> = Vec::new();
                let handled = panic::catch_unwind(AssertUnwindSafe(|| {
                    broker.handle(at, &input, &mut outputs);
                }));
                if let Err(panic) = handled {
                    let message = panic_message(&*panic).to_string();
                    let index = log.steps.len();
                    return Err(Unreplayable::BrokerPanicked { index, message });
                }
                last_at = at;
                log.steps.push(TraceStep {
                    time: at,
                    input,
                    outputs,
                });
            }
            Ok(Record::End { at, reason }) => {
                last_at = at;
                end = Some(reason);
            }
            Err(error) => damage = Some(error),
        }
    }
    let checked = panic::catch_unwind(AssertUnwindSafe(|| {
        checker::check_log("journal", &log, |_| None).map(|()| {
            let mut coverage = Coverage::default();
            checker::count_log(&log, &mut coverage);
            coverage
        })
    }));
    let verdict = checked.map_err(|panic| Unreplayable::CheckPanicked {
        message: panic_message(&*panic).to_string(),
    })?;
    Ok(Replayed {
        config,
        inputs: log.steps.len(),
        last_at,
        end,
        damage,
        verdict,
    })
}
