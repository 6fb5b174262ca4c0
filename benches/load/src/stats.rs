//! Latency percentiles from every sample, exactly: the samples are kept in
//! a vector and sorted once at the end (a run has at most a few million).

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Debug, Default)]
pub struct Latencies {
    micros: Vec<u64>,
}

/// The percentiles a report shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    pub fn record(&mut self, micros: u64) {
        self.micros.push(micros);
    }

    /// p50, p99 and max, or `None` without samples.
    pub fn summary(mut self) -> Option<Summary> {
        self.micros.sort_unstable();
        let count = self.micros.len();
        let at = |quantile: f64| {
            // The smallest sample with at least `quantile` of all at or below it.
            let rank = ((quantile * count as f64).ceil() as usize).clamp(1, count);
            Duration::from_micros(self.micros[rank - 1])
        };
        (count > 0).then(|| Summary {
            count,
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::default();
        for micros in (1..=100).rev() {
            latencies.record(micros);
        }
        let summary = latencies.summary().unwrap();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_micros(50));
        assert_eq!(summary.p99, Duration::from_micros(99));
        assert_eq!(summary.max, Duration::from_micros(100));
        assert_eq!(Latencies::default().summary(), None);
    }
}
