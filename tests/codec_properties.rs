//! Property tests of the codec against PROTOCOL.md's framing read
//! literally (`tests/model/framing.rs`), an independent splitter: random
//! streams biased towards what framing gets wrong (LF, CR, CR LF, lines of
//! exactly the limit and one byte either side, long runs, multibyte and
//! invalid UTF-8), fed to `LineDecoder` in random chunks under a random
//! `max_line` (tiny ones included), then ended.
//!
//! After every chunk the decoder must have yielded exactly the frames the
//! book says a server has read by then (`frames_so_far`: every finished
//! line, and a too-long line as soon as it crosses the limit) and hold at
//! most `max_line` bytes; after the end of stream, exactly
//! `frames_by_the_book`. So a line of exactly the limit refused, bytes
//! after a too-long line lost, a CR LF split between chunks missed, or a
//! frame that depends on where the reads fell, all fail here, shrunk to a
//! few bytes.
//!
//! `cargo test` runs `DEFAULT_CASES` cases; set `PROPTEST_CASES` for a
//! deeper run. proptest records a failing case's seed in
//! `tests/proptest-regressions/codec_properties.txt`; commit it, and every
//! later run replays the case first.

mod model;
mod proptest_config;

use std::fmt;

use chinwag::codec::{Frame, LineDecoder};
use model::framing::{frames_by_the_book, frames_so_far};
use proptest::prelude::*;
use proptest::sample::Index;

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/proptest-regressions/codec_properties.txt"
);

/// Cases per `cargo test` run, unless `PROPTEST_CASES` asks for another
/// number; sized to take a second or two in a debug build.
const DEFAULT_CASES: u32 = 3000;

fn config() -> ProptestConfig {
    proptest_config::config(REGRESSIONS, DEFAULT_CASES)
}

/// A line limit: mostly tiny, so every line is near it, sometimes larger.
fn max_line() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1..=8usize,
        3 => 9..=40usize,
        1 => 41..=300usize,
    ]
}

/// One piece of a stream, for a given limit.
fn piece(max_line: usize) -> impl Strategy<Value = Vec<u8>> {
    let terminator = prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r", b""]);
    // A body of exactly the limit, or one byte either side of it.
    let near_limit = (max_line.saturating_sub(1)..=max_line + 1, terminator)
        .prop_map(|(len, end)| [vec![b'x'; len], end.to_vec()].concat());
    let run = (any::<u8>(), 0..=3 * max_line + 2).prop_map(|(byte, len)| vec![byte; len]);
    prop_oneof![
        4 => Just(b"\n".to_vec()),
        3 => Just(b"\r".to_vec()),
        3 => Just(b"\r\n".to_vec()),
        4 => "[a-z ]{0,6}".prop_map(String::into_bytes),
        3 => near_limit,
        2 => run,
        2 => prop::sample::select(vec!["é", "€", "😀", "\u{3000}", "\u{85}"])
            .prop_map(|text| text.as_bytes().to_vec()),
        2 => prop::sample::select(vec![
            &b"\xff"[..], b"\xc3", b"\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80",
        ])
        .prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// One case: a limit, a stream, and where the reads of it end.
struct Case {
    max_line: usize,
    stream: Vec<u8>,
    /// Sorted; the last is the stream's length; repeats are empty reads.
    read_ends: Vec<usize>,
}

/// Shown as a byte string, so a shrunk case reads at a glance.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_line = {}, stream = b\"{}\", reads ending at {:?}",
            self.max_line,
            self.stream.escape_ascii(),
            self.read_ends
        )
    }
}

fn case() -> impl Strategy<Value = Case> {
    max_line().prop_flat_map(|max_line| {
        let stream = prop::collection::vec(piece(max_line), 0..24).prop_map(|p| p.concat());
        let cuts = prop::collection::vec(any::<Index>(), 0..12);
        (stream, cuts).prop_map(move |(stream, cuts)| {
            let mut read_ends: Vec<usize> =
                cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
            read_ends.sort_unstable();
            read_ends.push(stream.len());
            Case {
                max_line,
                stream,
                read_ends,
            }
        })
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn codec_reads_what_the_book_says_however_the_reads_fall(case in case()) {
        let Case { max_line, stream, read_ends } = &case;
        let max_line = *max_line;
        let mut decoder = LineDecoder::new(max_line);
        let mut frames = Vec::new();
        let mut start = 0;
        for &end in read_ends {
            decoder.decode(&stream[start..end], &mut frames);
            prop_assert!(
                decoder.buffered() <= max_line,
                "holds {} bytes after {end} bytes, limit {max_line}",
                decoder.buffered()
            );
            prop_assert_eq!(
                &frames,
                &frames_so_far(max_line, &stream[..end]),
                "frames after {} bytes, before the end of stream",
                end
            );
            start = end;
        }
        decoder.finish(&mut frames);
        prop_assert_eq!(decoder.buffered(), 0, "bytes held after the end of stream");
        prop_assert_eq!(
            frames,
            frames_by_the_book(max_line, stream),
            "frames at the end of stream"
        );
    }
}

/// The rules as `frames_so_far` reads them, on the cases that matter most,
/// so the oracle itself is pinned down.
#[test]
fn the_book_refuses_a_line_as_soon_as_it_is_over_the_limit() {
    let err = || Err(chinwag::codec::FrameError::LineTooLong);
    let ok = |line: &str| Ok(line.to_string());
    assert_eq!(frames_so_far(3, b"abc"), Vec::<Frame>::new());
    assert_eq!(frames_so_far(3, b"abc\r"), Vec::<Frame>::new());
    assert_eq!(frames_so_far(3, b"abcd"), vec![err()]);
    assert_eq!(frames_so_far(3, b"abc\r\nab"), vec![ok("abc")]);
    assert_eq!(frames_by_the_book(3, b"abc\r"), vec![err()]);
    assert_eq!(frames_by_the_book(3, b"abc\r\n"), vec![ok("abc")]);
}
