//! Accepting connections within limits (review F-7): a cap on open connections, a deadline
//! for a new connection's first byte (a socket that never speaks is closed, so idle
//! sockets cannot hold the listener), TCP_NODELAY, and the caller's address for the
//! audit trail. HTTP/2 keepalive, the streams per connection and the per-call deadline
//! are set on the server itself (`service::run`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once at most; one more is closed at once.
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed.
    pub first_byte: Duration,
}

/// The TCP connections of `listener`.
pub fn incoming_tcp(
    listener: TcpListener,
    limits: Limits,
) -> impl Stream<Item = std::io::Result<Guarded<TcpStream>>> + Send + 'static {
    upgraded_tcp(listener, limits, |stream| async move { Ok(stream) })
}

/// The TLS connections of `listener`: each handshake runs on its own task and must finish
/// within `limits.first_byte`.
pub fn incoming_tls(
    listener: TcpListener,
    limits: Limits,
    acceptor: tokio_rustls::TlsAcceptor,
) -> impl Stream<Item = std::io::Result<Guarded<Tls>>> + Send + 'static {
    upgraded_tcp(listener, limits, move |stream| {
        let acceptor = acceptor.clone();
        async move { Ok(Tls(acceptor.accept(stream).await?)) }
    })
}

/// TCP connections with TCP_NODELAY (without it, small gRPC responses wait out delayed
/// ACKs, ~40 ms each), readied by `upgrade`.
fn upgraded_tcp<S, U, G>(
    listener: TcpListener,
    limits: Limits,
    upgrade: U,
) -> ReceiverStream<std::io::Result<Guarded<S>>>
where
    S: Send + 'static,
    G: std::future::Future<Output = std::io::Result<S>> + Send + 'static,
    U: Fn(TcpStream) -> G + Send + 'static,
{
    let listener = Arc::new(listener);
    accepting(
        limits,
        move || {
            let listener = listener.clone();
            async move {
                let (stream, _) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
        },
        upgrade,
    )
}

/// The connections of a Unix socket.
#[cfg(unix)]
pub fn incoming_unix(
    listener: tokio::net::UnixListener,
    limits: Limits,
) -> impl Stream<Item = std::io::Result<Guarded<tokio::net::UnixStream>>> + Send + 'static {
    let listener = Arc::new(listener);
    accepting(
        limits,
        move || {
            let listener = listener.clone();
            async move { Ok(listener.accept().await?.0) }
        },
        |stream| async move { Ok(stream) },
    )
}

/// Accepts with `accept` on its own task, each connection holding one of
/// `limits.max_connections` places, then readies it with `upgrade` (a TLS handshake) on a
/// task of its own, within `limits.first_byte`. The accepting task ends when the server
/// stops taking connections.
fn accepting<R, S, F, A, U, G>(
    limits: Limits,
    mut accept: A,
    upgrade: U,
) -> ReceiverStream<std::io::Result<Guarded<S>>>
where
    R: Send + 'static,
    S: Send + 'static,
    F: std::future::Future<Output = std::io::Result<R>> + Send,
    A: FnMut() -> F + Send + 'static,
    G: std::future::Future<Output = std::io::Result<S>> + Send + 'static,
    U: Fn(R) -> G + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let places = Arc::new(Semaphore::new(limits.max_connections));
        loop {
            let raw = match accept().await {
                Ok(raw) => raw,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin on the same error.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(place) = places.clone().try_acquire_owned() else {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection refused: the listener is full"
                );
                continue;
            };
            if sender.is_closed() {
                return;
            }
            let ready = upgrade(raw);
            let sender = sender.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(limits.first_byte, ready).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "a connection failed its handshake");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("a connection did not finish its handshake in time");
                        return;
                    }
                };
                let guarded = Guarded {
                    stream,
                    _place: place,
                    first_byte: Some(Box::pin(tokio::time::sleep(limits.first_byte))),
                };
                let _ = sender.send(Ok(guarded)).await;
            });
        }
    });
    ReceiverStream::new(receiver)
}

/// A TLS connection.
pub struct Tls(tokio_rustls::server::TlsStream<TcpStream>);

/// What a call learns of its TLS connection: the TCP one's addresses and the client
/// certificate, if the client presented one (verified by the handshake).
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub tcp: TcpConnectInfo,
    pub certificate: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl Connected for Tls {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        let (tcp, session) = self.0.get_ref();
        TlsPeer {
            tcp: tcp.connect_info(),
            certificate: session
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|certificate| certificate.clone().into_owned()),
        }
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// How long accepting pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// An accepted connection: its place under the cap is given back when it closes, and it is
/// closed if its first byte does not arrive in time.
pub struct Guarded<S> {
    stream: S,
    _place: OwnedSemaphorePermit,
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S: Connected> Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.stream.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        let Some(deadline) = self.first_byte.as_mut() else {
            return read;
        };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.first_byte = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the connection sent nothing in time",
                )))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Raises the soft limit on open files to the hard limit, so that a burst of sockets does
/// not exhaust the default 1,024 descriptors; returns the limit now in force.
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    Ok(u64::MAX)
}
