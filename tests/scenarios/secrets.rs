//! Secrets never leak: a full refresh cycle and its failure paths run with every `tracing` event
//! captured at trace level (ours, wasmtime's, everything), every error and `Debug` value met is
//! formatted, and no access or refresh token appears anywhere.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::{Scenario, config};
use claude_code_auth_testkit::loopback::{Reply, Response, TokenEndpoint};
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthProvider, CredentialStore, FileCredentialStore, RefreshMode,
};
use entelix_core::auth::CredentialProvider;
use serde_json::json;

/// Everything written by the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Format a value both ways an operator might print it.
fn both(value: &(impl std::fmt::Display + std::fmt::Debug)) -> String {
    format!("{value} {value:?}")
}

fn error_forms(error: ClaudeCodeAuthError) -> String {
    let shown = both(&error);
    let entelix = entelix_core::Error::from(error);
    format!("{shown} {}", both(&entelix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_appears_in_logs_errors_or_debug_output() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut printed: Vec<String> = Vec::new();
    let mut secrets: Vec<String> = Vec::new();

    // A refresh, a status, a forced refresh, the typed view of the file.
    let scenario = Scenario::fixture("expired");
    secrets.extend([
        scenario.oauth("accessToken"),
        scenario.oauth("refreshToken"),
    ]);
    let endpoint = scenario.endpoint().await;
    let store = FileCredentialStore::with_path(&scenario.path);
    let provider = ClaudeCodeOAuthProvider::with_config(store.clone(), config(&endpoint));
    printed.push(format!("{:?}", provider.resolve().await.unwrap()));
    secrets.extend([
        scenario.oauth("accessToken"),
        scenario.oauth("refreshToken"),
    ]);
    printed.push(format!("{:?}", provider.status().await.unwrap()));
    printed.push(format!(
        "{:?}",
        provider.refresh(RefreshMode::Force).await.unwrap()
    ));
    secrets.extend([
        scenario.oauth("accessToken"),
        scenario.oauth("refreshToken"),
    ]);
    let typed = store.load().await.unwrap().unwrap();
    printed.push(format!("{typed:?} {:?}", typed.claude_ai_oauth));
    printed.push(format!("{provider:?} {:?} {store:?}", provider.config()));
    printed.push(format!("{:?}", endpoint.requests()));
    printed.push(format!("{:?}", provider.access_token().await.unwrap()));
    let memory = entelix_auth_claude_code::MemoryCredentialStore::with_document(
        String::from_utf8(scenario.bytes()).unwrap(),
    );
    printed.push(format!("{memory:?}"));

    // An endpoint that echoes the refresh token in its error description.
    let current_refresh = scenario.oauth("refreshToken");
    endpoint.inject(Reply::Respond(Response::json(
        400,
        &json!({"error": "invalid_grant", "error_description": format!("refresh token {current_refresh} was revoked")}),
    )));
    printed.push(error_forms(
        provider.refresh(RefreshMode::Force).await.unwrap_err(),
    ));

    // A nested error quoting the token, a malformed success, an unknown token.
    endpoint.inject(Reply::Respond(Response::json(
        400,
        &json!({"type": "error", "error": {"type": "invalid_request_error", "message": format!("bad token {current_refresh}")}}),
    )));
    printed.push(error_forms(
        provider.refresh(RefreshMode::Force).await.unwrap_err(),
    ));
    endpoint.inject(Reply::Respond(Response::json(
        200,
        &json!({"access_token": [current_refresh], "expires_in": "soon"}),
    )));
    printed.push(error_forms(
        provider.refresh(RefreshMode::Force).await.unwrap_err(),
    ));
    let stranger = TokenEndpoint::start().await.unwrap();
    let lost = ClaudeCodeOAuthProvider::with_config(store.clone(), config(&stranger));
    printed.push(error_forms(
        lost.refresh(RefreshMode::Force).await.unwrap_err(),
    ));

    // A file whose expiry holds a token: the parser's own message would quote it.
    let mut doc = scenario.json();
    doc["claudeAiOauth"]["expiresAt"] = current_refresh.clone().into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    printed.push(error_forms(store.load().await.unwrap_err()));
    printed.push(error_forms(provider.header_value().await.unwrap_err()));

    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("component call finished"),
        "trace capture works:\n{logs}"
    );
    assert!(
        logs.lines().count() > 20,
        "trace level captured wasmtime too:\n{logs}"
    );
    secrets.sort();
    secrets.dedup();
    assert!(
        secrets.len() >= 6,
        "{} distinct tokens were in play",
        secrets.len()
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a token reached the logs");
        for text in &printed {
            assert!(
                !text.contains(secret.as_str()),
                "a token was printed: {text}"
            );
        }
    }
}
