//! One connection: a reader and a writer sharing one socket.
//!
//! The reader turns bytes into frames with the codec and queues them for
//! the broker, the frames of one read as one event. The writer writes what
//! the broker sends it, batching every line that is already waiting into
//! one write, reports each write's progress back (so the broker can account
//! queued bytes) and reports a write that makes no progress for the write
//! timeout. Both run in one task; when the writer is done the socket is
//! dropped, which closes it.
//!
//! An idle connection holds as little as possible: no read buffer (one per
//! thread is shared), no write buffers and no timer, since a server may
//! hold tens of thousands of them.

use std::cell::RefCell;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Poll, ready};
use std::time::Duration;

use futures::channel::mpsc::{self, TryRecvError};
use futures::future::{BoxFuture, Fuse, OptionFuture, poll_fn};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{FutureExt, SinkExt, StreamExt, pin_mut, select_biased};

use super::broker_task::{Outbound, Reports, ToBroker};
use super::runtime::Runtime;
use crate::broker::{ConnId, Input};
use crate::codec::{Frame, LineDecoder};

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 4096;

/// The most frames, and (past the first) the most bytes of them, queued for
/// the broker as one event. Batching short lines saves a queue message and
/// a wake-up per line; capping the batch keeps the broker's bounded queue
/// bounded in work, not just in events: a queue full of flood takes about
/// as long to drain as it did with one line per event, so a healthy
/// connection's line waits no longer behind it.
const MAX_FRAMES_PER_EVENT: usize = 64;
const MAX_BYTES_PER_EVENT: usize = 1024;

/// Bytes a writer allocates when a burst of lines starts (it frees them
/// when idle again).
const FIRST_BATCH_CAPACITY: usize = 1024;

thread_local! {
    /// The read buffer, one per thread and shared by every connection the
    /// thread runs. A read needs it only while the bytes that arrived are
    /// decoded, never across an await, so an idle connection holds no read
    /// buffer at all: with tens of thousands of them, that is most of their
    /// memory.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK].into());
}

/// Runs one connection until the broker closes it or the socket fails.
/// Lines go to the broker through its bounded `queue`; the writer's
/// progress goes through `reports`, which the broker reads first.
pub(super) async fn run_connection<R, S>(
    runtime: R,
    conn: ConnId,
    socket: S,
    max_line: usize,
    write_timeout: Duration,
    mut queue: mpsc::Sender<ToBroker>,
    reports: Reports,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, inbox) = mpsc::unbounded();
    if queue.send(ToBroker::Open { conn, outbox }).await.is_err() {
        return;
    }
    let (socket_reader, socket_writer) = socket.split();
    let reading = read_frames(conn, socket_reader, max_line, queue).fuse();
    let writer = Writer {
        runtime,
        conn,
        write_timeout,
        reports,
    };
    let writing = writer.run(socket_writer, inbox).fuse();
    pin_mut!(reading, writing);
    select_biased! {
        // The broker closed the connection or the socket failed: dropping
        // the reader here closes the socket.
        () = writing => {}
        // The peer finished sending; the writer still delivers what the
        // broker queued before it processed the close.
        () = reading => writing.await,
    }
}

/// Reads until end of stream or error, queueing the frames of each read for
/// the broker in events of a few (see `MAX_FRAMES_PER_EVENT`), and then the
/// close.
async fn read_frames<S: AsyncRead + Unpin>(
    conn: ConnId,
    mut socket: S,
    max_line: usize,
    mut queue: mpsc::Sender<ToBroker>,
) {
    let mut decoder = LineDecoder::new(max_line);
    let mut frames = Vec::new();
    loop {
        let end_of_stream = match read_and_decode(&mut socket, &mut decoder, &mut frames).await {
            Ok(0) => {
                decoder.finish(&mut frames);
                true
            }
            Ok(_) => false,
            // A reset or failed connection: an unfinished line is dropped,
            // since the peer never finished sending it.
            Err(_) => true,
        };
        while !frames.is_empty() {
            let rest = frames.split_off(event_size(&frames));
            let frames = std::mem::replace(&mut frames, rest);
            if queue.send(ToBroker::Lines { conn, frames }).await.is_err() {
                return;
            }
        }
        if end_of_stream {
            let _ = queue.send(ToBroker::Input(Input::Closed { conn })).await;
            return;
        }
    }
}

/// How many of the leading `frames` go into the next event: at least one,
/// at most `MAX_FRAMES_PER_EVENT`, and no more once `MAX_BYTES_PER_EVENT`
/// bytes are reached.
fn event_size(frames: &[Frame]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for frame in frames.iter().take(MAX_FRAMES_PER_EVENT) {
        if count > 0 && bytes >= MAX_BYTES_PER_EVENT {
            break;
        }
        bytes += frame.as_ref().map_or(0, String::len);
        count += 1;
    }
    count
}

/// Reads once into the thread's shared buffer and decodes what arrived into
/// `frames`. Returns the bytes read: 0 at end of stream.
async fn read_and_decode<S: AsyncRead + Unpin>(
    socket: &mut S,
    decoder: &mut LineDecoder,
    frames: &mut Vec<Frame>,
) -> io::Result<usize> {
    poll_fn(|cx| {
        READ_BUFFER.with_borrow_mut(|buffer| {
            // Pending leaves the buffer untouched: nothing is held across it.
            let read = ready!(Pin::new(&mut *socket).poll_read(cx, buffer))?;
            decoder.decode(&buffer[..read], frames);
            Poll::Ready(Ok(read))
        })
    })
    .await
}

/// The writing half of a connection and what it reports to.
struct Writer<R> {
    runtime: R,
    conn: ConnId,
    write_timeout: Duration,
    reports: Reports,
}

/// Bytes on their way to the socket.
#[derive(Default)]
struct Batches {
    /// The batch being written.
    writing: Vec<u8>,
    /// How much of `writing` the socket has accepted.
    written: usize,
    /// Lines that arrived while `writing` was in progress: the next batch.
    next: Vec<u8>,
    /// The broker closed the connection gracefully: write what is queued,
    /// then close.
    draining: bool,
}

impl Batches {
    /// Applies one message from the broker; `Break` means close at once.
    fn accept(&mut self, message: Outbound) -> ControlFlow<()> {
        debug_assert!(!self.draining, "a message after the close");
        match message {
            Outbound::Line(line) => {
                if self.next.capacity() == 0 {
                    // A burst starts with room for a dozen chat lines, so
                    // most bursts never grow their buffer.
                    self.next.reserve(FIRST_BATCH_CAPACITY.max(line.len()));
                }
                self.next.extend_from_slice(line.as_bytes());
            }
            Outbound::Close(reason) if reason.flushes_queue() => self.draining = true,
            Outbound::Close(_) => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// The unwritten rest of the current batch, starting a new batch from
    /// the lines waiting if the current one is done. Empty when idle; an
    /// idle writer frees its buffers, so idle connections stay small (a
    /// burst costs one allocation, far less than its writes).
    fn unwritten(&mut self) -> &[u8] {
        if self.written == self.writing.len() {
            self.writing.clear();
            self.written = 0;
            std::mem::swap(&mut self.writing, &mut self.next);
            if self.writing.is_empty() {
                self.writing = Vec::new();
                self.next = Vec::new();
            }
        }
        &self.writing[self.written..]
    }
}

impl<R: Runtime> Writer<R> {
    async fn run<S: AsyncWrite + Unpin>(
        self,
        mut socket: S,
        mut inbox: mpsc::UnboundedReceiver<Outbound>,
    ) {
        let mut batches = Batches::default();
        // Armed only while a write is blocked: most writes complete at once,
        // and a timer per write (or per idle connection) would cost more
        // than the write itself.
        let mut stall_timer: Option<Fuse<BoxFuture<'static, ()>>> = None;
        let mut stall_reported = false;
        loop {
            if batches.unwritten().is_empty() {
                if batches.draining {
                    self.close(&mut socket).await;
                    return;
                }
                // Idle: wait for the broker, then take every line already
                // waiting too, so they leave in one write. The queue ending
                // means the broker task is gone: the server is exiting.
                let Some(message) = inbox.next().await else {
                    return;
                };
                if batches.accept(message).is_break() {
                    return;
                }
                while !batches.draining {
                    match inbox.try_recv() {
                        Ok(message) => {
                            if batches.accept(message).is_break() {
                                return;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => return,
                    }
                }
                continue;
            }
            if stall_timer.is_none() {
                // Try the write at once; only a blocked socket needs the timer.
                match socket.write(batches.unwritten()).now_or_never() {
                    Some(written) => {
                        if self.wrote(written, &mut batches).is_break() {
                            return;
                        }
                        stall_reported = false;
                        continue;
                    }
                    None => stall_timer = Some(self.runtime.sleep(self.write_timeout).fuse()),
                }
            }
            // Blocked: race the write against new messages and the stall
            // timer. Progress comes first, or a steady trickle of new lines
            // would keep the batch from ever being written. Once draining,
            // the broker has said its last word: stop listening to it.
            let mut message = OptionFuture::from((!batches.draining).then(|| inbox.next()));
            let mut stall = stall_timer
                .as_mut()
                .expect("armed while a write is blocked");
            select_biased! {
                written = socket.write(batches.unwritten()).fuse() => {
                    if self.wrote(written, &mut batches).is_break() {
                        return;
                    }
                    stall_timer = None;
                    stall_reported = false;
                },
                message = message => match message.flatten() {
                    Some(message) => {
                        if batches.accept(message).is_break() {
                            return;
                        }
                        if batches.draining {
                            // The drain gets its own full timeout.
                            stall_timer = Some(self.runtime.sleep(self.write_timeout).fuse());
                        }
                    }
                    None => return,
                },
                () = stall => {
                    if batches.draining {
                        // Closing anyway, and the peer still reads nothing.
                        return;
                    }
                    if !stall_reported {
                        stall_reported = true;
                        self.report(Input::WriteStalled { conn: self.conn });
                    }
                }
            }
        }
    }

    /// Accounts one write's outcome and reports it; `Break` means the
    /// socket failed and the writer is done.
    fn wrote(&self, written: io::Result<usize>, batches: &mut Batches) -> ControlFlow<()> {
        match written {
            Ok(0) | Err(_) => {
                self.report(Input::Closed { conn: self.conn });
                ControlFlow::Break(())
            }
            Ok(bytes) => {
                batches.written += bytes;
                self.report(Input::Flushed {
                    conn: self.conn,
                    bytes,
                });
                ControlFlow::Continue(())
            }
        }
    }

    /// Half-closes the socket so the peer sees end of stream after the
    /// last line, waiting at most the write timeout for that.
    async fn close<S: AsyncWrite + Unpin>(&self, socket: &mut S) {
        let close = socket.close().fuse();
        let timeout = self.runtime.sleep(self.write_timeout).fuse();
        pin_mut!(close, timeout);
        select_biased! {
            _ = close => {},
            () = timeout => {},
        }
    }

    fn report(&self, input: Input) {
        // If the broker task is gone the server is exiting; nothing to tell.
        let _ = self.reports.unbounded_send(input);
    }
}
