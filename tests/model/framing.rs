//! PROTOCOL.md's framing, read literally, as an independent check on the
//! codec: the fuzz target holds `chinwag::codec::LineDecoder` against it,
//! and the simulator frames what each client sent with it, so a codec bug
//! is never checked against itself.

use chinwag::codec::{Frame, FrameError};

/// The frames a server must read from `stream` when it ends with an end of
/// stream: split at each LF, drop one CR before it, refuse lines over
/// `max_line` bytes and lines that are not UTF-8; an unterminated last line
/// counts as a line (and keeps a final CR).
///
/// After a reset the unterminated last line is dropped instead, so what a
/// server reads from a stream that ends either way, or not at all, is a
/// prefix of these frames.
pub fn frames_by_the_book(max_line: usize, stream: &[u8]) -> Vec<Frame> {
    let judge = |body: &[u8]| -> Frame {
        if body.len() > max_line {
            return Err(FrameError::LineTooLong);
        }
        String::from_utf8(body.to_vec()).map_err(|_| FrameError::InvalidUtf8)
    };
    let mut pieces: Vec<&[u8]> = stream.split(|&byte| byte == b'\n').collect();
    let unterminated = pieces.pop().unwrap_or_default();
    let mut frames: Vec<Frame> = pieces
        .into_iter()
        .map(|piece| judge(piece.strip_suffix(b"\r").unwrap_or(piece)))
        .collect();
    if !unterminated.is_empty() {
        frames.push(judge(unterminated));
    }
    frames
}

/// The frames a server must already have yielded when it has read `stream`
/// and the stream has not ended (yet, or ever, after a reset): the frames
/// of every line ended by an LF, and a too-long refusal for an unfinished
/// last line already over `max_line`, not counting a final CR (which may
/// still turn out to be half of a CR LF). A too-long line is refused as
/// soon as it crosses the limit, not when its LF comes.
pub fn frames_so_far(max_line: usize, stream: &[u8]) -> Vec<Frame> {
    let ended = stream.iter().rposition(|&byte| byte == b'\n');
    let (lines, unfinished) = match ended {
        Some(lf) => stream.split_at(lf + 1),
        None => (&[][..], stream),
    };
    let mut frames = frames_by_the_book(max_line, lines);
    let content = unfinished.strip_suffix(b"\r").unwrap_or(unfinished);
    if content.len() > max_line {
        frames.push(Err(FrameError::LineTooLong));
    }
    frames
}
