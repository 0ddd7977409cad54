//! [`EnvTokenStore`]: the long-lived token `claude setup-token` prints, which users export as
//! `CLAUDE_CODE_OAUTH_TOKEN`. Read-only, with no refresh token and no expiry: it is used as it is
//! and never refreshed.

use async_trait::async_trait;
use serde_json::json;
use zeroize::Zeroizing;

use crate::credential::{ACCESS_TOKEN, CredentialFile, OAUTH_SECTION};
use crate::error::{ClaudeCodeAuthError, ClaudeCodeAuthResult};
use crate::secret::SecretToken;

use super::{CredentialStore, Fingerprint, parse_document};

/// The environment variable the `claude` CLI reads a long-lived token from.
pub const OAUTH_TOKEN_ENV: &str = "CLAUDE_CODE_OAUTH_TOKEN";

/// A long-lived OAuth token held in memory, typically from [`OAUTH_TOKEN_ENV`].
///
/// The component sees a credential with no expiry and no refresh token, which it uses as it is;
/// a save answers [`ClaudeCodeAuthError::ReadOnly`].
#[derive(Clone)]
pub struct EnvTokenStore {
    token: SecretToken,
}

impl std::fmt::Debug for EnvTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvTokenStore")
            .field("token", &self.token)
            .finish()
    }
}

impl EnvTokenStore {
    /// A store for `token`.
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: SecretToken::new(token),
        }
    }

    /// The token in `CLAUDE_CODE_OAUTH_TOKEN`, when it is set and not blank.
    pub fn from_env() -> Option<Self> {
        Self::from_value(std::env::var(OAUTH_TOKEN_ENV).ok())
    }

    pub(crate) fn from_value(value: Option<String>) -> Option<Self> {
        let value = Zeroizing::new(value?);
        let token = value.trim();
        (!token.is_empty()).then(|| Self::new(token))
    }

    /// The document the component reads: the token, the scope such tokens carry, nothing else.
    /// A value that cannot be a bearer token is refused here, naming the variable, rather than
    /// later as a header the component produced.
    fn document(&self) -> ClaudeCodeAuthResult<Zeroizing<String>> {
        let token = self.token.expose_secret();
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClaudeCodeAuthError::InvalidDocument {
                path: self.location(),
                problem: "the token holds spaces, control or non-ASCII characters; a token is \
                          one line of visible ASCII"
                    .into(),
            });
        }
        Ok(Zeroizing::new(
            json!({OAUTH_SECTION: {
                ACCESS_TOKEN: token,
                "scopes": ["user:inference"],
            }})
            .to_string(),
        ))
    }
}

#[async_trait]
impl CredentialStore for EnvTokenStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        parse_document(&self.document()?, || self.location()).map(Some)
    }

    async fn save(&self, _: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        Err(ClaudeCodeAuthError::ReadOnly {
            store: self.location(),
        })
    }

    async fn load_document(&self) -> ClaudeCodeAuthResult<Option<String>> {
        Ok(Some(self.document()?.to_string()))
    }

    async fn save_document(&self, _: &str) -> ClaudeCodeAuthResult<()> {
        Err(ClaudeCodeAuthError::ReadOnly {
            store: self.location(),
        })
    }

    fn location(&self) -> String {
        format!("environment variable {OAUTH_TOKEN_ENV}")
    }

    /// The token never changes.
    fn fingerprint(&self) -> Option<Fingerprint> {
        Some(Fingerprint::of(&()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_absent_values_are_no_store() {
        assert!(EnvTokenStore::from_value(None).is_none());
        assert!(EnvTokenStore::from_value(Some("  \n".into())).is_none());
        let store = EnvTokenStore::from_value(Some(" sk-ant-oat01-x\n".into())).unwrap();
        assert_eq!(store.token, "sk-ant-oat01-x");
        assert_eq!(format!("{store:?}"), "EnvTokenStore { token: [redacted] }");
    }

    #[tokio::test]
    async fn a_value_that_cannot_be_a_token_is_refused_naming_the_variable() {
        for value in [
            "sk-ant-oat01-a\nsk-ant-oat01-b",
            "sk-ant oat01",
            "sk-ant-oat01-\u{e9}",
        ] {
            let store = EnvTokenStore::from_value(Some(value.into())).unwrap();
            let err = store.load_document().await.unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, ClaudeCodeAuthError::InvalidDocument { .. })
                    && message.contains(OAUTH_TOKEN_ENV)
                    && !message.contains("oat01"),
                "{message}"
            );
            assert!(store.load().await.is_err());
        }
    }

    #[tokio::test]
    async fn writes_are_refused_and_the_document_has_no_refresh_token() {
        let store = EnvTokenStore::new("sk-ant-oat01-x");
        let err = store.save_document("{}").await.unwrap_err();
        assert!(
            matches!(&err, ClaudeCodeAuthError::ReadOnly { store } if store.contains(OAUTH_TOKEN_ENV)),
            "{err}"
        );
        let typed = store
            .load()
            .await
            .unwrap()
            .unwrap()
            .claude_ai_oauth
            .unwrap();
        assert_eq!(typed.access_token, "sk-ant-oat01-x");
        assert!(typed.refresh_token.is_none());
    }
}
