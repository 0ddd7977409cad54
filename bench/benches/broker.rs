//! What asking a broker costs: `GET /v1/token` over the socket of `claude-code-auth serve`
//! (through the library's `BrokerClient`, one connection per request), call by call and from 64
//! concurrent clients, next to `claude-code-auth token` as a process (on the credential file, and
//! through `--broker`) and the in-process hot resolve, on one fresh login. Writes
//! `bench/results/broker.md`.
//!
//! ```text
//! cargo bench -p claude-code-auth-bench --bench broker
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claude_code_auth_bench::{Bed, percentile, runtime};
use entelix_auth_claude_code::{
    BrokerClient, ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, FileCredentialStore,
};
use entelix_core::auth::CredentialProvider;

const SOCKET_CALLS: usize = 2_000;
const HOT_CALLS: usize = 20_000;
const PROCESS_RUNS: usize = 50;
const CLIENTS: usize = 64;
const THROUGHPUT_FOR: Duration = Duration::from_secs(3);

/// The CLI, built in release for the bench.
fn cli() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-q", "-p", "claude-code-auth"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the CLI failed");
    root.join("target/release/claude-code-auth")
}

fn sorted(mut times: Vec<Duration>) -> Vec<Duration> {
    times.sort();
    times
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// `runs` timed runs of `command` (each a whole process), after two untimed ones.
fn processes(mut command: impl FnMut() -> Command, runs: usize) -> Vec<Duration> {
    for _ in 0..2 {
        let status = command().stdout(Stdio::null()).status().expect("run");
        assert!(status.success());
    }
    sorted(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                let status = command().stdout(Stdio::null()).status().expect("run");
                assert!(status.success());
                started.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let rt = runtime();
    let bed = rt.block_on(Bed::new());
    let bin = cli();
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("broker.sock");
    let ready = dir.path().join("ready");
    let cache = dir.path().join("cache");
    let mut broker = Command::new(&bin)
        .args(["serve", "--credentials"])
        .arg(&bed.path)
        .args(["--token-url", &bed.endpoint.url(), "--socket"])
        .arg(&socket)
        .arg("--ready-file")
        .arg(&ready)
        .env("CLAUDE_CODE_AUTH_CACHE_DIR", &cache)
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let started = Instant::now();
    while !ready.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(10));
    }

    // One client, call after call.
    let client = BrokerClient::new(&socket);
    let socket_times = rt.block_on(async {
        for _ in 0..50 {
            client.token().await.expect("token");
        }
        let mut times = Vec::with_capacity(SOCKET_CALLS);
        for _ in 0..SOCKET_CALLS {
            let started = Instant::now();
            client.token().await.expect("token");
            times.push(started.elapsed());
        }
        sorted(times)
    });

    // 64 clients at once, for a few seconds.
    let served = Arc::new(AtomicU64::new(0));
    let throughput = rt.block_on(async {
        let until = Instant::now() + THROUGHPUT_FOR;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (client, served) = (client.clone(), served.clone());
                tokio::spawn(async move {
                    while Instant::now() < until {
                        client.token().await.expect("token");
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        for task in tasks {
            task.await.expect("client");
        }
        served.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    });

    let token_process = processes(
        || {
            let mut command = Command::new(&bin);
            command
                .args(["token", "--credentials"])
                .arg(&bed.path)
                .args(["--token-url", &bed.endpoint.url()])
                .env("CLAUDE_CODE_AUTH_CACHE_DIR", &cache);
            command
        },
        PROCESS_RUNS,
    );
    let broker_process = processes(
        || {
            let mut command = Command::new(&bin);
            command.arg("--broker").arg(&socket).arg("token");
            command
        },
        PROCESS_RUNS,
    );

    let hot = rt.block_on(async {
        let provider = ClaudeCodeOAuthProvider::with_config(
            FileCredentialStore::with_path(&bed.path),
            ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
        );
        for _ in 0..100 {
            provider.resolve().await.expect("resolve");
        }
        let mut times = Vec::with_capacity(HOT_CALLS);
        for _ in 0..HOT_CALLS {
            let started = Instant::now();
            provider.resolve().await.expect("resolve");
            times.push(started.elapsed());
        }
        sorted(times)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status();
    let _ = broker.wait();

    let mut table =
        String::from("| figure | p50 | p99 | throughput |\n| --- | --- | --- | --- |\n");
    let _ = writeln!(
        table,
        "| `GET /v1/token` over the broker's socket (`BrokerClient`, a connection per request) | {} | {} | {:.0} /s from {CLIENTS} concurrent clients |",
        micros(percentile(&socket_times, 0.5)),
        micros(percentile(&socket_times, 0.99)),
        throughput
    );
    let _ = writeln!(
        table,
        "| `claude-code-auth --broker PATH token`, a process | {} | {} | — |",
        millis(percentile(&broker_process, 0.5)),
        millis(percentile(&broker_process, 0.99))
    );
    let _ = writeln!(
        table,
        "| `claude-code-auth token --credentials PATH`, a process (component cached) | {} | {} | — |",
        millis(percentile(&token_process, 0.5)),
        millis(percentile(&token_process, 0.99))
    );
    let _ = writeln!(
        table,
        "| in-process hot resolve (`ClaudeCodeOAuthProvider`) | {} | {} | — |",
        micros(percentile(&hot, 0.5)),
        micros(percentile(&hot, 0.99))
    );
    print!("{table}");
    let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results).expect("results dir");
    std::fs::write(results.join("broker.md"), &table).expect("write results");
}
