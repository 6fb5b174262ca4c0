//! The simulator's command line: sweep many seeds, or replay one.
//!
//! ```text
//! cargo run -p chinwag-sim --release -- --seeds 500 --from 1000   # sweep
//! cargo run -p chinwag-sim --release -- --seeds 500 --jobs 2      # on 2 threads
//! cargo run -p chinwag-sim --release -- --seed 1234               # replay
//! ```
//!
//! A sweep shows a progress bar and ends with a summary. It stops at the
//! first seed that fails, prints what broke (a guarantee by its number in
//! PROTOCOL.md, a protocol decision or a crash), the trace lines
//! leading up to it and the command that replays the seed. A replay prints
//! the seed's whole trace and ends with `trace-hash: <hex>`, identical on
//! every replay of the same seed.
//!
//! With `--jobs N` a sweep runs seeds on N threads, each seed on one thread
//! as ever (so each is as deterministic as alone), and takes their results
//! in seed order: the summary and the failure reported do not depend on N,
//! only the wall time does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chinwag::journal::EndReason;
use chinwag_sim::checker::{
    CLOSE_REASONS, Coverage, ERROR_KINDS, Failure, IRC_KINDS, OUTPUT_KINDS, ROOM_LINE_KINDS,
};
use chinwag_sim::faults::KINDS;
use chinwag_sim::journal::{self, Unreplayable};
use chinwag_sim::{Run, replay_command, run, run_untraced};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

/// Trace lines shown before a failure in a sweep.
const CONTEXT_LINES: usize = 25;

/// Deterministic network simulation of the chinwag server.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Replay this one seed and print its full trace.
    #[arg(long, conflicts_with_all = ["seeds", "from"])]
    seed: Option<u64>,
    /// Replay a journal recorded by `chinwag serve --journal FILE` through
    /// the broker and the reference model, and check every guarantee.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "seeds", "from", "keep_going", "jobs"])]
    journal: Option<PathBuf>,
    /// How many seeds to sweep.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed of the sweep.
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// Sweep on past failing seeds and list them all at the end, each with
    /// what broke, instead of stopping at the first.
    #[arg(long, conflicts_with = "seed")]
    keep_going: bool,
    /// Threads to run seeds on (each seed runs on one thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.journal {
        return replay_journal(path);
    }
    match args.seed {
        Some(seed) => replay(seed),
        None => sweep(args.from, args.seeds, args.keep_going, args.jobs),
    }
}

/// Runs one seed and prints everything about it.
fn replay(seed: u64) -> ExitCode {
    let run = run(seed);
    for line in &run.trace {
        println!("{line}");
    }
    let code = match &run.verdict {
        Ok(coverage) => {
            println!("PASS seed {seed}: {coverage:?}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAIL seed {seed}: {}", failure.broken);
            println!("{}", failure.detail);
            if let Some(line) = failure.trace_index {
                println!("(at trace line {}: {})", line + 1, run.trace[line]);
            }
            ExitCode::FAILURE
        }
    };
    let hash = run.hash.expect("a traced run has a hash");
    println!("trace-hash: {hash:016x}");
    code
}

/// Totals over a sweep.
#[derive(Default)]
struct Totals {
    seeds: u64,
    simulated: Duration,
    events: usize,
    messages: usize,
    deliveries: usize,
    slow_consumer_cuts: usize,
    dead_peer_cuts: usize,
    notices_skipped: usize,
    refused_full: usize,
    refused_per_address: usize,
    login_timeouts: usize,
    never_logins_checked: usize,
    finals_refused: usize,
    control_refused: usize,
    look_alikes_taken: usize,
    typed_into_shutdown: usize,
    pauses: usize,
    resumes: usize,
    max_overshoot: usize,
    steady_readers: usize,
    steady_overfull: usize,
    steady_cuts_excused: usize,
    server_resets: usize,
    server_resets_excused: usize,
    client_resets: usize,
    burst_lines: usize,
    fan_outs: usize,
    room_joins: usize,
    room_parts: usize,
    room_renames: usize,
    room_messages: usize,
    room_leaves: usize,
    room_lines: [usize; ROOM_LINE_KINDS.len()],
    outputs: [usize; OUTPUT_KINDS.len()],
    close_reasons: [usize; CLOSE_REASONS.len()],
    errors: [usize; ERROR_KINDS.len()],
    other_errors: usize,
    irc: [usize; IRC_KINDS.len()],
    faults: BTreeMap<&'static str, usize>,
}

/// What a sweep keeps of one seed's run: unlike a [`Run`], it can be sent
/// from the thread that ran it.
struct Outcome {
    seed: u64,
    simulated: Duration,
    /// The kind of every fault planned.
    faults: Vec<&'static str>,
    verdict: Result<Coverage, Failure>,
}

impl Outcome {
    fn of(run: Run) -> Outcome {
        Outcome {
            seed: run.scenario.seed,
            simulated: run.simulated,
            faults: run.scenario.faults.iter().map(|f| f.kind.name()).collect(),
            verdict: run.verdict,
        }
    }
}

impl Totals {
    fn add(&mut self, run: &Outcome) {
        self.seeds += 1;
        self.simulated += run.simulated;
        for fault in &run.faults {
            *self.faults.entry(fault).or_default() += 1;
        }
        if let Ok(coverage) = &run.verdict {
            self.events += coverage.events;
            self.messages += coverage.messages;
            self.deliveries += coverage.deliveries;
            self.slow_consumer_cuts += coverage.slow_consumer_cuts;
            self.dead_peer_cuts += coverage.dead_peer_cuts;
            self.notices_skipped += coverage.notices_skipped;
            self.refused_full += coverage.refused_full;
            self.refused_per_address += coverage.refused_per_address;
            self.login_timeouts += coverage.login_timeouts;
            self.never_logins_checked += coverage.never_logins_checked;
            self.finals_refused += coverage.finals_refused;
            self.control_refused += coverage.control_refused;
            self.look_alikes_taken += coverage.look_alikes_taken;
            self.typed_into_shutdown += coverage.typed_into_shutdown;
            self.pauses += coverage.pauses;
            self.resumes += coverage.resumes;
            self.max_overshoot = self.max_overshoot.max(coverage.max_overshoot);
            self.steady_readers += coverage.steady_readers;
            self.steady_overfull += coverage.steady_overfull;
            self.steady_cuts_excused += coverage.steady_cuts_excused;
            self.server_resets += coverage.server_resets;
            self.server_resets_excused += coverage.server_resets_excused;
            self.client_resets += coverage.client_resets;
            self.burst_lines += coverage.burst_lines;
            self.fan_outs += coverage.fan_outs;
            self.room_joins += coverage.room_joins;
            self.room_parts += coverage.room_parts;
            self.room_renames += coverage.room_renames;
            self.room_messages += coverage.room_messages;
            self.room_leaves += coverage.room_leaves;
            add(&mut self.room_lines, &coverage.room_lines);
            add(&mut self.outputs, &coverage.outputs);
            add(&mut self.close_reasons, &coverage.close_reasons);
            add(&mut self.errors, &coverage.errors);
            self.other_errors += coverage.other_errors;
            add(&mut self.irc, &coverage.irc);
        }
    }
}

/// Adds `counts` to `totals`, kind by kind.
fn add<const N: usize>(totals: &mut [usize; N], counts: &[usize; N]) {
    for (total, count) in totals.iter_mut().zip(counts) {
        *total += count;
    }
}

/// Runs `count` seeds from `from` on `jobs` threads, stopping at the first
/// failure unless `keep_going`.
fn sweep(from: u64, count: u64, keep_going: bool, jobs: u64) -> ExitCode {
    let bar = ProgressBar::new(count);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    let mut totals = Totals::default();
    let mut failure = None;
    let mut failed: Vec<(u64, String)> = Vec::new();
    let end = from.saturating_add(count);
    // Seeds are claimed in order. A failure (unless `keep_going`) lowers
    // `stop` to just past it: every seed before it was claimed already and
    // is still taken, the ones after it that ran are thrown away, exactly
    // as if they had never run.
    let next = AtomicU64::new(from);
    let stop = AtomicU64::new(end);
    let (results, outcomes) = mpsc::channel::<Outcome>();
    thread::scope(|scope| {
        for _ in 0..jobs {
            let (results, next, stop) = (results.clone(), &next, &stop);
            scope.spawn(move || {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = Outcome::of(run_untraced(seed));
                    if outcome.verdict.is_err() && !keep_going {
                        stop.fetch_min(seed + 1, Ordering::SeqCst);
                    }
                    if results.send(outcome).is_err() {
                        break;
                    }
                }
            });
        }
        drop(results);
        // Take the outcomes in seed order, whatever order they finish in.
        let mut waiting: BTreeMap<u64, Outcome> = BTreeMap::new();
        let mut expected = from;
        for outcome in outcomes {
            bar.inc(1);
            waiting.insert(outcome.seed, outcome);
            while let Some(outcome) = waiting.remove(&expected) {
                expected += 1;
                if failure.is_some() {
                    continue;
                }
                bar.set_message(format!("seed {}", outcome.seed));
                totals.add(&outcome);
                if let Err(broken) = &outcome.verdict {
                    if keep_going {
                        failed.push((outcome.seed, broken.broken.to_string()));
                    } else {
                        failure = Some(outcome);
                    }
                }
            }
        }
    });
    bar.finish_and_clear();
    let wall = started.elapsed();
    summarize(&totals, wall);
    if keep_going {
        println!("seeds failed:       {}", failed.len());
        for (seed, broken) in &failed {
            println!("  seed {seed}: {broken}");
        }
        return if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    match failure {
        None => ExitCode::SUCCESS,
        Some(untraced) => {
            // The sweep ran it untraced; run it again for its trace.
            let seed = untraced.seed;
            let run = run(seed);
            match (&run.verdict, &untraced.verdict) {
                (Err(failure), Err(first)) if failure.broken == first.broken => {
                    report(&run, failure)
                }
                _ => println!(
                    "\nFAIL seed {seed}: not deterministic: run untraced it gave {:?}, \
                     traced {:?}\nreplay: {}",
                    untraced.verdict.as_ref().err(),
                    run.verdict.as_ref().err(),
                    replay_command(seed)
                ),
            }
            ExitCode::FAILURE
        }
    }
}

fn summarize(totals: &Totals, wall: Duration) {
    let seconds = wall.as_secs_f64().max(1e-9);
    println!("seeds run:          {}", totals.seeds);
    println!(
        "simulated time:     {:.0} s",
        totals.simulated.as_secs_f64()
    );
    println!("events checked:     {}", totals.events);
    println!("messages processed: {}", totals.messages);
    println!("deliveries checked: {}", totals.deliveries);
    println!(
        "cuts checked:       {} slow consumers, {} dead peers, {} shutdowns without the notice",
        totals.slow_consumer_cuts, totals.dead_peer_cuts, totals.notices_skipped
    );
    println!(
        "closes checked:     {} refused (server full), {} refused (per address), \
         {} login timeouts; after healing {} never-login closes, {} clients refused throughout",
        totals.refused_full,
        totals.refused_per_address,
        totals.login_timeouts,
        totals.never_logins_checked,
        totals.finals_refused
    );
    println!(
        "hostile lines:      {} control characters refused, {} look-alike names taken, \
         {} lines typed into the shutdown",
        totals.control_refused, totals.look_alikes_taken, totals.typed_into_shutdown
    );
    println!(
        "flow control:       {} pauses, {} resumes; at most {} bytes past max-queue; \
         {} burst lines, {} fan-out lines",
        totals.pauses, totals.resumes, totals.max_overshoot, totals.burst_lines, totals.fan_outs
    );
    println!(
        "steady readers:     {} checked, {} overfull, {} cuts excused",
        totals.steady_readers, totals.steady_overfull, totals.steady_cuts_excused
    );
    println!(
        "resets:             {} by the server checked ({} excused by faults), {} the clients' own",
        totals.server_resets, totals.server_resets_excused, totals.client_resets
    );
    println!(
        "rooms:              {} joins, {} parts, {} renames, {} room messages, \
         {} leaves by a close (per room)",
        totals.room_joins,
        totals.room_parts,
        totals.room_renames,
        totals.room_messages,
        totals.room_leaves
    );
    let lines: Vec<String> = ROOM_LINE_KINDS
        .iter()
        .zip(totals.room_lines)
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    println!("room lines checked: {}", lines.join(", "));
    let irc: Vec<String> = IRC_KINDS
        .iter()
        .zip(totals.irc)
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    println!("irc sessions:       {}", irc.join(", "));
    let faults: usize = totals.faults.values().sum();
    println!("faults injected:    {faults} {:?}", totals.faults);
    // Every decision the broker can take, each counted, zeros included: a
    // zero is a rule the sweep never exercised.
    println!("broker decisions (a zero is a rule no seed reached):");
    println!("  outputs:          {}", output_counts(&totals.outputs));
    println!(
        "  close reasons:    {}",
        close_counts(&totals.close_reasons)
    );
    let kinds: Vec<String> = KINDS
        .iter()
        .map(|kind| format!("{} {kind}", totals.faults.get(kind).copied().unwrap_or(0)))
        .collect();
    println!("  faults:           {}", kinds.join(", "));
    println!("  error lines:");
    for (kind, count) in ERROR_KINDS.iter().zip(totals.errors) {
        println!("    {count:>9}  {kind}");
    }
    println!("    {:>9}  of no kind above", totals.other_errors);
    println!("wall time:          {seconds:.1} s");
    println!("seeds per second:   {:.2}", totals.seeds as f64 / seconds);
    println!(
        "messages per wall second: {:.0} processed, {:.0} deliveries checked",
        totals.messages as f64 / seconds,
        totals.deliveries as f64 / seconds
    );
}

/// `N send, N close, ...`: the broker's outputs by kind, zeros included.
fn output_counts(counts: &[usize; OUTPUT_KINDS.len()]) -> String {
    let counts: Vec<String> = OUTPUT_KINDS
        .iter()
        .zip(counts)
        .map(|(kind, count)| format!("{count} {kind}"))
        .collect();
    counts.join(", ")
}

/// `N peer closed, ...`: the broker's closes by reason, zeros included.
fn close_counts(counts: &[usize; CLOSE_REASONS.len()]) -> String {
    let counts: Vec<String> = CLOSE_REASONS
        .iter()
        .zip(counts)
        .map(|((_, name), count)| format!("{count} {name}"))
        .collect();
    counts.join(", ")
}

fn report(run: &Run, failure: &Failure) {
    let seed = run.scenario.seed;
    println!();
    println!("FAIL seed {seed}: {}", failure.broken);
    println!("{}", failure.detail);
    if let Some(at) = failure.trace_index {
        println!();
        println!("last events before it:");
        for line in &run.trace[at.saturating_sub(CONTEXT_LINES)..=at] {
            println!("  {line}");
        }
    }
    println!();
    println!("replay: {}", replay_command(seed));
}

/// Replays a production journal and prints what it held and the verdict.
fn replay_journal(path: &Path) -> ExitCode {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("error: cannot read {}: {error}", path.display());
            return ExitCode::from(2);
        }
    };
    let replayed = match journal::replay(&bytes) {
        Ok(replayed) => replayed,
        Err(Unreplayable::Header(error)) => {
            eprintln!("error: {}: {error}", path.display());
            return ExitCode::from(2);
        }
        Err(Unreplayable::BrokerPanicked { index, message }) => {
            println!("FAIL: the broker panicked on input #{index} of the journal: {message}");
            return ExitCode::FAILURE;
        }
        Err(Unreplayable::CheckPanicked { message }) => {
            println!("FAIL: the reference model or a guarantee check panicked: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "journal:            {} ({} bytes)",
        path.display(),
        bytes.len()
    );
    println!("config:             {:?}", replayed.config);
    println!(
        "inputs replayed:    {} over {:.3} s",
        replayed.inputs,
        replayed.last_at.since_origin().as_secs_f64()
    );
    match (replayed.end, &replayed.damage) {
        (_, Some(damage)) => println!("ends:               damaged: {damage}; replayed up to it"),
        (Some(reason), None) => println!("ends:               {reason}"),
        (None, None) => println!(
            "ends:               without an end record (the server was killed, or is still \
             recording)"
        ),
    }
    if replayed.end == Some(EndReason::BrokerPanicked) {
        println!(
            "FAIL: the recorded broker panicked on the last input, and this one did not: \
             another build, or a broker that is not deterministic"
        );
        return ExitCode::FAILURE;
    }
    match replayed.verdict {
        Ok(coverage) => {
            println!("messages processed: {}", coverage.messages);
            println!("outputs:            {}", output_counts(&coverage.outputs));
            println!(
                "closes:             {}",
                close_counts(&coverage.close_reasons)
            );
            println!(
                "PASS: the broker matched the reference model at every input, and every \
                 guarantee held"
            );
            ExitCode::SUCCESS
        }
        Err(failure) => {
            println!("FAIL: {}", failure.broken);
            println!("{}", failure.detail);
            ExitCode::FAILURE
        }
    }
}
