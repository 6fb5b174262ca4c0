//! Arbitrary bytes through the IRC parser, and cut into a reply through
//! the IRC reply builder.
//! The check itself is `check_irc` in `tests/model/fuzz_checks.rs`, which
//! `tests/fuzz_corpus.rs` also runs over the committed corpus.
#![no_main]

#[path = "../../tests/model/mod.rs"]
mod model;

libfuzzer_sys::fuzz_target!(|data: &[u8]| model::fuzz_checks::check_irc(data));
