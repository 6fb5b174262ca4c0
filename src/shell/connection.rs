//! One connection: a reader and a writer sharing one socket.
//!
//! The reader turns bytes into frames with the codec and queues them for
//! the broker, the frames of one read as one event. The writer writes what
//! the broker sends it, batching the lines that are already waiting into
//! one write of at most `WRITE_BATCH_BYTES_MAX`, and reports each write's
//! progress back, so the broker can account queued bytes and tell a dead
//! peer (one whose socket makes no progress) by the time of the last
//! report. Both run in one task; when the writer is done the socket is
//! dropped, which closes it.
//!
//! The broker can pause the reader (a line of this connection took some
//! queue past `max_queue`): the reader then reads nothing from the socket
//! and queues nothing until it is resumed, so the kernel's buffers fill
//! and TCP pushes back on this sender alone. Pause and resume come to the
//! writer, in order with the lines, and it sets a flag the reader checks;
//! `read_and_write` says why the reader needs no wake-up of its own.
//!
//! An idle connection holds as little as possible: no read buffer (one per
//! thread is shared), no write buffers and no timer, since a server may
//! hold tens of thousands of them. For the same reason the connection's
//! functions return `async move` blocks instead of being `async fn`s: an
//! `async fn` keeps its arguments twice in its future (as passed, and moved
//! into its body), which cost every idle connection about 180 bytes.
#![expect(
    clippy::manual_async_fn,
    reason = "an async fn stores its arguments twice; see the module doc"
)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, ready};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::{BoxFuture, Fuse, OptionFuture, poll_fn};
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{FutureExt, SinkExt, pin_mut, select_biased};

use super::broker_task::{Outbound, Report, Reports, ToBroker};
use super::outbox::{self, Inbox, Taken};
use super::runtime::Runtime;
use super::serve::Accepted;
use crate::broker::{CloseReason, ConnId};
use crate::codec::{Frame, LineDecoder};
use crate::protocol::Line;

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

/// The most bytes a writer copies into its write buffer at once. Lines
/// past it wait as they are, shared with their other recipients: a
/// delivery to 500 recipients copied whole into 500 buffers of up to
/// `max_queue` would cost 500 times its size. 64 KiB is a loopback socket buffer's
/// worth, so one write still moves as much as the kernel will take.
pub const WRITE_BATCH_BYTES_MAX: usize = 64 * 1024;

/// How long, and for how many bytes, a refused or timed-out connection
/// lingers: it is owed one line, a moment is enough to read it, and any
/// longer would let it hold a descriptor the limits exist to free.
const BRIEF_LINGER: Duration = Duration::from_secs(1);
const BRIEF_LINGER_BYTES_MAX: usize = 4 * 1024;

/// How long, and for how many discarded bytes, a graceful close for
/// `reason` waits for the peer to close too.
fn linger_limits(reason: CloseReason, write_timeout: Duration) -> (Duration, usize) {
    match reason {
        // Everything processed before the shutdown is owed, and bounded by
        // time alone: a client the broker had paused may have megabytes
        // unread in the socket, all sent before the goodbye, and any of it
        // left unread would reset the connection.
        CloseReason::ShuttingDown => (write_timeout, usize::MAX),
        _ => (write_timeout.min(BRIEF_LINGER), BRIEF_LINGER_BYTES_MAX),
    }
}

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
pub(super) fn run_connection<R, S>(
    runtime: R,
    conn: ConnId,
    accepted: Accepted<S>,
    max_line: usize,
    write_timeout: Duration,
    mut queue: mpsc::Sender<ToBroker>,
    reports: Reports,
) -> impl Future<Output = ()> + Send + 'static
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async move {
        let Accepted {
            socket,
            peer,
            dialect,
        } = accepted;
        let (outbox, inbox) = outbox::outbox();
        let open = ToBroker::Open {
            conn,
            peer,
            dialect,
            outbox,
        };
        if queue.send(open).await.is_err() {
            return;
        }
        // Declared before the socket's halves, so dropped after them: the
        // broker hears of the release only once the descriptor is gone.
        let _release = Release {
            conn,
            reports: reports.clone(),
        };
        let (mut socket_reader, socket_writer) = socket.split();
        let writer = Writer {
            runtime: runtime.clone(),
            conn,
            write_timeout,
            reports,
        };
        let (peer_done, ending) = read_and_write(
            conn,
            &mut socket_reader,
            socket_writer,
            max_line,
            queue,
            writer,
            inbox,
        )
        .await;
        // A peer that finished sending has nothing left to read.
        if let (false, Ending::HalfClosed(reason)) = (peer_done, ending) {
            let (bound, bytes_max) = linger_limits(reason, write_timeout);
            linger(&runtime, &mut socket_reader, bound, bytes_max).await;
        }
        // Dropping both halves closes the socket; then `_release` tells the
        // broker.
    }
}

/// Runs the reader and the writer side by side until the writer is done.
/// Returns whether the peer had finished sending, and how the writer ended.
///
/// A function of its own, awaited once, so that while the connection
/// lingers its task reuses the memory the reader and writer took: an
/// `async` body keeps whatever is live across two of its awaits apart from
/// everything else.
fn read_and_write<R: Runtime, Rd: AsyncRead + Unpin, Wr: AsyncWrite + Unpin>(
    conn: ConnId,
    socket_reader: &mut Rd,
    socket_writer: Wr,
    max_line: usize,
    queue: mpsc::Sender<ToBroker>,
    writer: Writer<R>,
    inbox: Inbox,
) -> impl Future<Output = (bool, Ending)> {
    async move {
        // Set once the broker has closed the connection: the reader stops
        // queueing lines nobody will process.
        let closing = AtomicBool::new(false);
        // Set while the broker has paused the connection: the reader neither
        // reads nor queues. Only the writer changes it, as it takes `Pause`
        // and `Resume` off its queue.
        //
        // A paused reader returns Pending without arranging a wake-up of its
        // own, and that is safe because of how the two share this task:
        // - the select below polls the writer first, then the reader, on
        //   every wake-up of the task, so once the writer has taken a
        //   `Resume` the reader is polled after it, in the same pass;
        // - the writer returns Pending only once it has polled its queue and
        //   found it empty (idle, or racing a blocked write against it), so a
        //   `Resume` sent to it later wakes this task, which re-polls both;
        // - once the writer is draining a graceful close it no longer listens
        //   to its queue, but the broker sends nothing after `Close`, the
        //   reader has nothing left to queue (`closing` is set), and the task
        //   ends with the writer, however the drain ends (done, failed, or its
        //   deadline).
        // So a paused reader is re-polled after every message the writer
        // takes, and the broker ends every pause with `Resume` or `Close`.
        let paused = AtomicBool::new(false);
        let reading = read_frames(conn, socket_reader, max_line, queue, &closing, &paused).fuse();
        let writing = writer.run(socket_writer, inbox, &closing, &paused).fuse();
        pin_mut!(reading, writing);
        // Biased, writer first: see `paused` above.
        select_biased! {
            // The broker closed the connection or the socket failed.
            ending = writing => (false, ending),
            // The peer finished sending, or the reader stopped for the
            // close; the writer still delivers what the broker queued.
            peer_done = reading => (peer_done, writing.await),
        }
    }
}

/// Tells the broker, when dropped, that the connection's socket is gone,
/// however the connection task ends.
struct Release {
    conn: ConnId,
    reports: Reports,
}

impl Drop for Release {
    fn drop(&mut self) {
        // If the broker task is gone the server is exiting; nothing to tell.
        let _ = self
            .reports
            .unbounded_send(Report::Released { conn: self.conn });
    }
}

/// After a graceful close, reads and discards what the peer still sends
/// until it closes its side too, for at most `bound`. A socket closed with
/// input unread makes the kernel answer with a reset, and a reset makes
/// the peer's kernel throw away what it had received and not yet read: the
/// very lines the writer just delivered. Reading to the peer's end of
/// stream first makes the close a clean one both ways.
async fn linger<R: Runtime, S: AsyncRead + Unpin>(
    runtime: &R,
    socket: &mut S,
    bound: Duration,
    bytes_max: usize,
) {
    let discard = discard_until_end(socket, bytes_max).fuse();
    let deadline = runtime.sleep(bound).fuse();
    pin_mut!(discard, deadline);
    select_biased! {
        () = discard => {}
        () = deadline => {}
    }
}

/// Reads into the thread's shared buffer until end of stream, an error, or
/// `bytes_max` bytes.
async fn discard_until_end<S: AsyncRead + Unpin>(socket: &mut S, bytes_max: usize) {
    let mut discarded = 0;
    while discarded < bytes_max {
        let read = poll_fn(|cx| {
            READ_BUFFER.with_borrow_mut(|buffer| Pin::new(&mut *socket).poll_read(cx, buffer))
        })
        .await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(bytes) => discarded += bytes,
        }
    }
}

/// Reads until end of stream or error, queueing the frames of each read for
/// the broker in events of a few (see `MAX_FRAMES_PER_EVENT`), and then the
/// close; returns true. Returns false, stopping early, once `closing` is
/// set: the broker has closed the connection and would ignore the lines.
/// While `paused` is set it waits before each read and before each event,
/// so at most the event it was queueing goes to the broker after a pause.
fn read_frames<S: AsyncRead + Unpin>(
    conn: ConnId,
    socket: &mut S,
    max_line: usize,
    mut queue: mpsc::Sender<ToBroker>,
    closing: &AtomicBool,
    paused: &AtomicBool,
) -> impl Future<Output = bool> {
    async move {
        let mut decoder = LineDecoder::new(max_line);
        let mut frames = Vec::new();
        loop {
            let read = read_and_decode(socket, &mut decoder, &mut frames, paused).await;
            let end_of_stream = match read {
                Ok(0) => {
                    decoder.finish(&mut frames);
                    true
                }
                Ok(_) => false,
                // A reset or failed connection: an unfinished line is dropped,
                // since the peer never finished sending it.
                Err(_) => true,
            };
            if closing.load(Ordering::Relaxed) {
                return end_of_stream;
            }
            while !frames.is_empty() {
                unpaused(paused).await;
                let rest = frames.split_off(event_size(&frames));
                let frames = std::mem::replace(&mut frames, rest);
                if queue.send(ToBroker::Lines { conn, frames }).await.is_err() {
                    return true;
                }
            }
            if end_of_stream {
                let _ = queue.send(ToBroker::Closed { conn }).await;
                return true;
            }
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

/// Completes once `paused` is clear. Pending while it is set, with no
/// wake-up arranged: the writer, polled first in the same task, clears it
/// (see `read_and_write`).
async fn unpaused(paused: &AtomicBool) {
    poll_fn(|_| {
        if paused.load(Ordering::Relaxed) {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await
}

/// Reads once into the thread's shared buffer, once `paused` is clear, and
/// decodes what arrived into `frames`. Returns the bytes read: 0 at end of
/// stream.
async fn read_and_decode<S: AsyncRead + Unpin>(
    socket: &mut S,
    decoder: &mut LineDecoder,
    frames: &mut Vec<Frame>,
    paused: &AtomicBool,
) -> io::Result<usize> {
    poll_fn(|cx| {
        // Paused: leave the socket unread, so its buffers fill and TCP
        // pushes back on the peer. No wake-up is needed (see `unpaused`).
        if paused.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        READ_BUFFER.with_borrow_mut(|buffer| {
            // Pending leaves the buffer untouched: nothing is held across it.
            let read = ready!(Pin::new(&mut *socket).poll_read(cx, buffer))?;
            decoder.decode(&buffer[..read], frames);
            Poll::Ready(Ok(read))
        })
    })
    .await
}

/// How a writer finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// Everything queued was written and the write side shut down, closing
    /// for this reason: the peer reads an end of stream after the last
    /// line, and the socket lingers (see `linger_limits`).
    HalfClosed(CloseReason),
    /// Cut (slow consumer, dead peer), failed, timed out draining, or the
    /// server is exiting: the socket is dropped as it is.
    Abandoned,
}

/// The writing half of a connection and what it reports to.
struct Writer<R> {
    runtime: R,
    conn: ConnId,
    write_timeout: Duration,
    reports: Reports,
}

/// Bytes on their way to the socket.
///
/// Lines are copied into one write buffer, the batch, at most
/// `WRITE_BATCH_BYTES_MAX` bytes of them at a time; lines past it wait in
/// `waiting` as the broker sent them, shared with their other recipients.
/// Lines go straight into the batch while nothing waits and they fit, so a
/// burst of chat lines costs one allocation, as before.
#[derive(Default)]
struct Batches {
    /// The batch being written: whole lines, and at its end the first part
    /// of a line too long for the room that was left.
    batch: Vec<u8>,
    /// How much of `batch` the socket has accepted.
    written: usize,
    /// Lines not yet copied into a batch, oldest first.
    waiting: VecDeque<Line>,
    /// How many bytes of the first waiting line are already in a batch.
    first_copied: usize,
    /// The broker closed the connection gracefully, for this reason: write
    /// what is queued, then close.
    draining: Option<CloseReason>,
}

/// Makes room in `batch` for `bytes` more, never growing its capacity past
/// `WRITE_BATCH_BYTES_MAX` (nor its length: callers copy no more than that). A
/// burst starts with room for a dozen chat lines, so most bursts never
/// grow their buffer.
fn reserve(batch: &mut Vec<u8>, bytes: usize) {
    let needed = batch.len() + bytes;
    debug_assert!(needed <= WRITE_BATCH_BYTES_MAX, "a batch past its bound");
    if needed > batch.capacity() {
        let capacity = (batch.capacity() * 2)
            .max(FIRST_BATCH_CAPACITY)
            .max(needed)
            .min(WRITE_BATCH_BYTES_MAX);
        batch.reserve_exact(capacity - batch.len());
    }
}

impl Batches {
    /// Applies one message from the broker; `Break` means close at once.
    /// `Pause` and `Resume` set `paused`, for the reader.
    fn accept(&mut self, message: Outbound, paused: &AtomicBool) -> ControlFlow<()> {
        debug_assert!(self.draining.is_none(), "a message after the close");
        match message {
            Outbound::Line(line) => self.push(line),
            Outbound::Pause => paused.store(true, Ordering::Relaxed),
            Outbound::Resume => paused.store(false, Ordering::Relaxed),
            Outbound::Close(reason) if reason.flushes_queue() => self.draining = Some(reason),
            Outbound::Close(_) => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Applies every message the writer took from its inbox, in order;
    /// `Break` means close at once, as does an inbox that has ended (the
    /// broker task is gone: the server is exiting).
    fn accept_all(&mut self, taken: Taken, paused: &AtomicBool) -> ControlFlow<()> {
        let Taken::Messages(messages) = taken else {
            return ControlFlow::Break(());
        };
        for message in messages {
            self.accept(message, paused)?;
        }
        ControlFlow::Continue(())
    }

    /// Takes one line: into the batch if nothing waits and it fits, or
    /// else to wait, uncopied.
    fn push(&mut self, line: Line) {
        if self.waiting.is_empty() && self.batch.len() + line.len() <= WRITE_BATCH_BYTES_MAX {
            reserve(&mut self.batch, line.len());
            self.batch.extend_from_slice(line.as_bytes());
        } else {
            self.waiting.push_back(line);
        }
    }

    /// Copies waiting lines into the (empty) batch, up to `WRITE_BATCH_BYTES_MAX`
    /// bytes, cutting the last one if it does not fit whole.
    fn refill(&mut self) {
        debug_assert!(self.batch.is_empty());
        while let Some(line) = self.waiting.front() {
            let rest = &line.as_bytes()[self.first_copied..];
            let take = rest.len().min(WRITE_BATCH_BYTES_MAX - self.batch.len());
            reserve(&mut self.batch, take);
            self.batch.extend_from_slice(&rest[..take]);
            if take < rest.len() {
                self.first_copied += take;
                return;
            }
            self.waiting.pop_front();
            self.first_copied = 0;
        }
    }

    /// The unwritten rest of the current batch, starting a new batch from
    /// the lines waiting if the current one is done. Empty when idle; an
    /// idle writer frees its buffers, so idle connections stay small (a
    /// burst costs an allocation or two, far less than its writes).
    fn unwritten(&mut self) -> &[u8] {
        if self.written == self.batch.len() {
            self.batch.clear();
            self.written = 0;
            self.refill();
            if self.batch.is_empty() {
                self.batch = Vec::new();
                self.waiting = VecDeque::new();
            }
        }
        &self.batch[self.written..]
    }
}

impl<R: Runtime> Writer<R> {
    /// Writes what the broker sends until it closes the connection (then
    /// sets `closing`) or the socket fails, and sets `paused` as the broker
    /// pauses and resumes the reader. Whenever it returns Pending short of
    /// draining a close, it has just found `inbox` empty: the reader relies
    /// on that (see `read_and_write`).
    fn run<S: AsyncWrite + Unpin>(
        self,
        mut socket: S,
        mut inbox: Inbox,
        closing: &AtomicBool,
        paused: &AtomicBool,
    ) -> impl Future<Output = Ending> {
        async move {
            let mut batches = Batches::default();
            // Whether a socket that accepts nothing is dead is the broker's call
            // (it sees the flushes, with their times). The writer's one timer
            // bounds a drain, after the broker has let the connection go:
            // armed the first time a draining write blocks.
            let mut drain_deadline: Option<Fuse<BoxFuture<'static, ()>>> = None;
            loop {
                if batches.draining.is_some() {
                    closing.store(true, Ordering::Relaxed);
                }
                if batches.unwritten().is_empty() {
                    if let Some(reason) = batches.draining {
                        return self.close(&mut socket, reason).await;
                    }
                    // Idle: wait for the broker, then take every line already
                    // waiting too, so they leave in one write. The queue ending
                    // means the broker task is gone: the server is exiting.
                    let taken = poll_fn(|cx| inbox.poll_take(cx)).await;
                    if batches.accept_all(taken, paused).is_break() {
                        return Ending::Abandoned;
                    }
                    continue;
                }
                // Try the write at once: most complete without waiting.
                if let Some(written) = socket.write(batches.unwritten()).now_or_never() {
                    if self.wrote(written, &mut batches).is_break() {
                        return Ending::Abandoned;
                    }
                    continue;
                }
                if batches.draining.is_some() && drain_deadline.is_none() {
                    drain_deadline = Some(self.runtime.sleep(self.write_timeout).fuse());
                }
                // Blocked: race the write against new messages (a close among
                // them) and, once draining, the drain's deadline. Progress comes
                // first, or a steady trickle of new lines would keep the batch
                // from ever being written. Once draining, the broker has said
                // its last word: stop listening to it.
                let listening = batches.draining.is_none();
                let mut message =
                    OptionFuture::from(listening.then(|| poll_fn(|cx| inbox.poll_take(cx)).fuse()));
                let mut deadline = OptionFuture::from(drain_deadline.as_mut());
                select_biased! {
                    written = socket.write(batches.unwritten()).fuse() => {
                        if self.wrote(written, &mut batches).is_break() {
                            return Ending::Abandoned;
                        }
                    },
                    taken = message => {
                        let taken = taken.expect("polled only while listening");
                        if batches.accept_all(taken, paused).is_break() {
                            return Ending::Abandoned;
                        }
                    },
                    // Closing anyway, and the peer still reads nothing.
                    _ = deadline => return Ending::Abandoned,
                }
            }
        }
    }

    /// Accounts one write's outcome and reports it; `Break` means the
    /// socket failed and the writer is done.
    fn wrote(&self, written: io::Result<usize>, batches: &mut Batches) -> ControlFlow<()> {
        match written {
            Ok(0) | Err(_) => {
                self.report(Report::Failed { conn: self.conn });
                ControlFlow::Break(())
            }
            Ok(bytes) => {
                batches.written += bytes;
                self.report(Report::Flushed {
                    conn: self.conn,
                    bytes,
                });
                ControlFlow::Continue(())
            }
        }
    }

    /// Half-closes the socket so the peer sees end of stream after the
    /// last line, waiting at most the write timeout for that.
    async fn close<S: AsyncWrite + Unpin>(&self, socket: &mut S, reason: CloseReason) -> Ending {
        let close = socket.close().fuse();
        let timeout = self.runtime.sleep(self.write_timeout).fuse();
        pin_mut!(close, timeout);
        select_biased! {
            closed = close => match closed {
                Ok(()) => Ending::HalfClosed(reason),
                Err(_) => Ending::Abandoned,
            },
            () = timeout => Ending::Abandoned,
        }
    }

    fn report(&self, report: Report) {
        // If the broker task is gone the server is exiting; nothing to tell.
        let _ = self.reports.unbounded_send(report);
    }
}
