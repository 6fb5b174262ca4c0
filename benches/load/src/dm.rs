//! `dm`: C clients each send M messages, each to K names drawn at random.
//!
//! The draw is a pure function of the seed, the sender and the sequence
//! number, so recipients recompute it to check what they get, and the same
//! seed gives the same traffic every run.

use std::io;
use std::time::Duration;

use clap::Args;

use super::report::Report;
use super::target::Target;
use super::traffic::{self, Plan, TrafficArgs};

#[derive(Args)]
pub struct DmArgs {
    /// Clients, each of them a sender.
    #[arg(long, short = 'c', default_value_t = 100)]
    clients: usize,

    /// Messages each client sends.
    #[arg(long, short = 'm', default_value_t = 2000)]
    messages: u32,

    /// Distinct destinations of each message (never the sender itself).
    #[arg(long, short = 'k', default_value_t = 3)]
    dests: usize,

    #[command(flatten)]
    traffic: TrafficArgs,
}

impl DmArgs {
    pub fn run(self, target: &Target, seed: u64, deadline: Duration) -> io::Result<Report> {
        if self.dests == 0 || self.dests >= self.clients {
            return Err(io::Error::other(
                "dm needs 1 <= --dests < --clients (a message never goes to its sender)",
            ));
        }
        let plan = DmPlan {
            clients: self.clients,
            messages: self.messages,
            dests: self.dests,
            seed,
        };
        traffic::run("dm", target, &plan, self.traffic, deadline)
    }
}

struct DmPlan {
    clients: usize,
    messages: u32,
    dests: usize,
    seed: u64,
}

impl Plan for DmPlan {
    fn clients(&self) -> usize {
        self.clients
    }

    fn senders(&self) -> usize {
        self.clients
    }

    fn messages(&self) -> u32 {
        self.messages
    }

    fn destinations(&self, sender: usize, seq: u32, out: &mut Vec<usize>) {
        let start = out.len();
        let mut state = self.seed ^ (sender as u64) << 32 ^ u64::from(seq);
        while out.len() - start < self.dests {
            // Any client but the sender: draw from the others, then skip it.
            let draw = (splitmix64(&mut state) % (self.clients as u64 - 1)) as usize;
            let recipient = if draw >= sender { draw + 1 } else { draw };
            if !out[start..].contains(&recipient) {
                out.push(recipient);
            }
        }
    }

    fn addresses(&self, sender: usize, seq: u32, recipient: usize) -> bool {
        let mut destinations = Vec::with_capacity(self.dests);
        self.destinations(sender, seq, &mut destinations);
        destinations.contains(&recipient)
    }
}

/// SplitMix64: a tiny, well-mixed generator, plenty for picking names.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_distinct_seeded_and_never_the_sender() {
        let plan = DmPlan {
            clients: 5,
            messages: 100,
            dests: 3,
            seed: 7,
        };
        for sender in 0..5 {
            for seq in 0..100 {
                let mut destinations = Vec::new();
                plan.destinations(sender, seq, &mut destinations);
                let mut again = Vec::new();
                plan.destinations(sender, seq, &mut again);
                assert_eq!(destinations, again);
                assert_eq!(destinations.len(), 3);
                assert!(!destinations.contains(&sender));
                let mut distinct = destinations.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), 3);
                for recipient in 0..5 {
                    let listed = destinations.contains(&recipient);
                    assert_eq!(plan.addresses(sender, seq, recipient), listed);
                }
            }
        }
    }
}
