//! The credential document the `claude` CLI writes, as typed Rust values.
//!
//! Fields this crate does not know (`rateLimitTier`, `refreshTokenExpiresAt`, `mcpOAuth`, ...) are
//! kept in each struct and written back unchanged, so a store that works on these types never
//! drops what the CLI or another tool keeps in the file.

use std::fmt;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::DEFAULT_EXPIRY_SKEW;
use crate::secret::SecretToken;

// The host's names for the document's parts, for the code that reads documents as JSON values
// (the rescue hand-over, the environment token); serde's attributes below must spell them out,
// and a test holds them to these. The component reads the document on its own
// (`guest/src/document.rs`): the refresh decision is its.
/// The login's section.
pub(crate) const OAUTH_SECTION: &str = "claudeAiOauth";
/// The access token's field in the section.
pub(crate) const ACCESS_TOKEN: &str = "accessToken";
/// The refresh token's field in the section.
pub(crate) const REFRESH_TOKEN: &str = "refreshToken";

/// A refreshable OAuth credential: the `claudeAiOauth` section of the credential file.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct OAuthCredential {
    /// Bearer token for the `Authorization` header.
    #[serde(rename = "accessToken")]
    pub access_token: SecretToken,
    /// Token for the `refresh_token` grant; `None` when the credential cannot renew itself.
    #[serde(
        rename = "refreshToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub refresh_token: Option<SecretToken>,
    /// Expiry of the access token in Unix milliseconds. A missing value reads as 0 (expired).
    #[serde(rename = "expiresAt", default)]
    pub expires_at_ms: i64,
    // Declared in the order the CLI writes them, so a typed round trip keeps the file's order.
    /// OAuth scopes granted to the token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Subscription type (`pro`, `max`, `team`, ...), informational.
    #[serde(
        rename = "subscriptionType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub subscription_type: Option<String>,
    /// Every other field of the section, kept as it was.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl fmt::Debug for OAuthCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthCredential")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("subscription_type", &self.subscription_type)
            .field("scopes", &self.scopes)
            .field("other_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl OAuthCredential {
    /// A credential from its two required fields; add the rest with the `with_*` methods.
    #[must_use]
    pub fn new(access_token: impl Into<String>, expires_at_ms: i64) -> Self {
        Self {
            access_token: SecretToken::new(access_token),
            refresh_token: None,
            expires_at_ms,
            subscription_type: None,
            scopes: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Set the refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, token: impl Into<String>) -> Self {
        self.refresh_token = Some(SecretToken::new(token));
        self
    }

    /// Set the subscription type.
    #[must_use]
    pub fn with_subscription_type(mut self, tier: impl Into<String>) -> Self {
        self.subscription_type = Some(tier.into());
        self
    }

    /// Replace the scopes.
    #[must_use]
    pub fn with_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Fields of the section this crate does not model (`rateLimitTier`, ...).
    pub const fn other_fields(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Mutable access to the fields this crate does not model.
    pub const fn other_fields_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }

    /// When the access token expires, or `None` when `expires_at_ms` is not a representable
    /// instant (negative or corrupt) — such a credential always needs a refresh.
    #[must_use]
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        if self.expires_at_ms < 0 {
            return None;
        }
        Utc.timestamp_millis_opt(self.expires_at_ms).single()
    }

    /// Whether the access token expires within [`DEFAULT_EXPIRY_SKEW`] (five minutes, as the
    /// CLI does) of the system clock, or its expiry is unknown. The provider does not ask this:
    /// the component decides, by the same rule for every refreshable login (a scenario in
    /// `tests/scenarios/api_compat.rs` holds them together); for a token without a refresh
    /// token and without an expiry, this says `true`, as the original crate did, where the
    /// component uses the token as it is.
    #[must_use]
    pub fn needs_refresh(&self) -> bool {
        self.needs_refresh_at(SystemTime::now(), DEFAULT_EXPIRY_SKEW)
    }

    /// Whether the access token expires within `skew` of `now`, or its expiry is unknown.
    #[must_use]
    pub fn needs_refresh_at(&self, now: SystemTime, skew: Duration) -> bool {
        let Some(expires_at) = self.expires_at() else {
            return true;
        };
        let deadline = DateTime::<Utc>::from(now) + skew;
        deadline >= expires_at
    }

    /// `Bearer <access token>`, ready for `entelix_core::auth::Credentials::header_value`.
    #[must_use]
    pub fn to_bearer_secret(&self) -> SecretString {
        SecretString::from(format!("Bearer {}", self.access_token.expose_secret()))
    }
}

/// The whole credential file: the OAuth section plus whatever else the file holds.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct CredentialFile {
    /// The Claude.ai OAuth credential, if present.
    #[serde(
        rename = "claudeAiOauth",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub claude_ai_oauth: Option<OAuthCredential>,
    /// Every other top-level key (`mcpOAuth`, ...), kept as it was.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Other keys hold other tools' secrets: show their names only.
        f.debug_struct("CredentialFile")
            .field("claude_ai_oauth", &self.claude_ai_oauth)
            .field("other_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CredentialFile {
    /// A file with nothing in it.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// A file holding one OAuth credential.
    #[must_use]
    pub fn with_oauth(credential: OAuthCredential) -> Self {
        Self {
            claude_ai_oauth: Some(credential),
            extra: Map::new(),
        }
    }

    /// Top-level keys this crate does not model (`mcpOAuth`, ...).
    pub const fn other_keys(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Mutable access to the top-level keys this crate does not model.
    pub const fn other_keys_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_documents_names_are_the_ones_serde_writes() {
        let file = super::CredentialFile::with_oauth(
            super::OAuthCredential::new("a", 1).with_refresh_token("r"),
        );
        let value = serde_json::to_value(&file).unwrap();
        let section = value[super::OAUTH_SECTION].as_object().unwrap();
        assert_eq!(section[super::ACCESS_TOKEN], "a");
        assert_eq!(section[super::REFRESH_TOKEN], "r");
    }

    use super::*;

    const CLI_FILE: &str = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-a","refreshToken":"sk-ant-ort01-r","expiresAt":1767225600000,"scopes":["user:inference","user:profile"],"subscriptionType":"max","rateLimitTier":"default_claude_max_20x","refreshTokenExpiresAt":1790000000000},"mcpOAuth":{"server":{"accessToken":"mcp-secret"}},"pluginSecrets":{"x":1}}"#;

    #[test]
    fn round_trip_keeps_every_field_in_place() {
        let file: CredentialFile = serde_json::from_str(CLI_FILE).unwrap();
        assert_eq!(serde_json::to_string(&file).unwrap(), CLI_FILE);
        let oauth = file.claude_ai_oauth.unwrap();
        assert_eq!(oauth.access_token, "sk-ant-oat01-a");
        assert_eq!(oauth.refresh_token.as_deref(), Some("sk-ant-ort01-r"));
        assert_eq!(
            oauth.other_fields()["rateLimitTier"],
            "default_claude_max_20x"
        );
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let file: CredentialFile = serde_json::from_str(CLI_FILE).unwrap();
        let shown = format!("{file:?}");
        for secret in ["sk-ant-oat01-a", "sk-ant-ort01-r", "mcp-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("mcpOAuth") && shown.contains("rateLimitTier"));
    }

    #[test]
    fn refresh_window() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let now_ms = 1_800_000_000_000_i64;
        let skew = Duration::from_secs(300);
        let cases = [
            (now_ms + 301_000, false),
            (now_ms + 300_000, true),
            (now_ms - 1, true),
            (-1, true),
            (i64::MAX, true),
            (i64::MIN, true),
        ];
        for (expires_at_ms, want) in cases {
            let cred = OAuthCredential::new("a", expires_at_ms);
            assert_eq!(
                cred.needs_refresh_at(now, skew),
                want,
                "expires {expires_at_ms}"
            );
        }
        assert!(!OAuthCredential::new("a", 253_402_300_799_000).needs_refresh());
    }

    #[test]
    fn builders_and_bearer() {
        use secrecy::ExposeSecret;
        let cred = OAuthCredential::new("acc", 1)
            .with_refresh_token("ref")
            .with_subscription_type("team")
            .with_scopes(["user:inference"]);
        assert_eq!(cred.to_bearer_secret().expose_secret(), "Bearer acc");
        assert_eq!(cred.subscription_type.as_deref(), Some("team"));
        let file = CredentialFile::with_oauth(cred);
        assert!(file.claude_ai_oauth.is_some());
        assert!(CredentialFile::empty().claude_ai_oauth.is_none());
    }
}
