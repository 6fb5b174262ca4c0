//! What each fuzz target checks, as plain functions of the fuzzer's bytes,
//! so `tests/fuzz_corpus.rs` can replay the corpus and every kept crash
//! under `cargo test`, and the fuzz targets in `fuzz/` stay one line each.
//!
//! - [`check_frame`]: the codec never panics, never yields or holds more
//!   than its limit, and gives the same frames however the bytes are cut,
//!   the same frames PROTOCOL.md's framing rules give ([`super::framing`]).
//! - [`check_line`]: the login and message parsers never panic, agree with
//!   the model's grammar, and every accepted message re-serializes to an
//!   equivalent line.
//! - [`check_broker`]: any shell-valid sequence of inputs keeps the broker
//!   equal to the model and every guarantee holding.
//! - [`check_journal`]: the journal reader never panics on any bytes, and
//!   what it reads, written again, reads back the same.
//!
//! Each panics, with a message saying what broke, when its check fails.

use arbitrary::{Result, Unstructured};
use chinwag::broker::Broker;
use chinwag::codec::{Frame, FrameError, LineDecoder};
use chinwag::journal::{Reader, Record, encode_end, encode_header, encode_input};
use chinwag::protocol::{self, ErrorReply, MessageError};
use chinwag::time::Time;

use super::framing::frames_by_the_book;
use super::grammar::{self, Refusal};
use super::scenario::{
    ABSENT, Amount, BAD_NAMES, BLANK, MALFORMED, NAMES, Scenario, Step, TEXTS, WRITE_TIMEOUT,
};

/// Bytes: a line limit, up to 8 cut points, then the stream to decode.
pub fn check_frame(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let max_line = input.int_in_range(1..=64).unwrap_or(1);
    let cut_count = input.int_in_range(0..=8).unwrap_or(0);
    let mut cuts: Vec<usize> = (0..cut_count)
        .map(|_| input.arbitrary::<u16>().unwrap_or(0) as usize)
        .collect();
    let stream = input.take_rest();
    for cut in &mut cuts {
        *cut %= stream.len() + 1;
    }
    cuts.sort_unstable();

    let expected = frames_by_the_book(max_line, stream);
    let mut decoder = LineDecoder::new(max_line);
    let mut frames = Vec::new();
    let mut start = 0;
    for end in cuts.into_iter().chain([stream.len()]) {
        decoder.decode(&stream[start..end], &mut frames);
        let held = decoder.buffered();
        assert!(held <= max_line, "holds {held} bytes, limit {max_line}");
        let unfinished = held_by_the_book(max_line, &stream[..end]);
        assert_eq!(
            held, unfinished,
            "bytes held after {end} bytes of the stream"
        );
        start = end;
    }
    decoder.finish(&mut frames);
    assert_eq!(
        decoder.buffered(),
        0,
        "bytes left after the end of the stream"
    );
    for line in frames.iter().flatten() {
        assert!(line.len() <= max_line, "{line:?} is over {max_line} bytes");
        assert!(!line.contains('\n'), "{line:?} holds a line feed");
    }
    assert_eq!(
        frames, expected,
        "chunked decoding differs from the framing rules"
    );
}

/// How many bytes of its unfinished last line a decoder that has read
/// `stream` should hold: all of them, less a final CR (which may yet turn
/// out to be part of a CR LF), or none once the line is over the limit.
fn held_by_the_book(max_line: usize, stream: &[u8]) -> usize {
    let last_lf = stream.iter().rposition(|&byte| byte == b'\n');
    let unfinished = &stream[last_lf.map_or(0, |lf| lf + 1)..];
    let content = unfinished.strip_suffix(b"\r").unwrap_or(unfinished);
    if content.len() > max_line {
        0
    } else {
        content.len()
    }
}

/// Bytes, read as text (invalid UTF-8 replaced), through both parsers.
pub fn check_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    assert_eq!(
        protocol::is_blank(&line),
        grammar::is_blank(&line),
        "blank?"
    );
    assert_eq!(
        protocol::parse_login(&line).as_deref(),
        grammar::login_name(&line).as_deref(),
        "login name"
    );
    match (
        protocol::parse_message(&line),
        grammar::parse_message(&line),
    ) {
        (Ok(message), Ok(by_the_book)) => {
            assert_eq!(message.destinations, by_the_book.destinations);
            assert_eq!(message.text, by_the_book.text);
            for destination in &message.destinations {
                assert!(protocol::is_valid_name(destination), "{destination:?}");
            }
            let again = format!("{}: {}", message.destinations.join(", "), message.text);
            let reparsed = protocol::parse_message(&again);
            assert_eq!(
                reparsed.as_ref(),
                Ok(&message),
                "{again:?} reads differently"
            );
        }
        (Err(why), Err(refusal)) => {
            let same_reason = match why {
                MessageError::MissingColon => Refusal::NoColon,
                MessageError::EmptyDestination => Refusal::EmptyDestination,
                MessageError::InvalidDestination => Refusal::InvalidDestination,
                MessageError::ControlCharacter => Refusal::ControlCharacter,
            };
            assert_eq!(same_reason, refusal, "refused for a different reason");
            let reply = protocol::render_error(&ErrorReply::Malformed(why));
            let reply = reply.as_str();
            assert!(reply.starts_with("error: "), "{reply:?}");
            assert_eq!(reply.find('\n'), Some(reply.len() - 1), "{reply:?}");
        }
        (parsed, by_the_book) => panic!("parser says {parsed:?}, grammar says {by_the_book:?}"),
    }
}

/// Bytes, read as a queue limit and a scenario, played against the broker.
pub fn check_broker(data: &[u8]) {
    let scenario = scenario_from(data);
    if let Err(failure) = scenario.play() {
        panic!("{scenario:?}{failure}");
    }
}

/// The longest scenario a fuzz input makes, to keep each run quick.
const MAX_STEPS: usize = 300;

/// Reads a scenario from fuzzer bytes: as many steps as the bytes make.
pub fn scenario_from(data: &[u8]) -> Scenario {
    let mut input = Unstructured::new(data);
    let max_queue = match input.int_in_range(0..=3).unwrap_or(3) {
        0 => input.int_in_range(1..=40),
        1 => input.int_in_range(41..=200),
        2 => input.int_in_range(201..=4000),
        _ => Ok(1 << 20),
    };
    let max_queue = max_queue.unwrap_or(1 << 20);
    let mut steps = Vec::new();
    // Running out of bytes reads as zeros, so stop when they run out.
    while !input.is_empty() && steps.len() < MAX_STEPS {
        match step_from(&mut input) {
            Ok(step) => steps.push(step),
            Err(_) => break,
        }
    }
    Scenario { max_queue, steps }
}

fn step_from(input: &mut Unstructured) -> Result<Step> {
    let conn = input.int_in_range(1..=6)?;
    Ok(match input.int_in_range(0..=31)? {
        0..=4 => Step::Open(conn),
        5..=19 => Step::Send(conn, frame_from(input)?),
        20..=22 => Step::Read(conn, Amount::Everything),
        23..=25 => Step::Read(conn, Amount::UpTo(input.int_in_range(1..=64)?)),
        26 => Step::Wait(input.int_in_range(0..=2 * WRITE_TIMEOUT.as_millis() as u64)?),
        27..=29 => Step::Disconnect(conn),
        30 => Step::Release(conn),
        _ => Step::Shutdown,
    })
}

/// A line a client could send: mostly built from the scenario vocabulary,
/// sometimes any text at all (without line feeds: the codec never yields
/// those), sometimes a line the codec refused.
fn frame_from(input: &mut Unstructured) -> Result<Frame> {
    let pick = |input: &mut Unstructured, words: &[&str]| -> Result<String> {
        Ok(input.choose(words)?.to_string())
    };
    let line = match input.int_in_range(0..=9)? {
        0 => return Ok(Err(FrameError::LineTooLong)),
        1 => return Ok(Err(FrameError::InvalidUtf8)),
        2 => format!(" {} ", pick(input, &NAMES)?),
        3 => pick(input, &NAMES)?,
        4 => pick(input, &[&BAD_NAMES[..], &MALFORMED, &BLANK].concat())?,
        5..=7 => {
            let everyone = [&NAMES[..], &[ABSENT]].concat();
            let mut destinations = vec![pick(input, &everyone)?];
            while destinations.len() < 4 && input.arbitrary()? {
                destinations.push(pick(input, &everyone)?);
            }
            let separator = pick(input, &[",", ", ", " , "])?;
            format!(
                "{}: {}",
                destinations.join(&separator),
                pick(input, &TEXTS)?
            )
        }
        _ => input.arbitrary::<&str>()?.replace('\n', " "),
    };
    Ok(Ok(line))
}

/// Bytes as a `--journal` file: the reader never panics, accepts only
/// limits a broker can run with, stops at its first error, and the records
/// it read before it, written again, read back the same.
pub fn check_journal(data: &[u8]) {
    let Ok((config, reader)) = Reader::open(data) else {
        return;
    };
    // A header the reader accepts is one a broker can run with.
    let _ = Broker::new(&config);
    let read: Vec<_> = reader.collect();
    if let Some(first_error) = read.iter().position(Result::is_err) {
        assert_eq!(first_error, read.len() - 1, "records read after an error");
    }
    let records: Vec<Record> = read.into_iter().flatten().collect();
    let mut bytes = Vec::new();
    encode_header(&config, &mut bytes);
    let mut previous = Time::ZERO;
    for record in &records {
        match record {
            Record::Input { at, input } => encode_input(previous, *at, input, &mut bytes),
            Record::End { at, reason } => encode_end(previous, *at, *reason, &mut bytes),
        }
        let (Record::Input { at, .. } | Record::End { at, .. }) = record;
        previous = *at;
    }
    let (again_config, again) = Reader::open(&bytes).expect("a journal written again reads");
    assert_eq!(again_config, config);
    let again: Vec<Record> = again
        .map(|record| record.expect("a record written again reads"))
        .collect();
    assert_eq!(again, records);
}
