//! The property suites' proptest configuration, one source for both
//! (`broker_properties.rs`, `codec_properties.rs`): proptest's defaults and
//! `PROPTEST_*` variables, a suite's own case count unless
//! `PROPTEST_CASES` asks for another, and its regression file under
//! `tests/proptest-regressions/`, committed so every later run replays a
//! failing case first.

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

/// The configuration of a suite that runs `default_cases` cases and keeps
/// its failing seeds in `regressions` (a path proptest can write to).
pub fn config(regressions: &'static str, default_cases: u32) -> ProptestConfig {
    let from_env = ProptestConfig::default();
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => from_env.cases,
        None => default_cases,
    };
    let persistence = FileFailurePersistence::Direct(regressions);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(persistence)),
        ..from_env
    }
}
