//! The simulator as part of `cargo test`: a fixed list of seeds that
//! together inject every kind of fault must pass every check, and a seed
//! must replay bit for bit.
//!
//! Sweeping fresh seeds is the command line's job
//! (`cargo run -p chinwag-sim --release -- --seeds 500`); these seeds were
//! picked because they are cheap and, between them, cover every fault.

use std::collections::BTreeSet;

use chinwag_sim::faults::KINDS;
use chinwag_sim::scenario::Scenario;
use chinwag_sim::{replay_command, run};

/// Cheap seeds that between them inject every kind of fault.
const SEEDS: [u64; 10] = [3, 6, 10, 14, 21, 24, 27, 40, 44, 48];

#[test]
fn fixed_seeds_keep_every_guarantee() {
    for seed in SEEDS {
        let run = run(seed);
        if let Err(violation) = &run.verdict {
            panic!(
                "seed {seed}: {}\n{}\nreplay: {}",
                violation.guarantee,
                violation.detail,
                replay_command(seed)
            );
        }
    }
}

#[test]
fn fixed_seeds_cover_every_fault_type() {
    let injected: BTreeSet<&str> = SEEDS
        .iter()
        .flat_map(|&seed| Scenario::generate(seed).faults)
        .map(|fault| fault.kind.name())
        .collect();
    let all: BTreeSet<&str> = KINDS.into_iter().collect();
    assert_eq!(injected, all);
}

#[test]
fn a_seed_replays_bit_for_bit_and_seeds_differ() {
    let first = run(48);
    let again = run(48);
    assert_eq!(first.hash, again.hash);
    assert_eq!(first.trace, again.trace);
    let other = run(1);
    assert_ne!(first.hash, other.hash);
}
