//! The TLS this crate speaks — for the component's requests to the token endpoint and for a Redis
//! store over `rediss://`: the web PKI roots compiled in, plus certificates
//! the operator adds — a TLS-inspecting corporate proxy's CA — from
//! [`crate::ClaudeCodeOAuthConfig::with_extra_ca_certificates`], `SSL_CERT_FILE` and
//! `NODE_EXTRA_CA_CERTS` (the variable the `claude` CLI honours). A certificate that is not
//! trusted is told apart from other TLS failures: retrying does not help, adding its CA does.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Environment variables naming extra CA certificates (PEM), read at each request.
pub(crate) const EXTRA_CA_ENV: [&str; 2] = ["SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"];

/// The CA files to trust besides the web PKI: `configured`, then those the environment names.
pub(crate) fn extra_ca_files(configured: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = configured.to_vec();
    files.extend(
        EXTRA_CA_ENV
            .iter()
            .filter_map(std::env::var_os)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
    );
    files
}

/// A connector trusting the web PKI and the certificates in `extra` (cached per list).
pub(crate) fn connector(extra: &[PathBuf]) -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIGS: OnceLock<Mutex<HashMap<Vec<PathBuf>, Arc<rustls::ClientConfig>>>> =
        OnceLock::new();
    let configs = CONFIGS.get_or_init(Mutex::default);
    if let Some(config) = configs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(extra)
    {
        return Ok(tokio_rustls::TlsConnector::from(config.clone()));
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    for file in extra {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("cannot read the CA certificates in {}: {e}", file.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", file.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a CA certificate in {} is unusable: {e}", file.display()))?;
        }
    }
    // An explicit provider: the process-wide default may be unset or ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = Arc::new(config);
    configs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(extra.to_vec(), config.clone());
    Ok(tokio_rustls::TlsConnector::from(config))
}

/// What is wrong with the peer's certificate, when that is why the handshake failed.
pub(crate) fn certificate_problem(error: &io::Error) -> Option<String> {
    let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
    match rustls_error {
        rustls::Error::InvalidCertificate(why) => Some(format!("{why:?}")),
        rustls::Error::NoCertificatesPresented => Some("no certificate was presented".into()),
        _ => None,
    }
}
