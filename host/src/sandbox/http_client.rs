//! How the host sends the component's one kind of request: to addresses vetted before
//! connecting (so a name cannot be re-resolved to somewhere else in between), over TLS with the
//! web PKI roots, within connect, first-byte and between-bytes timeouts, and with the answer's
//! body capped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::time::{Sleep, sleep, timeout};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, Result, WasiBody};

use super::proxy::{self, Route};
use super::refusal::{self, Refusal};
use super::tls;

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

/// The future that drives the connection after the response head arrived.
pub(crate) type Driver = Box<dyn Future<Output = Result<()>> + Send>;

/// Send `request` according to `plan`: its whole body is read from the component first and sent
/// with a `Content-Length`, never chunked.
pub(crate) async fn send(
    request: http::Request<WasiBody>,
    plan: Plan,
) -> Result<(http::Response<WasiBody>, Driver)> {
    let (head, body) = request.into_parts();
    let connection = match establish(&plan).await {
        Ok(connection) => connection,
        Err(e) => return Err(after_draining(body, &plan, e).await),
    };
    // Whole before it leaves: a fixed-length request, as the token endpoint's fronts require,
    // and the component's writes and `finish` all succeed before any answer can arrive (sent
    // as a stream of known length, the body could be dropped once its bytes were sent, failing
    // the component's last flush after the endpoint had already spent the refresh token).
    let body = read_whole(body, &plan).await?;
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
    let (response, driver) = match connection {
        Connection::Tls(tls) => exchange(TokioIo::new(tls), request, &plan).await?,
        Connection::Plain(tcp) => exchange(TokioIo::new(tcp), request, &plan).await?,
    };
    let (head, incoming) = response.into_parts();
    let body = Capped {
        inner: incoming,
        idle: plan.between_bytes_timeout,
        timer: Box::pin(sleep(plan.between_bytes_timeout)),
        deadline: Box::pin(tokio::time::sleep_until(plan.deadline)),
        left: plan.max_body,
        oversized: plan.oversized.clone(),
    };
    Ok((
        http::Response::from_parts(head, body.boxed_unsync()),
        driver,
    ))
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

/// The request body the component writes, whole, within the connect timeout.
async fn read_whole(body: WasiBody, plan: &Plan) -> Result<Bytes> {
    let collected = timeout(
        plan.connect_timeout,
        http_body_util::Limited::new(body, BODY_LIMIT).collect(),
    )
    .await
    .map_err(|_| Error::ConnectionWriteTimeout)?
    .map_err(|_| Error::HttpRequestBodySize(u64::try_from(BODY_LIMIT).ok()))?;
    Ok(collected.to_bytes())
}

/// `error`, once the body the component is still writing has been read (within the connect
/// timeout and [`BODY_LIMIT`]). The component writes the body after it has handed over the
/// request; dropping the body at once would fail that write with a closed stream, racing the
/// real reason ("connection refused") to the component.
pub(crate) async fn after_draining(mut body: WasiBody, plan: &Plan, error: Error) -> Error {
    let drain = async {
        let mut left = BODY_LIMIT;
        while let Some(Ok(frame)) = body.frame().await {
            let read = frame.data_ref().map_or(0, Bytes::len);
            if read >= left {
                break;
            }
            left -= read;
        }
    };
    let _ = timeout(plan.connect_timeout, drain).await;
    error
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

/// The answer's body with a between-bytes timeout, an overall deadline and a size cap.
struct Capped {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
    left: usize,
    oversized: Arc<AtomicBool>,
}

impl Body for Capped {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if data.len() > this.left {
                        this.oversized.store(true, Ordering::SeqCst);
                        return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(
                            u64::try_from(this.left).unwrap_or(u64::MAX),
                        )))));
                    }
                    this.left -= data.len();
                }
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(this.timer.as_mut().poll(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn plan(connect_timeout: Duration) -> Plan {
        Plan {
            addrs: Vec::new(),
            proxy: None,
            deadline: tokio::time::Instant::now() + connect_timeout,
            tls: None,
            connect_timeout,
            first_byte_timeout: connect_timeout,
            between_bytes_timeout: connect_timeout,
            max_body: 1024,
            oversized: Arc::default(),
            refusal: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_failed_request_still_reads_the_body_being_written() {
        let (tx, rx) = mpsc::channel(1);
        let writer = tokio::spawn(async move {
            // The component writes after it handed the request over, and after it failed.
            sleep(Duration::from_millis(50)).await;
            tx.send(Bytes::from_static(b"{\"grant_type\":\"refresh_token\"}"))
                .await
        });
        let body = Written(rx).boxed_unsync();
        let plan = plan(Duration::from_secs(5));
        let error = after_draining(body, &plan, Error::ConnectionRefused).await;
        assert!(matches!(error, Error::ConnectionRefused));
        assert!(
            writer.await.unwrap().is_ok(),
            "the write failed: the body was dropped"
        );
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_read_no_longer_than_the_connect_timeout() {
        let (tx, rx) = mpsc::channel::<Bytes>(1);
        let body = Written(rx).boxed_unsync();
        let started = std::time::Instant::now();
        let plan = plan(Duration::from_millis(100));
        let error = after_draining(body, &plan, Error::ConnectionTimeout).await;
        assert!(matches!(error, Error::ConnectionTimeout));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(tx);
    }
}
