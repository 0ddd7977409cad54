//! How the host sends the component's one kind of request: to addresses vetted before
//! connecting (so a name cannot be re-resolved to somewhere else in between), over TLS with the
//! web PKI roots, within connect, first-byte and between-bytes timeouts, and with the answer's
//! body capped. The answer is read whole before the component sees a byte of it, and a success
//! goes to the store's exchange log first (see [`Keep`]): from then on a process killed at any
//! instant leaves it for the next one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, Result, WasiBody};

use super::proxy::{self, Route};
use super::refusal::{self, Refusal};
use crate::drain::InFlight;
use crate::store::exchange::{Answer, ExchangeLog};
use crate::tls;

/// Where the timing of each exchange is logged, at debug level: `wire_us` from the request's
/// last byte written to the answer's last byte read, `adoptable_us` from the same start to the
/// answer kept where another process would adopt it.
pub(crate) const TIMING_TARGET: &str = "entelix_auth_claude_code::exchange";

/// TLS towards the endpoint: its name and port, and the CA files trusted besides the web PKI.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    pub(crate) name: String,
    pub(crate) port: u16,
    pub(crate) extra_ca: Vec<PathBuf>,
}

/// Everything decided before the request leaves: where to, and within which bounds.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Vetted addresses, tried in order (empty through a proxy).
    pub(crate) addrs: Vec<SocketAddr>,
    /// The proxy to open a tunnel through, if any.
    pub(crate) proxy: Option<Route>,
    /// The whole exchange, the answer's last byte included, ends by then.
    pub(crate) deadline: tokio::time::Instant,
    /// TLS, or `None` for plain HTTP (loopback only).
    pub(crate) tls: Option<Tls>,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) between_bytes_timeout: Duration,
    /// Bytes of body the component may read; more is an error.
    pub(crate) max_body: usize,
    /// Set when an answer's body went past `max_body`.
    pub(crate) oversized: Arc<AtomicBool>,
    /// Where a failure's reason goes for the host's error.
    pub(crate) refusal: Arc<Mutex<Option<Refusal>>>,
}

/// What becomes of an answer besides the component reading it: a success goes to the store's
/// exchange log, and the refresh stays in flight (see [`crate::drain`]) until the call ends; any
/// other outcome ends it.
pub(crate) struct Keep {
    /// The store's log, and the digest of the refresh token the request presents.
    pub(crate) log: Option<(Arc<dyn ExchangeLog>, String)>,
    /// This refresh, in flight since just before the request left.
    pub(crate) flight: Option<InFlight>,
    /// Where a refresh that got its answer stays in flight until the call ends.
    pub(crate) kept: Arc<Mutex<Vec<InFlight>>>,
    /// The wall clock, in Unix milliseconds (the configured one).
    pub(crate) now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl Keep {
    /// Tell the log the request is about to leave; if the log kept an answer to a request
    /// presenting the same token (its process was killed before its write), that answer is the
    /// component's instead of a request: the endpoint rotated that token already.
    pub(crate) async fn before_sending(self) -> Next {
        let Some((log, spent)) = &self.log else {
            return Next::Send(self);
        };
        let Some(answer) = log.replay(spent).await else {
            // Noted before it leaves, or not sent at all.
            return match log.sending(spent).await {
                Ok(()) => Next::Send(self),
                Err(error) => Next::Refused(error),
            };
        };
        tracing::warn!(
            "the token endpoint already answered a refresh presenting this token, and its process was killed before its write: that answer is used, and nothing is sent"
        );
        let now_ms = (self.now_ms)();
        self.stay_in_flight();
        Next::Replay(answer, now_ms)
    }

    /// The endpoint answered `status` with `body`, read whole at `read_at`; the request's last
    /// byte was written at `sent`.
    async fn answered(self, status: u16, body: &Bytes, sent: Option<Instant>, read_at: Instant) {
        let mut adoptable = None;
        if (200..300).contains(&status) {
            // An answer that is not text carries no token: nothing to keep.
            if let (Some((log, spent)), Ok(text)) = (&self.log, std::str::from_utf8(body)) {
                let answer = Answer::new(spent, (self.now_ms)(), status, text.to_owned());
                match log.answered(&answer).await {
                    Ok(()) => adoptable = Some(Instant::now()),
                    Err(error) => tracing::warn!(
                        error = %error,
                        "the token endpoint's answer could not be kept aside before it was read; a kill before its write would lose it"
                    ),
                }
            }
            self.stay_in_flight();
        }
        if let Some(sent) = sent {
            let micros = |at: Instant| u64::try_from(at.duration_since(sent).as_micros()).ok();
            tracing::debug!(
                target: TIMING_TARGET,
                status,
                wire_us = micros(read_at),
                adoptable_us = adoptable.and_then(micros),
                "the token endpoint answered"
            );
        }
    }

    /// The refresh keeps its answer from here on: in flight until the call ends.
    fn stay_in_flight(self) {
        if let Some(flight) = self.flight {
            self.kept
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(flight);
        }
    }
}

/// What follows [`Keep::before_sending`].
pub(crate) enum Next {
    /// Send the request.
    Send(Keep),
    /// Answer the component with this kept answer (as of this time, Unix ms); nothing is sent.
    Replay(Answer, i64),
    /// Do not send: the store says why.
    Refused(crate::error::ClaudeCodeAuthError),
}

/// The future that drives the connection after the response head arrived.
pub(crate) type Driver = Box<dyn Future<Output = Result<()>> + Send>;

/// Send the request (`head` and its whole `body`) according to `plan`, with a
/// `Content-Length`, never chunked; read the answer whole, and give it to `keep` before the
/// component.
pub(crate) async fn send(
    head: http::request::Parts,
    body: Bytes,
    plan: Plan,
    keep: Keep,
) -> Result<(http::Response<WasiBody>, Driver)> {
    let connection = establish(&plan).await?;
    let length = http::HeaderValue::from(body.len());
    let mut request = http::Request::from_parts(head, Full::new(body));
    request
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, length);
    // HTTP/1.1 origin form: scheme and authority travel in the Host header only.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let written = Arc::new(Mutex::new(None));
    let (response, driver) = match connection {
        Connection::Tls(tls) => {
            let io = TokioIo::new(Timed::new(*tls, written.clone()));
            exchange(io, request, &plan).await?
        }
        Connection::Plain(tcp) => {
            let io = TokioIo::new(Timed::new(tcp, written.clone()));
            exchange(io, request, &plan).await?
        }
    };
    let (head, incoming) = response.into_parts();
    let body = read_answer(incoming, &plan).await?;
    let read_at = Instant::now();
    let sent = *written.lock().unwrap_or_else(PoisonError::into_inner);
    keep.answered(head.status.as_u16(), &body, sent, read_at)
        .await;
    Ok((http::Response::from_parts(head, whole(body)), driver))
}

/// `bytes` as a body the component reads.
pub(crate) fn whole(bytes: Bytes) -> WasiBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A connection ready for the request: TLS unless the plan is plain HTTP (loopback only).
enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connect (through the proxy's tunnel when there is one), and complete the TLS handshake when
/// the plan asks for it.
async fn establish(plan: &Plan) -> Result<Connection> {
    let tcp = match &plan.proxy {
        Some(route) => tunnel(plan, route).await?,
        None => connect(plan).await?,
    };
    let Some(tls) = &plan.tls else {
        return Ok(Connection::Plain(tcp));
    };
    let connector = tls::connector(&tls.extra_ca).map_err(|why| {
        refusal::record(&plan.refusal, Refusal::Misconfigured(why));
        Error::HttpRequestDenied
    })?;
    let name = rustls::pki_types::ServerName::try_from(tls.name.clone())
        .map_err(|_| Error::HttpRequestUriInvalid)?;
    let handshake = timeout(plan.connect_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| Error::ConnectionTimeout)?;
    match handshake {
        Ok(session) => Ok(Connection::Tls(Box::new(session))),
        Err(e) => match tls::certificate_problem(&e) {
            // Retrying does not help; trusting the right CA does.
            Some(why) => {
                refusal::record(&plan.refusal, Refusal::Untrusted(why));
                Err(Error::TlsCertificateError)
            }
            None => Err(Error::Tls(e)),
        },
    }
}

/// A TCP connection to the proxy, with a tunnel open through it to the endpoint.
async fn tunnel(plan: &Plan, route: &Route) -> Result<TcpStream> {
    // Only TLS endpoints are proxied (plain HTTP is loopback only, never proxied).
    let tls = plan.tls.as_ref().ok_or(Error::HttpRequestUriInvalid)?;
    let failed = |why: String| {
        refusal::record(&plan.refusal, Refusal::Proxy(why));
        Error::ConnectionRefused
    };
    let mut tcp = match timeout(plan.connect_timeout, TcpStream::connect(&route.proxy)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(failed(format!(
                "the proxy {} cannot be reached: {e}",
                route.proxy
            )));
        }
        Err(_) => {
            return Err(failed(format!(
                "the proxy {} did not accept a connection in time",
                route.proxy
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    proxy::open_tunnel(&mut tcp, route, &tls.name, tls.port, plan.connect_timeout)
        .await
        .map_err(failed)?;
    Ok(tcp)
}

/// Most of a request body read from the component (a refresh grant is under 1 KiB).
const BODY_LIMIT: usize = 64 * 1024;

/// The request body the component writes, whole, within the connect timeout. The component
/// writes it before handing the request over; read first, nothing of it is left to fail once
/// the request has gone.
pub(crate) async fn read_request_body(body: WasiBody, within: Duration) -> Result<Bytes> {
    let collected = timeout(
        within,
        http_body_util::Limited::new(body, BODY_LIMIT).collect(),
    )
    .await
    .map_err(|_| Error::ConnectionWriteTimeout)?
    .map_err(|_| Error::HttpRequestBodySize(u64::try_from(BODY_LIMIT).ok()))?;
    Ok(collected.to_bytes())
}

async fn connect(plan: &Plan) -> Result<TcpStream> {
    let mut last = Error::DestinationNotFound;
    for addr in &plan.addrs {
        match timeout(plan.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = Error::ConnectionRefused;
            }
            Ok(Err(e)) => last = Error::Connect(e),
            Err(_) => last = Error::ConnectionTimeout,
        }
    }
    Err(last)
}

async fn exchange<T>(
    io: T,
    request: http::Request<Full<Bytes>>,
    plan: &Plan,
) -> Result<(http::Response<Incoming>, Driver)>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, connection) = timeout(
        plan.connect_timeout,
        hyper::client::conn::http1::handshake(io),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    let driver = tokio::spawn(connection);
    let first_byte = plan.first_byte_timeout.min(
        plan.deadline
            .saturating_duration_since(tokio::time::Instant::now()),
    );
    let response = timeout(first_byte, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let driver: Driver = Box::new(async move {
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::from(e)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    });
    Ok((response, driver))
}

/// The answer's body, whole: each pause within the between-bytes timeout, the last byte before
/// the plan's deadline, at most `max_body` bytes (past that the call's answer is "too large").
async fn read_answer(mut incoming: Incoming, plan: &Plan) -> Result<Bytes> {
    let mut body = BytesMut::new();
    loop {
        let idle = plan.between_bytes_timeout.min(
            plan.deadline
                .saturating_duration_since(tokio::time::Instant::now()),
        );
        let frame = match timeout(idle, incoming.frame()).await {
            Err(_) => return Err(Error::ConnectionReadTimeout),
            Ok(None) => return Ok(body.freeze()),
            Ok(Some(frame)) => frame.map_err(Error::from)?,
        };
        if let Some(data) = frame.data_ref() {
            if body.len() + data.len() > plan.max_body {
                plan.oversized.store(true, Ordering::SeqCst);
                return Err(Error::HttpResponseBodySize(
                    u64::try_from(plan.max_body).ok(),
                ));
            }
            body.extend_from_slice(data);
        }
    }
}

/// A connection that notes when it last wrote: the request's last byte, for the timing.
struct Timed<T> {
    inner: T,
    written: Arc<Mutex<Option<Instant>>>,
}

impl<T> Timed<T> {
    fn new(inner: T, written: Arc<Mutex<Option<Instant>>>) -> Self {
        Self { inner, written }
    }

    fn note(&self, wrote: &Poll<std::io::Result<usize>>) {
        if matches!(wrote, Poll::Ready(Ok(n)) if *n > 0) {
            *self.written.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Timed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Timed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let wrote = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&wrote);
        wrote
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let wrote = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&wrote);
        wrote
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::{Body, Frame};
    use tokio::sync::mpsc;

    /// A request body the test writes into, as the component writes into its outgoing body.
    struct Written(mpsc::Receiver<Bytes>);

    impl Body for Written {
        type Data = Bytes;
        type Error = Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<std::result::Result<Frame<Bytes>, Error>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_request_body_is_read_whole_even_when_written_late() {
        let (tx, rx) = mpsc::channel(1);
        let writer = tokio::spawn(async move {
            // A component that writes after it handed the request over.
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Bytes::from_static(b"{\"grant_type\":\"refresh_token\"}"))
                .await
        });
        let body = Written(rx).boxed_unsync();
        let read = read_request_body(body, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(&read[..], b"{\"grant_type\":\"refresh_token\"}");
        assert!(writer.await.unwrap().is_ok(), "the write failed");
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_read_no_longer_than_its_bound() {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let body = Written(rx).boxed_unsync();
        let started = std::time::Instant::now();
        let error = read_request_body(body, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::ConnectionWriteTimeout), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(tx);
    }
}
