//! [`ClaudeCodeAuthError`] and its mapping onto entelix's `AuthError`.

use std::time::Duration;

use std::fmt;

use entelix_core::auth::AuthError;

/// Why a credential could not be produced. Messages are one line, name the place, and never
/// contain a token; `Debug` shows the variant and that message, and `Error::source` returns
/// only the operating system's error, since a parser's error can quote what it parsed.
#[non_exhaustive]
pub enum ClaudeCodeAuthError {
    /// No credential is stored: the user has not run `claude login`.
    CredentialsMissing {
        /// Where the store looked.
        path: String,
    },
    /// The credential file has no OAuth section.
    OAuthSectionMissing {
        /// Where the store looked.
        path: String,
    },
    /// The token expired and there is no refresh token to renew it.
    RefreshTokenMissing,
    /// A refresh was asked of a long-lived token (`CLAUDE_CODE_OAUTH_TOKEN`, `claude
    /// setup-token`): it has no refresh token, and is used as it is.
    NotRefreshable {
        /// Where the token comes from.
        from: String,
    },
    /// The credential holds no token at all: the `claude` CLI's logged-out shape (after a
    /// logout, or after the endpoint rejected its refresh token).
    LoggedOut {
        /// Where the store looked.
        path: String,
    },
    /// The token endpoint could not be reached, timed out, or answered 5xx, 429 or an unusable body.
    RefreshHttp {
        /// What failed; never holds a token.
        message: String,
    },
    /// The token endpoint rejected the refresh token (`invalid_grant`): a new login is needed.
    RefreshRejected {
        /// What the endpoint said, scrubbed, and what to do.
        message: String,
    },
    /// The token endpoint refused the request for another reason (a 4xx other than 429).
    RefreshRefused {
        /// What the endpoint said, scrubbed.
        message: String,
    },
    /// The credential file is not valid JSON (raised by typed [`crate::CredentialStore`] loads).
    InvalidStorage {
        /// Where the store looked.
        path: String,
        /// The parser's error. Its own message may quote file content, a token included, so it is
        /// neither printed by this error nor returned by `Error::source`: read it deliberately.
        source: serde_json::Error,
    },
    /// The credential document is unusable: not UTF-8, too large, or a known field has the wrong
    /// type.
    InvalidDocument {
        /// Where the store looked.
        path: String,
        /// What is wrong, naming fields and positions, never values.
        problem: String,
    },
    /// Reading or writing the credential storage failed.
    Io {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A refreshed credential could not be saved here (no space, no permission, a name too
    /// long...), which showed before the refresh token was spent: nothing was sent, nothing is
    /// lost.
    NotWritable {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Neither `CLAUDE_CONFIG_DIR`, `HOME` nor `USERPROFILE` is set.
    HomeUnresolved,
    /// The store does not accept writes.
    ReadOnly {
        /// Which store.
        store: String,
    },
    /// The refresh lock stayed busy past the configured bound.
    LockTimeout {
        /// The lock that stayed busy.
        lock: String,
        /// How long this process waited.
        waited: Duration,
    },
    /// The token endpoint URL is not one the sandbox may reach.
    EndpointNotAllowed {
        /// The configured URL.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The component tried to reach an endpoint the sandbox does not allow.
    RequestDenied {
        /// What was refused.
        reason: String,
    },
    /// The sandboxed component failed to load or trapped.
    Sandbox {
        /// What failed.
        message: String,
    },
    /// A call into the component did not finish within its bound.
    TimedOut {
        /// The bound that passed.
        after: Duration,
    },
}

impl fmt::Display for ClaudeCodeAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CredentialsMissing { path } => {
                write!(f, "no Claude Code credentials at `{path}`; run `claude login` first")
            }
            Self::OAuthSectionMissing { path } => write!(
                f,
                "the credentials at `{path}` have no `claudeAiOauth` section; run `claude login` first"
            ),
            Self::RefreshTokenMissing => f.write_str(
                "the access token has expired and the credentials hold no refresh token; run `claude login` to sign in again",
            ),
            Self::NotRefreshable { from } => write!(
                f,
                "the token from {from} cannot be refreshed: it is a long-lived token without a refresh token, used as it is until it is revoked"
            ),
            Self::LoggedOut { path } => write!(
                f,
                "not logged in: the credentials at `{path}` hold no token; run `claude login`"
            ),
            Self::RefreshHttp { message } => write!(f, "token refresh failed: {message}"),
            Self::RefreshRejected { message } | Self::RefreshRefused { message } => {
                f.write_str(message)
            }
            Self::InvalidStorage { path, source } => write!(
                f,
                "the credentials at `{path}` are not valid JSON ({})",
                describe_json_error(source)
            ),
            Self::InvalidDocument { path, problem } => {
                write!(f, "the credentials at `{path}` are unusable: {problem}")
            }
            Self::Io { path, source } => {
                write!(f, "could not access the credentials at `{path}`: {source}")
            }
            Self::NotWritable { path, source } => write!(
                f,
                "a refreshed credential cannot be saved at `{path}` ({source}); no refresh was attempted, so nothing is lost"
            ),
            Self::HomeUnresolved => f.write_str(
                "cannot locate the credentials: set CLAUDE_CONFIG_DIR or HOME, or give the path explicitly",
            ),
            Self::ReadOnly { store } => write!(f, "the credential store `{store}` is read-only"),
            Self::LockTimeout { lock, waited } => write!(
                f,
                "timed out after {}s waiting for the refresh lock `{lock}`",
                waited.as_secs()
            ),
            Self::EndpointNotAllowed { url, reason } => {
                write!(f, "the token endpoint `{url}` is not allowed: {reason}")
            }
            Self::RequestDenied { reason } => write!(
                f,
                "the sandbox refused a request of the credential component: {reason}"
            ),
            Self::Sandbox { message } => write!(f, "the credential component failed: {message}"),
            Self::TimedOut { after } => write!(
                f,
                "the credential component did not finish within {}s",
                after.as_secs()
            ),
        }
    }
}

impl fmt::Debug for ClaudeCodeAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(self.variant_name())
            .field(&self.to_string())
            .finish()
    }
}

impl std::error::Error for ClaudeCodeAuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } | Self::NotWritable { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Convenience result alias.
pub type ClaudeCodeAuthResult<T> = Result<T, ClaudeCodeAuthError>;

/// Where a JSON error is and of which kind, without the parser's message (which can quote the
/// offending value, and the value can be a token).
fn describe_json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Syntax => "syntax error",
        Category::Eof => "unexpected end of input",
        Category::Data => "a field has the wrong type",
        Category::Io => "read error",
    };
    format!("{what} at line {}, column {}", error.line(), error.column())
}

impl ClaudeCodeAuthError {
    /// The variant's name, for `Debug`.
    const fn variant_name(&self) -> &'static str {
        match self {
            Self::CredentialsMissing { .. } => "CredentialsMissing",
            Self::OAuthSectionMissing { .. } => "OAuthSectionMissing",
            Self::RefreshTokenMissing => "RefreshTokenMissing",
            Self::LoggedOut { .. } => "LoggedOut",
            Self::NotRefreshable { .. } => "NotRefreshable",
            Self::RefreshHttp { .. } => "RefreshHttp",
            Self::RefreshRejected { .. } => "RefreshRejected",
            Self::RefreshRefused { .. } => "RefreshRefused",
            Self::InvalidStorage { .. } => "InvalidStorage",
            Self::InvalidDocument { .. } => "InvalidDocument",
            Self::Io { .. } => "Io",
            Self::NotWritable { .. } => "NotWritable",
            Self::HomeUnresolved => "HomeUnresolved",
            Self::ReadOnly { .. } => "ReadOnly",
            Self::LockTimeout { .. } => "LockTimeout",
            Self::EndpointNotAllowed { .. } => "EndpointNotAllowed",
            Self::RequestDenied { .. } => "RequestDenied",
            Self::Sandbox { .. } => "Sandbox",
            Self::TimedOut { .. } => "TimedOut",
        }
    }

    /// The entelix reaction this error calls for.
    pub fn to_auth_error(&self) -> AuthError {
        let message = self.to_string();
        match self {
            Self::CredentialsMissing { .. }
            | Self::OAuthSectionMissing { .. }
            | Self::HomeUnresolved => AuthError::missing_from(message),
            Self::RefreshTokenMissing | Self::LoggedOut { .. } | Self::RefreshRejected { .. } => {
                AuthError::expired_with(message)
            }
            Self::RefreshHttp { .. } | Self::LockTimeout { .. } | Self::TimedOut { .. } => {
                AuthError::source_unreachable(message)
            }
            Self::RefreshRefused { .. }
            | Self::InvalidStorage { .. }
            | Self::InvalidDocument { .. }
            | Self::Io { .. }
            | Self::NotWritable { .. }
            | Self::NotRefreshable { .. }
            | Self::ReadOnly { .. }
            | Self::EndpointNotAllowed { .. }
            | Self::RequestDenied { .. }
            | Self::Sandbox { .. } => AuthError::refused(message),
        }
    }
}

impl From<ClaudeCodeAuthError> for entelix_core::Error {
    fn from(err: ClaudeCodeAuthError) -> Self {
        Self::Auth(err.to_auth_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_reaction() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let cases: Vec<(ClaudeCodeAuthError, &str)> = vec![
            (
                ClaudeCodeAuthError::CredentialsMissing { path: "p".into() },
                "missing",
            ),
            (
                ClaudeCodeAuthError::OAuthSectionMissing { path: "p".into() },
                "missing",
            ),
            (ClaudeCodeAuthError::HomeUnresolved, "missing"),
            (ClaudeCodeAuthError::RefreshTokenMissing, "expired"),
            (
                ClaudeCodeAuthError::LoggedOut { path: "p".into() },
                "expired",
            ),
            (
                ClaudeCodeAuthError::RefreshRejected {
                    message: "m".into(),
                },
                "expired",
            ),
            (
                ClaudeCodeAuthError::RefreshHttp {
                    message: "m".into(),
                },
                "unreachable",
            ),
            (
                ClaudeCodeAuthError::LockTimeout {
                    lock: "l".into(),
                    waited: Duration::from_secs(1),
                },
                "unreachable",
            ),
            (
                ClaudeCodeAuthError::TimedOut {
                    after: Duration::from_secs(1),
                },
                "unreachable",
            ),
            (
                ClaudeCodeAuthError::RefreshRefused {
                    message: "m".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::InvalidStorage {
                    path: "p".into(),
                    source: json,
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::InvalidDocument {
                    path: "p".into(),
                    problem: "x".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::Io {
                    path: "p".into(),
                    source: io(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::ReadOnly { store: "s".into() },
                "refused",
            ),
            (
                ClaudeCodeAuthError::NotRefreshable { from: "s".into() },
                "refused",
            ),
            (
                ClaudeCodeAuthError::NotWritable {
                    path: "p".into(),
                    source: io(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::EndpointNotAllowed {
                    url: "u".into(),
                    reason: "r".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::Sandbox {
                    message: "m".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::RequestDenied { reason: "r".into() },
                "refused",
            ),
        ];
        for (error, want) in cases {
            let got = match error.to_auth_error() {
                AuthError::Missing { .. } => "missing",
                AuthError::Expired { .. } => "expired",
                AuthError::Refused { .. } => "refused",
                AuthError::SourceUnreachable { .. } => "unreachable",
                _ => "other",
            };
            assert_eq!(got, want, "{error}");
        }
    }

    #[test]
    fn json_errors_do_not_quote_content() {
        let secret = "sk-ant-oat01-SECRET";
        let source = serde_json::from_str::<Vec<u8>>(&format!("\"{secret}\"")).unwrap_err();
        assert!(
            source.to_string().contains(secret),
            "serde quotes the value"
        );
        let error = ClaudeCodeAuthError::InvalidStorage {
            path: "p".into(),
            source,
        };
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(std::error::Error::source(&error).is_none());
        assert!(shown.contains("wrong type at line 1, column"), "{shown}");
    }

    #[test]
    fn login_hint_is_given_where_a_login_helps() {
        for error in [
            ClaudeCodeAuthError::CredentialsMissing { path: "p".into() },
            ClaudeCodeAuthError::OAuthSectionMissing { path: "p".into() },
            ClaudeCodeAuthError::RefreshTokenMissing,
            ClaudeCodeAuthError::LoggedOut { path: "p".into() },
        ] {
            assert!(error.to_string().contains("claude login"), "{error}");
        }
    }
}
