//! `fanout`: S senders each send M messages to all C clients at once.
//!
//! Every message names all C clients (senders included: a sender may name
//! itself), so each one becomes C deliveries.

use std::io;
use std::time::Duration;

use chinwag::config::Config;
use clap::Args;

use super::client;
use super::report::Report;
use super::target::Target;
use super::traffic::{self, Plan, TrafficArgs};

#[derive(Args)]
pub struct FanoutArgs {
    /// Clients, every one a recipient of every message.
    #[arg(long, short = 'c', default_value_t = 200)]
    clients: usize,

    /// Senders, the first S of the clients.
    #[arg(long, short = 's', default_value_t = 4)]
    senders: usize,

    /// Messages each sender sends.
    #[arg(long, short = 'm', default_value_t = 500)]
    messages: u32,

    #[command(flatten)]
    traffic: TrafficArgs,
}

impl FanoutArgs {
    pub fn run(self, target: &Target, deadline: Duration) -> io::Result<Report> {
        if self.senders == 0 || self.senders > self.clients {
            return Err(io::Error::other("fanout needs 1 <= --senders <= --clients"));
        }
        // A message naming every client must fit in the server's default
        // longest line.
        let max_line = Config::default().max_line;
        let header: usize = (0..self.clients).map(|i| client::name(i).len() + 2).sum();
        if header + self.traffic.size > max_line {
            return Err(io::Error::other(format!(
                "a message naming {} clients is over the server's {max_line}-byte line limit",
                self.clients
            )));
        }
        let plan = FanoutPlan {
            clients: self.clients,
            senders: self.senders,
            messages: self.messages,
        };
        traffic::run("fanout", target, &plan, self.traffic, deadline)
    }
}

struct FanoutPlan {
    clients: usize,
    senders: usize,
    messages: u32,
}

impl Plan for FanoutPlan {
    fn clients(&self) -> usize {
        self.clients
    }

    fn senders(&self) -> usize {
        self.senders
    }

    fn messages(&self) -> u32 {
        self.messages
    }

    fn destinations(&self, _sender: usize, _seq: u32, out: &mut Vec<usize>) {
        out.extend(0..self.clients);
    }

    fn addresses(&self, _sender: usize, _seq: u32, recipient: usize) -> bool {
        recipient < self.clients
    }

    fn to_everyone(&self) -> bool {
        true
    }
}
