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
