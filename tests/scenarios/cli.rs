//! The `claude-code-auth` binary as a user runs it: real processes, real files, the real clock,
//! the loopback token endpoint.

use crate::support::{EXIT_EXPIRED, EXIT_MISSING, EXIT_REFUSED, EXIT_UNREACHABLE};
use crate::support::{Scenario, cli, text};
use claude_code_auth_testkit::loopback::{Reply, TokenEndpoint};
use serde_json::Value;

/// Both tokens of the file, which no command but `token` and `header` may print.
fn tokens(scenario: &Scenario) -> [String; 2] {
    [
        scenario.oauth("accessToken"),
        scenario.oauth("refreshToken"),
    ]
}

fn assert_no_token(output: &str, tokens: &[String]) {
    for token in tokens.iter().filter(|t| !t.is_empty()) {
        assert!(
            !output.contains(token.as_str()),
            "a token was printed:\n{output}"
        );
    }
}

#[tokio::test]
async fn demo_runs_with_no_account_and_prints_no_token() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(home.path(), &["demo"]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("served 1 refresh grant"), "{stdout}");
    assert!(stdout.contains("mode 0600"), "{stdout}");
    assert!(
        !stdout.contains("sk-ant-") && !stderr.contains("sk-ant-"),
        "{stdout}"
    );
}

#[tokio::test]
async fn status_describes_the_credential_without_the_token() {
    let scenario = Scenario::fixture_now("fresh");
    let path = scenario.path.to_str().unwrap();
    let output = cli(scenario.dir(), &["status", "--credentials", path]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("valid until") && stdout.contains("(in 59m)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subscription:  max") && stdout.contains("user:inference user:profile"),
        "{stdout}"
    );
    assert_no_token(&stdout, &tokens(&scenario));

    let output = cli(scenario.dir(), &["status", "--json", "--credentials", path]).await;
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json["expiresAt"],
        scenario.json()["claudeAiOauth"]["expiresAt"]
    );
    assert_eq!(
        (json["expired"].as_bool(), json["hasRefreshToken"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(json["location"], path);
    assert_no_token(&text(&output).0, &tokens(&scenario));
}

#[tokio::test]
async fn status_finds_the_file_through_claude_config_dir() {
    let scenario = Scenario::fixture_now("fresh");
    let home = tempfile::tempdir().unwrap();
    let mut command = crate::support::cli_command(home.path());
    command
        .env("CLAUDE_CONFIG_DIR", scenario.dir())
        .arg("status");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains(&scenario.path.display().to_string()),
        "{stdout}"
    );
}

#[tokio::test]
async fn token_refreshes_an_expired_credential_and_prints_only_the_token() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    let path = scenario.path.to_str().unwrap();
    let output = cli(
        scenario.dir(),
        &[
            "token",
            "--credentials",
            path,
            "--token-url",
            &endpoint.url(),
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, format!("{}\n", scenario.oauth("accessToken")));
    assert!(stderr.is_empty(), "{stderr}");
    assert!(endpoint.accepts_access_token(stdout.trim()));
    assert_eq!(endpoint.grants_served(), 1);

    let output = cli(
        scenario.dir(),
        &[
            "header",
            "--credentials",
            path,
            "--token-url",
            &endpoint.url(),
        ],
    )
    .await;
    assert_eq!(
        text(&output).0,
        format!("Authorization: Bearer {}\n", scenario.oauth("accessToken"))
    );
    assert_eq!(endpoint.grants_served(), 1, "the fresh token is reused");
}

#[tokio::test]
async fn refresh_only_when_needed_unless_forced() {
    let scenario = Scenario::fixture_now("fresh");
    let endpoint = scenario.endpoint().await;
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    let output = cli(
        scenario.dir(),
        &["refresh", "--credentials", path, "--token-url", &url],
    )
    .await;
    let (stdout, _) = text(&output);
    assert!(
        output.status.success() && stdout.starts_with("still fresh"),
        "{stdout}"
    );
    assert_eq!(endpoint.grants_served(), 0);

    let before = tokens(&scenario);
    let output = cli(
        scenario.dir(),
        &[
            "refresh",
            "--force",
            "--credentials",
            path,
            "--token-url",
            &url,
        ],
    )
    .await;
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success() && stdout.starts_with("refreshed"),
        "{stdout}{stderr}"
    );
    assert_eq!(endpoint.grants_served(), 1);
    assert_no_token(&stdout, &before);
    assert_no_token(&stdout, &tokens(&scenario));
}

#[tokio::test]
async fn errors_are_one_line_on_stderr_with_a_meaningful_exit_code() {
    let scenario = Scenario::empty();
    let path = scenario.path.to_str().unwrap();
    let output = cli(scenario.dir(), &["token", "--credentials", path]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_MISSING));
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("claude login"),
        "{stderr}"
    );

    let scenario = Scenario::fixture_now("expired");
    let stranger = TokenEndpoint::start().await.unwrap();
    let path = scenario.path.to_str().unwrap();
    let before = scenario.bytes();
    let token = async |url: &str| {
        let args = ["token", "--credentials", path, "--token-url", url];
        cli(scenario.dir(), &args).await
    };
    let output = token(&stranger.url()).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_EXPIRED), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("invalid_grant") && stderr.contains("claude login"),
        "{stderr}"
    );
    assert_no_token(&stderr, &tokens(&scenario));
    assert_eq!(scenario.bytes(), before);

    // Nobody listens: retry later.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/oauth/token", closed.local_addr().unwrap());
    drop(closed);
    let output = token(&url).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_UNREACHABLE), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.contains("connection refused"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(scenario.bytes(), before);

    // The answer cut off by a reset: one line, ours, without the HTTP stack's own warning too
    // (wasmtime-wasi-http logs the debug text of every failed connection).
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.accept_refresh_token(&scenario.oauth("refreshToken"));
    // Every attempt (the refresh retries a failed connection) is cut off alike.
    for _ in 0..4 {
        endpoint.inject(Reply::ResetAfter(
            b"HTTP/1.1 200 OK\r\ncontent-length: 200\r\n\r\n{\"access_tok".to_vec(),
        ));
    }
    let output = token(&endpoint.url()).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_UNREACHABLE), "{stderr}");
    assert!(
        stdout.is_empty() && stderr.starts_with("error: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(scenario.bytes(), before);
}

#[tokio::test]
async fn bad_usage_is_exit_code_2() {
    let home = tempfile::tempdir().unwrap();
    let output = cli(home.path(), &["status", "--no-such-flag"]).await;
    assert_eq!(output.status.code(), Some(2));
    let output = cli(home.path(), &[]).await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn a_token_in_claude_code_oauth_token_is_used_as_it_is() {
    let home = tempfile::tempdir().unwrap();
    let token = "sk-ant-oat01-long-lived-setup-token";
    let run = |args: &'static [&'static str]| {
        let mut command = crate::support::cli_command(home.path());
        command.env("CLAUDE_CODE_OAUTH_TOKEN", token).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    // No credential file anywhere: the environment answers.
    let output = run(&["token"]).await.unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(text(&output).0, format!("{token}\n"));

    let output = run(&["status"]).await.unwrap();
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains("source:        env: environment variable CLAUDE_CODE_OAUTH_TOKEN"),
        "{stdout}"
    );
    assert!(
        stdout.contains("a long-lived token") && stdout.contains("refresh token: absent"),
        "{stdout}"
    );
    assert_no_token(&stdout, &[token.to_owned()]);

    let output = run(&["status", "--json"]).await.unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (
            json["source"].as_str(),
            json["expired"].as_bool(),
            json["needsRefresh"].as_bool()
        ),
        (Some("env"), Some(false), Some(false))
    );

    let output = run(&["refresh"]).await.unwrap();
    assert!(
        text(&output).0.starts_with("still fresh"),
        "{}",
        text(&output).0
    );

    // Forced, it says why it cannot be refreshed — not that it "has expired".
    let output = run(&["refresh", "--force"]).await.unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("CLAUDE_CODE_OAUTH_TOKEN")
            && stderr.contains("cannot be refreshed")
            && !stderr.contains("expired"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_explicit_credentials_file_wins_over_the_environment() {
    let scenario = Scenario::fixture_now("fresh");
    let mut command = crate::support::cli_command(scenario.dir());
    command
        .env("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-from-env")
        .args(["token", "--credentials", scenario.path.to_str().unwrap()]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(text(&output).0.trim(), scenario.oauth("accessToken"));
}

/// The `claude` CLI's logged-out shape: "not logged in", exit 4, from every command; nothing is
/// sent and nothing written.
#[tokio::test]
async fn the_clis_logged_out_shape_is_not_logged_in() {
    let scenario = Scenario::fixture_now("logged-out");
    let endpoint = scenario.endpoint().await;
    let before = scenario.bytes();
    let path = scenario.path.to_str().unwrap();
    let url = endpoint.url();
    for command in [
        &["token"][..],
        &["header"],
        &["refresh"],
        &["refresh", "--force"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--credentials", path, "--token-url", &url]);
        let output = cli(scenario.dir(), &args).await;
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_EXPIRED),
            "{command:?}: {stderr}"
        );
        assert!(stdout.is_empty(), "{command:?}: {stdout}");
        assert!(
            stderr.contains("not logged in") && stderr.contains("run `claude login`"),
            "{command:?}: {stderr}"
        );
    }
    let output = cli(scenario.dir(), &["status", "--credentials", path]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_EXPIRED));
    assert!(stdout.contains("logged in:     no"), "{stdout}");
    assert!(stderr.contains("run `claude login`"), "{stderr}");
    let output = cli(scenario.dir(), &["status", "--json", "--credentials", path]).await;
    assert_eq!(output.status.code(), Some(EXIT_EXPIRED));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["loggedIn"], false);
    assert!(endpoint.requests().is_empty());
    assert_eq!(scenario.bytes(), before);
}

/// The login's hard deadline (`refreshTokenExpiresAt`): shown by `status`, and a one-line
/// warning on stderr from `token`, `header` and `refresh` in its last three days; stdout stays
/// what scripts read.
#[tokio::test]
async fn the_login_deadline_is_shown_and_warned_about() {
    const DAY: i64 = 86_400_000;
    for (days_left, warned) in [(10, false), (2, true)] {
        let scenario = Scenario::fixture_now("fresh");
        let mut doc = scenario.json();
        let deadline = crate::support::real_now_ms() + days_left * DAY + 3_600_000;
        doc["claudeAiOauth"]["refreshTokenExpiresAt"] = deadline.into();
        std::fs::write(&scenario.path, doc.to_string()).unwrap();
        let path = scenario.path.to_str().unwrap();

        let output = cli(scenario.dir(), &["status", "--credentials", path]).await;
        let (stdout, _) = text(&output);
        assert!(output.status.success());
        assert!(
            stdout.contains(&format!("{days_left} days left")),
            "{stdout}"
        );
        let output = cli(scenario.dir(), &["status", "--json", "--credentials", path]).await;
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["loginExpiresAt"], deadline);
        assert_eq!(json["loggedIn"], true);

        for command in ["token", "header", "refresh"] {
            let output = cli(scenario.dir(), &[command, "--credentials", path]).await;
            let (stdout, stderr) = text(&output);
            assert!(output.status.success(), "{command}: {stderr}");
            assert_eq!(stdout.lines().count(), 1, "{command}: {stdout}");
            if warned {
                assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
                assert!(
                    stderr.starts_with("warning: ") && stderr.contains("claude login"),
                    "{command}: {stderr}"
                );
            } else {
                assert!(stderr.is_empty(), "{command}: {stderr}");
            }
        }
    }
}

/// A token written to a closed standard output went nowhere while the command said it
/// succeeded (Rust takes a closed stdout for a sink); it is an error, as `/dev/full` is.
#[tokio::test]
async fn a_token_that_cannot_be_printed_is_an_error() {
    let scenario = Scenario::fixture_now("fresh");
    let path = scenario.path.to_str().unwrap().to_owned();
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "exec \"$0\" token --credentials \"$1\" >&-"])
        .arg(crate::support::cli_binary())
        .arg(&path)
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN");
    crate::support::warm_component_cache();
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("cannot write to standard output"),
        "{stderr}"
    );

    // Thrown away on purpose is another matter.
    let status = std::process::Command::new("sh")
        .args(["-c", "exec \"$0\" token --credentials \"$1\" >/dev/null"])
        .arg(crate::support::cli_binary())
        .arg(&path)
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .status()
        .unwrap();
    assert!(status.success());
}

/// The CLI holds tokens in memory: a crash must not write them into a core file.
#[tokio::test]
async fn the_cli_writes_no_core_dump() {
    let endpoint = TokenEndpoint::start().await.unwrap();
    endpoint.set_latency(
        std::time::Duration::from_millis(1500)..std::time::Duration::from_millis(1501),
    );
    let scenario = crate::support::expired_login(&endpoint);
    let child = crate::support::spawn_cli(&scenario.path, &endpoint.url(), &["token"]);
    let limits = format!("/proc/{}/limits", child.id());
    let started = std::time::Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&limits).unwrap_or_default();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .map(str::to_owned);
        // Read once the process has set its limits (before its first request).
        if endpoint.requests().len() == 1 || started.elapsed() > std::time::Duration::from_secs(10)
        {
            break line;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let output = crate::support::finish(child).await;
    assert!(output.status.success(), "{}", text(&output).1);
    let fields: Vec<String> = line
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        fields.get(4..6),
        Some(&["0".to_owned(), "0".to_owned()][..]),
        "{fields:?}"
    );
}

#[tokio::test]
async fn a_hard_linked_credential_is_warned_about() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    let path = scenario.path.to_str().unwrap();
    let other = scenario.dir().join("other-name.json");
    std::fs::hard_link(&scenario.path, &other).unwrap();
    let spent = scenario.oauth("refreshToken");
    let args = |command: &'static str| {
        vec![
            command.to_owned(),
            "--credentials".into(),
            path.to_owned(),
            "--token-url".into(),
            endpoint.url(),
        ]
    };
    let run = |args: Vec<String>| {
        let dir = scenario.dir().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&dir, &args).await
        }
    };

    let output = run(args("status")).await;
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("has 2 hard links; a refresh replaces this name only"),
        "{stderr}"
    );

    // The refresh replaces this name; the other keeps the old login, and the user is told.
    let output = run(args("token")).await;
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the credential file had other hard links"),
        "{stderr}"
    );
    let kept: Value = serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    assert_eq!(kept["claudeAiOauth"]["refreshToken"], spent.as_str());

    // One name now: no warning.
    let output = run(args("status")).await;
    assert!(text(&output).1.is_empty(), "{}", text(&output).1);
}

/// A symlinked credential file: ours refreshes through the link (it stays a link), but the
/// `claude` CLI replaces the link with a regular file at its next write, so `status` warns and
/// names the target and the way out.
#[tokio::test]
async fn a_symlinked_credential_is_warned_about() {
    let scenario = Scenario::fixture_now("expired");
    let endpoint = scenario.endpoint().await;
    let link = scenario.dir().join("linked").join(".credentials.json");
    std::fs::create_dir(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&scenario.path, &link).unwrap();
    let link_arg = link.to_str().unwrap();
    let output = cli(
        scenario.dir(),
        &[
            "status",
            "--credentials",
            link_arg,
            "--token-url",
            &endpoint.url(),
        ],
    )
    .await;
    let (_, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("is a symlink to")
            && stderr.contains("replaces the link with a file")
            && stderr.contains("CLAUDE_CONFIG_DIR"),
        "{stderr}"
    );
    assert!(stderr.contains(scenario.path.file_name().unwrap().to_str().unwrap()));
    // The file itself: no warning.
    let output = cli(
        scenario.dir(),
        &[
            "status",
            "--credentials",
            scenario.path.to_str().unwrap(),
            "--token-url",
            &endpoint.url(),
        ],
    )
    .await;
    assert!(text(&output).1.is_empty(), "{}", text(&output).1);
}

/// A mistyped store URL is refused as one — never taken for a file path (which would write the
/// login, in clear, to a file named after the URL, password and all) — and no message shows its
/// user, password or query; a Redis store's option given with a file store is refused, not
/// ignored.
#[tokio::test]
async fn a_mistyped_store_url_is_refused_and_never_shown() {
    let login = Scenario::fixture_now("expired");
    let cwd = tempfile::tempdir().unwrap();
    let file = login.path.to_str().unwrap();
    for store in [
        "redis:/fleet:PASSWORD@127.0.0.1:6380/0",
        "redis//fleet:PASSWORD@127.0.0.1:6380/0",
        "redis+unix:///tmp/redis.sock?pass=PASSWORD",
        "redis+sentinel://fleet:PASSWORD@127.0.0.1/master",
        "redis://fleet:PASSWORD@127.0.0.1:not-a-port/0",
    ] {
        let mut command = crate::support::cli_command(cwd.path());
        command
            .current_dir(cwd.path())
            .args(["--store", store, "import", file]);
        let output = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_REFUSED),
            "{store}: {stderr}"
        );
        assert!(
            !format!("{stdout}{stderr}").contains("PASSWORD"),
            "{store}: {stderr}"
        );
        assert!(!stderr.contains("token endpoint"), "{store}: {stderr}");
        let written: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
        assert!(written.is_empty(), "{store}: wrote {written:?}");
    }
    for option in [
        vec!["--store-secret-file", "/nonexistent/store.key"],
        vec!["--store-key", "fleet"],
        vec!["--store-plaintext"],
        vec!["--store-ca-file", "/nonexistent/ca.pem"],
    ] {
        let mut args = vec!["status", "--credentials", file];
        args.extend(&option);
        let output = cli(login.dir(), &args).await;
        let (_, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(EXIT_REFUSED),
            "{option:?}: {stderr}"
        );
        assert!(stderr.contains(option[0]), "{option:?}: {stderr}");
    }
}

/// `import` of a login that has expired and holds no refresh token fails (exit 4: log in
/// again) instead of storing a login nobody can use.
#[tokio::test]
async fn import_refuses_a_login_that_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming.json");
    std::fs::write(
        &incoming,
        r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat01-old","expiresAt":1000,"scopes":[]}}"#,
    )
    .unwrap();
    let store = dir.path().join("store.json");
    let output = cli(
        dir.path(),
        &[
            "--store",
            store.to_str().unwrap(),
            "import",
            incoming.to_str().unwrap(),
        ],
    )
    .await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(EXIT_EXPIRED), "{stderr}");
    assert!(stderr.contains("no refresh token"), "{stderr}");
    assert!(!store.exists(), "nothing may be written");
}
