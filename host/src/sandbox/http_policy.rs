//! What the component may reach over `wasi:http`: the configured token endpoint's origin and
//! nothing else, within the refresh timeout.

use std::net::IpAddr;
use std::time::Duration;

use http::Uri;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, Result as HttpResult, WasiBody, WasiHttpHooks,
};

/// Scheme, host and port of the one endpoint the component may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of `url`, which must be `https`, or `http` to a loopback address.
    pub(crate) fn of(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|_| "it is not a valid URL".to_owned())?;
        let scheme = uri.scheme().cloned().ok_or("it has no scheme")?;
        let host = uri
            .host()
            .ok_or("it has no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = match (uri.port_u16(), scheme.as_str()) {
            (Some(port), _) => port,
            (None, "https") => 443,
            (None, "http") => 80,
            (None, other) => return Err(format!("the scheme `{other}` is not supported")),
        };
        match scheme.as_str() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err("plain http is allowed only to a loopback address; use https".into());
            }
            other => return Err(format!("the scheme `{other}` is not supported")),
        }
        Ok(Self { scheme, host, port })
    }

    fn admits(&self, uri: &Uri) -> bool {
        Self::of(&uri.to_string()).is_ok_and(|other| other == *self)
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The `wasi:http` hooks of one call: the allow-list and the timeouts.
pub(crate) struct HttpPolicy {
    origin: Origin,
    timeout: Duration,
    /// Why the last request was refused, for the host's error (the guest only sees a failure).
    pub(crate) denied: Option<String>,
}

impl HttpPolicy {
    pub(crate) const fn new(origin: Origin, timeout: Duration) -> Self {
        Self {
            origin,
            timeout,
            denied: None,
        }
    }
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = HttpResult<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = HttpResult<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = HttpResult<()>> + Send>,
                )>,
            > + Send,
    > {
        if !self.origin.admits(request.uri()) {
            // Scheme and authority only: a path or query could carry anything.
            let uri = request.uri();
            self.denied = Some(format!(
                "the component tried to reach {}://{}, which is not the token endpoint",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.as_str())
            ));
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        let cap =
            |guest: Option<Duration>| Some(guest.map_or(self.timeout, |g| g.min(self.timeout)));
        let options = options.unwrap_or_default();
        let options = RequestOptions {
            connect_timeout: cap(options.connect_timeout),
            first_byte_timeout: cap(options.first_byte_timeout),
            between_bytes_timeout: cap(options.between_bytes_timeout),
        };
        Box::new(async move {
            let (response, io) =
                wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = HttpResult<()>> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let ok = [
            (
                "https://platform.claude.com/v1/oauth/token",
                "platform.claude.com",
                443,
            ),
            (
                "https://PLATFORM.claude.com:8443/x",
                "platform.claude.com",
                8443,
            ),
            ("http://127.0.0.1:9/t", "127.0.0.1", 9),
            ("http://localhost/t", "localhost", 80),
            ("http://[::1]:7/t", "::1", 7),
        ];
        for (url, host, port) in ok {
            let origin = Origin::of(url).unwrap();
            assert_eq!((origin.host.as_str(), origin.port), (host, port), "{url}");
        }
        let refused = [
            ("http://platform.claude.com/t", "loopback"),
            ("http://10.0.0.1/t", "loopback"),
            ("ftp://127.0.0.1/t", "not supported"),
            ("/v1/oauth/token", "no scheme"),
            ("not a url", "not a valid URL"),
        ];
        for (url, why) in refused {
            let err = Origin::of(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn only_the_same_origin_is_admitted() {
        let origin = Origin::of("http://127.0.0.1:9/v1/oauth/token").unwrap();
        let admitted = [
            "http://127.0.0.1:9/v1/oauth/token",
            "http://127.0.0.1:9/other?x=1",
        ];
        for uri in admitted {
            assert!(origin.admits(&uri.parse().unwrap()), "{uri}");
        }
        let denied = [
            "http://127.0.0.1:10/v1/oauth/token",
            "https://127.0.0.1:9/",
            "http://localhost:9/",
            "http://example.com/",
        ];
        for uri in denied {
            assert!(!origin.admits(&uri.parse().unwrap()), "{uri}");
        }
    }
}
