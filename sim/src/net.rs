//! The network model's sharp edges: a stream around turmoil's TCP stream
//! that adds what a real kernel does and turmoil does not.
//!
//! turmoil 0.7 already gives ordered, lossless-unless-faulted streams, FIN
//! and half-close in each direction, and a reset (`Rst`) when a socket is
//! closed with input unread or data arrives for a socket that is gone. But
//! on turmoil a reset only removes the peer's socket: the peer still reads
//! every segment it had received, and only then fails. Linux discards them:
//! the reset makes the peer's kernel throw away what it had received and
//! not yet read (measured on Linux 6.18 over loopback: after a server that
//! had written 3.8 MB the client had not read closed with input unread, the
//! client read 37,888 bytes, then `ECONNRESET`; one that had received
//! 200,000 bytes and then wrote to the closed server read 128,000; see
//! docs/simulation.md). A reader gets a read or so in before the error;
//! the model leaves that out, being the stricter. And turmoil's flow
//! control counts
//! segments, not bytes: any write is one segment, so the window in bytes is
//! unbounded.
//!
//! [`Stream`] (and its halves, [`ReadHalf`] and [`WriteHalf`]) adds, each
//! switched on or off per seed by [`Model`]:
//!
//! - **close with unread input**: an end whose reading side is dropped with
//!   input unread resets the connection (turmoil sends the `Rst`), and the
//!   peer's next read after the reset has arrived (the network's maximum
//!   latency later) discards all it had received and not read, and fails
//!   with `ConnectionReset`;
//! - **write to a closed peer**: a write to an end whose both halves are
//!   gone draws a reset back (turmoil's `Rst`, a round trip later), and the
//!   writer's next read after that discards what it had not read and fails
//!   the same way;
//! - **small windows**: each write takes at most one segment of
//!   [`Model::segment`] bytes, so a stream holds at most turmoil's
//!   `tcp_capacity` segments of that size in flight and unread, and the
//!   writer waits (back-pressure); writers see short writes.
//!
//! Half-close is turmoil's own: `shutdown` sends a FIN and the other
//! direction keeps working. But turmoil's FIN takes no credit, and one that
//! reaches a full window is stranded (see [`WriteHalf`]'s `poll_shutdown`),
//! so with a full window the wrapper's shutdown leaves the FIN to a task
//! that sends it once the peer reads on.
//!
//! Both ends of a connection meet through a per-simulation [`Net`] (an
//! `Arc<Mutex>` made by the driver, not a global: seeds run on several
//! threads at once). Each reset is written to the trace, and a client's
//! [`ReadHalf::reset`] says what reset its connection, so the checker can
//! tell the resets the server caused from the client's own.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;
use turmoil::ToSocketAddrs;
use turmoil::net::TcpStream;
use turmoil::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::alarms::{self, Alarm};
use crate::record::{Recorder, ResetSent};

/// Which sharp edges a seed's network has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Model {
    /// A reset after a close with input unread discards what the peer had
    /// received and not read.
    pub reset_on_unread_close: bool,
    /// A write to a peer that has closed draws a reset, which discards
    /// what the writer had received and not read.
    pub reset_on_write_to_closed: bool,
    /// The most bytes one write puts in a segment (`None`: a write of any
    /// size is one segment, as in turmoil).
    pub segment_bytes: Option<usize>,
}

impl Model {
    /// turmoil's network as it is.
    pub const TURMOIL: Model = Model {
        reset_on_unread_close: false,
        reset_on_write_to_closed: false,
        segment_bytes: None,
    };
}

/// Which end of a connection: the one that connected or the one that
/// accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Connector,
    Acceptor,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }

    fn peer(self) -> Side {
        match self {
            Side::Connector => Side::Acceptor,
            Side::Acceptor => Side::Connector,
        }
    }
}

/// What reset a connection, done by one of its ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The end closed its socket with input unread.
    ClosedUnread,
    /// The end wrote to the other after the other had closed its socket.
    WroteToClosed,
    /// turmoil reset it for a reason this layer did not see (a host crash,
    /// say).
    Other,
}

/// A reset as one end saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reset {
    pub cause: Cause,
    /// When the peer closed its socket (simulated time), if it had.
    pub peer_closed_at: Option<Duration>,
    /// Bytes this end had received and not read that the reset threw away.
    pub discarded: usize,
}

/// The per-simulation meeting point of connections' two ends.
#[derive(Clone)]
pub struct Net(Arc<Mutex<Registry>>);

struct Registry {
    model: Model,
    /// The longest a segment takes, faults aside: a reset takes effect
    /// this long after it is sent.
    latency: Duration,
    /// turmoil's `tcp_capacity`: segments a stream holds in flight and
    /// unread.
    capacity_segments: usize,
    recorder: Recorder,
    /// Connections one end has wrapped and the other not yet, by the
    /// connector's address and the acceptor's.
    waiting: BTreeMap<(SocketAddr, SocketAddr), (Side, Link)>,
}

/// One connection's state, shared by its two ends.
type Link = Arc<Mutex<Conn>>;

#[derive(Default)]
struct Conn {
    ends: [EndState; 2],
}

#[derive(Default)]
struct EndState {
    /// Bytes this end has written, and read.
    written: u64,
    read: u64,
    /// Where each segment this end wrote starts, of those the peer has not
    /// started reading: turmoil gives a segment's credit back when the
    /// reader takes it, at its first byte.
    unread_segments: VecDeque<u64>,
    /// A shutdown waiting for a credit.
    shutdown_waker: Option<Waker>,
    /// Halves of this end dropped so far (0, 1 or 2).
    dropped_halves: u8,
    /// When both halves were gone.
    closed_at: Option<Duration>,
    /// When this end closed with input unread (and so sent a reset).
    reset_sent_at: Option<Duration>,
    /// When this end first wrote to the peer after the peer had closed.
    wrote_to_closed_at: Option<Duration>,
}

impl Net {
    /// The meeting point for a simulation whose network has `model`'s
    /// edges, a maximum latency of `latency` and turmoil's `tcp_capacity`
    /// of `capacity`.
    pub fn new(
        model: Model,
        latency: Duration,
        capacity_segments: usize,
        recorder: Recorder,
    ) -> Net {
        Net(Arc::new(Mutex::new(Registry {
            model,
            latency,
            capacity_segments,
            recorder,
            waiting: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn model(&self) -> Model {
        self.lock().model
    }

    /// Connects to `addr`, as `turmoil::net::TcpStream::connect` does.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<Stream> {
        let inner = TcpStream::connect(addr).await?;
        Ok(self.wrap(inner, Side::Connector))
    }

    /// Wraps one end of a connection: `side` says which.
    pub fn wrap(&self, inner: TcpStream, side: Side) -> Stream {
        let local = inner
            .local_addr()
            .expect("turmoil streams know their address");
        let remote = inner.peer_addr().expect("turmoil streams know their peer");
        let key = match side {
            Side::Connector => (local, remote),
            Side::Acceptor => (remote, local),
        };
        let link = {
            let mut registry = self.lock();
            match registry.waiting.remove(&key) {
                Some((other, link)) if other != side => link,
                _ => {
                    let link = Link::default();
                    registry.waiting.insert(key, (side, link.clone()));
                    link
                }
            }
        };
        let (read, write) = inner.into_split();
        let end = End {
            net: self.clone(),
            link,
            side,
            local,
            remote,
        };
        Stream {
            read: ReadHalf {
                inner: read,
                end: end.clone(),
                reset: None,
                due: None,
            },
            write: WriteHalf {
                inner: Some(write),
                end,
            },
        }
    }
}

/// What each half knows of its end.
#[derive(Clone)]
struct End {
    net: Net,
    link: Link,
    side: Side,
    local: SocketAddr,
    remote: SocketAddr,
}

impl End {
    fn conn(&self) -> MutexGuard<'_, Conn> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recorder(&self) -> Recorder {
        self.net.lock().recorder.clone()
    }

    fn note(&self, text: &str) {
        let text = format!("{} -> {}: {text}", self.local, self.remote);
        self.recorder().note("net", &text);
    }

    /// This end did something that resets the connection.
    fn sent_reset(&self, cause: Cause, text: &str) {
        let connector = match self.side {
            Side::Connector => self.local,
            Side::Acceptor => self.remote,
        };
        let reset = ResetSent {
            connector,
            by: self.side,
            cause,
            at: now(),
            peer_closed_at: self.peer_closed_at(),
        };
        let text = format!("{} -> {}: {text}", self.local, self.remote);
        self.recorder().reset_sent(reset, &text);
    }

    /// One half of this end is gone; when both are, the end is closed.
    fn half_dropped(&self) {
        let mut conn = self.conn();
        let end = &mut conn.ends[self.side.index()];
        end.dropped_halves += 1;
        if end.dropped_halves == 2 {
            end.closed_at = Some(now());
        }
        // A FIN waiting for this end to read need wait no more if it is gone.
        if let Some(waker) = conn.ends[self.side.peer().index()].shutdown_waker.take() {
            waker.wake();
        }
    }

    /// The reset this end is owed, and when it takes effect, if one is on
    /// its way and the model says it discards.
    fn reset_due(&self) -> Option<(Cause, Duration)> {
        let (model, latency) = {
            let registry = self.net.lock();
            (registry.model, registry.latency)
        };
        let conn = self.conn();
        let peer = &conn.ends[self.side.peer().index()];
        let mine = &conn.ends[self.side.index()];
        let unread = peer
            .reset_sent_at
            .filter(|_| model.reset_on_unread_close)
            .map(|at| (Cause::ClosedUnread, at + latency));
        let wrote = mine
            .wrote_to_closed_at
            .filter(|_| model.reset_on_write_to_closed)
            .map(|at| (Cause::WroteToClosed, at + 2 * latency));
        match (unread, wrote) {
            (Some(a), Some(b)) => Some(if b.1 < a.1 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Whether this end's window is full: the peer, still open, has not
    /// started reading any of the last `tcp_capacity` segments it wrote.
    /// If so, `waker` (if any) is woken when that changes.
    fn window_full(&self, waker: Option<&Waker>) -> bool {
        let capacity = self.net.lock().capacity_segments;
        let mut conn = self.conn();
        let peer = &conn.ends[self.side.peer().index()];
        let peer_gone = peer.closed_at.is_some() || peer.reset_sent_at.is_some();
        let mine = &mut conn.ends[self.side.index()];
        let full = !peer_gone && mine.unread_segments.len() >= capacity;
        if let (true, Some(waker)) = (full, waker) {
            mine.shutdown_waker = Some(waker.clone());
        }
        full
    }

    /// This end's reader took `bytes` more: the peer's segments it started
    /// reading have their credits back, and a shutdown waiting for one
    /// may go on.
    fn took(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if self.side == Side::Acceptor {
            self.recorder().server_read(self.remote);
        }
        let mut conn = self.conn();
        conn.ends[self.side.index()].read += bytes;
        let read = conn.ends[self.side.index()].read;
        let peer = &mut conn.ends[self.side.peer().index()];
        while peer
            .unread_segments
            .front()
            .is_some_and(|&start| start < read)
        {
            peer.unread_segments.pop_front();
        }
        if let Some(waker) = peer.shutdown_waker.take() {
            waker.wake();
        }
    }

    /// Why turmoil reset this end, as far as this layer knows.
    fn cause(&self) -> Cause {
        let conn = self.conn();
        if conn.ends[self.side.peer().index()].reset_sent_at.is_some() {
            Cause::ClosedUnread
        } else if conn.ends[self.side.index()].wrote_to_closed_at.is_some() {
            Cause::WroteToClosed
        } else {
            Cause::Other
        }
    }

    fn peer_closed_at(&self) -> Option<Duration> {
        self.conn().ends[self.side.peer().index()].closed_at
    }
}

/// One end of a wrapped connection, whole (the server's sockets).
pub struct Stream {
    // Declared first, so dropped first: a close with input unread resets
    // rather than sending a FIN first, as a kernel's `close` does.
    read: ReadHalf,
    write: WriteHalf,
}

impl Stream {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.read.end.local)
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        (self.read, self.write)
    }
}

/// The reading half of an end.
pub struct ReadHalf {
    inner: OwnedReadHalf,
    end: End,
    /// The reset this half has taken, once it has.
    reset: Option<Reset>,
    /// Wakes a reader waiting when a reset on its way is due, with when.
    due: Option<(Duration, Pin<Box<Alarm<Sleep>>>)>,
}

impl ReadHalf {
    /// The reset that ended this half's reading, if one did.
    pub fn reset(&self) -> Option<Reset> {
        self.reset
    }

    fn reset_error() -> io::Error {
        io::Error::new(io::ErrorKind::ConnectionReset, "connection reset")
    }

    /// Takes the reset: throws away what was received and not read.
    fn take_reset(&mut self, cause: Cause) -> Reset {
        let mut discarded = 0;
        let mut cx = Context::from_waker(Waker::noop());
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(&mut cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => discarded += buf.filled().len(),
                _ => break,
            }
        }
        let reset = Reset {
            cause,
            peer_closed_at: self.end.peer_closed_at(),
            discarded,
        };
        self.end.note(&format!(
            "reset ({cause:?}), {discarded} unread bytes discarded"
        ));
        reset
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.reset.is_some() {
            return Poll::Ready(Err(Self::reset_error()));
        }
        if let Some((cause, at)) = this.end.reset_due() {
            if now() >= at {
                this.due = None;
                this.reset = Some(this.take_reset(cause));
                return Poll::Ready(Err(Self::reset_error()));
            }
            // A reset due sooner than the one the alarm is set for (one
            // that came on a shorter path) sets it anew.
            if this.due.as_ref().is_none_or(|(set_for, _)| *set_for != at) {
                this.due = Some((at, Box::pin(alarms::sleep(at - now()))));
            }
            let (_, due) = this.due.as_mut().expect("just set");
            // Ready only once due: then the next poll takes the reset.
            if due.as_mut().poll(cx).is_ready() {
                cx.waker().wake_by_ref();
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.end.took((buf.filled().len() - before) as u64);
        }
        if let Poll::Ready(Err(error)) = &result
            && error.kind() == io::ErrorKind::ConnectionReset
        {
            let cause = this.end.cause();
            this.end.note(&format!("reset ({cause:?})"));
            this.reset = Some(Reset {
                cause,
                peer_closed_at: this.end.peer_closed_at(),
                discarded: 0,
            });
        }
        result
    }
}

impl Drop for ReadHalf {
    fn drop(&mut self) {
        // turmoil sends the reset itself if input is unread; peeking puts a
        // segment waiting in the channel where it looks for one.
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let unread = self.reset.is_none()
            && matches!(Pin::new(&mut self.inner).poll_peek(&mut cx, &mut buf), Poll::Ready(Ok(n)) if n > 0);
        if unread {
            {
                let mut conn = self.end.conn();
                conn.ends[self.end.side.index()].reset_sent_at = Some(now());
            }
            self.end
                .sent_reset(Cause::ClosedUnread, "closed with input unread: reset");
        }
        self.end.half_dropped();
    }
}

/// The writing half of an end.
pub struct WriteHalf {
    /// `None` once shut down with a full window: a task of the host holds
    /// it until the FIN can go (see `poll_shutdown`).
    inner: Option<OwnedWriteHalf>,
    end: End,
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let model = self.end.net.model();
        let buf = match model.segment_bytes {
            Some(segment) => &buf[..buf.len().min(segment)],
            None => buf,
        };
        let peer_closed = self.end.peer_closed_at().is_some();
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        let result = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            let mut conn = self.end.conn();
            let mine = &mut conn.ends[self.end.side.index()];
            mine.unread_segments.push_back(mine.written);
            mine.written += n as u64;
        }
        if peer_closed && matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            let first = {
                let mut conn = self.end.conn();
                let mine = &mut conn.ends[self.end.side.index()];
                let first = mine.wrote_to_closed_at.is_none();
                mine.wrote_to_closed_at.get_or_insert_with(now);
                first
            };
            if first {
                let text = "wrote to a closed peer: a reset comes back";
                self.end.sent_reset(Cause::WroteToClosed, text);
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// turmoil's FIN takes no credit, and one that arrives while the
    /// peer's channel is full of unread segments waits in turmoil's
    /// reorder buffer for a segment that never comes: the peer would never
    /// read the end of stream. So with a full window the shutdown returns
    /// at once, as a kernel's does, and a task of the host sends the FIN
    /// once the peer has started reading another segment (or is gone).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        if !this.end.window_full(None) {
            return Pin::new(inner).poll_shutdown(cx);
        }
        let (Some(mut inner), end) = (self.inner.take(), self.end.clone()) else {
            unreachable!("checked above");
        };
        tokio::task::spawn_local(async move {
            std::future::poll_fn(|cx| {
                if end.window_full(Some(cx.waker())) {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let _ = inner.shutdown().await;
        });
        Poll::Ready(Ok(()))
    }
}

impl Drop for WriteHalf {
    fn drop(&mut self) {
        self.end.half_dropped();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.write).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.write).poll_shutdown(cx)
    }
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}
