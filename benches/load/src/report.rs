//! A run's figures and verdict: a table for people, one JSON line for
//! scripts.
//!
//! The table goes to stdout, then the JSON line (always the last line, an
//! object with `scenario`, `passed`, `faults` and every figure by key).
//! Faults found by verification go to stderr, the first few in full.

use std::time::Duration;

use serde_json::{Map, Value};

use super::stats::Summary;
use super::verify::Faults;

/// The outcome of one scenario run.
pub struct Report {
    scenario: &'static str,
    figures: Vec<Figure>,
    faults: Faults,
}

/// One measured number.
struct Figure {
    /// Its JSON key, e.g. `deliveries_per_sec`.
    key: String,
    /// Its description in the table.
    label: String,
    value: f64,
    /// Digits after the decimal point, in the table and in JSON.
    decimals: usize,
    unit: &'static str,
}

impl Report {
    pub fn new(scenario: &'static str) -> Self {
        Report {
            scenario,
            figures: Vec::new(),
            faults: Faults::default(),
        }
    }

    /// Adds a whole number.
    pub fn count(&mut self, key: &str, label: &str, value: u64, unit: &'static str) {
        self.figure(key, label, value as f64, 0, unit);
    }

    /// Adds a rate or ratio, shown to one decimal.
    pub fn rate(&mut self, key: &str, label: &str, value: f64, unit: &'static str) {
        self.figure(key, label, value, 1, unit);
    }

    /// Adds a duration in milliseconds, to the microsecond.
    pub fn millis(&mut self, key: &str, label: &str, value: Duration) {
        self.figure(key, label, value.as_secs_f64() * 1e3, 3, "ms");
    }

    /// Adds a memory size in MiB.
    pub fn mebibytes(&mut self, key: &str, label: &str, bytes: f64) {
        self.figure(key, label, bytes / (1024.0 * 1024.0), 2, "MiB");
    }

    /// Adds p50, p99 and max latency as `<key>_p50_ms` and so on.
    pub fn latency(&mut self, key: &str, label: &str, summary: Option<Summary>) {
        let Some(summary) = summary else { return };
        self.count(
            &format!("{key}_samples"),
            &format!("{label} samples"),
            summary.count as u64,
            "",
        );
        for (name, value) in [
            ("p50", summary.p50),
            ("p99", summary.p99),
            ("max", summary.max),
        ] {
            self.millis(
                &format!("{key}_{name}_ms"),
                &format!("{label} {name}"),
                value,
            );
        }
    }

    /// Adds the faults verification found; any fault fails the run.
    pub fn faults(&mut self, faults: Faults) {
        self.faults.extend(faults);
    }

    pub fn passed(&self) -> bool {
        self.faults.is_empty()
    }

    /// Prints faults to stderr, then the table and the JSON line to stdout.
    pub fn print(&self) {
        for fault in self.faults.shown() {
            eprintln!("FAULT: {fault}");
        }
        let hidden = self.faults.total() - self.faults.shown().len();
        if hidden > 0 {
            eprintln!("FAULT: ... and {hidden} more");
        }
        println!("{}", self.table());
        println!("{}", self.json());
    }

    fn verdict(&self) -> String {
        if self.passed() {
            "PASS: every delivery verified".to_string()
        } else {
            format!("FAIL: {} faults", self.faults.total())
        }
    }

    fn table(&self) -> String {
        let width = self
            .figures
            .iter()
            .map(|f| f.label.len())
            .max()
            .unwrap_or(0);
        let mut table = format!("chinwag-bench {}: {}\n", self.scenario, self.verdict());
        for figure in &self.figures {
            table.push_str(&format!(
                "  {:<width$}  {:>14.*} {}\n",
                figure.label, figure.decimals, figure.value, figure.unit
            ));
        }
        table.pop();
        table
    }

    fn json(&self) -> String {
        let mut object = Map::new();
        object.insert("scenario".into(), self.scenario.into());
        object.insert("passed".into(), self.passed().into());
        object.insert("faults".into(), self.faults.total().into());
        for figure in &self.figures {
            let value = if figure.decimals == 0 {
                Value::from(figure.value.round() as u64)
            } else {
                let scale = 10f64.powi(figure.decimals as i32);
                Value::from((figure.value * scale).round() / scale)
            };
            object.insert(figure.key.clone(), value);
        }
        Value::Object(object).to_string()
    }

    fn figure(&mut self, key: &str, label: &str, value: f64, decimals: usize, unit: &'static str) {
        self.figures.push(Figure {
            key: key.to_string(),
            label: label.to_string(),
            value,
            decimals,
            unit,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Fault;

    #[test]
    fn json_line_has_the_verdict_and_every_figure() {
        let mut report = Report::new("dm");
        report.count("deliveries", "deliveries", 600, "");
        report.rate("deliveries_per_sec", "deliveries per second", 1234.56, "/s");
        report.millis("cut_ms", "cut", Duration::from_micros(1500));
        let line: Value = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(line["scenario"], "dm");
        assert_eq!(line["passed"], true);
        assert_eq!(line["deliveries"], 600);
        assert_eq!(line["deliveries_per_sec"], 1234.6);
        assert_eq!(line["cut_ms"], 1.5);
        assert!(report.table().contains("deliveries per second"));
    }

    #[test]
    fn any_fault_fails_the_run() {
        let mut report = Report::new("dm");
        let mut faults = Faults::default();
        faults.push(Fault::Other("lost".into()));
        report.faults(faults);
        assert!(!report.passed());
        assert!(report.json().contains("\"passed\":false"));
    }
}
