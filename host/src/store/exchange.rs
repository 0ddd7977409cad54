//! What a store keeps of a refresh exchange while it happens, so that a process stopped at any
//! instant after the answer arrived — `kill -9` included — loses nothing the endpoint answered.
//!
//! The sandbox's HTTP hook tells the store's [`ExchangeLog`] (given with the refresh lock) which
//! refresh token a request presents, right before it leaves, and hands it the endpoint's answer
//! the moment its last byte is read, before the component parses it or anything else happens
//! with it. The file store writes the answer into the prepared temporary file, whose name its
//! journal holds; the next process finds it there and, while the store still holds the spent
//! token, gives the component that answer again instead of sending the spent token (the
//! endpoint rotated it already). Rebuilding the login from it is then the component's ordinary
//! work: the document it replaces plus the answer.

use std::fmt;
use std::io;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::ClaudeCodeAuthResult;

/// A store's record of the refresh exchange under its lock.
#[async_trait]
pub(crate) trait ExchangeLog: Send + Sync {
    /// A request presenting the refresh token whose SHA-256 (hex) is `spent` is about to leave.
    /// An error keeps it from leaving (the store cannot note it, or knows the token must not be
    /// presented now).
    async fn sending(&self, spent: &str) -> ClaudeCodeAuthResult<()>;

    /// The endpoint answered `answer`: keep it where the next process looks, now.
    async fn answered(&self, answer: &Answer) -> io::Result<()>;

    /// The answer a stopped process kept for a request presenting `spent`, if the store still
    /// holds that token: the component gets it instead of a request the endpoint would refuse.
    async fn replay(&self, spent: &str) -> Option<Answer>;
}

/// Marks a record as an answer (what else may sit in a temporary file is a document).
const KIND: &str = "token-endpoint-answer";

/// What the token endpoint answered to a request presenting a refresh token.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Answer {
    kind: String,
    /// SHA-256 (hex) of the refresh token the request presented.
    pub(crate) spent_sha256: String,
    /// When its last byte was read, in Unix milliseconds (lifetimes count from here).
    pub(crate) received_at_ms: i64,
    /// The HTTP status.
    pub(crate) status: u16,
    /// The body as received; it holds the rotated tokens.
    pub(crate) body: String,
}

impl Answer {
    /// The answer `body` (which must be text to carry a token) with `status`, to a request
    /// presenting the token whose digest is `spent`, received at `received_at_ms`.
    pub(crate) fn new(spent: &str, received_at_ms: i64, status: u16, body: String) -> Self {
        Self {
            kind: KIND.to_owned(),
            spent_sha256: spent.to_owned(),
            received_at_ms,
            status,
            body,
        }
    }

    /// The record as written (JSON).
    pub(crate) fn to_record(&self) -> Zeroizing<Vec<u8>> {
        // Serializing strings and numbers cannot fail.
        Zeroizing::new(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The answer a record starting at `bytes` holds: its first JSON value, when complete and
    /// of this kind (a torn write is no record).
    pub(crate) fn from_record(bytes: &[u8]) -> Option<Self> {
        let first = serde_json::Deserializer::from_slice(bytes)
            .into_iter::<Self>()
            .next()?
            .ok()?;
        (first.kind == KIND).then_some(first)
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("received_at_ms", &self.received_at_ms)
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_torn_or_foreign_one_does_not() {
        let answer = Answer::new("ab", 7, 200, r#"{"access_token":"secret"}"#.into());
        let record = answer.to_record();
        assert_eq!(Answer::from_record(&record), Some(answer.clone()));
        // Followed by whatever the rest of the file holds.
        let mut padded = record.to_vec();
        padded.extend([0u8; 64]);
        assert_eq!(Answer::from_record(&padded), Some(answer.clone()));
        for cut in [1, record.len() / 2, record.len() - 1] {
            assert_eq!(Answer::from_record(&record[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Answer::from_record(br#"{"claudeAiOauth":{}}"#), None);
        assert!(!format!("{answer:?}").contains("secret"));
    }
}
