//! An accepted TCP stream, as the shell needs it.
//!
//! It is async-std's own socket underneath: `async_io::Async`, the reactor
//! handle async-std's `TcpStream` wraps, used directly for two things the
//! wrapper hides.
//!
//! - **A read only when the socket may be readable.** A connection's reader
//!   and writer share one task, so every line the broker sends the writer
//!   also polls the reader. async-std's stream answers each poll with a
//!   `recv` system call, and measured at 60,000 deliveries a second the
//!   server made 17 of them per message, nearly all finding nothing. This
//!   one remembers that the socket had nothing to read and asks the reactor
//!   first, which costs no system call until the kernel reports new bytes.
//! - **`close` is a half-close.** The shell relies on `close` of the
//!   writing half sending the peer an end of stream, so a graceful close
//!   can deliver the last line, then the end of stream, and go on reading
//!   until the peer is done (see `shell::connection`). (turmoil's streams,
//!   in the simulator, half-close on `close` already.)

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_io::Async;
use futures::io::{AsyncRead, AsyncWrite};

/// A TCP stream that reads only when the reactor says it may, and whose
/// `close` is a half-close.
#[derive(Debug)]
pub struct Socket {
    stream: Async<TcpStream>,
    /// Whether a read may find bytes: false once a read came back short or
    /// empty, until the reactor reports the socket readable again.
    maybe_readable: bool,
}

impl Socket {
    /// A socket for `stream`, which is registered with the reactor.
    pub fn new(stream: Async<TcpStream>) -> Self {
        Socket {
            stream,
            maybe_readable: true,
        }
    }

    /// The OS socket, to set options on.
    pub fn get_ref(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            if !self.maybe_readable {
                // Ready once the kernel has reported the socket readable
                // since the last Pending; Pending registers this task to be
                // woken when it does. Registering re-arms the reactor's
                // interest, and the kernel reports bytes already waiting on
                // the reactor's next pass, so none wait unseen (at the cost
                // of that pass, where a read would have found them).
                ready!(self.stream.poll_readable(cx))?;
                self.maybe_readable = true;
            }
            match self.stream.get_ref().read(buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.maybe_readable = false;
                }
                Ok(read) if read < buffer.len() => {
                    // A short read took everything there was: the next
                    // read would find nothing, so ask the reactor first.
                    self.maybe_readable = false;
                    return Poll::Ready(Ok(read));
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        Poll::Ready(self.stream.get_ref().shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;

    use futures::AsyncReadExt;

    use super::*;

    /// Runs `test`, failing it if it has not finished in 10 s: a lost
    /// wake-up would otherwise hang the test instead of failing it.
    fn within_10_s(test: impl std::future::Future<Output = ()>) {
        let deadline = async_io::Timer::after(std::time::Duration::from_secs(10));
        let test = std::pin::pin!(test);
        let finished = async_io::block_on(futures::future::select(test, deadline));
        assert!(
            matches!(finished, futures::future::Either::Left(_)),
            "a read never completed"
        );
    }

    /// A pair: the server's end as a [`Socket`], and a plain client.
    fn connected() -> (Socket, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Socket::new(Async::new(server).unwrap()), client)
    }

    #[test]
    fn bytes_that_arrive_after_a_short_read_are_read() {
        let (mut socket, mut client) = connected();
        within_10_s(async {
            let mut buffer = [0; 16];
            client.write_all(b"ab").unwrap();
            assert_eq!(socket.read(&mut buffer).await.unwrap(), 2);
            assert!(!socket.maybe_readable, "a short read drained the socket");
            // Sent while the reader is waiting on the reactor, and after.
            let sender = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                client.write_all(b"cd").unwrap();
                client
            });
            assert_eq!(socket.read(&mut buffer).await.unwrap(), 2);
            assert_eq!(&buffer[..2], b"cd");
            let mut client = sender.join().unwrap();
            client.write_all(b"ef").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            socket.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"ef");
        });
    }

    #[test]
    fn a_full_read_leaves_the_rest_to_read_at_once() {
        let (mut socket, mut client) = connected();
        within_10_s(async {
            client.write_all(b"abcdef").unwrap();
            let mut buffer = [0; 4];
            // Wait until all six bytes are in, so the first read fills up.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while !matches!(socket.get_ref().peek(&mut [0; 6]), Ok(6)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "six bytes never arrived"
                );
                std::thread::yield_now();
            }
            assert_eq!(socket.read(&mut buffer).await.unwrap(), 4);
            assert!(socket.maybe_readable, "a full read may have left bytes");
            assert_eq!(socket.read(&mut buffer).await.unwrap(), 2);
            assert_eq!(&buffer[..2], b"ef");
        });
    }
}
