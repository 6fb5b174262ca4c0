//! The production binary over real TCP on loopback, one module per section
//! of PROTOCOL.md. Each test starts its own `chinwag serve` on port 0.

mod command_line;
mod connect_client;
mod dead_peers;
mod flow_control;
mod framing;
mod limits;
mod login;
mod messages;
mod ordering;
mod process;
mod shutdown;
mod sockets;
mod spawned;
mod support;
