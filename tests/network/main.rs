//! The production binary over real TCP on loopback, one module per section
//! of PROTOCOL.md. Each test starts its own `chinwag serve` on port 0.

mod command_line;
mod connect_client;
mod dead_peers;
mod flow_control;
mod framing;
mod irc;
mod journal;
mod limits;
mod login;
mod messages;
mod ordering;
mod process;
mod rooms;
mod shutdown;
mod sockets;
mod spawned;
mod support;
mod terminal_client;

/// The reference model's guarantee checks, for the journal test. Only the
/// modules they need; most of what they offer serves other harnesses.
#[path = "../model"]
#[allow(dead_code)]
mod model {
    pub mod framing;
    pub mod grammar;
    pub mod guarantees;
    pub mod reference;
    pub mod trace;
}
