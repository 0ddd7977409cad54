//! Where the refresh request goes: the token URL split as `wasi:http` takes it.

/// A URL split as `wasi:http` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` (else `http`).
    pub https: bool,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query, `/` at least.
    pub path: String,
}

impl Target {
    /// Split `url` (`http(s)://authority[/path][?query]`); the host vets the rest.
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let (scheme, rest) = url.split_once("://").ok_or("the token URL has no scheme")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err("the token URL's scheme is not http or https"),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.is_empty() {
            return Err("the token URL has no host");
        }
        // A fragment is never sent.
        let tail = tail.split('#').next().unwrap_or_default();
        let path = match tail {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Self {
            https,
            authority: authority.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn urls_split_as_wasi_http_takes_them() {
        let cases = [
            (
                "https://platform.claude.com/v1/oauth/token",
                Ok((true, "platform.claude.com", "/v1/oauth/token")),
            ),
            (
                "http://127.0.0.1:8080/t?x=1#frag",
                Ok((false, "127.0.0.1:8080", "/t?x=1")),
            ),
            ("HTTPS://[::1]:9", Ok((true, "[::1]:9", "/"))),
            ("https://h?q", Ok((true, "h", "/?q"))),
            (
                "ftp://h/x",
                Err("the token URL's scheme is not http or https"),
            ),
            ("h/x", Err("the token URL has no scheme")),
            ("https:///x", Err("the token URL has no host")),
        ];
        for (url, want) in cases {
            let got = Target::parse(url).map(|t| (t.https, t.authority, t.path));
            let want = want.map(|(h, a, p)| (h, a.to_owned(), p.to_owned()));
            assert_eq!(got, want, "{url}");
        }
    }
}
