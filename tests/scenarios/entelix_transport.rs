//! entelix for real: `DirectTransport` sends a Messages API request through the provider to a
//! loopback Anthropic-shaped server, which accepts only tokens the token endpoint issued and only
//! with the OAuth beta.

use std::sync::Arc;

use crate::support::{Scenario, config, messages_request};
use claude_code_auth_testkit::loopback::{MessagesApi, TokenEndpoint};
use entelix_auth_claude_code::{
    CLAUDE_CODE_BETA, ClaudeCodeOAuthProvider, FileCredentialStore, OAUTH_BETA,
    RefreshOnUnauthorized,
};
use entelix_core::ExecutionContext;
use entelix_core::codecs::{AnthropicMessagesCodec, Codec};
use entelix_core::ir::ContentPart;
use entelix_core::transports::{DirectTransport, Transport};

/// An expired credential, its token endpoint, an API that trusts that endpoint, and a
/// `DirectTransport` to it through the provider.
async fn bed() -> (Scenario, TokenEndpoint, MessagesApi, DirectTransport) {
    let (scenario, endpoint, api, transport, _) = bed_with_provider().await;
    (scenario, endpoint, api, transport)
}

async fn bed_with_provider() -> (
    Scenario,
    TokenEndpoint,
    MessagesApi,
    DirectTransport,
    ClaudeCodeOAuthProvider,
) {
    entelix_core::install_default_tls();
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let api = MessagesApi::start(endpoint.access_token_checker())
        .await
        .unwrap();
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&scenario.path),
        config(&endpoint),
    );
    let transport = DirectTransport::new(api.base_url(), Arc::new(provider.clone())).unwrap();
    (scenario, endpoint, api, transport, provider)
}

#[tokio::test]
async fn direct_transport_sends_the_refreshed_token_and_both_betas() {
    let (scenario, endpoint, api, transport) = bed().await;
    let codec = AnthropicMessagesCodec::new();

    let encoded = codec
        .encode(&messages_request(&[CLAUDE_CODE_BETA, OAUTH_BETA]))
        .unwrap();
    let response = transport
        .send(encoded, &ExecutionContext::new())
        .await
        .unwrap();
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let decoded = codec.decode(&response.body, Vec::new()).unwrap();
    assert!(
        matches!(&decoded.content[0], ContentPart::Text { text, .. } if text.contains("loopback"))
    );

    let seen = api.requests();
    assert_eq!(seen.len(), 1);
    let refreshed = scenario.oauth("accessToken");
    assert_ne!(refreshed, "sk-ant-oat01-fixture-expired-access");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {refreshed}").as_str())
    );
    let betas: Vec<&str> = seen[0]
        .header("anthropic-beta")
        .unwrap()
        .split(',')
        .map(str::trim)
        .collect();
    assert!(
        betas.contains(&CLAUDE_CODE_BETA) && betas.contains(&OAUTH_BETA),
        "{betas:?}"
    );
    assert_eq!(endpoint.grants_served(), 1);
}

#[tokio::test]
async fn without_the_oauth_beta_the_api_refuses_the_token() {
    let (_scenario, _endpoint, _api, transport) = bed().await;
    let encoded = AnthropicMessagesCodec::new()
        .encode(&messages_request(&[CLAUDE_CODE_BETA]))
        .unwrap();
    let response = transport
        .send(encoded, &ExecutionContext::new())
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    assert!(
        String::from_utf8_lossy(&response.body)
            .contains("OAuth authentication is currently not supported")
    );
}

/// A token the service revoked before its recorded expiry: the API answers 401; as the `claude`
/// CLI does, one forced refresh and one retry get the request through.
#[tokio::test]
async fn a_token_revoked_early_gets_one_refresh_and_one_retry() {
    let (scenario, endpoint, api, direct, provider) = bed_with_provider().await;
    let codec = AnthropicMessagesCodec::new();
    let encoded = codec
        .encode(&messages_request(&[CLAUDE_CODE_BETA, OAUTH_BETA]))
        .unwrap();
    let ctx = ExecutionContext::new();
    assert_eq!(
        direct.send(encoded.clone(), &ctx).await.unwrap().status,
        200
    );
    endpoint.revoke_access_token(&scenario.oauth("accessToken"));

    // Plain, every request now fails until the recorded expiry, hours away.
    assert_eq!(
        direct.send(encoded.clone(), &ctx).await.unwrap().status,
        401
    );

    let transport = RefreshOnUnauthorized::new(direct, provider);
    let response = transport.send(encoded.clone(), &ctx).await.unwrap();
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(endpoint.grants_served(), 2, "one refresh for the 401");
    let seen = api.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {}", scenario.oauth("accessToken")).as_str())
    );
    // The next request goes through at once, on the new token.
    assert_eq!(transport.send(encoded, &ctx).await.unwrap().status, 200);
    assert_eq!(endpoint.grants_served(), 2);

    // A request refused for itself (no OAuth beta) is retried once and then answered as it is.
    let refused = codec
        .encode(&messages_request(&[CLAUDE_CODE_BETA]))
        .unwrap();
    let before = api.requests().len();
    assert_eq!(transport.send(refused, &ctx).await.unwrap().status, 401);
    assert_eq!(api.requests().len(), before + 2);
    assert_eq!(endpoint.revoked_families(), 0);
}
