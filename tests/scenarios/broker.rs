//! `claude-code-auth serve`, the broker, as real processes: it keeps the login (here a credential
//! file and the loopback token endpoint, which rotates on every grant and revokes a reused token's
//! whole login), writes mirrors without a refresh token, and answers on its Unix socket; clients
//! are `claude-code-auth --broker PATH …` processes and raw HTTP on the socket. What is checked:
//! no answer and no mirror ever carries a refresh token; one grant for any number of callers;
//! another uid refused; malformed, oversized and slow requests answered or dropped without
//! holding anyone else; a kill or a stop mid-refresh loses nothing.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use claude_code_auth_testkit::loopback::TokenEndpoint;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Scenario, cli_command, expired_login, finish, text};

/// A broker process and where it answers.
pub(crate) struct Broker {
    pub(crate) child: Child,
    pub(crate) socket: PathBuf,
    pub(crate) mirror: PathBuf,
    pub(crate) ready: PathBuf,
}

impl Broker {
    /// `serve` for `scenario`'s credential file against `endpoint`, with a mirror and a socket
    /// in `dir`, and `extra` arguments; waits until it is ready.
    pub(crate) fn start(
        scenario: &Scenario,
        endpoint: &TokenEndpoint,
        dir: &Path,
        extra: &[&str],
    ) -> Self {
        let mut broker = Self::spawn(scenario, endpoint, dir, extra, |_| {});
        broker.until_ready();
        broker
    }

    /// The same, not waiting; `adjust` edits the command first.
    pub(crate) fn spawn(
        scenario: &Scenario,
        endpoint: &TokenEndpoint,
        dir: &Path,
        extra: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Self {
        let socket = dir.join("broker.sock");
        let mirror = dir.join("mirror");
        let ready = dir.join("ready");
        let mut command = cli_command(scenario.dir());
        command
            .arg("serve")
            .arg("--credentials")
            .arg(&scenario.path)
            .args(["--token-url", &endpoint.url()])
            .arg("--mirror")
            .arg(&mirror)
            .arg("--socket")
            .arg(&socket)
            .arg("--ready-file")
            .arg(&ready)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut command);
        Self {
            child: command.spawn().unwrap(),
            socket,
            mirror,
            ready,
        }
    }

    pub(crate) fn until_ready(&mut self) {
        let started = Instant::now();
        while !self.ready.exists() {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                let _ = self
                    .child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                panic!("the broker ended ({status}) before it was ready: {stderr}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the broker was never ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The mirror's document.
    pub(crate) fn mirrored(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.mirror.join(".credentials.json")).unwrap())
            .unwrap()
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `claude-code-auth --broker SOCKET <args>`.
fn ask(socket: &Path, home: &Path, args: &[&str]) -> Command {
    let mut command = cli_command(home);
    command
        .arg("--broker")
        .arg(socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// One raw exchange on the socket: `request` sent as is, the whole answer read back (the
/// broker closes after one). `None` when the broker closed without answering.
pub(crate) async fn raw(socket: &Path, request: &[u8]) -> Option<String> {
    let mut stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    stream.write_all(request).await.ok()?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    (!answer.is_empty()).then(|| String::from_utf8_lossy(&answer).into_owned())
}

/// The status code and JSON body of an answer.
fn parsed(answer: &str) -> (u16, Value) {
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post_refresh(digest: &str) -> Vec<u8> {
    let body = format!(r#"{{"rejected":"{digest}"}}"#);
    format!(
        "POST /v1/refresh HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The broker refreshes the expired login before it is ready, mirrors it without the refresh
/// token, and answers token, header and status — the same token — on its socket, through our
/// CLI and raw; no answer carries a refresh token; `SIGTERM` ends it with exit 0, its socket and
/// ready file gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_hands_out_access_tokens_only() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&scenario, &endpoint, dir.path(), &[]);
    assert_eq!(endpoint.grants_served(), 1, "refreshed before it was ready");
    let stored = scenario.json();
    let refresh = stored["claudeAiOauth"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let access = stored["claudeAiOauth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let mirrored = broker.mirrored();
    let oauth = mirrored["claudeAiOauth"].as_object().unwrap();
    let keys: Vec<&str> = oauth.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "accessToken",
            "expiresAt",
            "scopes",
            "subscriptionType",
            "rateLimitTier"
        ]
    );
    assert_eq!(oauth["accessToken"], access.as_str());
    assert_eq!(oauth["expiresAt"], stored["claudeAiOauth"]["expiresAt"]);
    assert_eq!(
        oauth["subscriptionType"],
        stored["claudeAiOauth"]["subscriptionType"]
    );
    assert_eq!(
        mirrored.as_object().unwrap().len(),
        1,
        "nothing but the login"
    );

    let home = dir.path();
    let token = finish(ask(&broker.socket, home, &["token"]).spawn().unwrap()).await;
    assert!(token.status.success(), "{}", text(&token).1);
    assert_eq!(text(&token).0.trim(), access);
    let header = finish(ask(&broker.socket, home, &["header"]).spawn().unwrap()).await;
    assert_eq!(
        text(&header).0.trim(),
        format!("Authorization: Bearer {access}")
    );
    let status = finish(
        ask(&broker.socket, home, &["status", "--json"])
            .spawn()
            .unwrap(),
    )
    .await;
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (status["loggedIn"].clone(), status["source"].clone()),
        (true.into(), "broker".into())
    );

    for path in ["/v1/token", "/v1/header", "/v1/status"] {
        let answer = raw(
            &broker.socket,
            format!("GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let (code, _) = parsed(&answer);
        assert_eq!(code, 200, "{path}: {answer}");
        assert!(
            !answer.contains(&refresh) && !answer.contains("sk-ant-ort"),
            "{path}"
        );
        assert!(answer.contains("no-store"), "{path}: {answer}");
    }
    assert!(
        !std::fs::read_to_string(broker.mirror.join(".credentials.json"))
            .unwrap()
            .contains("sk-ant-ort")
    );

    let mut broker = broker;
    broker.signal("TERM");
    let status = broker.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!broker.socket.exists() && !broker.ready.exists());
    assert_eq!(endpoint.grants_served(), 1);
}

/// 200 callers at once tell the broker the same token was rejected: one refresh, and every one
/// of them gets the new token; the mirror holds it too. A caller naming a token that was
/// already replaced gets the current one without a refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_rejections_of_one_token_refresh_once() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&scenario, &endpoint, dir.path(), &[]);
    let first = scenario.oauth("accessToken");
    let rejected = digest(&first);
    let asks: Vec<_> = (0..200)
        .map(|_| {
            let socket = broker.socket.clone();
            let request = post_refresh(&rejected);
            tokio::spawn(async move { raw(&socket, &request).await })
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    let mut refreshed = 0;
    for ask in asks {
        let answer = ask.await.unwrap().expect("an answer");
        let (code, body) = parsed(&answer);
        assert_eq!(code, 200, "{answer}");
        tokens.insert(body["accessToken"].as_str().unwrap().to_owned());
        refreshed += usize::from(body["refreshed"] == true);
    }
    assert_eq!(
        endpoint.grants_served(),
        2,
        "the start's refresh and one more"
    );
    assert_eq!(refreshed, 1);
    assert_eq!(tokens.len(), 1);
    let second = tokens.into_iter().next().unwrap();
    assert_ne!(second, first);
    assert!(endpoint.accepts_access_token(&second));
    assert_eq!(
        broker.mirrored()["claudeAiOauth"]["accessToken"],
        second.as_str()
    );
    assert_eq!(scenario.oauth("accessToken"), second);

    // Through our CLI: `refresh --force` replaces the current token once.
    let out = finish(
        ask(&broker.socket, dir.path(), &["refresh", "--force"])
            .spawn()
            .unwrap(),
    )
    .await;
    assert!(text(&out).0.starts_with("refreshed"), "{:?}", text(&out));
    assert_eq!(endpoint.grants_served(), 3);
    assert_eq!(endpoint.revoked_families(), 0);
}

/// Who may ask and what is answered: another uid is refused (403) before anything else, unless
/// allowed; a malformed request, an oversized head, an oversized body, a wrong method, an
/// unknown path and a digest that is not one get a 4xx and nothing else; a client that sends
/// half a request and stalls is dropped, and others are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_refuses_strangers_and_bad_requests_without_holding_anyone() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    // Group 65534 (nogroup) may connect; only this user is allowed to ask.
    let broker = Broker::start(
        &scenario,
        &endpoint,
        dir.path(),
        &["--socket-group", "65534"],
    );
    // The socket's directory must let nobody reach it.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let meta = std::fs::metadata(&broker.socket).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o660
    );
    let as_nobody = |command: &mut Command| {
        command.uid(65534).gid(65534);
    };
    let mut stranger = ask(&broker.socket, Path::new("/tmp"), &["token"]);
    as_nobody(&mut stranger);
    let out = finish(stranger.spawn().unwrap()).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("uid 65534 may not use this broker"),
        "{stderr}"
    );

    let cases: [(&str, Vec<u8>, u16); 8] = [
        ("garbage", b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (
            "an oversized head",
            format!(
                "GET /v1/token HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(20_000)
            )
            .into_bytes(),
            431,
        ),
        (
            "an oversized body",
            format!(
                "POST /v1/refresh HTTP/1.1\r\nContent-Length: 5000\r\n\r\n{}",
                "a".repeat(5000)
            )
            .into_bytes(),
            413,
        ),
        (
            "a wrong method",
            b"DELETE /v1/token HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
            405,
        ),
        (
            "an unknown path",
            b"GET /v1/refresh-token HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
            404,
        ),
        (
            "not a digest",
            post_refresh("sk-ant-oat01-not-a-digest"),
            400,
        ),
        (
            "a body that never comes",
            b"POST /v1/refresh HTTP/1.1\r\nContent-Length: 40\r\n\r\n{".to_vec(),
            408,
        ),
        (
            "unknown fields",
            {
                let body = r#"{"rejected":"aa","refreshToken":true}"#;
                format!(
                    "POST /v1/refresh HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            },
            400,
        ),
    ];
    for (what, request, want) in cases {
        let answer = raw(&broker.socket, &request).await;
        let code = answer.as_deref().map_or(0, |a| parsed(a).0);
        assert_eq!(code, want, "{what}: {answer:?}");
        assert!(answer.is_none_or(|a| !a.contains("sk-ant-o")), "{what}");
    }

    // Half a request, then nothing: others are served at once, and it is dropped.
    let mut stalled = tokio::net::UnixStream::connect(&broker.socket)
        .await
        .unwrap();
    stalled
        .write_all(b"GET /v1/token HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = raw(&broker.socket, b"GET /v1/token HTTP/1.1\r\nHost: b\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(parsed(&answer).0, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut rest = Vec::new();
    let dropped =
        tokio::time::timeout(Duration::from_secs(15), stalled.read_to_end(&mut rest)).await;
    assert!(dropped.is_ok(), "a stalled client was waited on");
    assert!(!String::from_utf8_lossy(&rest).contains("sk-ant-o"));
    assert_eq!(endpoint.grants_served(), 1);
    drop(broker);

    // Allowed, the same user is served.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let broker = Broker::start(
        &scenario,
        &endpoint,
        dir.path(),
        &["--socket-group", "65534", "--allow-uid", "65534"],
    );
    let mut allowed = ask(&broker.socket, Path::new("/tmp"), &["token"]);
    as_nobody(&mut allowed);
    let out = finish(allowed.spawn().unwrap()).await;
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0.trim(), scenario.oauth("accessToken"));
}

/// `kill -9` of the broker while it writes the rotated login (held in the fsync by the fault
/// shim): the next broker hands the answer over, mirrors the login, and presents no spent
/// token. `SIGTERM` while a refresh's answer is on its way: the refresh completes, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_or_stopped_mid_refresh_loses_nothing() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let mark = dir.path().join("paused");
    let mut killed = Broker::spawn(&scenario, &endpoint, dir.path(), &[], |command| {
        crate::faults::paused_at(command, "fsync", &mark, 60_000);
    });
    crate::faults::until_paused(&mark, "reached the fsync").await;
    killed.child.kill().unwrap();
    assert_eq!(killed.child.wait().unwrap().signal(), Some(9));
    assert_eq!(endpoint.grants_served(), 1);
    let broker = Broker::start(&scenario, &endpoint, dir.path(), &[]);
    assert_eq!(
        endpoint.grants_served(),
        1,
        "the kept answer was handed over"
    );
    assert_eq!(endpoint.revoked_families(), 0);
    let mirrored = broker.mirrored()["claudeAiOauth"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(endpoint.accepts_access_token(&mirrored));
    assert!(endpoint.refresh_token_is_live(&scenario.oauth("refreshToken")));
    drop(broker);

    // SIGTERM with an answer on its way: it completes, the broker exits 0.
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    endpoint.set_latency(Duration::from_millis(1500)..Duration::from_millis(1501));
    let dir = tempfile::tempdir().unwrap();
    let mut stopped = Broker::spawn(&scenario, &endpoint, dir.path(), &[], |_| {});
    crate::support::until_requests(&endpoint, 1).await;
    stopped.signal("TERM");
    let status = stopped.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(endpoint.grants_served(), 1);
    assert!(endpoint.refresh_token_is_live(&scenario.oauth("refreshToken")));
    assert!(!stopped.socket.exists());
}

/// `--once` refreshes if needed, writes the mirrors and exits; a mirror that is a symlink or
/// writable by others is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_and_refused_mirrors() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("m");
    let out = cli_command(scenario.dir())
        .args(["serve", "--once", "--credentials"])
        .arg(&scenario.path)
        .args(["--token-url", &endpoint.url(), "--mirror"])
        .arg(&mirror)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let mirrored: Value =
        serde_json::from_slice(&std::fs::read(mirror.join(".credentials.json")).unwrap()).unwrap();
    assert_eq!(
        mirrored["claudeAiOauth"]["accessToken"],
        scenario.oauth("accessToken")
    );
    assert_eq!(endpoint.grants_served(), 1);

    let real = dir.path().join("open");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&mirror, &link).unwrap();
    for (bad, says) in [(&real, "writable by others"), (&link, "symlink")] {
        let endpoint = TokenEndpoint::start().await.unwrap();
        let scenario = expired_login(&endpoint);
        let out = cli_command(scenario.dir())
            .args(["serve", "--once", "--credentials"])
            .arg(&scenario.path)
            .args(["--token-url", &endpoint.url(), "--mirror"])
            .arg(bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(5), "{}", text(&out).1);
        assert!(text(&out).1.contains(says), "{}", text(&out).1);
        assert!(endpoint.requests().is_empty());
    }
}

/// Inside a sandbox, an entelix application uses `BrokerProvider`: `DirectTransport` sends with
/// the broker's token; a token revoked early gets a 401, which `RefreshOnUnauthorized` answers
/// with the broker's `POST /v1/refresh` and one retry; the application never sees a refresh
/// token (it has nowhere to keep one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entelix_application_in_a_sandbox_uses_the_broker() {
    use entelix_auth_claude_code::{
        BrokerProvider, CLAUDE_CODE_BETA, OAUTH_BETA, RefreshOnUnauthorized,
    };
    use entelix_core::ExecutionContext;
    use entelix_core::codecs::{AnthropicMessagesCodec, Codec};
    use entelix_core::transports::{DirectTransport, Transport};

    entelix_core::install_default_tls();
    let endpoint = TokenEndpoint::start().await.unwrap();
    let api =
        claude_code_auth_testkit::loopback::MessagesApi::start(endpoint.access_token_checker())
            .await
            .unwrap();
    let scenario = expired_login(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&scenario, &endpoint, dir.path(), &[]);
    let provider = BrokerProvider::new(&broker.socket);
    let direct =
        DirectTransport::new(api.base_url(), std::sync::Arc::new(provider.clone())).unwrap();
    let transport = RefreshOnUnauthorized::new(direct, provider);
    let encoded = AnthropicMessagesCodec::new()
        .encode(&crate::support::messages_request(&[
            CLAUDE_CODE_BETA,
            OAUTH_BETA,
        ]))
        .unwrap();
    let ctx = ExecutionContext::new();
    assert_eq!(
        transport.send(encoded.clone(), &ctx).await.unwrap().status,
        200
    );
    let first = scenario.oauth("accessToken");
    let bearer = |request: &claude_code_auth_testkit::loopback::Request| {
        request.header("authorization").map(str::to_owned)
    };
    assert_eq!(
        bearer(api.requests().last().unwrap()),
        Some(format!("Bearer {first}"))
    );
    endpoint.revoke_access_token(&first);
    let response = transport.send(encoded.clone(), &ctx).await.unwrap();
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let second = scenario.oauth("accessToken");
    assert_ne!(second, first);
    assert_eq!(
        bearer(api.requests().last().unwrap()),
        Some(format!("Bearer {second}"))
    );
    assert_eq!(endpoint.grants_served(), 2);
    // Kept in memory: the next request asks the broker nothing new and goes through.
    assert_eq!(transport.send(encoded, &ctx).await.unwrap().status, 200);
    assert_eq!(endpoint.grants_served(), 2);
    assert_eq!(endpoint.revoked_families(), 0);
}
