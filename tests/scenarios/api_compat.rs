//! Code written against the original native crate (0.6.1) keeps compiling and working: its
//! public items, with their signatures, used the way its users use them. A store that only
//! implements the two original methods drives the sandboxed provider end to end.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use entelix_auth_claude_code::{
    CLAUDE_CODE_BETA, ClaudeCodeAuthError, ClaudeCodeAuthResult, ClaudeCodeOAuthConfig,
    ClaudeCodeOAuthProvider, CredentialFile, CredentialStore, DEFAULT_REFRESH_TIMEOUT,
    DEFAULT_TOKEN_URL, FileCredentialStore, OAuthCredential,
};
use entelix_core::auth::CredentialProvider;
use entelix_core::ir::{AnthropicExt, ProviderExtensions};
use secrecy::ExposeSecret;

/// A store written the way the original crate's users wrote theirs: typed, two methods.
#[derive(Default)]
struct VaultStore {
    slot: Mutex<Option<CredentialFile>>,
    fail_with_io: bool,
}

#[async_trait]
impl CredentialStore for VaultStore {
    async fn load(&self) -> ClaudeCodeAuthResult<Option<CredentialFile>> {
        if self.fail_with_io {
            return Err(ClaudeCodeAuthError::Io {
                path: "vault://claude".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
        Ok(self.slot.lock().unwrap().clone())
    }

    async fn save(&self, file: &CredentialFile) -> ClaudeCodeAuthResult<()> {
        *self.slot.lock().unwrap() = Some(file.clone());
        Ok(())
    }
}

#[test]
fn the_original_surface_compiles_with_the_same_shapes() {
    let cred = OAuthCredential::new("sk-ant-oat01-x", 9_999_999_999_000)
        .with_refresh_token("sk-ant-ort01-y")
        .with_subscription_type("pro")
        .with_scopes(["user:inference"]);
    assert_eq!(cred.access_token, "sk-ant-oat01-x");
    assert_eq!(cred.refresh_token.as_deref(), Some("sk-ant-ort01-y"));
    assert_eq!(cred.subscription_type.as_deref(), Some("pro"));
    assert_eq!(cred.scopes, vec!["user:inference".to_owned()]);
    let _: i64 = cred.expires_at_ms;
    assert!(cred.expires_at().is_some());
    assert!(!cred.needs_refresh());
    assert_eq!(
        cred.to_bearer_secret().expose_secret(),
        "Bearer sk-ant-oat01-x"
    );

    let file = CredentialFile::with_oauth(cred);
    assert!(file.claude_ai_oauth.is_some());
    assert!(CredentialFile::empty().claude_ai_oauth.is_none());
    let parsed: CredentialFile =
        serde_json::from_str(r#"{"claudeAiOauth":{"accessToken":"a","expiresAt":1}}"#).unwrap();
    assert!(parsed.claude_ai_oauth.unwrap().needs_refresh());

    let config = ClaudeCodeOAuthConfig::new()
        .with_token_url("http://127.0.0.1:1/v1/oauth/token")
        .with_client_id("id")
        .with_refresh_timeout(Duration::from_secs(5));
    let _: &String = &config.token_url;
    let _: &Option<String> = &config.client_id;
    let _: Duration = config.refresh_timeout;
    assert_eq!(DEFAULT_REFRESH_TIMEOUT, Duration::from_secs(30));
    assert_eq!(
        DEFAULT_TOKEN_URL,
        "https://platform.claude.com/v1/oauth/token"
    );
    assert_eq!(CLAUDE_CODE_BETA, "claude-code-20250219");

    let store = FileCredentialStore::with_path("/tmp/x/.credentials.json");
    assert_eq!(
        store.path(),
        std::path::Path::new("/tmp/x/.credentials.json")
    );
    let _: ClaudeCodeAuthResult<std::path::PathBuf> = FileCredentialStore::default_claude_path();
    let _provider: ClaudeCodeOAuthProvider = ClaudeCodeOAuthProvider::new(store);
    let _with_config = ClaudeCodeOAuthProvider::with_config(VaultStore::default(), config);
    let _extensions = ProviderExtensions::default()
        .with_anthropic(AnthropicExt::default().with_betas([CLAUDE_CODE_BETA]));

    let converted: entelix_core::Error = ClaudeCodeAuthError::RefreshTokenMissing.into();
    assert!(matches!(converted, entelix_core::Error::Auth(_)));
}

#[tokio::test]
async fn a_two_method_store_drives_a_refresh() {
    let endpoint = claude_code_auth_testkit::loopback::TokenEndpoint::start()
        .await
        .unwrap();
    let login = endpoint.login();
    let expired = OAuthCredential::new(login.access_token.clone(), crate::support::NOW_MS - 1)
        .with_refresh_token(login.refresh_token.clone())
        .with_subscription_type("pro");
    let store = std::sync::Arc::new(VaultStore {
        slot: Mutex::new(Some(CredentialFile::with_oauth(expired))),
        fail_with_io: false,
    });
    let provider =
        ClaudeCodeOAuthProvider::with_config(store.clone(), crate::support::config(&endpoint));
    let creds = provider.resolve().await.unwrap();
    let saved = store
        .load()
        .await
        .unwrap()
        .unwrap()
        .claude_ai_oauth
        .unwrap();
    assert_eq!(
        creds.header_value.expose_secret(),
        format!("Bearer {}", &*saved.access_token)
    );
    assert_ne!(
        saved.refresh_token.as_deref(),
        Some(login.refresh_token.as_str())
    );
    assert_eq!(saved.subscription_type.as_deref(), Some("pro"));
    assert_eq!(endpoint.grants_served(), 1);
}

#[tokio::test]
async fn a_store_error_comes_back_as_the_stores_own_typed_error() {
    let store = VaultStore {
        fail_with_io: true,
        ..VaultStore::default()
    };
    let error = ClaudeCodeOAuthProvider::new(store)
        .header_value()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClaudeCodeAuthError::Io { path, source } if path == "vault://claude" && source.kind() == std::io::ErrorKind::PermissionDenied),
        "{error}"
    );
}

/// The original crate's `OAuthCredential::needs_refresh_at` and the component, which makes the
/// provider's refresh decision, read every refreshable login alike: an expiry well ahead, just
/// outside and just inside the skew, at the skew's edge, passed, unrepresentable (negative),
/// under skews of zero, five minutes and an hour. They are two readings of one document in two
/// crates (the host does not link the guest), so this holds them together.
#[tokio::test]
async fn the_hosts_needs_refresh_and_the_components_agree_on_every_refreshable_login() {
    use crate::support::{NOW_MS, now};
    let skews = [0, 300_000, 3_600_000];
    for skew_ms in skews {
        let offsets = [
            86_400_000,
            skew_ms + 1,
            skew_ms,
            skew_ms - 1,
            1,
            0,
            -1,
            -86_400_000,
        ];
        let expiries = offsets.iter().map(|offset| NOW_MS + offset).chain([-5, 0]);
        for expires_at_ms in expiries {
            let file = CredentialFile::with_oauth(
                OAuthCredential::new("sk-ant-oat01-agree", expires_at_ms)
                    .with_refresh_token("sk-ant-ort01-agree"),
            );
            let skew = Duration::from_millis(skew_ms as u64);
            let host = file
                .claude_ai_oauth
                .as_ref()
                .unwrap()
                .needs_refresh_at(now(), skew);
            let provider = ClaudeCodeOAuthProvider::with_config(
                entelix_auth_claude_code::MemoryCredentialStore::with_document(
                    serde_json::to_string(&file).unwrap(),
                ),
                ClaudeCodeOAuthConfig::new()
                    .with_clock(now)
                    .with_expiry_skew(skew),
            );
            let component = provider.status().await.unwrap().needs_refresh;
            assert_eq!(
                host, component,
                "expiresAt {expires_at_ms} (now {NOW_MS}), skew {skew_ms} ms"
            );
        }
    }
}
