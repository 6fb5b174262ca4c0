//! The reference model of PROTOCOL.md and its guarantees, shared by the
//! property tests (`tests/broker_properties.rs`), the corpus replay
//! (`tests/fuzz_corpus.rs`), the fuzz targets (`fuzz/`) and the simulator
//! (`sim/`), which include this directory with `#[path]`.
//!
//! - [`grammar`]: the line grammar, reimplemented from the document, and
//!   (`grammar::irc`) IRC.md's server lines.
//! - [`framing`]: the framing, reimplemented from the document.
//! - [`reference`]: the reference model, the protocol as the simplest
//!   state machine that is right.
//! - [`trace`]: a recorded run and what an observer learns from it.
//! - [`guarantees`]: guarantees 1-10, one named check each, over a trace,
//!   and [`guarantees::Guarantee`], the one vocabulary every check that
//!   names a guarantee uses.
//! - [`scenario`]: story-like steps, played against broker and model.
//! - [`fuzz_checks`]: the fuzz targets' checks, runnable as plain tests.
//!
//! Only `chinwag`, `std` and (for `fuzz_checks`) `arbitrary` are used here.
//! The simulator includes only the modules it needs (all but `scenario`
//! and `fuzz_checks`), so those must not be needed by the others.

// Every crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod framing;
pub mod fuzz_checks;
pub mod grammar;
pub mod guarantees;
pub mod reference;
pub mod scenario;
pub mod trace;
