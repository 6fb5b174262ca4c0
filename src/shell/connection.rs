//! One connection: a reader and a writer sharing one socket.
//!
//! The reader turns bytes into frames with the codec and queues each one for
//! the broker. The writer writes what the broker sends it, batching every
//! line that is already waiting into one write, reports each write's
//! progress back (so the broker can account queued bytes) and reports a
//! write that makes no progress for the write timeout. Both run in one task;
//! when the writer is done the socket is dropped, which closes it.

use std::ops::ControlFlow;
use std::time::Duration;

use futures::channel::mpsc::{self, TryRecvError};
use futures::future::OptionFuture;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::{FutureExt, SinkExt, StreamExt, pin_mut, select_biased};

use super::broker_task::{Outbound, Reports, ToBroker};
use super::runtime::Runtime;
use crate::broker::{ConnId, Input};
use crate::codec::LineDecoder;

/// Bytes read from the socket per read call.
const READ_CHUNK: usize = 4096;

/// A writer buffer that grew past this while draining a burst is released
/// once idle, so idle connections stay small.
const IDLE_BUFFER_KEEP: usize = 16 * 1024;

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

/// Reads until end of stream or error, queueing every frame for the broker
/// and then the close.
async fn read_frames<S: AsyncRead + Unpin>(
    conn: ConnId,
    mut socket: S,
    max_line: usize,
    mut queue: mpsc::Sender<ToBroker>,
) {
    let mut decoder = LineDecoder::new(max_line);
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut frames = Vec::new();
    loop {
        let end_of_stream = match socket.read(&mut chunk).await {
            Ok(0) => {
                decoder.finish(&mut frames);
                true
            }
            Ok(read) => {
                decoder.decode(&chunk[..read], &mut frames);
                false
            }
            // A reset or failed connection: an unfinished line is dropped,
            // since the peer never finished sending it.
            Err(_) => true,
        };
        for frame in frames.drain(..) {
            let line = Input::Line { conn, frame };
            if queue.send(ToBroker::Input(line)).await.is_err() {
                return;
            }
        }
        if end_of_stream {
            let _ = queue.send(ToBroker::Input(Input::Closed { conn })).await;
            return;
        }
    }
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
            Outbound::Line(line) => self.next.extend_from_slice(line.as_bytes()),
            Outbound::Close(reason) if reason.flushes_queue() => self.draining = true,
            Outbound::Close(_) => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// The unwritten rest of the current batch, starting a new batch from
    /// the lines waiting if the current one is done. Empty when idle.
    fn unwritten(&mut self) -> &[u8] {
        if self.written == self.writing.len() {
            self.writing.clear();
            self.written = 0;
            std::mem::swap(&mut self.writing, &mut self.next);
            if self.writing.is_empty() && self.next.capacity() > IDLE_BUFFER_KEEP {
                self.next = Vec::new();
            }
            if self.writing.is_empty() && self.writing.capacity() > IDLE_BUFFER_KEEP {
                self.writing = Vec::new();
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
        let mut stall_timer = self.runtime.sleep(self.write_timeout).fuse();
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
                stall_timer = self.runtime.sleep(self.write_timeout).fuse();
                stall_reported = false;
                continue;
            }
            // Busy: race the write against new messages and the stall timer.
            // Progress comes first, or a steady trickle of new lines would
            // keep the batch from ever being written. Once draining, the
            // broker has said its last word: stop listening to it.
            let mut message = OptionFuture::from((!batches.draining).then(|| inbox.next()));
            select_biased! {
                written = socket.write(batches.unwritten()).fuse() => match written {
                    Ok(0) | Err(_) => {
                        self.report(Input::Closed { conn: self.conn });
                        return;
                    }
                    Ok(bytes) => {
                        batches.written += bytes;
                        stall_timer = self.runtime.sleep(self.write_timeout).fuse();
                        stall_reported = false;
                        self.report(Input::Flushed { conn: self.conn, bytes });
                    }
                },
                message = message => match message.flatten() {
                    Some(message) => {
                        if batches.accept(message).is_break() {
                            return;
                        }
                        if batches.draining {
                            // The drain gets its own full timeout.
                            stall_timer = self.runtime.sleep(self.write_timeout).fuse();
                        }
                    }
                    None => return,
                },
                () = stall_timer => {
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
