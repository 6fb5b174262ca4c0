//! `chinwag connect`: the interactive client.
//!
//! Lines typed on stdin go to the server; lines from the server are printed
//! on stdout. When stdin ends, the client half-closes the connection and
//! keeps printing until the server closes it, so piped input gets all its
//! replies; it exits when the server closes.

use std::net::SocketAddr;

use async_std::io::{self, BufReader, prelude::*};
use async_std::net::TcpStream;
use futures::{FutureExt, select_biased};

/// Connects to `address` and relays stdin and stdout until the server closes.
pub async fn run(address: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let to_server = send_stdin(&stream).fuse();
    let from_server = print_replies(&stream).fuse();
    futures::pin_mut!(to_server, from_server);
    select_biased! {
        result = from_server => result,
        result = to_server => {
            result?;
            from_server.await
        }
    }
}

async fn send_stdin(mut stream: &TcpStream) -> io::Result<()> {
    let mut stdin = BufReader::new(io::stdin());
    let mut line = String::new();
    while stdin.read_line(&mut line).await? > 0 {
        if !line.ends_with('\n') {
            line.push('\n');
        }
        stream.write_all(line.as_bytes()).await?;
        line.clear();
    }
    stream.shutdown(std::net::Shutdown::Write)
}

async fn print_replies(stream: &TcpStream) -> io::Result<()> {
    let mut replies = BufReader::new(stream);
    let mut line = Vec::new();
    let mut stdout = io::stdout();
    while replies.read_until(b'\n', &mut line).await? > 0 {
        stdout
            .write_all(String::from_utf8_lossy(&line).as_bytes())
            .await?;
        if !line.ends_with(b"\n") {
            stdout.write_all(b"\n").await?;
        }
        stdout.flush().await?;
        line.clear();
    }
    Ok(())
}
