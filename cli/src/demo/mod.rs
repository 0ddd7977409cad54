//! `claude-code-auth demo`: the whole refresh path on one machine, with no account. Every step
//! is checked, so the demo fails loudly instead of printing a story that did not happen.

mod endpoint;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::{Failure, print, render};
use endpoint::DemoEndpoint;
use entelix_auth_claude_code::{
    ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialStore, FileCredentialStore,
};

/// A step that did not do what the demo shows.
fn broken(what: impl std::fmt::Display) -> Failure {
    Failure::Demo(what.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(unix)]
fn mode(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or_else(
        |_| "unknown".into(),
        |m| format!("{:04o}", m.permissions().mode() & 0o7777),
    )
}

#[cfg(not(unix))]
fn mode(_: &Path) -> String {
    "n/a".into()
}

/// Runs the demo, one step after another; each step checks what it shows.
pub(super) async fn run() -> Result<(), Failure> {
    print(
        "claude-code-auth demo: a refresh end to end, on this machine only, no account needed\n",
    )?;
    let endpoint = start_endpoint().await?;
    let (dir, store, original) = write_expired_file(&endpoint).await?;
    let config = ClaudeCodeOAuthConfig::new().with_token_url(endpoint.url());
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config);
    let token = resolve_through_the_component(&provider, &endpoint).await?;
    show_the_rewritten_file(&store, &original, &token).await?;
    resolve_again(&provider, &endpoint, &token).await?;
    drop(dir);
    print(
        "Done; the temporary directory is removed. With a real login, try `claude-code-auth status`.",
    )?;
    Ok(())
}

/// Step 1: the loopback token endpoint.
async fn start_endpoint() -> Result<DemoEndpoint, Failure> {
    let endpoint = DemoEndpoint::start()
        .await
        .map_err(|e| broken(format!("starting the loopback token endpoint: {e}")))?;
    print(&format!(
        "1. Started a loopback token endpoint at {}\n   It behaves like the real one: JSON only, client id required, refresh tokens rotated\n   on every grant, a token family revoked when a spent refresh token comes back.\n",
        endpoint.url()
    ))?;
    Ok(endpoint)
}

/// Step 2: a credential file in a temporary directory, its access token expired; the
/// directory, the file's store, and what was written.
async fn write_expired_file(
    endpoint: &DemoEndpoint,
) -> Result<(tempfile::TempDir, FileCredentialStore, Value), Failure> {
    let (access_token, refresh_token) = endpoint.tokens();
    let dir = tempfile::Builder::new()
        .prefix("claude-code-auth-demo-")
        .tempdir()
        .map_err(|e| broken(format!("creating a temporary directory: {e}")))?;
    let path = dir.path().join(".credentials.json");
    let ten_minutes_ago = now_ms() - 10 * 60 * 1000;
    let original = json!({
        "claudeAiOauth": {
            "accessToken": access_token,
            "refreshToken": refresh_token,
            "expiresAt": ten_minutes_ago,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
        },
        "mcpOAuth": {"demo-server": {"accessToken": "mcp-demo-access", "expiresAt": ten_minutes_ago}},
    });
    let store = FileCredentialStore::with_path(&path);
    store.save_document(&original.to_string()).await?;
    print(&format!(
        "2. Wrote a credential file whose access token expired ten minutes ago\n   {} (mode {}):\n{}\n",
        path.display(),
        mode(&path),
        indent(&render::redacted_document(&original.to_string()))
    ))?;
    Ok((dir, store, original))
}

/// Step 3: the first header, which needs a refresh; the token it carries.
async fn resolve_through_the_component(
    provider: &ClaudeCodeOAuthProvider,
    endpoint: &DemoEndpoint,
) -> Result<String, Failure> {
    let header = provider.header_value().await?;
    let token = header
        .expose_secret()
        .strip_prefix("Bearer ")
        .ok_or_else(|| broken("the header is not a bearer token"))?
        .to_owned();
    if endpoint.grants() != 1 || endpoint.tokens().0 != token {
        return Err(broken(
            "the endpoint did not issue the token the component returned",
        ));
    }
    print(&format!(
        "3. Resolved through the sandboxed component (wasm32-wasip2, wasmtime):\n   Authorization: Bearer {}\n   The endpoint served {} refresh grant; the old refresh token is now spent.\n",
        render::fingerprint(&token),
        endpoint.grants()
    ))?;
    Ok(token)
}

/// Step 4: the file holds the rotated tokens and every other key of `original`.
async fn show_the_rewritten_file(
    store: &FileCredentialStore,
    original: &Value,
    token: &str,
) -> Result<(), Failure> {
    let rewritten = store
        .load_document()
        .await?
        .ok_or_else(|| broken("the credential file disappeared"))?;
    let after: Value =
        serde_json::from_str(&rewritten).map_err(|_| broken("the rewritten file is not JSON"))?;
    let oauth = &after["claudeAiOauth"];
    if oauth["accessToken"] != token
        || oauth["refreshToken"] == original["claudeAiOauth"]["refreshToken"]
        || after["mcpOAuth"] != original["mcpOAuth"]
        || oauth["rateLimitTier"] != original["claudeAiOauth"]["rateLimitTier"]
    {
        return Err(broken(
            "the rewritten file does not hold the rotated tokens and every other key",
        ));
    }
    print(&format!(
        "4. The file was rewritten atomically (mode {}); tokens rotated, every other key kept:\n{}\n",
        mode(store.path()),
        indent(&render::redacted_document(&rewritten))
    ))
}

/// Step 5: a fresh token is reused without a request.
async fn resolve_again(
    provider: &ClaudeCodeOAuthProvider,
    endpoint: &DemoEndpoint,
    token: &str,
) -> Result<(), Failure> {
    let again = provider.header_value().await?;
    if again.expose_secret().strip_prefix("Bearer ") != Some(token) || endpoint.grants() != 1 {
        return Err(broken("a fresh token was refreshed again"));
    }
    let status = provider.status().await?;
    print(&format!(
        "5. Resolved again: the fresh token was reused and nothing was sent (grants served: {}).\n   Status: valid until {}, subscription {}.\n",
        endpoint.grants(),
        status.expires_at().map_or_else(
            || "?".into(),
            |at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        ),
        status.subscription_type.as_deref().unwrap_or("?")
    ))
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("   {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}
