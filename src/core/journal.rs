//! The journal format: every broker input with its time, as compact bytes.
//!
//! The broker is deterministic, so the inputs it was handed, their times and
//! its configuration are the whole of a run: fed to a fresh broker they give
//! back every output, in order. `chinwag serve --journal FILE` records them
//! in this format (the writing is the shell's, in `chinwag::journal`), and
//! the simulator's `--journal FILE` replays a recording through the broker
//! and the reference model and checks every guarantee offline. A production
//! incident becomes a deterministic test case.
//!
//! This module is only the format, bytes in and bytes out, with no I/O:
//!
//! ```text
//! journal  = header record* [end]
//! header   = "chinwag journal\n" version:u8 config
//! config   = max_line max_queue max_connections max_connections_per_address
//!            slow_timeout write_timeout shutdown_timeout login_timeout
//!            max_rooms_per_connection max_room_members
//! record   = delta tag body       delta: nanoseconds since the last record
//!            (an opened record's body is conn dialect:u8 address, the
//!            dialect 0 for the line protocol and 1 for IRC)
//! end      = delta END reason:u8  nothing follows it
//! ```
//!
//! Every number is an unsigned LEB128 varint, durations in nanoseconds, so
//! a line costs its text plus about seven bytes and a flush about six. A
//! journal cut short (the process was killed mid-write) reads as far as its
//! last whole record and then reports where it was cut: the prefix is still
//! a run to check.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use crate::broker::{ConnId, Input};
use crate::codec::FrameError;
use crate::config::Config;
use crate::news::Dialect;
use crate::time::Time;

/// The first bytes of every journal.
pub const MAGIC: &[u8] = b"chinwag journal\n";

/// The format's version, after the magic. Bumped whenever [`Input`] or
/// [`Config`] changes what a journal must hold.
pub const VERSION: u8 = 2;

/// The most bytes an end record takes: the writer keeps this much room
/// under its cap, so a capped journal still says why it ends.
pub const END_RECORD_BYTES_MAX: usize = VARINT_BYTES_MAX + 2;

/// The most bytes a varint of a `u128` takes.
const VARINT_BYTES_MAX: usize = 19;

// Record tags. The frame's outcome is part of a line's tag.
const OPENED_V4: u8 = 0;
const OPENED_V6: u8 = 1;
/// An opened record's dialect byte.
const DIALECT_LINE: u8 = 0;
const DIALECT_IRC: u8 = 1;
const LINE: u8 = 2;
const LINE_TOO_LONG: u8 = 3;
const LINE_INVALID_UTF8: u8 = 4;
const FLUSHED: u8 = 5;
const CLOSED: u8 = 6;
const RELEASED: u8 = 7;
const SHUTDOWN: u8 = 8;
const TIMEOUT: u8 = 9;
const END: u8 = 10;

/// Why a journal ends, in its end record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The broker stopped: the server shut down.
    Stopped,
    /// The journal reached its size cap; the server ran on unrecorded.
    Capped,
    /// The disk could not keep up, and the journal stopped rather than
    /// slow the broker down or grow memory; the server ran on unrecorded.
    FellBehind,
    /// The broker panicked on the input recorded last.
    BrokerPanicked,
    /// The process exited with the broker still running: a second signal,
    /// or `--shutdown-timeout` passed with connections left.
    Exited,
}

impl EndReason {
    const ALL: [EndReason; 5] = [
        EndReason::Stopped,
        EndReason::Capped,
        EndReason::FellBehind,
        EndReason::BrokerPanicked,
        EndReason::Exited,
    ];

    fn code(self) -> u8 {
        match self {
            EndReason::Stopped => 0,
            EndReason::Capped => 1,
            EndReason::FellBehind => 2,
            EndReason::BrokerPanicked => 3,
            EndReason::Exited => 4,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::Stopped => "the server stopped",
            EndReason::Capped => "the journal reached its size cap",
            EndReason::FellBehind => "the journal fell behind the broker",
            EndReason::BrokerPanicked => "the broker panicked on the last input",
            EndReason::Exited => "the process exited with the broker still running",
        })
    }
}

/// Appends the header of a journal of a broker run with `config`.
pub fn encode_header(config: &Config, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    for count in [
        config.max_line,
        config.max_queue,
        config.max_connections,
        config.max_connections_per_address,
    ] {
        put(out, count as u128);
    }
    for duration in [
        config.slow_timeout,
        config.write_timeout,
        config.shutdown_timeout,
        config.login_timeout,
    ] {
        put(out, duration.as_nanos());
    }
    for count in [config.max_rooms_per_connection, config.max_room_members] {
        put(out, count as u128);
    }
}

/// Appends the record of `input`, handed to the broker at `now`, after a
/// record (or the header) at `previous`. Time never goes backwards for the
/// broker, so the delta is never negative.
pub fn encode_input(previous: Time, now: Time, input: &Input, out: &mut Vec<u8>) {
    debug_assert!(now >= previous, "time went backwards");
    put(out, now.saturating_since(previous).as_nanos());
    match input {
        Input::Opened {
            conn,
            address,
            dialect,
        } => {
            let dialect = match dialect {
                Dialect::Line => DIALECT_LINE,
                Dialect::Irc => DIALECT_IRC,
            };
            match address {
                IpAddr::V4(v4) => {
                    out.push(OPENED_V4);
                    put(out, conn.0.into());
                    out.push(dialect);
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.push(OPENED_V6);
                    put(out, conn.0.into());
                    out.push(dialect);
                    out.extend_from_slice(&v6.octets());
                }
            }
        }
        Input::Line { conn, frame } => match frame {
            Ok(text) => {
                out.push(LINE);
                put(out, conn.0.into());
                put(out, text.len() as u128);
                out.extend_from_slice(text.as_bytes());
            }
            Err(FrameError::LineTooLong) => {
                out.push(LINE_TOO_LONG);
                put(out, conn.0.into());
            }
            Err(FrameError::InvalidUtf8) => {
                out.push(LINE_INVALID_UTF8);
                put(out, conn.0.into());
            }
        },
        Input::Flushed { conn, bytes } => {
            out.push(FLUSHED);
            put(out, conn.0.into());
            put(out, *bytes as u128);
        }
        Input::Closed { conn } => {
            out.push(CLOSED);
            put(out, conn.0.into());
        }
        Input::Released { conn } => {
            out.push(RELEASED);
            put(out, conn.0.into());
        }
        Input::Shutdown => out.push(SHUTDOWN),
        Input::Timeout => out.push(TIMEOUT),
    }
}

/// Appends the end record, at `now`, after a record at `previous`.
pub fn encode_end(previous: Time, now: Time, reason: EndReason, out: &mut Vec<u8>) {
    put(out, now.saturating_since(previous).as_nanos());
    out.push(END);
    out.push(reason.code());
}

/// One record of a journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The broker was handed `input` at `at`.
    Input { at: Time, input: Input },
    /// The journal ends here for `reason`, at `at`: when an input did not
    /// fit (`Capped`, `FellBehind`), else at the last input recorded.
    End { at: Time, reason: EndReason },
}

/// Why bytes are not a journal, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The offset of the first byte that could not be read.
    pub offset: usize,
    pub problem: Problem,
}

/// What is wrong at a [`DecodeError`]'s offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file does not start with [`MAGIC`].
    NotAJournal,
    /// A journal of another version of the format.
    Version(u8),
    /// The bytes end in the middle of a record.
    CutShort,
    /// A tag no record has.
    UnknownTag(u8),
    /// An end reason no end record has.
    UnknownEndReason(u8),
    /// A dialect no connection speaks.
    UnknownDialect(u8),
    /// A number too large for what it counts.
    NumberTooLarge,
    /// A line's text that is not UTF-8 (the codec lets no such line through).
    InvalidUtf8,
    /// Bytes after the end record.
    AfterEnd,
    /// Limits no server runs with (a zero limit or timeout, which the
    /// command line refuses).
    InvalidConfig,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let offset = self.offset;
        match self.problem {
            Problem::NotAJournal => write!(f, "not a chinwag journal (no header)"),
            Problem::Version(version) => write!(
                f,
                "a journal of format version {version}; this build reads version {VERSION}"
            ),
            Problem::CutShort => write!(f, "cut short in a record at byte {offset}"),
            Problem::UnknownTag(tag) => write!(f, "unknown record tag {tag} at byte {offset}"),
            Problem::UnknownEndReason(code) => {
                write!(f, "unknown end reason {code} at byte {offset}")
            }
            Problem::UnknownDialect(code) => write!(f, "unknown dialect {code} at byte {offset}"),
            Problem::NumberTooLarge => write!(f, "a number out of range at byte {offset}"),
            Problem::InvalidUtf8 => write!(f, "a line that is not UTF-8 at byte {offset}"),
            Problem::AfterEnd => write!(f, "bytes after the end record, at byte {offset}"),
            Problem::InvalidConfig => write!(f, "a header with a zero limit or timeout"),
        }
    }
}

/// Reads a journal record by record.
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    previous: Time,
    ended: bool,
}

impl<'a> Reader<'a> {
    /// Reads the header: the configuration the recorded broker ran with,
    /// and a reader for the records after it.
    pub fn open(bytes: &'a [u8]) -> Result<(Config, Reader<'a>), DecodeError> {
        let mut reader = Reader {
            bytes,
            offset: 0,
            previous: Time::ZERO,
            ended: false,
        };
        if !bytes.starts_with(MAGIC) {
            return Err(reader.error(Problem::NotAJournal));
        }
        reader.offset = MAGIC.len();
        let version = reader.byte()?;
        if version != VERSION {
            return Err(DecodeError {
                offset: MAGIC.len(),
                problem: Problem::Version(version),
            });
        }
        let max_line = reader.size()?;
        let max_queue = reader.size()?;
        let max_connections = reader.size()?;
        let max_connections_per_address = reader.size()?;
        let config = Config {
            max_line,
            max_queue,
            max_connections,
            max_connections_per_address,
            slow_timeout: reader.duration()?,
            write_timeout: reader.duration()?,
            shutdown_timeout: reader.duration()?,
            login_timeout: reader.duration()?,
            max_rooms_per_connection: reader.size()?,
            max_room_members: reader.size()?,
        };
        let zero_limit = [
            max_line,
            max_queue,
            max_connections,
            max_connections_per_address,
            config.max_rooms_per_connection,
            config.max_room_members,
        ]
        .contains(&0);
        let zero_timeout = [
            config.slow_timeout,
            config.write_timeout,
            config.login_timeout,
        ]
        .contains(&Duration::ZERO);
        if zero_limit || zero_timeout {
            return Err(DecodeError {
                offset: MAGIC.len() + 1,
                problem: Problem::InvalidConfig,
            });
        }
        Ok((config, reader))
    }

    /// How many bytes have been read.
    pub fn offset(&self) -> usize {
        self.offset
    }

    fn record(&mut self) -> Result<Record, DecodeError> {
        let delta = self.duration()?;
        let at = self.previous + delta;
        self.previous = at;
        let tag_offset = self.offset;
        let tag = self.byte()?;
        let input = match tag {
            OPENED_V4 => {
                let conn = self.conn()?;
                let dialect = self.dialect()?;
                let octets: [u8; 4] = self.array()?;
                Input::Opened {
                    conn,
                    address: IpAddr::V4(Ipv4Addr::from(octets)),
                    dialect,
                }
            }
            OPENED_V6 => {
                let conn = self.conn()?;
                let dialect = self.dialect()?;
                let octets: [u8; 16] = self.array()?;
                Input::Opened {
                    conn,
                    address: IpAddr::V6(Ipv6Addr::from(octets)),
                    dialect,
                }
            }
            LINE => {
                let conn = self.conn()?;
                let len = self.size()?;
                let text_offset = self.offset;
                let text = self.take(len)?;
                let text = String::from_utf8(text.to_vec()).map_err(|_| DecodeError {
                    offset: text_offset,
                    problem: Problem::InvalidUtf8,
                })?;
                Input::Line {
                    conn,
                    frame: Ok(text),
                }
            }
            LINE_TOO_LONG => Input::Line {
                conn: self.conn()?,
                frame: Err(FrameError::LineTooLong),
            },
            LINE_INVALID_UTF8 => Input::Line {
                conn: self.conn()?,
                frame: Err(FrameError::InvalidUtf8),
            },
            FLUSHED => Input::Flushed {
                conn: self.conn()?,
                bytes: self.size()?,
            },
            CLOSED => Input::Closed { conn: self.conn()? },
            RELEASED => Input::Released { conn: self.conn()? },
            SHUTDOWN => Input::Shutdown,
            TIMEOUT => Input::Timeout,
            END => {
                let code_offset = self.offset;
                let code = self.byte()?;
                let reason = EndReason::ALL
                    .into_iter()
                    .find(|reason| reason.code() == code)
                    .ok_or(DecodeError {
                        offset: code_offset,
                        problem: Problem::UnknownEndReason(code),
                    })?;
                return Ok(Record::End { at, reason });
            }
            unknown => {
                return Err(DecodeError {
                    offset: tag_offset,
                    problem: Problem::UnknownTag(unknown),
                });
            }
        };
        Ok(Record::Input { at, input })
    }

    fn error(&self, problem: Problem) -> DecodeError {
        DecodeError {
            offset: self.offset,
            problem,
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(self.error(Problem::CutShort))?;
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// An unsigned LEB128 varint of at most 128 bits.
    fn varint(&mut self) -> Result<u128, DecodeError> {
        let start = self.offset;
        let mut value: u128 = 0;
        for shift in (0..128).step_by(7) {
            let byte = self.byte()?;
            let bits = u128::from(byte & 0x7f);
            if shift == 126 && bits > 0b11 {
                break;
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError {
            offset: start,
            problem: Problem::NumberTooLarge,
        })
    }

    fn size(&mut self) -> Result<usize, DecodeError> {
        let start = self.offset;
        usize::try_from(self.varint()?).map_err(|_| DecodeError {
            offset: start,
            problem: Problem::NumberTooLarge,
        })
    }

    fn dialect(&mut self) -> Result<Dialect, DecodeError> {
        let start = self.offset;
        match self.byte()? {
            DIALECT_LINE => Ok(Dialect::Line),
            DIALECT_IRC => Ok(Dialect::Irc),
            unknown => Err(DecodeError {
                offset: start,
                problem: Problem::UnknownDialect(unknown),
            }),
        }
    }

    fn conn(&mut self) -> Result<ConnId, DecodeError> {
        let start = self.offset;
        let id = u64::try_from(self.varint()?).map_err(|_| DecodeError {
            offset: start,
            problem: Problem::NumberTooLarge,
        })?;
        Ok(ConnId(id))
    }

    fn duration(&mut self) -> Result<Duration, DecodeError> {
        let start = self.offset;
        let nanos = self.varint()?;
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| DecodeError {
            offset: start,
            problem: Problem::NumberTooLarge,
        })?;
        Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
    }
}

impl Iterator for Reader<'_> {
    type Item = Result<Record, DecodeError>;

    /// The next record; after an error or the end record, nothing (or the
    /// error of bytes after the end record).
    fn next(&mut self) -> Option<Self::Item> {
        if self.offset == self.bytes.len() {
            return None;
        }
        if self.ended {
            let after = self.error(Problem::AfterEnd);
            self.offset = self.bytes.len();
            return Some(Err(after));
        }
        let record = self.record();
        match &record {
            Ok(Record::End { .. }) => self.ended = true,
            Ok(Record::Input { .. }) => {}
            Err(_) => self.offset = self.bytes.len(),
        }
        Some(record)
    }
}

/// Appends `value` as an unsigned LEB128 varint.
fn put(out: &mut Vec<u8>, mut value: u128) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Time {
        Time::from_origin(Duration::from_millis(millis))
    }

    /// One record of every kind, at rising times.
    fn every_kind() -> Vec<(Time, Input)> {
        let conn = ConnId(300);
        vec![
            (
                at(0),
                Input::Opened {
                    conn,
                    address: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
                    dialect: Dialect::Line,
                },
            ),
            (
                at(1),
                Input::Opened {
                    conn: ConnId(u64::MAX),
                    address: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    dialect: Dialect::Irc,
                },
            ),
            (
                at(1),
                Input::Line {
                    conn,
                    frame: Ok("bob, carol: héllo".into()),
                },
            ),
            (
                at(2),
                Input::Line {
                    conn,
                    frame: Ok(String::new()),
                },
            ),
            (
                at(3),
                Input::Line {
                    conn,
                    frame: Err(FrameError::LineTooLong),
                },
            ),
            (
                at(4),
                Input::Line {
                    conn,
                    frame: Err(FrameError::InvalidUtf8),
                },
            ),
            (
                at(5),
                Input::Flushed {
                    conn,
                    bytes: usize::MAX,
                },
            ),
            (at(6), Input::Closed { conn }),
            (at(7), Input::Released { conn }),
            (at(8), Input::Shutdown),
            (at(86_400_000_000), Input::Timeout),
        ]
    }

    fn journal(config: &Config, records: &[(Time, Input)], end: Option<EndReason>) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_header(config, &mut bytes);
        let mut previous = Time::ZERO;
        for (now, input) in records {
            encode_input(previous, *now, input, &mut bytes);
            previous = *now;
        }
        if let Some(reason) = end {
            encode_end(
                previous,
                previous + Duration::from_nanos(1),
                reason,
                &mut bytes,
            );
        }
        bytes
    }

    #[test]
    fn every_record_and_the_config_read_back_as_written() {
        let config = Config {
            slow_timeout: Duration::new(u64::MAX, 999_999_999),
            max_connections: usize::MAX,
            ..Config::default()
        };
        let records = every_kind();
        for reason in EndReason::ALL {
            let bytes = journal(&config, &records, Some(reason));
            let (read_config, reader) = Reader::open(&bytes).unwrap();
            assert_eq!(read_config, config);
            let read: Vec<Record> = reader.map(Result::unwrap).collect();
            let mut expected: Vec<Record> = records
                .iter()
                .map(|(at, input)| Record::Input {
                    at: *at,
                    input: input.clone(),
                })
                .collect();
            expected.push(Record::End {
                at: at(86_400_000_000) + Duration::from_nanos(1),
                reason,
            });
            assert_eq!(read, expected);
        }
    }

    #[test]
    fn a_line_costs_its_text_and_a_few_bytes() {
        let mut bytes = Vec::new();
        let input = Input::Line {
            conn: ConnId(1_000),
            frame: Ok("bob: hi".into()),
        };
        encode_input(at(0), at(0) + Duration::from_micros(20), &input, &mut bytes);
        // delta (20,000 ns: 3 bytes), tag, conn (2), length (1), text (7).
        assert_eq!(bytes.len(), 3 + 1 + 2 + 1 + 7);
    }

    #[test]
    fn a_journal_cut_anywhere_reads_to_its_last_whole_record_then_says_so() {
        let config = Config::default();
        let bytes = journal(&config, &every_kind(), Some(EndReason::Stopped));
        let (_, whole) = Reader::open(&bytes).unwrap();
        let whole = whole.count();
        let header = {
            let mut header = Vec::new();
            encode_header(&config, &mut header);
            header.len()
        };
        for cut in 0..bytes.len() {
            let Ok((_, reader)) = Reader::open(&bytes[..cut]) else {
                assert!(cut < header, "the header was whole at {cut}");
                continue;
            };
            let read: Vec<_> = reader.collect();
            let (last, complete) = read
                .split_last()
                .map_or((None, &read[..]), |(l, c)| (Some(l), c));
            assert!(complete.iter().all(Result::is_ok), "cut at {cut}");
            match last {
                Some(Err(error)) => assert_eq!(error.problem, Problem::CutShort, "cut at {cut}"),
                Some(Ok(_)) | None => assert!(read.len() < whole, "cut at {cut}"),
            }
        }
    }

    #[test]
    fn garbage_is_reported_with_its_offset_never_a_panic() {
        assert_eq!(
            Reader::open(b"hello").err().unwrap().problem,
            Problem::NotAJournal
        );
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION + 1);
        let error = Reader::open(&bytes).err().unwrap();
        assert_eq!(error.problem, Problem::Version(VERSION + 1));
        assert_eq!(
            error.to_string(),
            format!(
                "a journal of format version {}; this build reads version {VERSION}",
                VERSION + 1
            )
        );

        let mut bytes = journal(&Config::default(), &[], None);
        let header = bytes.len();
        bytes.extend_from_slice(&[0, 42]);
        let (_, mut reader) = Reader::open(&bytes).unwrap();
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error.problem, Problem::UnknownTag(42));
        assert_eq!(error.offset, header + 1);
        assert!(reader.next().is_none(), "nothing is read past an error");

        // A varint longer than 128 bits.
        let mut bytes = journal(&Config::default(), &[], None);
        bytes.extend_from_slice(&[0xff; 20]);
        let (_, mut reader) = Reader::open(&bytes).unwrap();
        assert_eq!(
            reader.next().unwrap().unwrap_err().problem,
            Problem::NumberTooLarge
        );

        // A line that is not UTF-8.
        let mut bytes = journal(&Config::default(), &[], None);
        bytes.extend_from_slice(&[0, LINE, 1, 2, 0xff, 0xfe]);
        let (_, mut reader) = Reader::open(&bytes).unwrap();
        assert_eq!(
            reader.next().unwrap().unwrap_err().problem,
            Problem::InvalidUtf8
        );

        // A header no server could have written.
        let zero_queue = Config {
            max_queue: 0,
            ..Config::default()
        };
        let error = Reader::open(&journal(&zero_queue, &[], None))
            .err()
            .unwrap();
        assert_eq!(error.problem, Problem::InvalidConfig);

        // Bytes after the end.
        let mut bytes = journal(&Config::default(), &[], Some(EndReason::Stopped));
        bytes.push(0);
        let (_, reader) = Reader::open(&bytes).unwrap();
        let read: Vec<_> = reader.collect();
        assert!(matches!(read[0], Ok(Record::End { .. })));
        assert_eq!(read[1].as_ref().unwrap_err().problem, Problem::AfterEnd);
    }

    #[test]
    fn an_end_record_fits_in_the_room_kept_for_it() {
        let mut bytes = Vec::new();
        encode_end(Time::ZERO, at(u64::MAX), EndReason::Capped, &mut bytes);
        assert!(bytes.len() <= END_RECORD_BYTES_MAX);
    }
}
