//! An accepted async-std TCP stream, as the shell needs it.
//!
//! The shell relies on one thing from a socket beyond reading and writing:
//! `close` on its writing half sends the peer an end of stream (a TCP
//! half-close), so a graceful close can deliver the last line, then the
//! end of stream, and go on reading until the peer is done (see
//! `shell::connection`). async-std's `TcpStream` only flushes on `close`,
//! so this wrapper shuts the write side down itself. (turmoil's streams,
//! in the simulator, half-close on `close` already.)

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use async_std::net::TcpStream;
use futures::io::{AsyncRead, AsyncWrite};

/// A TCP stream whose `close` is a half-close.
#[derive(Debug)]
pub struct Socket(pub TcpStream);

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buffer)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, bytes)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Pin::new(&mut self.0).poll_flush(cx))?;
        Poll::Ready(self.0.shutdown(Shutdown::Write))
    }
}
