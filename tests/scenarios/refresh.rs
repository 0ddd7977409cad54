//! Scenarios of the provider over real files and the loopback token endpoint, with the fixed
//! test clock: the happy paths, and every failure leaving the file byte-identical.

use std::sync::Arc;

use crate::support::{NOW_MS, Scenario, config, reaction, without_token_fields};
use claude_code_auth_testkit::loopback::{Reply, Response};
use entelix_auth_claude_code::defaults::{CLAUDE_CODE_CLIENT_ID, DEFAULT_USER_AGENT};
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialFile,
    CredentialStore, FileCredentialStore, MemoryCredentialStore, RefreshMode, RefreshOutcome,
};
use entelix_core::auth::CredentialProvider;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

fn provider(scenario: &Scenario, config: ClaudeCodeOAuthConfig) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(FileCredentialStore::with_path(&scenario.path), config)
}

const EIGHT_HOURS_MS: i64 = 8 * 60 * 60 * 1000;

#[tokio::test]
async fn fresh_token_is_used_without_any_request() {
    let scenario = Scenario::fixture("fresh");
    let endpoint = scenario.endpoint().await;
    let before = scenario.bytes();
    let creds = provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();
    assert_eq!(creds.header_name, http::header::AUTHORIZATION);
    assert_eq!(
        creds.header_value.expose_secret(),
        "Bearer sk-ant-oat01-fixture-fresh-access"
    );
    assert!(endpoint.requests().is_empty());
    assert_eq!(scenario.bytes(), before);
}

#[tokio::test]
async fn expired_token_is_refreshed_and_written_back_with_every_other_key() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let before = scenario.json();
    let creds = provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();

    let after = scenario.json();
    let access = scenario.oauth("accessToken");
    assert_eq!(
        creds.header_value.expose_secret(),
        format!("Bearer {access}")
    );
    assert!(
        endpoint.accepts_access_token(&access),
        "the endpoint issued the stored token"
    );
    assert_ne!(
        scenario.oauth("refreshToken"),
        before["claudeAiOauth"]["refreshToken"]
    );
    assert_eq!(after["claudeAiOauth"]["expiresAt"], NOW_MS + EIGHT_HOURS_MS);
    assert_eq!(
        after["claudeAiOauth"]["scopes"],
        json!([
            "user:inference",
            "user:profile",
            "user:sessions:claude_code"
        ])
    );
    assert_eq!(
        without_token_fields(after),
        without_token_fields(before.clone())
    );
    assert_eq!(scenario.mode(), 0o600);
    assert_eq!(endpoint.grants_served(), 1);

    // What went over the wire is what the real service takes today.
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/oauth/token")
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert!(
        request
            .header("user-agent")
            .is_none_or(|ua| !ua.starts_with("claude-cli/"))
    );
    // The `claude` CLI's request: a body of fixed length, never chunked, its fields in the
    // CLI's order, JSON accepted back; for this first-party login (it records `user:inference`)
    // the six scopes the CLI 2.1.332 asks for, whatever is recorded (seen on its wire).
    assert_eq!(request.header("transfer-encoding"), None);
    assert_eq!(
        request.header("content-length"),
        Some(request.body.len().to_string().as_str())
    );
    assert_eq!(request.header("accept"), Some("application/json"));
    assert_eq!(request.header("user-agent"), Some(DEFAULT_USER_AGENT));
    let scope = "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload user:plugins";
    assert_eq!(
        String::from_utf8(request.body.clone()).unwrap(),
        json!({
            "grant_type": "refresh_token",
            "refresh_token": "sk-ant-ort01-fixture-expired-refresh",
            "client_id": CLAUDE_CODE_CLIENT_ID,
            "scope": scope,
        })
        .to_string()
    );
}

#[tokio::test]
async fn a_token_inside_the_skew_window_is_refreshed_first() {
    let scenario = Scenario::fixture("within-skew");
    let endpoint = scenario.endpoint().await;
    provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();
    assert_eq!(endpoint.grants_served(), 1);

    // With a skew shorter than the two minutes left, the same token is used as it is.
    let scenario = Scenario::fixture("within-skew");
    let endpoint = scenario.endpoint().await;
    let short = config(&endpoint).with_expiry_skew(std::time::Duration::from_secs(60));
    provider(&scenario, short).resolve().await.unwrap();
    assert_eq!(endpoint.grants_served(), 0);
}

#[tokio::test]
async fn the_next_resolve_uses_the_stored_token() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let provider = provider(&scenario, config(&endpoint));
    let first = provider.resolve().await.unwrap();
    let second = provider.resolve().await.unwrap();
    assert_eq!(
        first.header_value.expose_secret(),
        second.header_value.expose_secret()
    );
    assert_eq!(endpoint.grants_served(), 1);
}

#[tokio::test]
async fn concurrent_resolves_share_one_refresh() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    // Two providers on the same file, eight tasks each: one grant in all.
    let providers = [
        provider(&scenario, config(&endpoint)),
        provider(&scenario, config(&endpoint)),
    ];
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let provider = providers[i % 2].clone();
            tokio::spawn(async move {
                provider
                    .resolve()
                    .await
                    .map(|c| c.header_value.expose_secret().to_owned())
            })
        })
        .collect();
    let mut headers = Vec::new();
    for task in tasks {
        headers.push(task.await.unwrap().unwrap());
    }
    headers.dedup();
    assert_eq!(
        headers,
        [format!("Bearer {}", scenario.oauth("accessToken"))]
    );
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(endpoint.revoked_families(), 0);
}

#[tokio::test]
async fn status_reports_without_refreshing_or_revealing() {
    let scenario = Scenario::fixture("within-skew");
    let endpoint = scenario.endpoint().await;
    let before = scenario.bytes();
    let status = provider(&scenario, config(&endpoint))
        .status()
        .await
        .unwrap();
    assert_eq!(status.expires_at_ms, Some(NOW_MS + 120_000));
    assert!(!status.expired && status.needs_refresh && status.has_refresh_token);
    assert_eq!(status.subscription_type.as_deref(), Some("max"));
    assert_eq!(
        status.rate_limit_tier.as_deref(),
        Some("default_claude_max_20x")
    );
    assert_eq!(status.scopes, ["user:inference", "user:profile"]);
    assert!(!format!("{status:?}").contains("sk-ant"));
    assert!(endpoint.requests().is_empty());
    assert_eq!(scenario.bytes(), before);
}

#[tokio::test]
async fn force_refresh_rotates_a_fresh_token_and_plain_refresh_does_not() {
    let scenario = Scenario::fixture("fresh");
    let endpoint = scenario.endpoint().await;
    let provider = provider(&scenario, config(&endpoint));
    let report = provider.refresh(RefreshMode::IfNeeded).await.unwrap();
    assert_eq!(report.outcome, RefreshOutcome::StillFresh);
    assert_eq!(endpoint.grants_served(), 0);
    let report = provider.refresh(RefreshMode::Force).await.unwrap();
    assert_eq!(report.outcome, RefreshOutcome::Refreshed);
    assert_eq!(report.status.expires_at_ms, Some(NOW_MS + EIGHT_HOURS_MS));
    assert_eq!(endpoint.grants_served(), 1);
    assert!(endpoint.accepts_access_token(&scenario.oauth("accessToken")));
}

/// Run `resolve` on `scenario`, expecting a failure; the file must be byte-identical after.
async fn failing(scenario: &Scenario, config: ClaudeCodeOAuthConfig) -> ClaudeCodeAuthError {
    let before = std::fs::read(&scenario.path).ok();
    let provider = provider(scenario, config);
    let error = provider.header_value().await.unwrap_err();
    assert_eq!(
        std::fs::read(&scenario.path).ok(),
        before,
        "the file changed after: {error}"
    );
    assert!(!error.to_string().contains("sk-ant"), "{error}");
    error
}

#[tokio::test]
async fn no_file_is_missing_and_creates_nothing() {
    let scenario = Scenario::empty();
    let endpoint = scenario.endpoint().await;
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(&error, ClaudeCodeAuthError::CredentialsMissing { path } if path == &scenario.path.display().to_string()),
        "{error}"
    );
    assert!(error.to_string().contains("claude login"));
    assert_eq!(reaction(&error), "missing");
    assert_eq!(std::fs::read_dir(scenario.dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn no_oauth_section_is_missing() {
    let scenario = Scenario::fixture("no-oauth-section");
    let endpoint = scenario.endpoint().await;
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::OAuthSectionMissing { .. }),
        "{error}"
    );
    assert_eq!(reaction(&error), "missing");
    assert!(endpoint.requests().is_empty());
}

#[tokio::test]
async fn no_refresh_token_is_expired_and_sends_nothing() {
    let scenario = Scenario::fixture("no-refresh-token");
    let endpoint = scenario.endpoint().await;
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::RefreshTokenMissing),
        "{error}"
    );
    assert!(error.to_string().contains("claude login"));
    assert_eq!(reaction(&error), "expired");
    assert!(endpoint.requests().is_empty());
}

#[tokio::test]
async fn invalid_grant_is_expired_with_a_login_hint() {
    let scenario = Scenario::fixture("expired");
    // An endpoint that never issued this refresh token.
    let endpoint = claude_code_auth_testkit::loopback::TokenEndpoint::start()
        .await
        .unwrap();
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::RefreshRejected { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("invalid_grant") && message.contains("claude login"),
        "{message}"
    );
    assert_eq!(reaction(&error), "expired");
    assert_eq!(
        endpoint.requests().len(),
        1,
        "a rejected grant is not retried"
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_unreachable() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    for _ in 0..4 {
        endpoint.inject(Reply::Respond(Response::raw(
            500,
            "text/plain",
            "upstream exploded",
        )));
    }
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::RefreshHttp { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("HTTP 500"), "{error}");
    assert_eq!(reaction(&error), "unreachable");
    assert_eq!(endpoint.requests().len(), 4);
    assert_eq!(endpoint.grants_served(), 0);
}

#[tokio::test]
async fn a_transient_failure_then_success_refreshes() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint.inject(Reply::Respond(Response::raw(503, "text/plain", "busy")));
    provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();
    assert_eq!(
        (endpoint.requests().len(), endpoint.grants_served()),
        (2, 1)
    );
}

#[tokio::test]
async fn a_malformed_answer_is_unreachable() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint.inject(Reply::Respond(Response::raw(
        200,
        "text/html",
        "<html>Sign in</html>",
    )));
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(error.to_string().contains("not JSON"), "{error}");
    assert_eq!(reaction(&error), "unreachable");
}

#[tokio::test]
async fn a_nested_error_from_the_endpoint_is_refused() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint.inject(Reply::Respond(Response::json(
        400,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": "Invalid request format"}}),
    )));
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        error
            .to_string()
            .contains("invalid_request_error: Invalid request format"),
        "{error}"
    );
    assert_eq!(reaction(&error), "refused");
}

#[tokio::test]
async fn a_wrong_client_id_is_refused_by_the_endpoint() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let error = failing(&scenario, config(&endpoint).with_client_id("someone-else")).await;
    assert!(error.to_string().contains("invalid_client"), "{error}");
    assert_eq!(reaction(&error), "refused");
}

#[tokio::test]
async fn a_wrongly_typed_document_is_refused() {
    let scenario = Scenario::fixture("wrong-types");
    let endpoint = scenario.endpoint().await;
    let error = failing(&scenario, config(&endpoint)).await;
    let message = error.to_string();
    assert!(
        message.contains("`claudeAiOauth.scopes`") && message.contains("a list of strings"),
        "{message}"
    );
    assert_eq!(reaction(&error), "refused");
    assert!(endpoint.requests().is_empty());
}

#[tokio::test]
async fn an_endpoint_off_the_allow_list_is_refused_before_any_call() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let error = failing(
        &scenario,
        config(&endpoint).with_token_url("http://example.com/v1/oauth/token"),
    )
    .await;
    assert!(
        matches!(error, ClaudeCodeAuthError::EndpointNotAllowed { .. }),
        "{error}"
    );
    assert_eq!(reaction(&error), "refused");
}

#[tokio::test]
async fn a_typed_store_keeps_unknown_fields_too() {
    let fixture = std::fs::read_to_string(crate::support::fixture_path("expired")).unwrap();
    let store = Arc::new(MemoryCredentialStore::with_document(fixture.trim()));
    let scenario_endpoint = claude_code_auth_testkit::loopback::TokenEndpoint::start()
        .await
        .unwrap();
    scenario_endpoint.accept_refresh_token("sk-ant-ort01-fixture-expired-refresh");
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config(&scenario_endpoint));
    provider.resolve().await.unwrap();
    let after: Value = serde_json::from_str(&store.document().unwrap()).unwrap();
    let before: Value = serde_json::from_str(&fixture).unwrap();
    assert_eq!(without_token_fields(after), without_token_fields(before));

    // The typed view of the same store sees the refreshed credential and the unknown keys.
    let typed: CredentialFile = store.load().await.unwrap().unwrap();
    assert!(typed.other_keys().contains_key("mcpOAuth"));
    let oauth = typed.claude_ai_oauth.unwrap();
    assert_eq!(oauth.expires_at_ms, NOW_MS + EIGHT_HOURS_MS);
    assert!(oauth.other_fields().contains_key("refreshTokenExpiresAt"));
}

#[tokio::test]
async fn a_symlinked_credential_file_is_refreshed_through_the_link() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let link = scenario.dir().join("linked.json");
    std::os::unix::fs::symlink(".credentials.json", &link).unwrap();
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&link),
        config(&endpoint),
    );
    provider.resolve().await.unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(endpoint.accepts_access_token(&scenario.oauth("accessToken")));
    assert_eq!(scenario.mode(), 0o600);
}

#[tokio::test]
async fn an_unrepresentable_expiry_is_refreshed_and_repaired() {
    for expires in ["-1", "1e300", "null"] {
        let scenario = Scenario::fixture("expired");
        let mut doc = scenario.json();
        doc["claudeAiOauth"]["expiresAt"] = serde_json::from_str(expires).unwrap();
        std::fs::write(&scenario.path, doc.to_string()).unwrap();
        let endpoint = scenario.endpoint().await;
        provider(&scenario, config(&endpoint))
            .resolve()
            .await
            .unwrap();
        assert_eq!(
            scenario.json()["claudeAiOauth"]["expiresAt"],
            NOW_MS + EIGHT_HOURS_MS,
            "{expires}"
        );
    }
}

/// A file store that counts how often the cross-process lock is taken and the document read.
struct CountingLocks {
    inner: FileCredentialStore,
    locks: std::sync::atomic::AtomicUsize,
    loads: std::sync::atomic::AtomicUsize,
}

impl CountingLocks {
    fn over(path: &std::path::Path) -> Arc<Self> {
        Arc::new(Self {
            inner: FileCredentialStore::with_path(path),
            locks: std::sync::atomic::AtomicUsize::new(0),
            loads: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn loads(&self) -> usize {
        self.loads.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl CredentialStore for CountingLocks {
    async fn load(&self) -> entelix_auth_claude_code::ClaudeCodeAuthResult<Option<CredentialFile>> {
        self.inner.load().await
    }

    async fn save(
        &self,
        file: &CredentialFile,
    ) -> entelix_auth_claude_code::ClaudeCodeAuthResult<()> {
        self.inner.save(file).await
    }

    async fn load_document(
        &self,
    ) -> entelix_auth_claude_code::ClaudeCodeAuthResult<Option<String>> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load_document().await
    }

    async fn save_document(
        &self,
        document: &str,
    ) -> entelix_auth_claude_code::ClaudeCodeAuthResult<()> {
        self.inner.save_document(document).await
    }

    async fn lock_refresh(
        &self,
        wait: std::time::Duration,
    ) -> entelix_auth_claude_code::ClaudeCodeAuthResult<entelix_auth_claude_code::RefreshLock> {
        self.locks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.lock_refresh(wait).await
    }

    fn fingerprint(&self) -> Option<entelix_auth_claude_code::Fingerprint> {
        self.inner.fingerprint()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resolves_in_one_process_take_the_cross_process_lock_once() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint
        .set_latency(std::time::Duration::from_millis(100)..std::time::Duration::from_millis(150));
    let store = CountingLocks::over(&scenario.path);
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config(&endpoint));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move {
                provider
                    .header_value()
                    .await
                    .map(|h| h.expose_secret().to_owned())
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap(),
            format!("Bearer {}", scenario.oauth("accessToken"))
        );
    }
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(
        store.locks.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no herd on the lock"
    );
}

#[tokio::test]
async fn a_token_inside_the_skew_is_used_when_the_endpoint_is_down() {
    let scenario = Scenario::fixture("within-skew");
    let endpoint = scenario.endpoint().await;
    for _ in 0..4 {
        endpoint.inject(Reply::Respond(Response::raw(
            503,
            "text/plain",
            "maintenance",
        )));
    }
    let before = scenario.bytes();
    let provider = provider(&scenario, config(&endpoint));
    let header = provider.header_value().await.unwrap();
    assert_eq!(
        header.expose_secret(),
        "Bearer sk-ant-oat01-fixture-skew-access"
    );
    assert_eq!(scenario.bytes(), before);
    assert!(endpoint.requests().len() > 1, "it did try, and retried");
}

#[tokio::test]
async fn a_fresh_token_is_served_from_memory_until_the_file_changes() {
    let scenario = Scenario::fixture("fresh");
    let endpoint = scenario.endpoint().await;
    let store = CountingLocks::over(&scenario.path);
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config(&endpoint));
    for _ in 0..100 {
        let header = provider.header_value().await.unwrap();
        assert_eq!(
            header.expose_secret(),
            "Bearer sk-ant-oat01-fixture-fresh-access"
        );
    }
    assert_eq!(store.loads(), 1, "one read, then a stat per resolve");

    // Another process writes a new token: the very next resolve sees it.
    let mut doc = scenario.json();
    doc["claudeAiOauth"]["accessToken"] = "sk-ant-oat01-written-by-someone-else".into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let header = provider.header_value().await.unwrap();
    assert_eq!(
        header.expose_secret(),
        "Bearer sk-ant-oat01-written-by-someone-else"
    );
    assert_eq!(store.loads(), 2);
}

#[tokio::test]
async fn a_remembered_token_is_refreshed_once_it_nears_expiry() {
    let scenario = Scenario::fixture("fresh");
    let endpoint = scenario.endpoint().await;
    let now = Arc::new(std::sync::atomic::AtomicI64::new(NOW_MS));
    let clock = now.clone();
    let config = config(&endpoint).with_clock(move || {
        std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(
                clock.load(std::sync::atomic::Ordering::SeqCst) as u64
            )
    });
    let provider = provider(&scenario, config);
    provider.header_value().await.unwrap();
    assert_eq!(endpoint.grants_served(), 0);
    // 56 minutes later the token (valid for an hour) is inside the five-minute window.
    now.store(NOW_MS + 56 * 60_000, std::sync::atomic::Ordering::SeqCst);
    let header = provider.header_value().await.unwrap();
    assert_eq!(endpoint.grants_served(), 1);
    assert_eq!(
        header.expose_secret(),
        format!("Bearer {}", scenario.oauth("accessToken"))
    );
}

#[tokio::test]
async fn an_https_endpoint_that_does_not_speak_tls_fails_cleanly() {
    // Exercises the TLS path (rustls with the web PKI roots) without any network: the loopback
    // endpoint answers plain HTTP, so the handshake fails and the error is typed.
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let https = endpoint.url().replace("http://", "https://");
    let config = config(&endpoint)
        .with_token_url(https)
        .with_refresh_timeout(std::time::Duration::from_secs(2));
    let error = failing(&scenario, config).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::RefreshHttp { .. }),
        "{error}"
    );
    assert_eq!(reaction(&error), "unreachable");
    assert_eq!(endpoint.grants_served(), 0);
}

/// The six scopes the `claude` CLI 2.1.332 asks for when it refreshes a first-party login.
const CLI_SCOPES: &str = "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload user:plugins";

/// The request's `scope`.
fn scope_of(request: &claude_code_auth_testkit::loopback::Request) -> String {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["scope"].as_str().unwrap_or_default().to_owned()
}

/// A service that does not grant one of the CLI's scopes to this login answers
/// `invalid_scope` and rotates nothing; as the CLI does, ours asks once more with the scopes the
/// login records, and the one grant it gets is kept.
#[tokio::test]
async fn a_refused_scope_is_asked_again_with_the_recorded_scopes() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint.refuse_scope("user:plugins");
    let before = scenario.json();
    let creds = provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();
    let scopes: Vec<String> = endpoint.requests().iter().map(scope_of).collect();
    assert_eq!(scopes, [CLI_SCOPES, "user:inference user:profile"]);
    assert_eq!(endpoint.grants_served(), 1);
    let access = scenario.oauth("accessToken");
    assert_eq!(
        creds.header_value.expose_secret(),
        format!("Bearer {access}")
    );
    assert!(endpoint.refresh_token_is_live(&scenario.oauth("refreshToken")));
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before)
    );

    // Refused whatever is asked: one more request, no more, and nothing written.
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    endpoint.refuse_scope("user:inference");
    let before = scenario.bytes();
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::RefreshRefused { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("invalid_scope"), "{error}");
    assert_eq!(endpoint.requests().len(), 2);
    assert_eq!(scenario.bytes(), before);
}

/// The login's deadline as the CLI keeps it across a refresh: brought forward when the answer
/// says the login has less time left, never pushed back, never added where none is recorded.
#[tokio::test]
async fn the_login_deadline_is_only_ever_brought_forward() {
    // The fixture records 1930000000000 (NOW + 30 000 000 s).
    for (left_s, want) in [
        (86_400, json!(NOW_MS + 86_400_000)),
        (90_000_000, json!(1_930_000_000_000_i64)),
    ] {
        let scenario = Scenario::fixture("expired");
        let endpoint = scenario.endpoint().await;
        endpoint.reshape_next_grant(move |answer| {
            answer.insert("refresh_token_expires_in".into(), left_s.into());
        });
        provider(&scenario, config(&endpoint))
            .resolve()
            .await
            .unwrap();
        assert_eq!(
            scenario.json()["claudeAiOauth"]["refreshTokenExpiresAt"],
            want,
            "{left_s}"
        );
    }
    let scenario = Scenario::fixture("expired");
    let mut doc = scenario.json();
    doc["claudeAiOauth"]
        .as_object_mut()
        .unwrap()
        .remove("refreshTokenExpiresAt");
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let endpoint = scenario.endpoint().await;
    endpoint.reshape_next_grant(|answer| {
        answer.insert("refresh_token_expires_in".into(), 86_400.into());
    });
    provider(&scenario, config(&endpoint))
        .resolve()
        .await
        .unwrap();
    assert_eq!(
        scenario.json()["claudeAiOauth"].get("refreshTokenExpiresAt"),
        None
    );
}

/// The CLI's blank of a login that reached its time limit says so; a document whose login
/// `claude auth logout` deleted is "not logged in" too. Nothing is sent or written.
#[tokio::test]
async fn a_login_ended_at_its_time_limit_and_a_logged_out_document_say_so() {
    let scenario = Scenario::fixture("logged-out");
    let mut doc = scenario.json();
    doc["claudeAiOauth"]["loginEnded"] = "time_limit".into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let endpoint = scenario.endpoint().await;
    let before = scenario.bytes();
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::LoginEnded { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("reached its time limit") && message.contains("claude login"),
        "{message}"
    );
    assert_eq!(reaction(&error), "expired");
    assert_eq!(scenario.bytes(), before);

    // What `claude auth logout` leaves: the login gone, other keys kept.
    let scenario = Scenario::fixture("expired");
    let mut doc = scenario.json();
    doc.as_object_mut().unwrap().remove("claudeAiOauth");
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(
        matches!(error, ClaudeCodeAuthError::OAuthSectionMissing { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with("not logged in") && message.contains("run `claude login`"),
        "{message}"
    );
    assert!(endpoint.requests().is_empty());
}

/// A CA file that holds no certificate, or none at all, is said as a setting that cannot be
/// used — naming the file — not as the token endpoint's refusal; nothing is sent or written.
#[tokio::test]
async fn an_unusable_ca_file_is_said_as_a_setting() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage-ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let https = endpoint.url().replacen("http://", "https://", 1);
    for file in [garbage, dir.path().join("missing-ca.pem")] {
        let config = config(&endpoint)
            .with_token_url(&https)
            .with_extra_ca_certificates(&file);
        let error = failing(&scenario, config).await;
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            matches!(error, ClaudeCodeAuthError::NetworkMisconfigured { .. })
                && error.to_string().contains(name),
            "{error}"
        );
        assert_eq!(reaction(&error), "refused");
    }
    assert_eq!(endpoint.grants_served(), 0);
}

/// The answer cap is the operator's, end to end: a cap above 1 MiB lets a 1.5 MiB answer through
/// (the component reads what its config says since contract 0.3.0; it used to stop at 1 MiB of
/// its own, whatever the host allowed), and the default still stops it.
#[tokio::test]
async fn an_answer_cap_above_a_mebibyte_lets_a_larger_answer_through() {
    let padded = |endpoint: &claude_code_auth_testkit::loopback::TokenEndpoint| {
        endpoint.reshape_next_grant(|answer| {
            answer.insert("padding".into(), "p".repeat(3 << 19).into());
        });
    };
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    padded(&endpoint);
    let error = failing(&scenario, config(&endpoint)).await;
    assert!(error.to_string().contains("1048576 bytes"), "{error}");

    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    padded(&endpoint);
    let before = scenario.json();
    let header = provider(&scenario, config(&endpoint).with_max_answer_bytes(2 << 20))
        .header_value()
        .await
        .unwrap();
    let token = header.expose_secret().strip_prefix("Bearer ").unwrap();
    assert!(endpoint.accepts_access_token(token));
    assert_eq!(scenario.oauth("accessToken"), token, "and it was stored");
    assert_eq!(
        without_token_fields(scenario.json()),
        without_token_fields(before),
        "the answer's unknown field is not written"
    );
}
