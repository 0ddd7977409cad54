//! entelix for real: `DirectTransport` sends a Messages API request through the provider to a
//! loopback Anthropic-shaped server, which accepts only tokens the token endpoint issued and only
//! with the OAuth beta.

// Tests panic to report failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use entelix_auth_claude_code::loopback::{MessagesApi, TokenEndpoint};
use entelix_auth_claude_code::{
    CLAUDE_CODE_BETA, ClaudeCodeOAuthProvider, FileCredentialStore, OAUTH_BETA,
};
use entelix_core::ExecutionContext;
use entelix_core::codecs::{AnthropicMessagesCodec, Codec};
use entelix_core::ir::{AnthropicExt, ContentPart, Message, ModelRequest, ProviderExtensions};
use entelix_core::transports::{DirectTransport, Transport};
use support::{Scenario, config};

fn request(betas: &[&str]) -> ModelRequest {
    ModelRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::user("Say hello.")],
        max_tokens: Some(64),
        provider_extensions: ProviderExtensions::default()
            .with_anthropic(AnthropicExt::default().with_betas(betas.iter().copied())),
        ..ModelRequest::default()
    }
}

/// An expired credential, its token endpoint, an API that trusts that endpoint, and a
/// `DirectTransport` to it through the provider.
async fn bed() -> (Scenario, TokenEndpoint, MessagesApi, DirectTransport) {
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
    let transport = DirectTransport::new(api.base_url(), Arc::new(provider)).unwrap();
    (scenario, endpoint, api, transport)
}

#[tokio::test]
async fn direct_transport_sends_the_refreshed_token_and_both_betas() {
    let (scenario, endpoint, api, transport) = bed().await;
    let codec = AnthropicMessagesCodec::new();

    let encoded = codec
        .encode(&request(&[CLAUDE_CODE_BETA, OAUTH_BETA]))
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
        .encode(&request(&[CLAUDE_CODE_BETA]))
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
