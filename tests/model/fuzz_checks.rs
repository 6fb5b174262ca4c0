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
//! - [`check_irc`]: the IRC parser never panics, what it accepts obeys the
//!   grammar and renders back to the same message ([`check_irc_parse`]),
//!   and the IRC reply builder refuses exactly what its rules refuse and
//!   writes only lines that parse back to what it was given
//!   ([`check_irc_render`]).
//!
//! Each panics, with a message saying what broke, when its check fails.

use arbitrary::{Result, Unstructured};
use chinwag::broker::Broker;
use chinwag::codec::{Frame, FrameError, LineDecoder};
use chinwag::irc::{
    self, IRC_BODY_BYTES_MAX, IRC_LINE_BYTES_MAX, IRC_PARAMS_MAX, RenderError, Reply,
};
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

/// Bytes: the whole input (as UTF-8, invalid sequences replaced) as one
/// line to parse; then, cut at every 0xFF byte (never in UTF-8), a reply
/// to render: source, command, then parameters, the last of them trailing
/// when there is an odd number.
pub fn check_irc(data: &[u8]) {
    check_irc_parse(&String::from_utf8_lossy(data));
    let pieces: Vec<String> = data
        .split(|&byte| byte == 0xff)
        .map(|piece| String::from_utf8_lossy(piece).into_owned())
        .collect();
    if let [source, command, params @ ..] = pieces.as_slice() {
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        let (middles, trailing) = match params.split_last() {
            Some((last, middles)) if params.len() % 2 == 1 => (middles, Some(*last)),
            _ => (params.as_slice(), None),
        };
        check_irc_render(source, command, middles, trailing);
    }
}

/// Whether `text` holds a byte no IRC line may: NUL, CR or LF.
fn has_irc_forbidden(text: &str) -> bool {
    text.contains(['\0', '\r', '\n'])
}

/// The modern IRC grammar's command: letters, or exactly 3 digits.
fn is_irc_command(command: &str) -> bool {
    let digits = command.len() == 3 && command.bytes().all(|byte| byte.is_ascii_digit());
    let letters = !command.is_empty() && command.bytes().all(|byte| byte.is_ascii_alphabetic());
    digits || letters
}

/// `line` through `irc::parse`: no panic; a refusal with a reason the line
/// shows; an accepted message that obeys the grammar and, rendered as a
/// reply, parses back the same (its trailing text maybe cut at the limit).
pub fn check_irc_parse(line: &str) {
    // The line less its tags section (`@`, tags, one space), which has a
    // limit of its own.
    let body = match line.strip_prefix('@') {
        Some(tagged) => tagged.split_once(' ').map_or("", |(_, body)| body),
        None => line,
    };
    let message = match irc::parse(line) {
        Ok(message) => message,
        Err(irc::ParseError::TooLong) => {
            assert!(
                body.len() > IRC_BODY_BYTES_MAX,
                "{line:?} refused as too long"
            );
            return;
        }
        Err(irc::ParseError::ForbiddenByte(byte)) => {
            assert!(
                matches!(byte, b'\0' | b'\r' | b'\n'),
                "forbidden byte {byte}"
            );
            assert!(
                line.as_bytes().contains(&byte),
                "{line:?} lacks byte {byte}"
            );
            return;
        }
        Err(irc::ParseError::Empty) => {
            assert!(
                line.bytes().all(|byte| byte == b' '),
                "{line:?} is not empty"
            );
            return;
        }
        Err(_) => return,
    };
    assert!(
        !has_irc_forbidden(line),
        "{line:?} accepted with NUL, CR or LF"
    );
    assert!(
        body.len() <= IRC_BODY_BYTES_MAX,
        "{line:?} accepted over the limit"
    );
    assert!(is_irc_command(message.command), "{message:?}: bad command");
    assert!(
        message.params.len() <= IRC_PARAMS_MAX,
        "{message:?}: too many"
    );
    for part in message.tags.iter().chain(&message.prefix) {
        assert!(!part.contains(' '), "{message:?}: space in tags or prefix");
    }
    let Some((last, middles)) = message.params.split_last() else {
        return;
    };
    for middle in middles {
        assert!(
            irc::is_middle_param(middle),
            "{message:?}: bad middle {middle:?}"
        );
    }
    let source = message.prefix.filter(|prefix| !prefix.is_empty());
    let mut reply = Reply::new(source.unwrap_or("s"), message.command);
    for middle in middles {
        reply = reply.param(middle);
    }
    match reply.trailing(last).render() {
        // Written again with a source and a colon it may no longer fit.
        Err(RenderError::TooLong) => {}
        Err(error) => panic!("{message:?} renders to {error}"),
        Ok(rendered) => {
            let again = irc::parse(rendered.trim_end_matches("\r\n")).unwrap();
            assert_eq!(again.command, message.command);
            assert_eq!(&again.params[..middles.len()], middles);
            let cut = again.params[middles.len()];
            assert!(last.starts_with(cut), "{last:?} rendered as {cut:?}");
            if cut.len() < last.len() {
                assert!(
                    rendered.len() >= IRC_LINE_BYTES_MAX - 3,
                    "{rendered:?} cut short"
                );
            }
        }
    }
}

/// A reply through `Reply::render`: refused exactly when the documented
/// rules say, for the first rule broken; otherwise a line of at most 512
/// bytes ending in its only CR LF, with no NUL, that parses back to the
/// source, command and middles given and the trailing text with NUL, CR
/// and LF made spaces, cut only where the next character would not fit.
pub fn check_irc_render(source: &str, command: &str, middles: &[&str], trailing: Option<&str>) {
    let mut reply = Reply::new(source, command);
    for middle in middles {
        reply = reply.param(middle);
    }
    if let Some(text) = trailing {
        reply = reply.trailing(text);
    }
    let is_middle = |param: &&str| {
        !param.is_empty()
            && !param.starts_with(':')
            && !param.contains(' ')
            && !has_irc_forbidden(param)
    };
    let head_bytes = 1
        + source.len()
        + 1
        + command.len()
        + middles.iter().map(|middle| 1 + middle.len()).sum::<usize>()
        + if trailing.is_some() { 2 } else { 0 };
    let expected = if source.is_empty() || source.contains(' ') || has_irc_forbidden(source) {
        Some(RenderError::InvalidSource)
    } else if !is_irc_command(command) {
        Some(RenderError::InvalidCommand)
    } else if middles.len() + usize::from(trailing.is_some()) > IRC_PARAMS_MAX {
        Some(RenderError::TooManyParams)
    } else if let Some(index) = middles.iter().position(|middle| !is_middle(middle)) {
        Some(RenderError::InvalidParam(index))
    } else if head_bytes > IRC_BODY_BYTES_MAX {
        Some(RenderError::TooLong)
    } else {
        None
    };
    let line = match (reply.render(), expected) {
        (Err(error), Some(expected)) => {
            assert_eq!(error, expected, "{reply:?}");
            return;
        }
        (Ok(line), None) => line,
        (got, expected) => panic!("{reply:?} gave {got:?}, expected {expected:?}"),
    };
    assert!(
        line.len() <= IRC_LINE_BYTES_MAX,
        "{line:?} is over the limit"
    );
    let body = line.strip_suffix("\r\n").expect("ends in CR LF");
    assert!(!has_irc_forbidden(body), "{line:?} holds NUL, CR or LF");
    let message = irc::parse(body).unwrap_or_else(|error| panic!("{line:?}: {error}"));
    assert_eq!(message.prefix, Some(source));
    assert_eq!(message.command, command);
    assert_eq!(&message.params[..middles.len()], middles);
    match trailing {
        None => assert_eq!(message.params.len(), middles.len()),
        Some(text) => {
            assert_eq!(message.params.len(), middles.len() + 1);
            let clean = text.replace(['\0', '\r', '\n'], " ");
            let got = message.params[middles.len()];
            assert!(clean.starts_with(got), "{clean:?} rendered as {got:?}");
            if let Some(next) = clean[got.len()..].chars().next() {
                assert!(
                    body.len() + next.len_utf8() > IRC_BODY_BYTES_MAX,
                    "{line:?} cut short"
                );
            }
        }
    }
}
