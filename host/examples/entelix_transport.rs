//! Drive entelix's `DirectTransport` with the provider, end to end on this machine: a loopback
//! token endpoint, a loopback Anthropic-shaped Messages API, and a temporary credential file
//! holding an expired token.
//!
//! ```text
//! cargo run -p entelix-auth-claude-code --example entelix_transport
//! ```
//!
//! With a real login, drop the loopback servers: `FileCredentialStore::default_claude_path()`,
//! `ClaudeCodeOAuthProvider::new(store)` and `DirectTransport::anthropic(...)`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use claude_code_auth_testkit::loopback::{MessagesApi, TokenEndpoint};
use entelix_auth_claude_code::{
    CLAUDE_CODE_BETA, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialStore,
    FileCredentialStore, OAUTH_BETA,
};
use entelix_core::ExecutionContext;
use entelix_core::codecs::{AnthropicMessagesCodec, Codec};
use entelix_core::ir::{AnthropicExt, ContentPart, Message, ModelRequest, ProviderExtensions};
use entelix_core::transports::{DirectTransport, Transport};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    entelix_core::install_default_tls();
    let endpoint = TokenEndpoint::start().await?;
    let api = MessagesApi::start(endpoint.access_token_checker()).await?;

    // A credential file like the one `claude login` writes, expired a minute ago.
    let login = endpoint.login();
    let dir = tempfile::tempdir()?;
    let store = FileCredentialStore::with_path(dir.path().join(".credentials.json"));
    let expired = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64 - 60_000;
    store
        .save_document(
            &serde_json::json!({"claudeAiOauth": {
                "accessToken": login.access_token,
                "refreshToken": login.refresh_token,
                "expiresAt": expired,
                "scopes": ["user:inference"],
            }})
            .to_string(),
        )
        .await?;

    let provider = ClaudeCodeOAuthProvider::with_config(
        store,
        ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url()),
    );
    let transport = DirectTransport::new(api.base_url(), Arc::new(provider))?;
    let codec = AnthropicMessagesCodec::new();
    let request = ModelRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::user("Say hello.")],
        max_tokens: Some(64),
        // The provider supplies `Authorization`; OAuth tokens also need both betas.
        provider_extensions: ProviderExtensions::default()
            .with_anthropic(AnthropicExt::default().with_betas([CLAUDE_CODE_BETA, OAUTH_BETA])),
        ..ModelRequest::default()
    };
    let response = transport
        .send(codec.encode(&request)?, &ExecutionContext::new())
        .await?;
    let reply = codec.decode(&response.body, Vec::new())?;
    for part in &reply.content {
        if let ContentPart::Text { text, .. } = part {
            println!("assistant: {text}");
        }
    }
    println!(
        "HTTP {} from the Messages API; the token endpoint served {} refresh grant.",
        response.status,
        endpoint.grants_served()
    );
    Ok(())
}
