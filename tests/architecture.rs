//! The architecture invariants of ARCHITECTURE.md that the compiler alone
//! does not hold, checked against the source tree.
//!
//! The core's purity is mostly the compiler's job: `chinwag-core` is
//! `no_std`, so it cannot name std's clock, sockets or threads. What it
//! could still do is take a dependency that brings them back (a runtime, a
//! channel crate, a clock crate), and the shell could start naming a
//! runtime. These tests fail when either happens.

use std::fs;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// What the pure core may depend on: data structures and Unicode data.
/// Adding to this list is an architecture change; say why in review.
const CORE_DEPENDENCIES_ALLOWED: [&str; 5] = [
    "foldhash",
    "hashbrown",
    "memchr",
    "unicode-normalization",
    "unicode-security",
];

/// Names a runtime (or a clock that is not the runtime's).
const RUNTIME_NAMES: [&str; 9] = [
    "async_std",
    "async_io",
    "async_executor",
    "tokio",
    "turmoil",
    "smol",
    "Instant",
    "SystemTime",
    "thread::spawn",
];

fn read(path: &str) -> String {
    let path = Path::new(ROOT).join(path);
    fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The keys of every dependency table of a Cargo manifest, with the table
/// they are in: `[dependencies]`, `[target.'cfg(..)'.dependencies]`, ...
/// (not dev- or build-dependencies, which never reach the built crate).
fn normal_dependencies(manifest: &str) -> Vec<(String, String)> {
    let mut table = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line.to_string();
            continue;
        }
        let is_normal = table == "[dependencies]"
            || (table.starts_with("[target.") && table.ends_with(".dependencies]"));
        if is_normal && !line.is_empty() && !line.starts_with('#') {
            let name = line.split('=').next().unwrap_or_default().trim();
            found.push((table.clone(), name.to_string()));
        }
    }
    found
}

#[test]
fn the_core_depends_on_data_structures_only() {
    let manifest = read("src/core/Cargo.toml");
    let dependencies = normal_dependencies(&manifest);
    assert!(
        dependencies.iter().any(|(_, name)| name == "hashbrown"),
        "the manifest parser found no dependencies at all: {dependencies:?}"
    );
    for (table, name) in &dependencies {
        assert!(
            CORE_DEPENDENCIES_ALLOWED.contains(&name.as_str()),
            "chinwag-core depends on {name} (in {table}); the core may depend only on \
             {CORE_DEPENDENCIES_ALLOWED:?} (ARCHITECTURE.md, architecture invariants)"
        );
    }
}

#[test]
fn the_core_is_no_std_and_safe() {
    let lib = read("src/core/lib.rs");
    assert!(
        lib.contains("#![cfg_attr(not(test), no_std)]"),
        "chinwag-core must be no_std outside its own unit tests"
    );
    assert!(lib.contains("#![forbid(unsafe_code)]"));
}

#[test]
fn the_shell_names_no_runtime() {
    let shell = Path::new(ROOT).join("src/shell");
    let mut files = 0;
    for entry in fs::read_dir(&shell).expect("src/shell exists") {
        let path = entry.expect("readable directory").path();
        let source = fs::read_to_string(&path).expect("readable source file");
        let code = without_comments(&source);
        files += 1;
        for name in RUNTIME_NAMES {
            assert!(
                !code.contains(name),
                "{} names {name}: only the runtime adapters (src/server.rs, src/tcp.rs, \
                 sim/src/runtime.rs) may name a runtime or read a clock",
                path.display()
            );
        }
    }
    assert!(files >= 4, "found only {files} files in src/shell");
}

/// The source with every `//` comment cut off: docs may name runtimes.
fn without_comments(source: &str) -> String {
    let code = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default());
    code.collect::<Vec<_>>().join("\n")
}

#[test]
fn the_manifest_parser_sees_every_normal_dependency_table() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\na = \"1\"\n# b = \"2\"\n\
                    [dev-dependencies]\nc = \"1\"\n[target.'cfg(unix)'.dependencies]\nd = \"1\"\n";
    let names: Vec<String> = normal_dependencies(manifest)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["a", "d"]);
}
