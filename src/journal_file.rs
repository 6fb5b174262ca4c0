//! The production journal: `chinwag serve --journal FILE`.
//!
//! [`Journal`] is a shell [`Observer`] that records every input the broker
//! is handed, with its time, in the format of `chinwag::journal` (the pure
//! encoding, in the core). Replayed through a fresh broker, the recording
//! gives back every decision the server made; the simulator's
//! `--journal FILE` does that and checks every guarantee offline.
//!
//! The broker task is the server's one serial step, so the journal costs
//! it as little as possible: it encodes each input onto a pending buffer
//! (a short, uncontended lock), and a writer thread takes the buffer and
//! writes it: whenever [`CHUNK_BYTES`] have gathered, and at least every
//! [`FLUSH_INTERVAL`] whatever the broker is doing. The broker never waits
//! on the disk. Every limit ends the recording rather than the service:
//!
//! - at `--journal-max-bytes` the journal ends (`Capped`) and the server
//!   runs on unrecorded. A journal can only be replayed from its start, so
//!   it is capped, not rotated;
//! - if [`PENDING_BYTES_MAX`] gather unwritten (the disk has stalled), the
//!   journal ends (`FellBehind`), so memory stays bounded;
//! - if a write fails, the journal ends where the failed write left it.
//!
//! Each ending is logged, and all but a failed write leave an end record
//! saying why: the server stopped, or the process exited with the broker
//! still running (a second signal, or `--shutdown-timeout`), or the broker
//! panicked, in which case the input it panicked on is written out before
//! the process aborts and replaying the journal reproduces the panic. A
//! process killed outright loses at most the last [`FLUSH_INTERVAL`].
//!
//! The journal holds every line every client sent, so the file is created
//! readable by its owner only, and never over an existing file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::broker::Input;
use crate::config::Config;
use crate::journal::{END_RECORD_BYTES_MAX, EndReason, encode_end, encode_header, encode_input};
use crate::shell::Observer;
use crate::time::Time;

/// The writer takes the pending buffer as soon as this much has gathered:
/// large writes, few wake-ups.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The most bytes that may wait for the writer; past it the journal ends.
/// The disk has then stalled for as long as the broker took to produce
/// 4 MiB of inputs.
pub const PENDING_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The writer takes whatever is pending at least this often, so records
/// reach the file this soon even when the broker is idle.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// The smallest `--journal-max-bytes`: a header, an end record and room
/// for some records.
pub const JOURNAL_BYTES_MIN: u64 = 4096;

/// How long a broker panic, or the end of the process, waits for the
/// writer to save what is pending.
const FINISH_WAIT: Duration = Duration::from_secs(1);

/// What the broker task's side and the writer thread share.
struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the writer should take the buffer at once (a chunk
    /// has gathered, or the journal has ended), and when it is done.
    changed: Condvar,
}

/// The recording's state, behind the lock.
struct Pending {
    /// Encoded and not yet taken by the writer.
    bytes: Vec<u8>,
    /// The time of the last record encoded.
    previous: Time,
    /// Bytes encoded so far, taken or not.
    encoded_bytes: u64,
    max_bytes: u64,
    /// Set once the end record (if any) is encoded: nothing more is.
    ended: Option<EndReason>,
    /// The writer failed to write: the journal ends where it failed.
    failed: bool,
    /// The writer has written everything and closed the file.
    done: bool,
}

impl Pending {
    /// Appends the end record, dated `at`, and ends the recording.
    fn end(&mut self, at: Time, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        encode_end(self.previous, at, reason, &mut self.bytes);
        self.ended = Some(reason);
        match reason {
            EndReason::Stopped | EndReason::BrokerPanicked => {
                info!("journal: {reason}, recording ends");
            }
            EndReason::Capped | EndReason::FellBehind | EndReason::Exited => warn!(
                encoded_bytes = self.encoded_bytes,
                "journal: {reason}; nothing after this is recorded"
            ),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the recording (if it has not ended) and waits a moment for
    /// the writer to write everything out; whether it did.
    fn end_and_wait(&self, reason: EndReason) -> bool {
        let mut pending = self.lock();
        let at = pending.previous;
        pending.end(at, reason);
        self.changed.notify_all();
        let (pending, _) = self
            .changed
            .wait_timeout_while(pending, FINISH_WAIT, |pending| !pending.done)
            .unwrap_or_else(|e| e.into_inner());
        pending.done && !pending.failed
    }
}

/// The broker task's side: encodes each input onto the pending buffer.
pub struct Journal {
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
    /// thread, which writes the header at once.
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
        let shared = Journal::shared(config, max_bytes);
        {
            let (path, shared) = (path.to_path_buf(), shared.clone());
            thread::Builder::new()
                .name("journal".into())
                .spawn(move || write_pending(&path, file, &shared))?;
        }
        let journal = Journal {
            shared: shared.clone(),
        };
        let writer = JournalWriter {
            path: path.to_path_buf(),
            shared,
        };
        Ok((journal, writer))
    }

    /// The shared state of a journal of a broker with `config`: the
    /// header, pending.
    fn shared(config: &Config, max_bytes: u64) -> Arc<Shared> {
        let mut bytes = Vec::with_capacity(CHUNK_BYTES);
        encode_header(config, &mut bytes);
        let encoded_bytes = bytes.len() as u64;
        Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes,
                previous: Time::ZERO,
                encoded_bytes,
                max_bytes,
                ended: None,
                failed: false,
                done: false,
            }),
            changed: Condvar::new(),
        })
    }
}

impl Observer for Journal {
    fn handing(&mut self, now: Time, input: &Input) {
        let mut pending = self.shared.lock();
        if pending.ended.is_some() || pending.failed {
            return;
        }
        let before = pending.bytes.len();
        let previous = pending.previous;
        encode_input(previous, now, input, &mut pending.bytes);
        let record_bytes = (pending.bytes.len() - before) as u64;
        if pending.encoded_bytes + record_bytes + END_RECORD_BYTES_MAX as u64 > pending.max_bytes {
            pending.bytes.truncate(before);
            pending.end(now, EndReason::Capped);
        } else if pending.bytes.len() > PENDING_BYTES_MAX {
            pending.bytes.truncate(before);
            pending.end(now, EndReason::FellBehind);
        } else {
            pending.encoded_bytes += record_bytes;
            pending.previous = now;
            if pending.bytes.len() < CHUNK_BYTES {
                return;
            }
        }
        self.shared.changed.notify_all();
    }

    fn broker_panicked(&mut self) {
        if !self.shared.end_and_wait(EndReason::BrokerPanicked) {
            error!("journal: not all of it was written out within {FINISH_WAIT:?} of the panic");
        }
    }
}

impl Drop for Journal {
    /// The broker task has ended: the server stopped.
    fn drop(&mut self) {
        let mut pending = self.shared.lock();
        let at = pending.previous;
        pending.end(at, EndReason::Stopped);
        self.shared.changed.notify_all();
    }
}

impl JournalWriter {
    /// Ends the journal, if the broker task has not (the process is
    /// exiting with it still running), and waits a moment for the writer
    /// to write everything out. Call it once the server has stopped.
    pub fn finish(self) {
        // `Exited` only if the broker task had not ended the journal.
        if self.shared.end_and_wait(EndReason::Exited) {
            info!(path = %self.path.display(), "journal saved");
        } else {
            warn!(
                path = %self.path.display(),
                "journal: not all of it was written out (see the errors above, or the disk \
                 was too slow to write it within {FINISH_WAIT:?})"
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

/// The writer thread: takes what is pending when a chunk has gathered, the
/// journal has ended or [`FLUSH_INTERVAL`] has passed, and writes it; once
/// the end record is written, syncs the file and says it is done.
fn write_pending(path: &Path, mut file: File, shared: &Shared) {
    let started = Instant::now();
    let mut written_bytes: u64 = 0;
    let mut taken = Vec::with_capacity(CHUNK_BYTES);
    let outcome = loop {
        let ended = {
            let pending = shared.lock();
            let (mut pending, _) = shared
                .changed
                .wait_timeout_while(pending, FLUSH_INTERVAL, |pending| {
                    pending.bytes.len() < CHUNK_BYTES && pending.ended.is_none()
                })
                .unwrap_or_else(|e| e.into_inner());
            std::mem::swap(&mut pending.bytes, &mut taken);
            pending.ended.is_some()
        };
        if let Err(error) = file.write_all(&taken) {
            break Err(error);
        }
        written_bytes += taken.len() as u64;
        taken.clear();
        if ended {
            break file.sync_data();
        }
    };
    let mut pending = shared.lock();
    match outcome {
        Ok(()) => info!(
            path = %path.display(),
            written_bytes,
            seconds = started.elapsed().as_secs_f64(),
            "journal closed"
        ),
        Err(error) => {
            // Nothing more is recorded.
            pending.failed = true;
            error!(
                path = %path.display(),
                %error,
                written_bytes,
                "journal write failed; the journal ends where the write stopped (a replay \
                 reads it up to the last whole record)"
            );
        }
    }
    pending.done = true;
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::broker::ConnId;
    use crate::journal::{Reader, Record};

    /// A fresh path in a scratch directory of this test process.
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

    fn decode(bytes: &[u8]) -> (Config, Vec<Record>) {
        let (config, reader) = Reader::open(bytes).unwrap();
        (config, reader.map(Result::unwrap).collect())
    }

    /// Reads the journal at `path`, and removes it.
    fn read(path: &Path) -> (Config, Vec<Record>) {
        let bytes = std::fs::read(path).unwrap();
        std::fs::remove_file(path).unwrap();
        decode(&bytes)
    }

    fn end_reason(records: &[Record]) -> Option<EndReason> {
        match records.last() {
            Some(Record::End { reason, .. }) => Some(*reason),
            _ => None,
        }
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
            dialect: chinwag_core::news::Dialect::Line,
        };
        let mut inputs = vec![opened];
        // Enough for several chunks.
        for i in 0..20_000 {
            inputs.push(line(1, &format!("bob: message {i}")));
        }
        let at = |i: usize| Time::from_origin(Duration::from_micros(i as u64 * 37));
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
        assert_eq!(
            records.last(),
            Some(&Record::End {
                at: at(inputs.len() - 1),
                reason: EndReason::Stopped
            })
        );
    }

    #[test]
    fn the_header_and_each_record_reach_the_file_without_more_input() {
        let path = scratch("idle");
        let (mut journal, writer) = Journal::create(&path, &Config::default(), 1 << 20).unwrap();
        journal.handing(Time::ZERO, &line(1, "bob: the last before a quiet spell"));
        // No more inputs: the writer takes the record on its own.
        let written = (0..500).any(|_| {
            thread::sleep(Duration::from_millis(10));
            let bytes = std::fs::read(&path).unwrap();
            Reader::open(&bytes).is_ok_and(|(_, reader)| reader.count() == 1)
        });
        assert!(written, "the record never reached the file");
        drop(journal);
        writer.finish();
        std::fs::remove_file(&path).unwrap();
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
        assert_eq!(end_reason(&records), Some(EndReason::Capped));
    }

    #[test]
    fn a_panic_is_recorded_after_the_input_it_happened_on() {
        let path = scratch("panicked");
        let (mut journal, writer) = Journal::create(&path, &Config::default(), 1 << 20).unwrap();
        journal.handing(Time::ZERO, &line(7, "bob: the last straw"));
        journal.broker_panicked();
        // Written out before `broker_panicked` returned.
        assert!(writer.shared.lock().done);
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
    }

    #[test]
    fn an_exit_with_the_broker_still_running_saves_what_it_recorded() {
        let path = scratch("exited");
        let (mut journal, writer) = Journal::create(&path, &Config::default(), 1 << 20).unwrap();
        let at = Time::from_origin(Duration::from_secs(3));
        journal.handing(at, &Input::Shutdown);
        // The process exits: the broker task (and the journal) live on.
        writer.finish();
        let (_, records) = read(&path);
        assert_eq!(
            records,
            [
                Record::Input {
                    at,
                    input: Input::Shutdown
                },
                Record::End {
                    at,
                    reason: EndReason::Exited
                }
            ]
        );
        journal.handing(at, &line(1, "bob: too late"));
    }

    #[test]
    fn a_journal_the_disk_cannot_keep_up_with_ends_rather_than_waits() {
        // No writer: a stuck disk.
        let shared = Journal::shared(&Config::default(), u64::MAX);
        let mut journal = Journal {
            shared: shared.clone(),
        };
        let at = |i: u64| Time::from_origin(Duration::from_millis(i));
        let mut i = 0;
        while shared.lock().ended.is_none() {
            journal.handing(at(i), &line(1, "bob: hello"));
            i += 1;
            assert!(i < 10_000_000, "the journal never gave up");
        }
        let bytes = std::mem::take(&mut shared.lock().bytes);
        assert!(bytes.len() <= PENDING_BYTES_MAX + END_RECORD_BYTES_MAX);
        let (_, records) = decode(&bytes);
        let (end, inputs) = records.split_last().unwrap();
        // Every input but the one that did not fit, then the end, dated
        // when the journal gave up.
        assert_eq!(inputs.len() as u64, i - 1);
        assert_eq!(
            end,
            &Record::End {
                at: at(i - 1),
                reason: EndReason::FellBehind
            }
        );
        drop(journal);
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
        std::fs::remove_file(&path).unwrap();
    }
}
