//! The simulator as part of `cargo test`: a fixed list of seeds that
//! together inject every kind of fault and make the broker cut slow
//! consumers and dead peers and close a connection at shutdown without the
//! notice must pass every check, and a seed must replay bit for bit.
//!
//! Sweeping fresh seeds is the command line's job
//! (`cargo run -p chinwag-sim --release -- --seeds 500`); these seeds were
//! picked because they are cheap and, between them, cover all of that.

use std::collections::BTreeSet;

use chinwag_sim::checker::Coverage;
use chinwag_sim::faults::KINDS;
use chinwag_sim::scenario::Scenario;
use chinwag_sim::{replay_command, run};

/// Cheap seeds that between them inject every kind of fault and reach
/// every kind of cut. Seed 20 has a 20-byte queue, too small for the
/// shutdown notice.
const SEEDS: [u64; 11] = [3, 6, 10, 14, 20, 21, 24, 27, 40, 44, 48];

#[test]
fn fixed_seeds_keep_every_guarantee() {
    let mut total = Coverage::default();
    for seed in SEEDS {
        let run = run(seed);
        match &run.verdict {
            Ok(coverage) => {
                total.slow_consumer_cuts += coverage.slow_consumer_cuts;
                total.dead_peer_cuts += coverage.dead_peer_cuts;
                total.notices_skipped += coverage.notices_skipped;
            }
            Err(failure) => panic!(
                "seed {seed}: {}\n{}\nreplay: {}",
                failure.broken,
                failure.detail,
                replay_command(seed)
            ),
        }
    }
    assert!(
        total.slow_consumer_cuts > 0,
        "no slow consumer cut: {total:?}"
    );
    assert!(total.dead_peer_cuts > 0, "no dead peer cut: {total:?}");
    assert!(
        total.notices_skipped > 0,
        "every shutdown had room for the notice: {total:?}"
    );
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
