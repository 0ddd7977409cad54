//! Why the host refused or failed a request of the component's, kept for the host's error: the
//! component only sees a `wasi:http` error code.

use std::sync::{Mutex, PoisonError};

use crate::error::ClaudeCodeAuthError;

/// Why a request was refused or failed, in words the host's error can carry.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The component asked for an origin that is not allowed.
    OffList(String),
    /// An allowed name resolved to an address the policy forbids.
    Internal(String),
    /// The answer's body was larger than allowed.
    AnswerTooLarge(usize),
    /// The token endpoint's certificate is not trusted here.
    Untrusted(String),
    /// The proxy could not be reached or refused the tunnel.
    Proxy(String),
    /// The operator's network settings are unusable (a proxy URL, a CA file).
    Misconfigured(String),
    /// The provider is draining: the request was not sent.
    Draining,
    /// The store kept the request from leaving (its lock was lost while held, it could not note
    /// the token about to be spent, or knows it must not be presented now): its error.
    Store(ClaudeCodeAuthError),
}

impl Refusal {
    pub(crate) fn into_error(self, token_url: &str) -> ClaudeCodeAuthError {
        match self {
            Self::OffList(reason) => ClaudeCodeAuthError::RequestDenied { reason },
            Self::Internal(reason) => ClaudeCodeAuthError::EndpointNotAllowed {
                url: token_url.to_owned(),
                reason,
            },
            Self::AnswerTooLarge(limit) => ClaudeCodeAuthError::RefreshHttp {
                message: format!(
                    "the token endpoint's answer is larger than the {limit} bytes allowed"
                ),
            },
            Self::Untrusted(why) => ClaudeCodeAuthError::RefreshRefused {
                message: format!(
                    "the token endpoint's TLS certificate is not trusted ({why}); if a proxy inspects TLS on this network, add its CA certificate with SSL_CERT_FILE, NODE_EXTRA_CA_CERTS or ClaudeCodeOAuthConfig::with_extra_ca_certificates"
                ),
            },
            Self::Proxy(why) => ClaudeCodeAuthError::RefreshHttp { message: why },
            Self::Misconfigured(reason) => ClaudeCodeAuthError::NetworkMisconfigured { reason },
            Self::Draining => ClaudeCodeAuthError::Draining,
            Self::Store(error) => error,
        }
    }
}

/// Keep `refusal` in `slot` (the last one wins).
pub(crate) fn record(slot: &Mutex<Option<Refusal>>, refusal: Refusal) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal);
}
