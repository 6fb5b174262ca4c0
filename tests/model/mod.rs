//! The reference model of PROTOCOL.md and DESIGN.md's guarantees, shared by
//! the property tests (`tests/broker_properties.rs`), the corpus replay
//! (`tests/fuzz_corpus.rs`) and the fuzz targets (`fuzz/`, which include
//! this directory with `#[path]`).
//!
//! - [`grammar`]: the line grammar, reimplemented from the document.
//! - [`reference`]: the reference model, the protocol as the simplest
//!   state machine that is right.
//! - [`trace`]: a recorded run and what an observer learns from it.
//! - [`guarantees`]: guarantees 1-8, one named check each, over a trace.
//! - [`scenario`]: story-like steps, played against broker and model.
//! - [`fuzz_checks`]: the fuzz targets' checks, runnable as plain tests.
//!
//! Only `chinwag`, `std` and (for `fuzz_checks`) `arbitrary` are used here.

// Every crate that includes this module uses a different part of it.
#![allow(dead_code)]

pub mod fuzz_checks;
pub mod grammar;
pub mod guarantees;
pub mod reference;
pub mod scenario;
pub mod trace;
