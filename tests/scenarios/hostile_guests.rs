//! A sandbox worth the name: a component that loops, hoards memory, calls a host it may not,
//! panics, returns garbage or prints secrets gets a typed error within a bound; the process
//! stays healthy, and the next call on the same provider, with the real component, succeeds.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claude_code_auth_testkit::loopback::{Handler, LoopbackServer, Reply, Response};
// The test-only component from `tests/hostile-guest/`, built by the testkit.
use crate::support::{Scenario, config};
use claude_code_auth_testkit::components::HOSTILE;
use entelix_auth_claude_code::defaults::{DEFAULT_FUEL, DEFAULT_MEMORY_LIMIT};
use entelix_auth_claude_code::{
    ClaudeCodeAuthError, ClaudeCodeOAuthProvider, FileCredentialStore, ProviderComponent,
};
use secrecy::ExposeSecret;

async fn hostile() -> ProviderComponent {
    tokio::task::spawn_blocking(|| ProviderComponent::compile(HOSTILE))
        .await
        .unwrap()
        .unwrap()
}

/// A server that only records who called it: where an exfiltration would land.
async fn bystander() -> (LoopbackServer, Arc<Mutex<usize>>) {
    let hits = Arc::new(Mutex::new(0));
    let counter = hits.clone();
    let handler: Handler = Arc::new(move |_| {
        *counter.lock().unwrap() += 1;
        Reply::Respond(Response::raw(200, "text/plain", "thanks"))
    });
    (LoopbackServer::start(handler).await.unwrap(), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_is_contained_and_the_real_component_still_works() {
    let scenario = Scenario::fixture("expired");
    let endpoint = scenario.endpoint().await;
    let (bystander, hits) = bystander().await;
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&scenario.path),
        config(&endpoint),
    );
    let misbehaving = hostile().await;
    let exfiltrate = format!("exfiltrate:{}/steal", bystander.base_url());
    // (the misbehaviour, what the error must say, bound)
    let cases: Vec<(&str, String, Duration)> = vec![
        (
            "loop",
            format!("used up its CPU budget ({DEFAULT_FUEL} units of fuel)"),
            Duration::from_secs(30),
        ),
        (
            "grow",
            format!(
                "exceeded its memory limit of {} MiB",
                DEFAULT_MEMORY_LIMIT >> 20
            ),
            Duration::from_secs(10),
        ),
        (
            &exfiltrate,
            "which is not an allowed endpoint".into(),
            Duration::from_secs(10),
        ),
        ("panic", "crashed".into(), Duration::from_secs(10)),
        (
            "garbage",
            "not visible ASCII".into(),
            Duration::from_secs(10),
        ),
    ];
    for (how, says, bound) in &cases {
        // Only the component differs: same store, same configuration, same in-process lock.
        let hostile = provider.clone().with_component(misbehaving.clone());
        let mut doc = scenario.json();
        doc["misbehave"] = (*how).into();
        std::fs::write(&scenario.path, doc.to_string()).unwrap();
        let started = Instant::now();
        let result = tokio::time::timeout(*bound, hostile.header_value()).await;
        let took = started.elapsed();
        let error = result
            .unwrap_or_else(|_| panic!("{how}: no answer within {bound:?}"))
            .expect_err(how);
        assert!(error.to_string().contains(says.as_str()), "{how}: {error}");
        match *how {
            h if h.starts_with("exfiltrate") => {
                assert!(
                    matches!(error, ClaudeCodeAuthError::RequestDenied { .. }),
                    "{error}"
                );
            }
            _ => assert!(
                matches!(error, ClaudeCodeAuthError::Sandbox { .. }),
                "{error}"
            ),
        }
        eprintln!("{how}: {error} (after {took:?})");

        // The same provider, with the real component, is unharmed.
        let header = provider.header_value().await.unwrap();
        assert_eq!(
            header.expose_secret(),
            format!("Bearer {}", scenario.oauth("accessToken"))
        );
    }
    assert_eq!(*hits.lock().unwrap(), 0, "nothing reached the bystander");
    assert_eq!(
        endpoint.grants_served(),
        1,
        "one refresh, by the real component"
    );
}

/// Run in a child process by [`the_components_output_never_reaches_the_terminal`]: a component
/// that prints token-looking lines to stdout and stderr, then answers normally.
#[tokio::test]
#[ignore = "run in a child process by the_components_output_never_reaches_the_terminal"]
async fn shouting_component() {
    let scenario = Scenario::fixture("fresh");
    let mut doc = scenario.json();
    doc["misbehave"] = "shout".into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let endpoint = scenario.endpoint().await;
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&scenario.path),
        config(&endpoint),
    )
    .with_component(hostile().await);
    let header = provider.header_value().await.unwrap();
    assert_eq!(header.expose_secret(), "Bearer hostile-but-quiet");
}

#[test]
fn the_components_output_never_reaches_the_terminal() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "hostile_guests::shouting_component",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed"),
        "the child ran the component: {stdout}"
    );
    assert!(
        !stdout.contains("SHOUTED") && !stderr.contains("SHOUTED"),
        "{stdout}\n{stderr}"
    );
}

#[tokio::test]
async fn a_component_that_never_returns_meets_the_call_deadline() {
    let scenario = Scenario::fixture("fresh");
    let mut doc = scenario.json();
    doc["misbehave"] = "sleep".into();
    std::fs::write(&scenario.path, doc.to_string()).unwrap();
    let endpoint = scenario.endpoint().await;
    // The deadline is the lock bound plus the refresh bound plus 5 s.
    let config = config(&endpoint)
        .with_lock_timeout(Duration::from_secs(1))
        .with_refresh_timeout(Duration::from_secs(1));
    let provider = ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&scenario.path),
        config,
    );
    let sleeper = provider.clone().with_component(hostile().await);
    let started = Instant::now();
    let error = sleeper.header_value().await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, ClaudeCodeAuthError::TimedOut { after } if after == Duration::from_secs(7)),
        "{error}"
    );
    // Ended by the deadline: not before it, and not by anything much later (the slack is for a
    // loaded CI machine, not a speed goal).
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // The real component, same provider, right after.
    let header = provider.header_value().await.unwrap();
    assert_eq!(
        header.expose_secret(),
        "Bearer sk-ant-oat01-fixture-fresh-access"
    );
}

/// `bytes` with every `from` replaced by `to` (same length, so the component stays well formed).
fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = bytes.to_vec();
    let mut hits = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0, "nothing to patch");
    out
}

#[tokio::test]
async fn a_component_for_another_contract_version_is_refused_at_load() {
    let cases = [
        ("credential-store@0.3.0", "credential-store@9.1.0"),
        ("provider@0.3.0", "provider@0.9.0"),
        // A component built for the previous contract, whose config had no answer cap.
        ("provider@0.3.0", "provider@0.2.0"),
    ];
    for (from, to) in cases {
        let wasm = patched(entelix_auth_claude_code::COMPONENT_WASM, from, to);
        let error = tokio::task::spawn_blocking(move || ProviderComponent::compile(&wasm))
            .await
            .unwrap()
            .unwrap_err();
        let message = error.to_string();
        let theirs = format!("entelix:claude-code-auth@{}", to.split_once('@').unwrap().1);
        assert!(
            message.contains(&format!("the component was built for {theirs}"))
                && message.contains("this host speaks entelix:claude-code-auth@0.3.0"),
            "{message}"
        );
    }
}
