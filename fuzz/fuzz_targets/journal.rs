//! Arbitrary bytes as a `--journal` file, through the journal reader.
//! The check itself is `check_journal` in `tests/model/fuzz_checks.rs`,
//! which `tests/fuzz_corpus.rs` also runs over the committed corpus.
#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| model::fuzz_checks::check_journal(data));
