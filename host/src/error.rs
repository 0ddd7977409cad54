//! [`ClaudeCodeAuthError`], the [`Reaction`] each error calls for, and the mapping onto
//! entelix's `AuthError`.
//!
//! Several variants, inherited from the original crate, look alike. What separates them:
//!
//! | Variants | The difference |
//! |---|---|
//! | [`RefreshRejected`] / [`RefreshRefused`] / [`RefreshHttp`] | The endpoint said `invalid_grant` (the login is spent: log in again) / another 4xx (our request or client is wrong: retrying will not help) / no usable answer at all: unreachable, timed out, 5xx, 429, or a 2xx body that is not a token answer (retry later) |
//! | [`Io`] / [`NotWritable`] | Any failed read or write / a write that was found impossible *before* the refresh token was spent: nothing was sent, so nothing is lost |
//! | [`InvalidStorage`] / [`InvalidDocument`] | A typed store's load found no JSON at all / the JSON (or its bytes) is unusable: not UTF-8, too large, duplicate keys, a known field of the wrong type |
//! | [`CredentialsMissing`] / [`OAuthSectionMissing`] / [`LoggedOut`] / [`LoginEnded`] / [`RefreshTokenMissing`] | No document / a document without `claudeAiOauth` (what `claude auth logout` leaves) / the section with empty tokens (the CLI's logged-out shape) / that shape saying the login reached its time limit / an expired access token with no refresh token beside it |
//! | [`NotRefreshable`] / [`ReadOnly`] | A refresh asked of a long-lived token (it has no refresh token, by design) / a store that takes no writes |
//! | [`EndpointNotAllowed`] / [`RequestDenied`] / [`Sandbox`] | The configured token URL fails the policy before anything runs / the component asked for something the policy refuses / the component failed to load, trapped, or returned something malformed |
//! | [`LockTimeout`] / [`LockLost`] / [`TimedOut`] | Another holder kept the refresh lock past the bound / the lock (or lease) was had and lost before the request left — taken over, run out, deleted — so nothing was sent / a call into the component ran past its bound |
//! | [`StoreUnreachable`] / [`Io`] | A networked store did not answer (retry later) / a local read or write failed |
//! | [`StoreConflict`] / [`LockTimeout`] | The stored login moved under the caller (load again: a newer one is there) / the lock was never had |
//! | [`StoreEmpty`] / [`StoreLost`] / [`StoreRolledBack`] | A networked store never held a login (import one) / it held one this machine saw and lost it / it holds an older one than this machine saw |
//! | [`StoreInvalid`] / [`StoreRefused`] / [`EndpointNotAllowed`] / [`NetworkMisconfigured`] | A store's own configuration is wrong (a malformed URL, a key name, a CA file, a lease too short) / the store's server refused this client / the token endpoint's URL fails the policy / the provider's CA file or proxy URL cannot be used |
//! | [`Draining`] / [`LockTimeout`] | The provider was told to stop ([`drain`]), so no refresh started and nothing was sent / another holder kept the lock |
//!
//! [`RefreshRejected`]: ClaudeCodeAuthError::RefreshRejected
//! [`RefreshRefused`]: ClaudeCodeAuthError::RefreshRefused
//! [`RefreshHttp`]: ClaudeCodeAuthError::RefreshHttp
//! [`Io`]: ClaudeCodeAuthError::Io
//! [`NotWritable`]: ClaudeCodeAuthError::NotWritable
//! [`InvalidStorage`]: ClaudeCodeAuthError::InvalidStorage
//! [`InvalidDocument`]: ClaudeCodeAuthError::InvalidDocument
//! [`CredentialsMissing`]: ClaudeCodeAuthError::CredentialsMissing
//! [`OAuthSectionMissing`]: ClaudeCodeAuthError::OAuthSectionMissing
//! [`LoggedOut`]: ClaudeCodeAuthError::LoggedOut
//! [`LoginEnded`]: ClaudeCodeAuthError::LoginEnded
//! [`RefreshTokenMissing`]: ClaudeCodeAuthError::RefreshTokenMissing
//! [`NotRefreshable`]: ClaudeCodeAuthError::NotRefreshable
//! [`ReadOnly`]: ClaudeCodeAuthError::ReadOnly
//! [`EndpointNotAllowed`]: ClaudeCodeAuthError::EndpointNotAllowed
//! [`RequestDenied`]: ClaudeCodeAuthError::RequestDenied
//! [`Sandbox`]: ClaudeCodeAuthError::Sandbox
//! [`LockTimeout`]: ClaudeCodeAuthError::LockTimeout
//! [`LockLost`]: ClaudeCodeAuthError::LockLost
//! [`NetworkMisconfigured`]: ClaudeCodeAuthError::NetworkMisconfigured
//! [`TimedOut`]: ClaudeCodeAuthError::TimedOut
//! [`StoreUnreachable`]: ClaudeCodeAuthError::StoreUnreachable
//! [`StoreConflict`]: ClaudeCodeAuthError::StoreConflict
//! [`Draining`]: ClaudeCodeAuthError::Draining
//! [`StoreInvalid`]: ClaudeCodeAuthError::StoreInvalid
//! [`StoreEmpty`]: ClaudeCodeAuthError::StoreEmpty
//! [`StoreLost`]: ClaudeCodeAuthError::StoreLost
//! [`StoreRolledBack`]: ClaudeCodeAuthError::StoreRolledBack
//! [`StoreRefused`]: ClaudeCodeAuthError::StoreRefused
//! [`drain`]: crate::ClaudeCodeOAuthProvider::drain

use std::fmt;
use std::time::Duration;

use entelix_core::auth::AuthError;

/// Why a credential could not be produced. Messages are one line, name the place, and never
/// contain a token; neither does `Debug`, nor any error `Error::source` leads to ([`JsonError`]
/// withholds the parser's message, which can quote what it parsed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaudeCodeAuthError {
    /// No credential is stored: the user has not run `claude login`.
    #[error("not logged in: no Claude Code credentials at `{path}`; run `claude login`")]
    CredentialsMissing {
        /// Where the store looked.
        path: String,
    },
    /// The credential document holds no `claudeAiOauth` login: what `claude auth logout`
    /// (`/logout`) leaves, or a document that never held one.
    #[error(
        "not logged in: the credentials at `{path}` hold no `claudeAiOauth` login (as `claude auth logout` leaves them); run `claude login`"
    )]
    OAuthSectionMissing {
        /// Where the store looked.
        path: String,
    },
    /// The token expired and there is no refresh token to renew it.
    #[error(
        "the access token has expired and the credentials hold no refresh token; run `claude login` to sign in again"
    )]
    RefreshTokenMissing,
    /// A refresh was asked of a long-lived token (`CLAUDE_CODE_OAUTH_TOKEN`, `claude
    /// setup-token`): it has no refresh token, and is used as it is.
    #[error(
        "the token from {from} cannot be refreshed: it is a long-lived token without a refresh token, used as it is until it is revoked"
    )]
    NotRefreshable {
        /// Where the token comes from.
        from: String,
    },
    /// The credential holds no token at all: the `claude` CLI's logged-out shape (after a
    /// logout, or after the endpoint rejected its refresh token).
    #[error("not logged in: the credentials at `{path}` hold no token; run `claude login`")]
    LoggedOut {
        /// Where the store looked.
        path: String,
    },
    /// The `claude` CLI ended the login when it reached its time limit (its refresh token
    /// expired; the blank it leaves says `"loginEnded":"time_limit"`): a new login is needed.
    #[error(
        "not logged in: the login at `{path}` reached its time limit (its refresh token expired); run `claude login`"
    )]
    LoginEnded {
        /// Where the store looked.
        path: String,
    },
    /// The token endpoint could not be reached, timed out, or answered 5xx, 429 or an unusable body.
    #[error("token refresh failed: {message}")]
    RefreshHttp {
        /// What failed; never holds a token.
        message: String,
    },
    /// The token endpoint rejected the refresh token (`invalid_grant`): a new login is needed.
    #[error("{message}")]
    RefreshRejected {
        /// What the endpoint said, scrubbed, and what to do.
        message: String,
    },
    /// The token endpoint refused the request for another reason (a 4xx other than 429).
    #[error("{message}")]
    RefreshRefused {
        /// What the endpoint said, scrubbed.
        message: String,
    },
    /// The credential file is not valid JSON (raised by typed [`crate::CredentialStore`] loads).
    #[error("the credentials at `{path}` are not valid JSON ({source})")]
    InvalidStorage {
        /// Where the store looked.
        path: String,
        /// Where the parser stopped and why, without its message (see [`JsonError`]).
        source: JsonError,
    },
    /// The credential document is unusable: not UTF-8, too large, or a known field has the wrong
    /// type.
    #[error("the credentials at `{path}` are unusable: {problem}")]
    InvalidDocument {
        /// Where the store looked.
        path: String,
        /// What is wrong, naming fields and positions, never values.
        problem: String,
    },
    /// Reading or writing the credential storage failed.
    #[error("could not access the credentials at `{path}`: {source}")]
    Io {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A refreshed credential could not be saved here (no space, no permission, a name too
    /// long...), which showed before the refresh token was spent: nothing was sent, nothing is
    /// lost.
    #[error(
        "a refreshed credential cannot be saved at `{path}` ({source}); no refresh was attempted, so nothing is lost"
    )]
    NotWritable {
        /// The path involved.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Neither `CLAUDE_CONFIG_DIR`, `HOME` nor `USERPROFILE` is set.
    #[error(
        "cannot locate the credentials: set CLAUDE_CONFIG_DIR or HOME, or give the path explicitly"
    )]
    HomeUnresolved,
    /// The store does not accept writes.
    #[error("the credential store `{store}` is read-only")]
    ReadOnly {
        /// Which store.
        store: String,
    },
    /// The refresh lock stayed busy past the configured bound.
    #[error("timed out after {}s waiting for the refresh lock `{lock}`", .waited.as_secs())]
    LockTimeout {
        /// The lock that stayed busy.
        lock: String,
        /// How long this process waited.
        waited: Duration,
    },
    /// The refresh lock (or lease) was lost while held — taken over, run out or deleted — so
    /// the refresh request was not sent: another refresh may be under way. Retry.
    #[error("{lock} was lost while held ({why}); nothing was sent")]
    LockLost {
        /// The lock or lease, in words (`the refresh lock \`…\``, `the refresh lease of …`).
        lock: String,
        /// What happened to it.
        why: String,
    },
    /// A network setting of the provider's — a CA file (`with_extra_ca_certificates`,
    /// `SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`) or a proxy URL (`with_proxy`, `HTTPS_PROXY`) —
    /// cannot be used, so nothing was sent. Fix the setting: retrying will not help.
    #[error("the network settings cannot be used: {reason}; nothing was sent")]
    NetworkMisconfigured {
        /// What is wrong, naming the setting.
        reason: String,
    },
    /// The token endpoint URL is not one the sandbox may reach.
    #[error("the token endpoint `{url}` is not allowed: {reason}")]
    EndpointNotAllowed {
        /// The configured URL.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The component tried to reach an endpoint the sandbox does not allow.
    #[error("the sandbox refused a request of the credential component: {reason}")]
    RequestDenied {
        /// What was refused.
        reason: String,
    },
    /// The sandboxed component failed to load or trapped.
    #[error("the credential component failed: {message}")]
    Sandbox {
        /// What failed.
        message: String,
    },
    /// A call into the component did not finish within its bound.
    #[error("the credential component did not finish within {}s", .after.as_secs())]
    TimedOut {
        /// The bound that passed.
        after: Duration,
    },
    /// A networked store (Redis) could not be reached or did not answer in time.
    #[error("the credential store {store} cannot be reached: {message}")]
    StoreUnreachable {
        /// Which store, without its password.
        store: String,
        /// What failed.
        message: String,
    },
    /// A networked store refused this client: wrong user or password, or an ACL without the
    /// commands the store needs. Retrying will not help.
    #[error("the credential store {store} refused this client: {message}")]
    StoreRefused {
        /// Which store, without its password.
        store: String,
        /// What Redis said.
        message: String,
    },
    /// The stored login changed under this caller: another holder wrote a newer one. Loading
    /// again shows it; a newer login is never overwritten.
    #[error("the credential store {store} changed meanwhile: {message}")]
    StoreConflict {
        /// Which store, without its password.
        store: String,
        /// What moved.
        message: String,
    },
    /// A store that is filled by an import (Redis) holds no login: it was never imported, or
    /// the store lost its data.
    #[error(
        "no login in the credential store {store}: import one (`claude-code-auth --store … import FILE`)"
    )]
    StoreEmpty {
        /// Which store, without its password.
        store: String,
    },
    /// A networked store (Redis) went back in time: it holds an older generation of the login
    /// than this machine has seen, or a refresh token this machine presented already (a failover
    /// to a lagging replica, a restored snapshot, another writer). Nothing was sent; presenting
    /// that token would revoke the login everywhere.
    #[error(
        "the credential store {store} went back in time: it holds generation {found} of the login, and this machine has seen generation {seen}{} (a failover to a replica that lags, a restored snapshot, or another writer); nothing was sent, so nothing is lost. {kept}",
        if *.spent { ", and the refresh token stored there was presented already" } else { "" }
    )]
    StoreRolledBack {
        /// Which store, without its password.
        store: String,
        /// The generation the store holds.
        found: u64,
        /// The newest generation this machine has seen.
        seen: u64,
        /// Whether the stored refresh token was presented before (by this machine, or as Redis's
        /// own list of presented tokens says).
        spent: bool,
        /// What this machine kept of the newest login, and how to put it back.
        kept: String,
    },
    /// A networked store (Redis) holds no login although this machine saw one there: it lost it
    /// (an eviction, a flush, a restart without persistence).
    #[error(
        "the credential store {store} holds no login, although this machine saw generation {seen} of it there: Redis lost it (evicted, flushed, or restarted without persistence). {kept}"
    )]
    StoreLost {
        /// Which store, without its password.
        store: String,
        /// The newest generation this machine saw.
        seen: u64,
        /// What this machine kept of the newest login, and how to put it back.
        kept: String,
    },
    /// A credential store is configured wrongly (a malformed URL, a lease no longer than the
    /// refresh budget, an option it does not take): retrying will not help.
    #[error("the credential store {store} cannot be used as configured: {reason}")]
    StoreInvalid {
        /// Which store, without its password.
        store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The provider is stopping ([`crate::ClaudeCodeOAuthProvider::drain`]): no new refresh
    /// starts, and this one sent nothing.
    #[error("the provider is stopping: no refresh was started, and nothing was sent")]
    Draining,
    /// A broker (`claude-code-auth serve`) could not hand out a token: it said why (its login's
    /// own failure, with its reaction), or it could not be reached or understood.
    #[error("the broker at `{socket}`: {message}")]
    Broker {
        /// The broker's socket.
        socket: String,
        /// What went wrong; never a token.
        message: String,
        /// How to react, as the broker said (or `Unreachable` when it did not answer).
        reaction: Reaction,
    },
    /// The secret a store seals logins with is missing or unusable.
    #[error("the store secret {path} is unusable: {problem}")]
    StoreSecret {
        /// The secret file (or the store, when none was given).
        path: String,
        /// What is wrong, never the secret.
        problem: String,
    },
}

/// Convenience result alias.
pub type ClaudeCodeAuthResult<T> = Result<T, ClaudeCodeAuthError>;

/// A JSON parser's error with its message withheld: `serde_json` quotes the value it choked on,
/// and in a credential file that value can be a token. `Display` and `Debug` say only the kind
/// and the position; [`JsonError::into_inner`] hands the parser's error to a caller who wants it
/// deliberately.
pub struct JsonError(serde_json::Error);

impl JsonError {
    /// The parser's own error, message included (it may quote file content).
    pub fn into_inner(self) -> serde_json::Error {
        self.0
    }

    /// The kind of the error: syntax, end of input, wrong type, or read error.
    pub fn classify(&self) -> serde_json::error::Category {
        self.0.classify()
    }

    /// The line where the parser stopped, from 1.
    pub fn line(&self) -> usize {
        self.0.line()
    }

    /// The column where the parser stopped, from 1.
    pub fn column(&self) -> usize {
        self.0.column()
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(error: serde_json::Error) -> Self {
        Self(error)
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use serde_json::error::Category;
        let what = match self.classify() {
            Category::Syntax => "syntax error",
            Category::Eof => "unexpected end of input",
            Category::Data => "a field has the wrong type",
            Category::Io => "read error",
        };
        write!(
            f,
            "{what} at line {}, column {}",
            self.line(),
            self.column()
        )
    }
}

impl fmt::Debug for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JsonError").field(&self.to_string()).finish()
    }
}

impl std::error::Error for JsonError {}

/// How a caller should react to an error: the four cases of entelix's `AuthError`. The CLI's exit
/// codes, the entelix mapping and the sandbox's reading of the component's failures all derive
/// from [`ClaudeCodeAuthError::reaction`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reaction {
    /// There is no credential to use: log in.
    Missing,
    /// The credential expired and cannot be renewed: log in again.
    Expired,
    /// The credential, its storage or the configuration is unusable as it is: retrying will not
    /// help until something is changed.
    Refused,
    /// The token endpoint, a lock holder or the component did not answer in time: retry later.
    Unreachable,
}

impl ClaudeCodeAuthError {
    /// How a caller should react to this error.
    pub const fn reaction(&self) -> Reaction {
        match self {
            Self::Broker { reaction, .. } => *reaction,
            Self::CredentialsMissing { .. }
            | Self::OAuthSectionMissing { .. }
            | Self::HomeUnresolved
            | Self::StoreEmpty { .. }
            | Self::StoreLost { .. } => Reaction::Missing,
            Self::RefreshTokenMissing
            | Self::LoggedOut { .. }
            | Self::LoginEnded { .. }
            | Self::RefreshRejected { .. } => Reaction::Expired,
            Self::RefreshHttp { .. }
            | Self::LockTimeout { .. }
            | Self::LockLost { .. }
            | Self::TimedOut { .. }
            | Self::StoreUnreachable { .. }
            | Self::StoreConflict { .. }
            | Self::Draining => Reaction::Unreachable,
            Self::RefreshRefused { .. }
            | Self::InvalidStorage { .. }
            | Self::InvalidDocument { .. }
            | Self::Io { .. }
            | Self::NotWritable { .. }
            | Self::NotRefreshable { .. }
            | Self::ReadOnly { .. }
            | Self::EndpointNotAllowed { .. }
            | Self::RequestDenied { .. }
            | Self::Sandbox { .. }
            | Self::StoreSecret { .. }
            | Self::StoreInvalid { .. }
            | Self::NetworkMisconfigured { .. }
            | Self::StoreRolledBack { .. }
            | Self::StoreRefused { .. } => Reaction::Refused,
        }
    }

    /// The entelix error this error calls for: its [`reaction`](Self::reaction), with this
    /// error's message.
    pub fn to_auth_error(&self) -> AuthError {
        let message = self.to_string();
        match self.reaction() {
            Reaction::Missing => AuthError::missing_from(message),
            Reaction::Expired => AuthError::expired_with(message),
            Reaction::Refused => AuthError::refused(message),
            Reaction::Unreachable => AuthError::source_unreachable(message),
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
                ClaudeCodeAuthError::LoginEnded { path: "p".into() },
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
            (ClaudeCodeAuthError::Draining, "unreachable"),
            (
                ClaudeCodeAuthError::StoreInvalid {
                    store: "s".into(),
                    reason: "r".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::StoreRolledBack {
                    store: "s".into(),
                    found: 1,
                    seen: 2,
                    spent: false,
                    kept: "k".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::StoreLost {
                    store: "s".into(),
                    seen: 2,
                    kept: "k".into(),
                },
                "missing",
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
                    source: json.into(),
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
            (
                ClaudeCodeAuthError::StoreEmpty { store: "s".into() },
                "missing",
            ),
            (
                ClaudeCodeAuthError::StoreUnreachable {
                    store: "s".into(),
                    message: "m".into(),
                },
                "unreachable",
            ),
            (
                ClaudeCodeAuthError::StoreConflict {
                    store: "s".into(),
                    message: "m".into(),
                },
                "unreachable",
            ),
            (
                ClaudeCodeAuthError::StoreRefused {
                    store: "s".into(),
                    message: "m".into(),
                },
                "refused",
            ),
            (
                ClaudeCodeAuthError::StoreSecret {
                    path: "p".into(),
                    problem: "x".into(),
                },
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
            source: source.into(),
        };
        let mut shown = format!("{error} {error:?}");
        let mut next = std::error::Error::source(&error);
        while let Some(source) = next {
            shown.push_str(&format!(" {source} {source:?}"));
            next = source.source();
        }
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("wrong type at line 1, column"), "{shown}");
        let ClaudeCodeAuthError::InvalidStorage { source, .. } = error else {
            unreachable!()
        };
        assert!(source.into_inner().to_string().contains(secret));
    }

    #[test]
    fn debug_names_the_variant() {
        let error = ClaudeCodeAuthError::LoggedOut { path: "p".into() };
        assert!(format!("{error:?}").starts_with("LoggedOut"), "{error:?}");
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
