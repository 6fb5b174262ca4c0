//! The production journal: `chinwag serve --journal FILE`.
//!
//! [`Journal`] is a shell [`Observer`] that records every input the broker
//! is handed, with its time, in the format of `chinwag::journal` (the pure
//! encoding, in the core). Replayed through a fresh broker, the recording
//! gives back every decision the server made; the simulator's
//! `--journal FILE` does that and checks every guarantee offline.
//!
//! The broker task is the server's one serial step, so the journal costs
//! it as little as possible: it encodes each input into a chunk in memory
//! and hands full chunks (or, after [`FLUSH_INTERVAL`], partial ones) to a
//! writer thread through a bounded channel. The broker never waits on the
//! disk. Every limit ends the recording rather than the service:
//!
//! - at `--journal-max-bytes` the journal ends (`Capped`) and the server
//!   runs on unrecorded. A journal can only be replayed from its start, so
//!   it is capped, not rotated;
//! - if the disk falls [`CHUNKS_IN_FLIGHT_MAX`] chunks behind, the journal
//!   ends (`FellBehind`), so memory stays bounded;
//! - if a write fails, the journal ends where the last write did.
//!
//! Each ending is logged, and all but a failed write leave an end record
//! saying why. So does a broker panic: the input it panicked on is written
//! out before the process aborts, and replaying the journal reproduces it.
//!
//! The journal holds every line every client sent, so the file is created
//! readable by its owner only, and never over an existing file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::broker::Input;
use crate::config::Config;
use crate::journal::{END_RECORD_BYTES_MAX, EndReason, encode_end, encode_header, encode_input};
use crate::shell::Observer;
use crate::time::Time;

/// A chunk is handed to the writer once it holds this many bytes: large
/// writes, few wake-ups.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks handed to the writer and not yet written: with [`CHUNK_BYTES`],
/// 4 MiB of memory at most.
pub const CHUNKS_IN_FLIGHT_MAX: usize = 64;

/// A partial chunk is handed over when its first record is this old, so a
/// quiet server's records reach the file soon after the broker's next
/// input (or at once at shutdown or on a panic).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The smallest `--journal-max-bytes`: a header, an end record and room
/// for some records.
pub const JOURNAL_BYTES_MIN: u64 = 4096;

/// How long a broker panic, or the end of the process, waits for the
/// writer to save what it has.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// How a writer thread reports that it is done.
#[derive(Default)]
struct Done {
    finished: Mutex<bool>,
    changed: Condvar,
}

impl Done {
    fn set(&self) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.changed.notify_all();
    }

    /// Whether the writer finished within `timeout`.
    fn wait(&self, timeout: Duration) -> bool {
        let finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        let (finished, _) = self
            .changed
            .wait_timeout_while(finished, timeout, |finished| !*finished)
            .unwrap_or_else(|e| e.into_inner());
        *finished
    }
}

/// What the broker task's side and the writer thread share.
#[derive(Default)]
struct Shared {
    /// The end record, written after the last chunk.
    last_words: Mutex<Option<Vec<u8>>>,
    /// A write failed: the recording has stopped.
    failed: AtomicBool,
    done: Done,
}

/// The broker task's side: encodes inputs and hands chunks to the writer.
pub struct Journal {
    /// `None` once the recording has ended.
    to_writer: Option<SyncSender<Vec<u8>>>,
    chunk: Vec<u8>,
    /// The time of the chunk's first record, if it has one.
    chunk_opened_at: Option<Time>,
    /// The time of the last record before the chunk (an end record written
    /// in place of a lost chunk counts from it).
    before_chunk: Time,
    /// The time of the last record encoded.
    previous: Time,
    /// Bytes handed to the writer so far.
    handed_bytes: u64,
    max_bytes: u64,
    shared: Arc<Shared>,
}

/// The writer thread's handle, kept by whoever waits for the end.
pub struct JournalWriter {
    path: PathBuf,
    shared: Arc<Shared>,
}

impl Journal {
    /// Creates the journal file at `path` (never over an existing file) for
    /// a broker with `config`, capped at `max_bytes`, and starts its writer
    /// thread.
    pub fn create(
        path: &Path,
        config: &Config,
        max_bytes: u64,
    ) -> io::Result<(Journal, JournalWriter)> {
        assert!(
            max_bytes >= JOURNAL_BYTES_MIN,
            "journal cap below the minimum"
        );
        let file = create_private(path)?;
        let (to_writer, chunks) = mpsc::sync_channel(CHUNKS_IN_FLIGHT_MAX);
        let shared = Arc::new(Shared::default());
        {
            let (path, shared) = (path.to_path_buf(), shared.clone());
            thread::Builder::new()
                .name("journal".into())
                .spawn(move || write_chunks(&path, file, &chunks, &shared))?;
        }
        let journal = Journal::new(to_writer, shared.clone(), config, max_bytes);
        let writer = JournalWriter {
            path: path.to_path_buf(),
            shared,
        };
        Ok((journal, writer))
    }

    /// A journal handing its chunks to `to_writer`, starting with the header.
    fn new(
        to_writer: SyncSender<Vec<u8>>,
        shared: Arc<Shared>,
        config: &Config,
        max_bytes: u64,
    ) -> Journal {
        let mut chunk = Vec::with_capacity(CHUNK_BYTES);
        encode_header(config, &mut chunk);
        Journal {
            to_writer: Some(to_writer),
            chunk,
            chunk_opened_at: Some(Time::ZERO),
            before_chunk: Time::ZERO,
            previous: Time::ZERO,
            handed_bytes: 0,
            max_bytes,
            shared,
        }
    }

    /// Hands the chunk to the writer; false (keeping the chunk) if the
    /// writer is [`CHUNKS_IN_FLIGHT_MAX`] chunks behind.
    fn hand_over(&mut self) -> bool {
        let Some(to_writer) = &self.to_writer else {
            return false;
        };
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK_BYTES));
        let len = chunk.len() as u64;
        match to_writer.try_send(chunk) {
            Ok(()) => {
                self.handed_bytes += len;
                self.chunk_opened_at = None;
                self.before_chunk = self.previous;
                true
            }
            Err(TrySendError::Full(chunk) | TrySendError::Disconnected(chunk)) => {
                self.chunk = chunk;
                false
            }
        }
    }

    /// [`Journal::hand_over`], retrying for up to [`FINISH_WAIT`]: for the
    /// last chunk, when the broker has stopped or panicked and nothing is
    /// left to hold up.
    fn hand_over_patiently(&mut self) -> bool {
        let deadline = Instant::now() + FINISH_WAIT;
        while !self.hand_over() {
            if Instant::now() >= deadline || self.shared.failed.load(Ordering::Relaxed) {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Ends the recording: hands over the last chunk, then the end record,
    /// and lets the writer finish.
    fn end(&mut self, reason: EndReason) {
        if self.to_writer.is_none() {
            return;
        }
        // A chunk the writer has no room for is lost, and the end record
        // follows the last chunk it took.
        let lost_chunk = !self.chunk.is_empty()
            && !match reason {
                EndReason::Stopped | EndReason::BrokerPanicked => self.hand_over_patiently(),
                EndReason::Capped | EndReason::FellBehind => self.hand_over(),
            };
        let (reason, after) = if lost_chunk {
            (EndReason::FellBehind, self.before_chunk)
        } else {
            (reason, self.previous)
        };
        let mut last_words = Vec::with_capacity(END_RECORD_BYTES_MAX);
        encode_end(after, self.previous, reason, &mut last_words);
        *self
            .shared
            .last_words
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(last_words);
        self.to_writer = None;
        match reason {
            EndReason::Stopped | EndReason::BrokerPanicked => {
                info!(
                    handed_bytes = self.handed_bytes,
                    "journal: {reason}, recording ends"
                );
            }
            EndReason::Capped | EndReason::FellBehind => warn!(
                handed_bytes = self.handed_bytes,
                "journal: {reason}; the server goes on without recording"
            ),
        }
    }
}

impl Observer for Journal {
    fn handing(&mut self, now: Time, input: &Input) {
        if self.to_writer.is_none() {
            return;
        }
        if self.shared.failed.load(Ordering::Relaxed) {
            // The writer has logged why.
            self.to_writer = None;
            return;
        }
        let before = self.chunk.len();
        encode_input(self.previous, now, input, &mut self.chunk);
        let would_be = self.handed_bytes + self.chunk.len() as u64;
        if would_be + END_RECORD_BYTES_MAX as u64 > self.max_bytes {
            self.chunk.truncate(before);
            self.end(EndReason::Capped);
            return;
        }
        self.previous = now;
        let opened_at = *self.chunk_opened_at.get_or_insert(now);
        let full = self.chunk.len() >= CHUNK_BYTES;
        if (full || now.saturating_since(opened_at) >= FLUSH_INTERVAL) && !self.hand_over() {
            self.end(EndReason::FellBehind);
        }
    }

    fn broker_panicked(&mut self) {
        self.end(EndReason::BrokerPanicked);
        if !self.shared.done.wait(FINISH_WAIT) {
            error!("journal: the writer did not finish within {FINISH_WAIT:?} of the panic");
        }
    }
}

impl Drop for Journal {
    /// The broker task has ended: the server stopped.
    fn drop(&mut self) {
        self.end(EndReason::Stopped);
    }
}

impl JournalWriter {
    /// Waits (a moment at most) for the writer to save everything the
    /// broker task handed it; call it once the server has stopped.
    pub fn finish(self) {
        if self.shared.done.wait(FINISH_WAIT) {
            info!(path = %self.path.display(), "journal saved");
        } else {
            warn!(
                path = %self.path.display(),
                "journal: the broker was still running at exit; the journal ends \
                 without an end record"
            );
        }
    }
}

/// Creates `path` for writing, failing if it exists, readable and writable
/// by its owner only.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// The writer thread: writes chunks as they come, then the end record,
/// then syncs the file and says it is done.
fn write_chunks(path: &Path, mut file: File, chunks: &Receiver<Vec<u8>>, shared: &Shared) {
    let started = Instant::now();
    let mut written: u64 = 0;
    let mut failed = None;
    for chunk in chunks {
        if failed.is_some() {
            continue;
        }
        match file.write_all(&chunk) {
            Ok(()) => written += chunk.len() as u64,
            Err(error) => {
                shared.failed.store(true, Ordering::Relaxed);
                failed = Some(error);
            }
        }
    }
    let last_words = shared
        .last_words
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let ended = match (failed, last_words) {
        (Some(error), _) => Err(error),
        (None, Some(last_words)) => file
            .write_all(&last_words)
            .map(|()| written += last_words.len() as u64),
        (None, None) => Ok(()),
    }
    .and_then(|()| file.sync_data());
    match ended {
        Ok(()) => info!(
            path = %path.display(),
            written_bytes = written,
            seconds = started.elapsed().as_secs_f64(),
            "journal closed"
        ),
        Err(error) => error!(
            path = %path.display(),
            %error,
            written_bytes = written,
            "journal write failed; the journal ends at the last whole write"
        ),
    }
    shared.done.set();
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::broker::ConnId;
    use crate::journal::{Reader, Record};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("chinwag-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn line(conn: u64, text: &str) -> Input {
        Input::Line {
            conn: ConnId(conn),
            frame: Ok(text.to_string()),
        }
    }

    fn read(path: &Path) -> (Config, Vec<Record>) {
        let bytes = std::fs::read(path).unwrap();
        let (config, reader) = Reader::open(&bytes).unwrap();
        (config, reader.map(Result::unwrap).collect())
    }

    #[test]
    fn every_input_is_recorded_in_order_and_the_end_says_why() {
        let path = scratch("order");
        let config = Config {
            max_queue: 12_345,
            ..Config::default()
        };
        let (mut journal, writer) = Journal::create(&path, &config, 1 << 30).unwrap();
        let opened = Input::Opened {
            conn: ConnId(1),
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let mut inputs = vec![opened];
        // Enough lines for several chunks: a burst fills chunks, then a
        // trickle has partial ones handed over by time.
        for i in 0..20_000 {
            inputs.push(line(1, &format!("bob: message {i}")));
        }
        let at = |i: usize| {
            let millis = if i < 10_000 {
                i / 100
            } else {
                100 + (i - 10_000) / 5
            };
            Time::from_origin(Duration::from_millis(millis as u64))
        };
        for (i, input) in inputs.iter().enumerate() {
            journal.handing(at(i), input);
        }
        drop(journal);
        writer.finish();
        let (read_config, records) = read(&path);
        assert_eq!(read_config, config);
        assert_eq!(records.len(), inputs.len() + 1);
        for (i, (record, input)) in records.iter().zip(&inputs).enumerate() {
            let input = input.clone();
            assert_eq!(record, &Record::Input { at: at(i), input });
        }
        assert!(matches!(
            records.last(),
            Some(Record::End {
                reason: EndReason::Stopped,
                ..
            })
        ));
    }

    #[test]
    fn a_journal_at_its_cap_ends_with_a_record_saying_so_and_stays_under_it() {
        let path = scratch("capped");
        let cap = 10_000;
        let (mut journal, writer) = Journal::create(&path, &Config::default(), cap).unwrap();
        for i in 0..1_000 {
            journal.handing(Time::ZERO, &line(1, &format!("bob: {i}")));
        }
        drop(journal);
        writer.finish();
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= cap, "{size} bytes");
        assert!(size > cap - 100, "{size} bytes: the cap was not used");
        let (_, records) = read(&path);
        assert!(records.len() > 100);
        assert!(matches!(
            records.last(),
            Some(Record::End {
                reason: EndReason::Capped,
                ..
            })
        ));
    }

    #[test]
    fn a_panic_is_recorded_after_the_input_it_happened_on() {
        let path = scratch("panicked");
        let (mut journal, writer) = Journal::create(&path, &Config::default(), 1 << 20).unwrap();
        journal.handing(Time::ZERO, &line(7, "bob: the last straw"));
        journal.broker_panicked();
        // The writer has finished before `broker_panicked` returned.
        assert!(writer.shared.done.wait(Duration::ZERO));
        let (_, records) = read(&path);
        assert_eq!(
            records,
            [
                Record::Input {
                    at: Time::ZERO,
                    input: line(7, "bob: the last straw")
                },
                Record::End {
                    at: Time::ZERO,
                    reason: EndReason::BrokerPanicked
                }
            ]
        );
        drop(journal);
    }

    #[test]
    fn a_journal_the_disk_cannot_keep_up_with_ends_rather_than_waits() {
        let (to_writer, chunks) = mpsc::sync_channel(CHUNKS_IN_FLIGHT_MAX);
        let shared = Arc::new(Shared::default());
        let mut journal = Journal::new(to_writer, shared.clone(), &Config::default(), u64::MAX);
        // Nothing takes the chunks: a stuck disk. Each input is 1 ms after
        // the last, so every chunk is handed over by time.
        let at = |i: u64| Time::from_origin(Duration::from_millis(i));
        let mut i = 0;
        while journal.to_writer.is_some() {
            journal.handing(at(i), &line(1, "bob: hello"));
            i += 1;
            assert!(i < 1_000_000, "the journal never gave up");
        }
        // The writer took 64 chunks, each of 101 inputs (a chunk is handed
        // over with the input 100 ms after its first), and the journal
        // ended at the next one.
        let handed: Vec<Vec<u8>> = chunks.try_iter().collect();
        assert_eq!(handed.len(), CHUNKS_IN_FLIGHT_MAX);
        let Some(last_words) = shared.last_words.lock().unwrap().take() else {
            panic!("no end record");
        };
        let mut bytes = handed.concat();
        bytes.extend_from_slice(&last_words);
        let (_, reader) = Reader::open(&bytes).unwrap();
        let records: Vec<Record> = reader.map(Result::unwrap).collect();
        let (end, inputs) = records.split_last().unwrap();
        assert_eq!(inputs.len() as u64, 64 * 101);
        // The end record follows the last input the writer took, and is
        // dated when the journal gave up, at the 101st input of the chunk
        // the writer had no room for.
        let last_taken = at(64 * 101 - 1);
        assert!(matches!(inputs.last(), Some(Record::Input { at, .. }) if *at == last_taken));
        assert_eq!(
            end,
            &Record::End {
                at: at(64 * 101 + 100),
                reason: EndReason::FellBehind
            }
        );
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let path = scratch("existing");
        std::fs::write(&path, b"evidence").unwrap();
        let error = Journal::create(&path, &Config::default(), 1 << 20)
            .err()
            .unwrap();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"evidence");
    }
}
