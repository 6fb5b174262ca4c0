//! The frame codec's throughput in bytes per second: a stream of lines fed
//! in 4 KiB chunks, as the connection reader reads them.
//!
//! Run with `cargo bench --bench codec`. Two line lengths: chat-sized lines
//! (80 bytes), where per-line costs dominate, and long lines (4000 bytes),
//! where scanning and copying do.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use chinwag::codec::LineDecoder;

/// The reader's chunk size.
const CHUNK: usize = 4096;
/// Bytes of stream per iteration.
const STREAM: usize = 256 * 1024;

/// `STREAM` bytes of lines of `length` bytes each (LF included).
fn stream_of_lines(length: usize) -> Vec<u8> {
    let mut line = format!("bob, carol: {}", "x".repeat(length - 13)).into_bytes();
    line.push(b'\n');
    line.iter().copied().cycle().take(STREAM).collect()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(STREAM as u64));
    for length in [80, 4000] {
        let stream = stream_of_lines(length);
        let mut decoder = LineDecoder::new(8192);
        let mut frames = Vec::new();
        group.bench_with_input(BenchmarkId::new("decode", length), &stream, |b, stream| {
            b.iter(|| {
                for chunk in stream.chunks(CHUNK) {
                    decoder.decode(black_box(chunk), &mut frames);
                    frames.clear();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
