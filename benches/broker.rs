//! The pure broker's throughput: deliveries per second for a message to 1,
//! 3 and 100 destinations, on one core, with no I/O.
//!
//! Run with `cargo bench --bench broker`. Each iteration handles one
//! message line from a logged-in sender; criterion reports deliveries per
//! second (`Throughput::Elements`, one element per recipient).

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use chinwag::broker::{Broker, ConnId, Input, Output};
use chinwag::config::Config;
use chinwag::news::Dialect;
use chinwag::time::Time;

/// Connections logged in as `u0`, `u1`, ...; `u0` sends.
const CLIENTS: u64 = 101;

/// A broker with `CLIENTS` logged-in connections. The queue bound is so
/// large that no queue goes past it, however much queues up, so nobody is
/// paused: the bench measures routing, not flow control.
fn logged_in_broker() -> Broker {
    let config = Config {
        max_queue: usize::MAX / 2,
        max_connections_per_address: usize::MAX,
        ..Config::default()
    };
    let mut broker = Broker::new(&config);
    let mut out = Vec::new();
    for id in 0..CLIENTS {
        let conn = ConnId(id);
        let address = IpAddr::from([127, 0, 0, 1]);
        let opened = Input::Opened {
            conn,
            address,
            dialect: Dialect::Line,
        };
        broker.handle(Time::ZERO, &opened, &mut out);
        let frame = Ok(format!("u{id}"));
        broker.handle(Time::ZERO, &Input::Line { conn, frame }, &mut out);
    }
    out.clear();
    broker
}

fn deliveries(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker");
    for destinations in [1, 3, 100] {
        let names: Vec<String> = (1..=destinations).map(|id| format!("u{id}")).collect();
        let text = "x".repeat(64);
        let line = Input::Line {
            conn: ConnId(0),
            frame: Ok(format!("{}: {text}", names.join(", "))),
        };
        let mut broker = logged_in_broker();
        let mut out: Vec<Output> = Vec::with_capacity(destinations);
        group.throughput(Throughput::Elements(destinations as u64));
        group.bench_with_input(
            BenchmarkId::new("deliveries", destinations),
            &line,
            |b, line| {
                b.iter(|| {
                    broker.handle(Time::ZERO, black_box(line), &mut out);
                    debug_assert_eq!(out.len(), destinations);
                    out.clear();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, deliveries);
criterion_main!(benches);
