//! A loopback HTTPS proxy that terminates every `CONNECT` itself: a throw-away CA (whose
//! certificate the CLI trusts through `NODE_EXTRA_CA_CERTS`) signs one certificate for the
//! Anthropic hosts, and what comes through the tunnel is answered by the loopback stand-ins —
//! the token endpoint, `/api/oauth/profile`, the Messages API. Nothing leaves the machine (the
//! tests run it inside a network namespace with only `lo` anyway).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use claude_code_auth_testkit::loopback::{Handler, Reply, Request, Response, serve};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Names the certificate covers: what the CLI reaches.
const HOSTS: [&str; 9] = [
    "platform.claude.com",
    "api.anthropic.com",
    "claude.ai",
    "console.anthropic.com",
    "statsig.anthropic.com",
    "*.anthropic.com",
    "*.claude.com",
    "*.claude.ai",
    "localhost",
];

/// What reached the proxy: the tunnel's host and the request inside it.
pub type Seen = Arc<Mutex<Vec<(String, Request)>>>;

/// The running proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    ca: PathBuf,
    seen: Seen,
    tunnels: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Start on `127.0.0.1`, writing the CA certificate into `dir`; `routes` answers what
    /// comes through the tunnels.
    pub async fn start(routes: Handler, dir: &Path) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "claude-code-auth throw-away test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params = CertificateParams::new(HOSTS.map(str::to_owned).to_vec()).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "api.anthropic.com");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let tunnels: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let counted = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (acceptor, routes, record) = (acceptor.clone(), routes.clone(), record.clone());
                tokio::spawn(async move {
                    let _ = tunnel(tcp, acceptor, routes, record).await;
                });
            }
        });
        Self {
            addr,
            ca,
            seen,
            tunnels,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`, for `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The CA certificate, for `NODE_EXTRA_CA_CERTS`.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// Connections the proxy accepted.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Every request that came through, with its tunnel's host.
    pub fn seen(&self) -> Vec<(String, Request)> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// One client connection: `CONNECT host:port`, then TLS as that host, then one request.
async fn tunnel(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    routes: Handler,
    seen: Seen,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(tcp);
    let mut first = String::new();
    reader.read_line(&mut first).await?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
    }
    let mut tcp = reader.into_inner();
    let mut parts = first.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        tcp.write_all(
            b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await?;
        return Ok(());
    };
    let host = target
        .rsplit_once(':')
        .map_or(target, |(h, _)| h)
        .to_owned();
    tcp.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    let tls = acceptor.accept(tcp).await?;
    let recording: Handler = Arc::new(move |request: &Request| {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((host.clone(), request.clone()));
        routes(request)
    });
    serve(tls, &recording, |_| Ok(())).await
}

/// Routes by path: the token endpoint, the profile, the Messages API; 404 for the rest (the CLI
/// calls a few other paths and takes a 404 in its stride).
pub fn routes(token_endpoint: Handler, messages: Handler, subscription: &'static str) -> Handler {
    Arc::new(move |request: &Request| {
        let path = request.path.split('?').next().unwrap_or_default();
        match path {
            "/v1/oauth/token" => token_endpoint(request),
            "/v1/messages" => messages(request),
            "/api/oauth/profile" => Reply::Respond(Response::json(
                200,
                &json!({
                    "account": {
                        "uuid": "00000000-0000-4000-8000-000000000001",
                        "email": "peer@example.com",
                        "email_address": "peer@example.com",
                        "display_name": "Peer",
                        "full_name": "Peer Test",
                    },
                    "organization": {
                        "uuid": "00000000-0000-4000-8000-000000000002",
                        "name": "Peer",
                        "organization_type": subscription,
                        "rate_limit_tier": "default_claude_max_20x",
                        "billing_type": "stripe_subscription",
                    },
                }),
            )),
            _ => Reply::Respond(Response::json(
                404,
                &json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}),
            )),
        }
    })
}
