//! The typed failure every operation returns. Mirrors the WIT `auth-error`.

use std::fmt;

/// How a caller should react. The cases of entelix's `AuthError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// There is no credential to use.
    Missing,
    /// The credential expired and cannot be renewed.
    Expired,
    /// The credential or its storage is unusable as it is.
    Refused,
    /// The token endpoint or a lock holder is unavailable; retrying may help.
    SourceUnreachable,
}

/// What exactly went wrong. Mirrors the WIT `cause` enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The store holds no credential document.
    CredentialsMissing,
    /// The document has no `claudeAiOauth` section.
    OAuthSectionMissing,
    /// A refresh is needed but there is no refresh token.
    RefreshTokenMissing,
    /// The document holds no token at all: the `claude` CLI's logged-out shape.
    LoggedOut,
    /// A refresh was asked of a long-lived token, which has no refresh token.
    NotRefreshable,
    /// The document is not JSON or a known field has the wrong type.
    DocumentInvalid,
    /// The endpoint answered `invalid_grant`.
    GrantRejected,
    /// The endpoint refused the request (4xx other than 429).
    EndpointRefused,
    /// The endpoint is unreachable, timed out, or answered 5xx / 429.
    EndpointUnavailable,
    /// The endpoint answered 2xx with an unusable body.
    AnswerInvalid,
    /// Reading or writing the store failed.
    StoreFailed,
    /// The refresh lock could not be taken in time.
    LockTimeout,
}

impl Cause {
    /// The reaction each cause calls for. One table, so the component and every host agree.
    pub const fn kind(self) -> Kind {
        match self {
            Self::CredentialsMissing | Self::OAuthSectionMissing => Kind::Missing,
            Self::RefreshTokenMissing | Self::LoggedOut | Self::GrantRejected => Kind::Expired,
            Self::DocumentInvalid
            | Self::EndpointRefused
            | Self::StoreFailed
            | Self::NotRefreshable => Kind::Refused,
            Self::EndpointUnavailable | Self::AnswerInvalid | Self::LockTimeout => {
                Kind::SourceUnreachable
            }
        }
    }
}

/// A failure: its cause and one line for people. The message never holds a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The precise cause.
    pub cause: Cause,
    /// What went wrong and what to do.
    pub message: String,
}

impl AuthFailure {
    /// A failure with `cause` and `message`.
    pub fn new(cause: Cause, message: impl Into<String>) -> Self {
        Self {
            cause,
            message: message.into(),
        }
    }

    /// How a caller should react.
    pub const fn kind(&self) -> Kind {
        self.cause.kind()
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AuthFailure {}
