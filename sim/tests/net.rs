//! The network model's sharp edges (`chinwag_sim::net`), each shown on a
//! small turmoil simulation of its own, with the bytes and errors each end
//! saw: a close with input unread resets the connection and the peer loses
//! what it had not read; a write to a closed peer draws a reset that does
//! the same; a half-close in either direction leaves the other working and
//! loses nothing; and a small window makes a writer wait for its reader.
//! Where it helps, the same run on turmoil's network as it is
//! (`Model::TURMOIL`) shows what the model adds. turmoil's RNG (latencies)
//! is seeded with 0, or with `NET_TEST_SEED`.

use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chinwag_sim::net::{Cause, Model, Net, Reset, Side};
use chinwag_sim::record::Recorder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::TcpListener;

const PORT: u16 = 7000;
const LATENCY: Duration = Duration::from_millis(5);

/// Every sharp edge on, with `segment_bytes`-byte segments.
fn hostile(segment_bytes: Option<usize>) -> Model {
    Model {
        reset_on_unread_close: true,
        reset_on_write_to_closed: true,
        segment_bytes,
    }
}

fn sim(capacity: usize) -> turmoil::Sim<'static> {
    let seed = std::env::var("NET_TEST_SEED").map_or(0, |s| s.parse().unwrap());
    turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(LATENCY)
        .tcp_capacity(capacity)
        .build()
}

/// Runs `server` on one accepted connection and `client` on a connection
/// to it, on a network with `model`; returns what the recorder saw.
fn run<S, C, SF, CF>(model: Model, capacity: usize, server: S, client: C) -> Recorder
where
    S: Fn(chinwag_sim::net::Stream) -> SF + 'static,
    SF: Future<Output = ()> + 'static,
    C: FnOnce(chinwag_sim::net::Stream) -> CF + 'static,
    CF: Future<Output = ()> + 'static,
{
    let recorder = Recorder::new();
    let net = Net::new(model, LATENCY, capacity, recorder.clone());
    let mut sim = sim(capacity);
    let server = Arc::new(server);
    {
        let net = net.clone();
        sim.host("server", move || {
            let (net, server) = (net.clone(), server.clone());
            async move {
                let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, PORT)).await?;
                let (socket, _) = listener.accept().await?;
                server(net.wrap(socket, Side::Acceptor)).await;
                // Stay up, so the connection's end is only what `server` did.
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        });
    }
    sim.client("client", async move {
        let stream = net.connect(("server", PORT)).await?;
        client(stream).await;
        Ok(())
    });
    sim.run().expect("the simulation runs");
    recorder
}

/// The server writes 1000 bytes the client does not read yet, and closes
/// with the client's line unread: a reset. Read after it arrives, the
/// client gets no byte of the 1000, only the reset.
#[test]
fn a_close_with_input_unread_resets_and_the_peer_loses_what_it_had_not_read() {
    let seen = Arc::new(Mutex::new(None));
    let recorder = {
        let seen = seen.clone();
        run(
            hostile(None),
            8,
            |mut stream| async move {
                stream.write_all(&[b'x'; 1000]).await.unwrap();
                // The client's line arrives and stays unread.
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(stream);
            },
            move |stream| async move {
                let (mut reader, mut writer) = stream.into_split();
                writer.write_all(b"unread\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut buffer = [0u8; 4096];
                let read = reader.read(&mut buffer).await;
                *seen.lock().unwrap() = Some((read.map_err(|e| e.kind()), reader.reset()));
            },
        )
    };
    let (read, reset) = seen.lock().unwrap().take().expect("the client read");
    assert_eq!(read, Err(ErrorKind::ConnectionReset));
    let reset = reset.expect("the reader took a reset");
    assert_eq!(reset.cause, Cause::ClosedUnread);
    assert_eq!(reset.discarded, 1000);
    let resets = recorder.take().resets;
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(
        (resets[0].by, resets[0].cause),
        (Side::Acceptor, Cause::ClosedUnread)
    );
}

/// The same on turmoil's network as it is: the reset comes, but only after
/// the client has read every byte it had received.
#[test]
fn on_turmoil_alone_the_peer_reads_everything_before_the_reset() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let seen = seen.clone();
        run(
            Model::TURMOIL,
            8,
            |mut stream| async move {
                stream.write_all(&[b'x'; 1000]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(stream);
            },
            move |stream| async move {
                let (mut reader, mut writer) = stream.into_split();
                writer.write_all(b"unread\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut buffer = [0u8; 4096];
                loop {
                    let read = reader.read(&mut buffer).await.map_err(|e| e.kind());
                    seen.lock().unwrap().push(read);
                    if !matches!(read, Ok(n) if n > 0) {
                        break;
                    }
                }
            },
        );
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [Ok(1000), Err(ErrorKind::ConnectionReset)]);
}

/// The server sends a notice, half-closes and closes with nothing unread
/// (a clean close); the client, not reading yet, writes on: its write
/// draws a reset, and the notice it had not read is lost.
#[test]
fn a_write_to_a_closed_peer_draws_a_reset_and_the_writer_loses_what_it_had_not_read() {
    let seen = Arc::new(Mutex::new(None));
    let recorder = {
        let seen = seen.clone();
        run(
            hostile(None),
            8,
            |mut stream| async move {
                stream
                    .write_all(b"error: server shutting down\n")
                    .await
                    .unwrap();
                stream.shutdown().await.unwrap();
                drop(stream);
            },
            move |stream| async move {
                let (mut reader, mut writer) = stream.into_split();
                tokio::time::sleep(Duration::from_millis(100)).await;
                writer.write_all(b"typed on\n").await.unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
                let mut buffer = [0u8; 4096];
                let read = reader.read(&mut buffer).await;
                *seen.lock().unwrap() = Some((read.map_err(|e| e.kind()), reader.reset()));
            },
        )
    };
    let (read, reset) = seen.lock().unwrap().take().expect("the client read");
    assert_eq!(read, Err(ErrorKind::ConnectionReset));
    let Some(Reset {
        cause, discarded, ..
    }) = reset
    else {
        panic!("no reset taken");
    };
    assert_eq!(cause, Cause::WroteToClosed);
    assert_eq!(discarded, 28);
    let resets = recorder.take().resets;
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(
        (resets[0].by, resets[0].cause),
        (Side::Connector, Cause::WroteToClosed)
    );
    assert!(resets[0].peer_closed_at.is_some());
}

/// Reads until end of stream; the bytes, or the error that ended it.
async fn read_all(reader: &mut (impl AsyncReadExt + Unpin)) -> Result<Vec<u8>, ErrorKind> {
    let mut all = Vec::new();
    reader.read_to_end(&mut all).await.map_err(|e| e.kind())?;
    Ok(all)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add(i as u8)).collect()
}

/// The client sends 3000 bytes and half-closes; the server reads them all
/// to the end of stream, then answers 5000 bytes on the other direction,
/// which the client reads whole before a clean end of stream. Small
/// segments, every sharp edge on: no reset. (The client's FIN often finds
/// the server's window full: on turmoil alone it would wait in the reorder
/// buffer for good, and the server would never read the end of stream.)
#[test]
fn a_client_half_close_leaves_the_other_direction_working() {
    let (got_by_server, got_by_client) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let recorder = {
        let (got_by_server, got_by_client) = (got_by_server.clone(), got_by_client.clone());
        run(
            hostile(Some(100)),
            8,
            move |mut stream| {
                let got_by_server = got_by_server.clone();
                async move {
                    let got = read_all(&mut stream).await;
                    *got_by_server.lock().unwrap() = Some(got);
                    stream.write_all(&pattern(5000, 7)).await.unwrap();
                    stream.shutdown().await.unwrap();
                }
            },
            move |stream| async move {
                let (mut reader, mut writer) = stream.into_split();
                writer.write_all(&pattern(3000, 1)).await.unwrap();
                writer.shutdown().await.unwrap();
                *got_by_client.lock().unwrap() = Some(read_all(&mut reader).await);
            },
        )
    };
    assert_eq!(
        got_by_server.lock().unwrap().take(),
        Some(Ok(pattern(3000, 1)))
    );
    assert_eq!(
        got_by_client.lock().unwrap().take(),
        Some(Ok(pattern(5000, 7)))
    );
    assert_eq!(recorder.take().resets, []);
}

/// The server sends its last line and half-closes (as the shell's
/// lingering close does), then reads on: the client reads the line and
/// the end of stream, then sends 3000 bytes and closes, and the server
/// reads them all. No reset.
#[test]
fn a_server_half_close_still_reads_all_the_client_sends() {
    let (got_by_server, got_by_client) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(None)));
    let recorder = {
        let (got_by_server, got_by_client) = (got_by_server.clone(), got_by_client.clone());
        run(
            hostile(Some(100)),
            8,
            move |mut stream| {
                let got_by_server = got_by_server.clone();
                async move {
                    stream
                        .write_all(b"error: server shutting down\n")
                        .await
                        .unwrap();
                    stream.shutdown().await.unwrap();
                    *got_by_server.lock().unwrap() = Some(read_all(&mut stream).await);
                }
            },
            move |stream| async move {
                let (mut reader, mut writer) = stream.into_split();
                *got_by_client.lock().unwrap() = Some(read_all(&mut reader).await);
                writer.write_all(&pattern(3000, 3)).await.unwrap();
                writer.shutdown().await.unwrap();
                // The run ends with the client: give the server time to read.
                tokio::time::sleep(Duration::from_millis(500)).await;
            },
        )
    };
    assert_eq!(
        got_by_client.lock().unwrap().take(),
        Some(Ok(b"error: server shutting down\n".to_vec()))
    );
    assert_eq!(
        got_by_server.lock().unwrap().take(),
        Some(Ok(pattern(3000, 3)))
    );
    assert_eq!(recorder.take().resets, []);
}

/// With 4 segments of 100 bytes, a writer whose reader does not read gets
/// 400 bytes out in writes of at most 100, then waits; once the reader
/// reads, the rest goes.
#[test]
fn a_small_window_makes_the_writer_wait_for_the_reader() {
    let writes = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(None));
    {
        let (writes, received) = (writes.clone(), received.clone());
        run(
            hostile(Some(100)),
            4,
            move |mut stream| {
                let writes = writes.clone();
                async move {
                    let data = pattern(10_000, 5);
                    let mut rest = &data[..];
                    while !rest.is_empty() {
                        let write = stream.write(rest);
                        let written = tokio::time::timeout(Duration::from_millis(300), write).await;
                        let at = turmoil::sim_elapsed().unwrap();
                        match written {
                            Ok(Ok(n)) => {
                                writes.lock().unwrap().push((at, n));
                                rest = &rest[n..];
                            }
                            Ok(Err(error)) => panic!("write failed: {error}"),
                            // Blocked: recorded as a write of nothing.
                            Err(_) => writes.lock().unwrap().push((at, 0)),
                        }
                    }
                    stream.shutdown().await.unwrap();
                }
            },
            move |stream| async move {
                let (mut reader, _writer) = stream.into_split();
                tokio::time::sleep(Duration::from_secs(1)).await;
                *received.lock().unwrap() = Some(read_all(&mut reader).await);
            },
        );
    }
    assert_eq!(
        received.lock().unwrap().take(),
        Some(Ok(pattern(10_000, 5)))
    );
    let writes = writes.lock().unwrap().clone();
    assert!(writes.iter().all(|&(_, n)| n <= 100), "{writes:?}");
    // Before the reader's first read, at 1 s: 400 bytes, then blocked.
    let before: Vec<usize> = writes
        .iter()
        .filter(|(at, _)| *at < Duration::from_secs(1))
        .map(|&(_, n)| n)
        .collect();
    assert_eq!(before.iter().sum::<usize>(), 400, "{writes:?}");
    assert!(before.contains(&0), "the writer never waited: {writes:?}");
}

/// On turmoil's network as it is, the window counts segments, not bytes:
/// the same writer gets all 10,000 bytes out in one write while its
/// reader reads nothing.
#[test]
fn on_turmoil_alone_one_write_takes_any_size() {
    let writes = Arc::new(Mutex::new(Vec::new()));
    {
        let writes = writes.clone();
        run(
            Model::TURMOIL,
            4,
            move |mut stream| {
                let writes = writes.clone();
                async move {
                    let n = stream.write(&pattern(10_000, 5)).await.unwrap();
                    writes.lock().unwrap().push(n);
                }
            },
            move |stream| async move {
                let (_reader, _writer) = stream.into_split();
                tokio::time::sleep(Duration::from_secs(1)).await;
            },
        );
    }
    assert_eq!(*writes.lock().unwrap(), [10_000]);
}
