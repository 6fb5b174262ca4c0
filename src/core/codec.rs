//! The frame codec: bytes in, lines out.
//!
//! A frame is one line ended by LF; a CR right before the LF is dropped. The
//! decoder is a pure state machine with no I/O: the shell pushes whatever
//! chunks the socket produced and gets back complete lines, the same lines
//! whatever the chunking. It never holds more than `max_line` bytes of a
//! line: an over-long line is reported as soon as it crosses the limit and
//! the rest of it, up to and including the next LF, is skipped unread.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a line was refused before it reached the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameError {
    /// The line has more than `max_line` bytes (its terminator not counted).
    LineTooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::LineTooLong => "line too long",
            FrameError::InvalidUtf8 => "invalid utf-8",
        })
    }
}

/// One decoded frame: a line of text without its terminator, or the reason
/// it was refused.
pub type Frame = Result<String, FrameError>;

/// Splits a byte stream into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineDecoder {
    max_line: usize,
    /// Bytes of the current line so far. Never longer than `max_line`.
    line: Vec<u8>,
    /// A CR was the last byte seen. It is held back, not stored, because it
    /// is dropped if an LF follows and only then is the line's length known.
    pending_cr: bool,
    /// The current line was already refused as too long; skip to its LF.
    skipping: bool,
}

impl LineDecoder {
    /// A decoder for lines of at most `max_line` bytes; `max_line` is at least 1.
    pub fn new(max_line: usize) -> Self {
        assert!(max_line >= 1, "max_line must be at least 1");
        LineDecoder {
            max_line,
            line: Vec::new(),
            pending_cr: false,
            skipping: false,
        }
    }

    /// Bytes of an unfinished line currently held in memory.
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// Feeds a chunk of the stream, appending every frame it completes.
    pub fn decode(&mut self, mut chunk: &[u8], frames: &mut Vec<Frame>) {
        while !chunk.is_empty() {
            if self.skipping {
                match memchr_lf(chunk) {
                    Some(lf) => {
                        self.skipping = false;
                        chunk = &chunk[lf + 1..];
                    }
                    None => return,
                }
                continue;
            }
            // Copy up to the next LF (or the whole chunk) into the line, a
            // slice at a time, so the common case costs one memchr and one copy.
            let (body, rest, ends_line) = match memchr_lf(chunk) {
                Some(lf) => (&chunk[..lf], &chunk[lf + 1..], true),
                None => (chunk, &[][..], false),
            };
            chunk = rest;
            if !self.append(body) {
                self.refuse_too_long(frames);
                self.skipping = !ends_line;
                continue;
            }
            if ends_line {
                // A CR right before the LF is part of the terminator.
                self.pending_cr = false;
                frames.push(self.take_line());
            }
        }
    }

    /// Ends the stream: an unterminated final line is delivered as if it had
    /// its LF, as the async-std tutorial's `lines()` does.
    pub fn finish(&mut self, frames: &mut Vec<Frame>) {
        if self.pending_cr {
            // A lone CR at the very end is content, not a terminator.
            self.pending_cr = false;
            if !self.push_bytes(b"\r") {
                self.refuse_too_long(frames);
                return;
            }
        }
        if !self.skipping && !self.line.is_empty() {
            frames.push(self.take_line());
        }
        self.skipping = false;
    }

    /// Appends `body` (which holds no LF) to the line, honouring a held-back
    /// CR. Returns false if the line no longer fits.
    fn append(&mut self, body: &[u8]) -> bool {
        if body.is_empty() {
            return true;
        }
        if self.pending_cr {
            // The CR was not followed by LF, so it is content after all.
            self.pending_cr = false;
            if !self.push_bytes(b"\r") {
                return false;
            }
        }
        let (content, ends_with_cr) = match body.split_last() {
            Some((b'\r', head)) => (head, true),
            _ => (body, false),
        };
        if !self.push_bytes(content) {
            return false;
        }
        self.pending_cr = ends_with_cr;
        true
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> bool {
        if self.line.len() + bytes.len() > self.max_line {
            return false;
        }
        self.line.extend_from_slice(bytes);
        true
    }

    fn refuse_too_long(&mut self, frames: &mut Vec<Frame>) {
        self.line = Vec::new();
        self.pending_cr = false;
        frames.push(Err(FrameError::LineTooLong));
    }

    fn take_line(&mut self) -> Frame {
        debug_assert!(self.line.len() <= self.max_line);
        let bytes = core::mem::take(&mut self.line);
        String::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8)
    }
}

/// The position of the first LF. memchr scans a word or a vector register
/// at a time, several times faster than a byte loop on chat-sized lines.
fn memchr_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_whole(max_line: usize, input: &[u8]) -> Vec<Frame> {
        let mut decoder = LineDecoder::new(max_line);
        let mut frames = Vec::new();
        decoder.decode(input, &mut frames);
        decoder.finish(&mut frames);
        frames
    }

    fn ok(line: &str) -> Frame {
        Ok(line.to_string())
    }

    /// Feeds `input` split at every pair of points and checks each split
    /// gives the same frames as the whole, and never buffers past the limit.
    fn assert_chunking_invariant(max_line: usize, input: &[u8]) {
        let whole = decode_whole(max_line, input);
        for first in 0..=input.len() {
            for second in first..=input.len() {
                let mut decoder = LineDecoder::new(max_line);
                let mut frames = Vec::new();
                for chunk in [&input[..first], &input[first..second], &input[second..]] {
                    decoder.decode(chunk, &mut frames);
                    assert!(decoder.buffered() <= max_line);
                }
                decoder.finish(&mut frames);
                assert_eq!(frames, whole, "split at {first} and {second} of {input:?}");
            }
        }
    }

    #[test]
    fn splits_on_lf_and_drops_cr_before_lf() {
        assert_eq!(
            decode_whole(100, b"alice\nbob: hi\r\n\n"),
            vec![ok("alice"), ok("bob: hi"), ok("")]
        );
    }

    #[test]
    fn keeps_cr_that_is_not_before_lf() {
        assert_eq!(decode_whole(100, b"a\rb\n"), vec![ok("a\rb")]);
        assert_eq!(decode_whole(100, b"a\r\r\n"), vec![ok("a\r")]);
    }

    #[test]
    fn final_unterminated_line_is_delivered_at_end_of_stream() {
        assert_eq!(decode_whole(100, b"a\nb"), vec![ok("a"), ok("b")]);
        assert_eq!(decode_whole(100, b"a\r"), vec![ok("a\r")]);
        assert_eq!(decode_whole(100, b""), vec![]);
    }

    #[test]
    fn line_of_exactly_max_line_is_accepted_with_either_terminator() {
        assert_eq!(decode_whole(3, b"abc\n"), vec![ok("abc")]);
        assert_eq!(decode_whole(3, b"abc\r\n"), vec![ok("abc")]);
    }

    #[test]
    fn line_over_max_line_is_refused_and_skipped_to_its_lf() {
        assert_eq!(
            decode_whole(3, b"abcd\nok\n"),
            vec![Err(FrameError::LineTooLong), ok("ok")]
        );
        // A CR that turns out to be content counts towards the length.
        assert_eq!(
            decode_whole(3, b"abc\rd\nok\n"),
            vec![Err(FrameError::LineTooLong), ok("ok")]
        );
        assert_eq!(
            decode_whole(3, b"abc\r"),
            vec![Err(FrameError::LineTooLong)]
        );
    }

    #[test]
    fn too_long_is_reported_before_the_line_ends() {
        let mut decoder = LineDecoder::new(4);
        let mut frames = Vec::new();
        decoder.decode(b"hello", &mut frames);
        assert_eq!(frames, vec![Err(FrameError::LineTooLong)]);
        for _ in 0..1000 {
            decoder.decode(&[b'x'; 1024], &mut frames);
            assert_eq!(decoder.buffered(), 0);
        }
        decoder.decode(b"x\nnext\n", &mut frames);
        assert_eq!(frames, vec![Err(FrameError::LineTooLong), ok("next")]);
    }

    #[test]
    fn invalid_utf8_is_refused_and_the_next_line_is_read() {
        assert_eq!(
            decode_whole(100, b"\xff\xfe\nfine\n"),
            vec![Err(FrameError::InvalidUtf8), ok("fine")]
        );
        // A multi-byte character cut by the chunking is not invalid.
        assert_eq!(decode_whole(100, "héllo\n".as_bytes()), vec![ok("héllo")]);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        assert_chunking_invariant(4, b"ab\r\ncd\rx\nabcde\n\xffz\r\nabcd\r\nq");
        assert_chunking_invariant(5, "é€\r\n\r\r\n\nabcdef\r\r\nxy\r".as_bytes());
        assert_chunking_invariant(1, b"\n\r\na\nab\n\r\r\n");
    }

    #[test]
    #[should_panic(expected = "max_line must be at least 1")]
    fn zero_max_line_is_a_programming_error() {
        LineDecoder::new(0);
    }
}
