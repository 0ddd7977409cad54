//! Reaching the token endpoint through an HTTP proxy (`CONNECT`), as the `claude` CLI does
//! behind a corporate proxy: the proxy is an operator setting
//! ([`crate::ClaudeCodeOAuthConfig::with_proxy`], else `HTTPS_PROXY` / `https_proxy`, with
//! `NO_PROXY` / `no_proxy`); the allow-list is unchanged — the component still reaches only the
//! token endpoint's origin, and the TLS session runs end to end with it through the tunnel. A
//! loopback endpoint is never proxied.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use zeroize::Zeroizing;

use crate::config::ProxySetting;

/// Where to open the tunnel.
#[derive(Clone)]
pub(crate) struct Route {
    /// `host:port` of the proxy.
    pub(crate) proxy: String,
    /// `Basic …` from the proxy URL's user name and password, if it has them.
    authorization: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("proxy", &self.proxy)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// The proxy to reach `host:port` through, if any; `env` reads the environment.
pub(crate) fn route(
    setting: &ProxySetting,
    host: &str,
    port: u16,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Route>, String> {
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(None);
    }
    let url = match setting {
        ProxySetting::Direct => return Ok(None),
        ProxySetting::Url(url) => url.clone(),
        ProxySetting::FromEnvironment => {
            let set = |name| env(name).filter(|v| !v.is_empty());
            let Some(url) = set("HTTPS_PROXY").or_else(|| set("https_proxy")) else {
                return Ok(None);
            };
            let no_proxy = set("NO_PROXY").or_else(|| set("no_proxy"));
            if no_proxy.is_some_and(|list| bypassed(&list, host, port)) {
                return Ok(None);
            }
            url
        }
    };
    parse(&url).map(Some)
}

/// `NO_PROXY` semantics as curl has them: `*`, or entries matching the host exactly or as a
/// domain suffix (with or without a leading dot), optionally with `:port`.
fn bypassed(list: &str, host: &str, port: u16) -> bool {
    let host = host.to_ascii_lowercase();
    list.split([',', ' '])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((name, p)) if p.parse::<u16>().is_ok() => (name, p.parse::<u16>().ok()),
                _ => (entry, None),
            };
            let name = name.trim_start_matches('.').to_ascii_lowercase();
            let matches = host == name || host.ends_with(&format!(".{name}"));
            matches && entry_port.is_none_or(|p| p == port)
        })
}

/// `http://[user:password@]host[:port][/]`; an `https://` proxy is not supported.
fn parse(url: &str) -> Result<Route, String> {
    let rest = match url.split_once("://") {
        Some(("http" | "HTTP", rest)) => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "the proxy scheme `{scheme}` is not supported; give the proxy's http:// address"
            ));
        }
        // `host:port` alone, as some environments set it.
        None => url,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err("the proxy URL has no host".into());
    }
    let proxy = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_owned()
    } else {
        format!("{hostport}:80")
    };
    let authorization = userinfo.map(|u| {
        let decoded = Zeroizing::new(percent_encoding::percent_decode_str(u).collect::<Vec<u8>>());
        use base64::Engine as _;
        Zeroizing::new(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&decoded)
        ))
    });
    Ok(Route {
        proxy,
        authorization,
    })
}

/// Open a tunnel to `host:port` on `tcp`, connected to the proxy, within `within`.
pub(crate) async fn open_tunnel(
    tcp: &mut TcpStream,
    route: &Route,
    host: &str,
    port: u16,
    within: Duration,
) -> Result<(), String> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = Zeroizing::new(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"));
    if let Some(authorization) = &route.authorization {
        request.push_str(&format!(
            "Proxy-Authorization: {}\r\n",
            authorization.as_str()
        ));
    }
    request.push_str("\r\n");
    let exchange = async {
        tcp.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::new(&mut *tcp);
        let mut status = String::new();
        reader.read_line(&mut status).await?;
        let mut read = status.len();
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).await?;
            read += n;
            if n == 0 || line == "\r\n" || line == "\n" || read > 16 * 1024 {
                break;
            }
        }
        // A proxy may not send anything before the tunnel is established.
        if !reader.buffer().is_empty() {
            return Err(std::io::Error::other(
                "the proxy sent data before the tunnel",
            ));
        }
        Ok::<_, std::io::Error>(status)
    };
    let status = timeout(within, exchange)
        .await
        .map_err(|_| format!("the proxy {} did not answer CONNECT in time", route.proxy))?
        .map_err(|e| format!("the proxy {} failed: {e}", route.proxy))?;
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code == "200" {
        Ok(())
    } else {
        Err(format!(
            "the proxy {} refused the tunnel to {target}: {}",
            route.proxy,
            status.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn routes() {
        let from_env = ProxySetting::FromEnvironment;
        let host = "platform.claude.com";
        let proxy = |r: Result<Option<Route>, String>| r.unwrap().map(|r| r.proxy);
        assert_eq!(proxy(route(&from_env, host, 443, env(&[]))), None);
        let set = [("HTTPS_PROXY", "http://proxy.corp:3128")];
        assert_eq!(
            proxy(route(&from_env, host, 443, env(&set))).as_deref(),
            Some("proxy.corp:3128")
        );
        let lower = [("https_proxy", "proxy.corp:8080")];
        assert_eq!(
            proxy(route(&from_env, host, 443, env(&lower))).as_deref(),
            Some("proxy.corp:8080")
        );
        for no_proxy in [
            "*",
            "claude.com",
            ".claude.com",
            "platform.claude.com:443",
            "x, claude.com",
        ] {
            let vars = [("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", no_proxy)];
            assert_eq!(
                proxy(route(&from_env, host, 443, env(&vars))),
                None,
                "{no_proxy}"
            );
        }
        for no_proxy in ["claude.co", "notclaude.com", "platform.claude.com:8443"] {
            let vars = [("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", no_proxy)];
            assert!(
                proxy(route(&from_env, host, 443, env(&vars))).is_some(),
                "{no_proxy}"
            );
        }
        // Loopback is never proxied; an explicit setting wins over the environment.
        assert_eq!(proxy(route(&from_env, "127.0.0.1", 9, env(&set))), None);
        assert_eq!(
            proxy(route(&ProxySetting::Direct, host, 443, env(&set))),
            None
        );
        let explicit = ProxySetting::Url("http://other:9".into());
        assert_eq!(
            proxy(route(&explicit, host, 443, env(&[]))).as_deref(),
            Some("other:9")
        );
        assert!(
            route(
                &ProxySetting::Url("https://p:1".into()),
                host,
                443,
                env(&[])
            )
            .is_err()
        );
    }

    #[test]
    fn proxy_credentials_become_basic_authorization_and_are_never_shown() {
        let route = parse("http://al%40ice:s3cret@proxy:3128").unwrap();
        assert_eq!(
            route.authorization.as_deref().map(String::as_str),
            Some("Basic YWxAaWNlOnMzY3JldA==")
        );
        assert!(!format!("{route:?}").contains("s3cret"));
    }
}
