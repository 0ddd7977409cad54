//! What a broker (`claude-code-auth serve --socket PATH`) and its clients say to each other:
//! HTTP/1.1 over a Unix socket, JSON bodies, never a refresh token.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /v1/token` | `{"accessToken": …, "expiresAt": <Unix ms>}` |
//! | `GET /v1/header` | `{"name": "Authorization", "value": "Bearer …", "expiresAt": …}` |
//! | `GET /v1/status` | the login's [`TokenStatus`](crate::TokenStatus) (camelCase), never a token |
//! | `POST /v1/refresh`, body `{"rejected": "<sha256 hex of the access token a 401 rejected>"}` | `{"accessToken", "expiresAt", "refreshed"}`: a refresh only while the rejected token is still the current one (one refresh however many ask) |
//!
//! A failure is `{"error": <word>, "message": …}`: for the login, `503` with the word of its
//! [`Reaction`] (`missing`, `expired`, `refused`, `unreachable`); for the request, a 4xx
//! (`bad_request`, `forbidden`, `not_found`, `method_not_allowed`, `too_large`, `timeout`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Reaction;

/// The access token, and when it expires.
pub const TOKEN_PATH: &str = "/v1/token";
/// The `Authorization` header, and when its token expires.
pub const HEADER_PATH: &str = "/v1/header";
/// The login's status, without a token.
pub const STATUS_PATH: &str = "/v1/status";
/// A refresh for a token a 401 rejected.
pub const REFRESH_PATH: &str = "/v1/refresh";

/// Largest request head (request line and headers) a broker reads.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest request body a broker reads.
pub const MAX_BODY_BYTES: usize = 1024;
/// Largest answer a client reads.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The digest a client names a rejected token by: the SHA-256 of the access token, lower-case
/// hex. The token itself never goes back to the broker.
pub fn token_digest(access_token: &str) -> String {
    hex::encode(Sha256::digest(access_token.as_bytes()))
}

/// `GET /v1/token`, and the answer to `POST /v1/refresh` (with `refreshed`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: String,
    /// Its expiry in Unix milliseconds, when known.
    pub expires_at: Option<i64>,
    /// For a refresh: whether this call refreshed (`false`: the rejected token had been
    /// replaced already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<bool>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("refreshed", &self.refreshed)
            .finish()
    }
}

/// `GET /v1/header`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderAnswer {
    /// `Authorization`.
    pub name: String,
    /// `Bearer <access token>`.
    pub value: String,
    /// The token's expiry in Unix milliseconds, when known.
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for HeaderAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderAnswer")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The body of `POST /v1/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshAsk {
    /// [`token_digest`] of the access token the API rejected.
    pub rejected: String,
}

/// A failure's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAnswer {
    /// What kind: a [`Reaction`] word for the login, or what was wrong with the request.
    pub error: String,
    /// For people; never a token.
    pub message: String,
}

/// The word for `reaction` in an [`ErrorAnswer`].
pub const fn reaction_word(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::Missing => "missing",
        Reaction::Expired => "expired",
        Reaction::Refused => "refused",
        Reaction::Unreachable => "unreachable",
    }
}

/// The reaction a word names; anything else is refused (retrying the same will not help).
pub fn reaction_of(word: &str) -> Reaction {
    match word {
        "missing" => Reaction::Missing,
        "expired" => Reaction::Expired,
        "unreachable" => Reaction::Unreachable,
        _ => Reaction::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_hex_and_answers_never_show_tokens() {
        // printf %s sk-ant-oat01-x | sha256sum
        assert_eq!(
            token_digest("sk-ant-oat01-x"),
            "3a8178ac731908db36c1b4c03a80dd99f665b8dc74156844efd46d56476f3306"
        );
        let answer = TokenAnswer {
            access_token: "sk-ant-oat01-secret".into(),
            expires_at: Some(1),
            refreshed: None,
        };
        assert!(!format!("{answer:?}").contains("secret"));
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"accessToken":"sk-ant-oat01-secret","expiresAt":1}"#
        );
        for reaction in [
            Reaction::Missing,
            Reaction::Expired,
            Reaction::Refused,
            Reaction::Unreachable,
        ] {
            assert_eq!(reaction_of(reaction_word(reaction)), reaction);
        }
    }
}
