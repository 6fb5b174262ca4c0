//! Replays every committed fuzz input through its target's check, so the
//! fuzzers' findings stay fixed under plain `cargo test` (no nightly, no
//! libFuzzer).
//!
//! For each target (`frame`, `line`, `broker`, `journal`, `irc`) it reads every file in
//! `fuzz/corpus/<target>/` (the seed corpus) and `fuzz/regressions/<target>/`
//! (crashes found once and fixed since) and runs it through the same
//! `check_<target>` the fuzz target runs, from `tests/model/fuzz_checks.rs`.

mod model;

use std::fs;
use std::path::{Path, PathBuf};

use model::fuzz_checks::{check_broker, check_frame, check_irc, check_journal, check_line};

const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz");

/// Every file kept for `target`, in name order.
fn kept_inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for kind in ["corpus", "regressions"] {
        // A target with no crash kept yet has no regressions directory.
        let Ok(entries) = fs::read_dir(Path::new(FUZZ_DIR).join(kind).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Runs every kept input of `target` through `check` (each failure prints
/// its own panic message), then names the files that failed. Returns how
/// many inputs ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let inputs = kept_inputs(target);
    let failed: Vec<String> = inputs
        .iter()
        .filter(|path| {
            let data = fs::read(path).unwrap();
            std::panic::catch_unwind(|| check(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "these inputs fail their check: {failed:#?}"
    );
    inputs.len()
}

#[test]
fn frame_corpus_and_regressions_pass() {
    assert!(replay("frame", check_frame) > 0, "no frame inputs kept");
}

#[test]
fn line_corpus_and_regressions_pass() {
    assert!(replay("line", check_line) > 0, "no line inputs kept");
}

#[test]
fn broker_corpus_and_regressions_pass() {
    assert!(replay("broker", check_broker) > 0, "no broker inputs kept");
}

#[test]
fn journal_corpus_and_regressions_pass() {
    assert!(
        replay("journal", check_journal) > 0,
        "no journal inputs kept"
    );
}

#[test]
fn irc_corpus_and_regressions_pass() {
    assert!(replay("irc", check_irc) > 0, "no irc inputs kept");
}
