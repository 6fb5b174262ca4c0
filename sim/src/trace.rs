//! The trace: one line of text per thing that happened in a run, in order.
//!
//! Every part of the simulation (the driver injecting faults, the clients,
//! the broker's observer) appends here as events happen. Because the run is
//! deterministic, the same seed gives the same lines, and their FNV-1a hash
//! is the run's fingerprint: `--seed S` prints the lines and ends with
//! `trace-hash: <hex>`, and the determinism test compares hashes. FNV-1a is
//! written out here rather than taken from std so the hash stays the same
//! across Rust versions.
//!
//! A sweep has no use for the text of a passing seed, so it runs seeds
//! with an untraced [`Trace`] ([`Trace::untraced`]), which only counts the
//! lines: their indices are the same as in a traced run, and the text of a
//! failing seed comes from running it again, traced.

use std::fmt::{self, Write};
use std::time::Duration;

/// The lines of one run, with the hash of all lines so far; or, untraced,
/// only how many there were.
#[derive(Debug)]
pub struct Trace {
    lines: Vec<String>,
    /// Lines pushed, kept or not.
    count: usize,
    /// `None` when untraced.
    hash: Option<Fnv1a>,
}

impl Trace {
    pub fn new() -> Self {
        Trace {
            lines: Vec::new(),
            count: 0,
            hash: Some(Fnv1a::new()),
        }
    }

    /// A trace that keeps no text and no hash, only the count of lines, so
    /// that line indices agree with a traced run of the same seed.
    pub fn untraced() -> Self {
        Trace {
            hash: None,
            ..Trace::new()
        }
    }

    /// Whether the text of lines is kept.
    pub fn is_traced(&self) -> bool {
        self.hash.is_some()
    }

    /// Appends one line stamped with the simulated time and who saw it;
    /// returns its index.
    pub fn push(&mut self, time: Duration, source: &str, text: &str) -> usize {
        self.push_with(time, source, || text.to_string())
    }

    /// [`Trace::push`], building the text only if the trace keeps it.
    pub fn push_with(
        &mut self,
        time: Duration,
        source: impl fmt::Display,
        text: impl FnOnce() -> String,
    ) -> usize {
        let index = self.count;
        self.count += 1;
        let Some(hash) = &mut self.hash else {
            return index;
        };
        let text = text();
        let mut line = String::with_capacity(24 + text.len());
        let _ = write!(line, "{:>10} {source:<9} {text}", format_time(time));
        hash.write(line.as_bytes());
        hash.write(b"\n");
        self.lines.push(line);
        index
    }

    /// The lines kept: all of them, or none if untraced.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// How many lines were pushed, kept or not.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no line was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The FNV-1a hash of every line, each ended by a newline; `None` if
    /// untraced.
    pub fn hash(&self) -> Option<u64> {
        self.hash.as_ref().map(|hash| hash.0)
    }
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

/// Simulated time as seconds with millisecond precision, e.g. `12.345s`.
pub fn format_time(time: Duration) -> String {
    format!("{}.{:03}s", time.as_secs(), time.subsec_millis())
}

/// 64-bit FNV-1a.
#[derive(Debug)]
struct Fnv1a(u64);

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        let mut empty = Fnv1a::new();
        empty.write(b"");
        assert_eq!(empty.0, 0xcbf2_9ce4_8422_2325);
        let mut a = Fnv1a::new();
        a.write(b"a");
        assert_eq!(a.0, 0xaf63_dc4c_8601_ec8c);
        let mut foobar = Fnv1a::new();
        foobar.write(b"foobar");
        assert_eq!(foobar.0, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn lines_are_stamped_and_hashed_in_order() {
        let mut one = Trace::new();
        one.push(Duration::from_millis(1500), "server", "a");
        one.push(Duration::from_millis(1501), "client0", "b");
        let mut two = Trace::new();
        two.push(Duration::from_millis(1501), "client0", "b");
        two.push(Duration::from_millis(1500), "server", "a");
        assert!(one.lines()[0].contains("1.500s server"));
        assert_ne!(one.hash(), two.hash());
    }

    #[test]
    fn an_untraced_trace_counts_lines_and_builds_no_text() {
        let mut untraced = Trace::untraced();
        let first = untraced.push(Duration::ZERO, "server", "a");
        let second = untraced.push_with(Duration::ZERO, "server", || unreachable!());
        assert_eq!((first, second, untraced.len()), (0, 1, 2));
        assert!(untraced.lines().is_empty());
        assert_eq!(untraced.hash(), None);
    }
}
