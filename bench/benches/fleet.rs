//! The Redis store beside the file store, against a real `redis-server` on loopback (Debian's
//! package, started here without persistence): a hot resolve (fresh token) through each, and a
//! fleet storm — machines (each its own store and provider, sharing only Redis) times tasks all
//! resolving one expired login at once — with the grants it spent and its wall time. Prints a
//! Markdown table and writes it to `bench/results/fleet.md`.
//!
//! ```text
//! cargo bench -p claude-code-auth-bench --bench fleet
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_code_auth_bench::{Bed, now_ms, percentile, redis_store, runtime, secret_file};
use claude_code_auth_testkit::redis_server::RedisServer;
use entelix_auth_claude_code::{
    ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, CredentialStore, FileCredentialStore,
};

const HOT_CALLS: usize = 5_000;
const STORM_ROUNDS: usize = 5;

fn main() {
    // `cargo bench` passes `--bench`; anything else selecting benchmarks is not ours to run.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    if !RedisServer::available() {
        println!("no redis-server here (apt-get install redis-server): nothing measured");
        return;
    }
    let rt = runtime();
    let server = RedisServer::start();
    let bed = rt.block_on(Bed::new());
    let secret_dir = tempfile::tempdir().expect("temp dir");
    let secret = secret_file(secret_dir.path());

    let mut table =
        String::from("| figure | file store | Redis store (sealed) |\n| --- | --- | --- |\n");
    let file = provider(FileCredentialStore::with_path(&bed.path), &bed);
    let redis = {
        let store = redis_store(&server, &secret, "bench-hot");
        let document = std::fs::read_to_string(&bed.path).expect("read");
        rt.block_on(store.save_document(&document)).expect("import");
        provider(store, &bed)
    };
    let hot_file = rt.block_on(hot(&file));
    let hot_redis = rt.block_on(hot(&redis));
    for (what, p) in [("hot resolve p50", 0.5), ("hot resolve p99", 0.99)] {
        let _ = writeln!(
            table,
            "| {what} | {:.1} µs | {:.1} µs |",
            micros(percentile(&hot_file, p)),
            micros(percentile(&hot_redis, p))
        );
    }
    let _ = writeln!(
        table,
        "\n| fleet storm on one expired login | grants | wall time, median of {STORM_ROUNDS} |\n| --- | --- | --- |"
    );
    for (machines, tasks) in [(1, 32), (4, 8), (8, 16)] {
        let (grants, wall) = rt.block_on(storm(&server, &secret, &bed, machines, tasks));
        let _ = writeln!(
            table,
            "| {machines} machine(s) × {tasks} tasks, Redis store | {grants} per storm | {:.1} ms |",
            wall.as_secs_f64() * 1000.0
        );
    }
    println!("\n{table}");
    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&results);
    let _ = std::fs::write(results.join("fleet.md"), &table);
}

fn provider(store: impl CredentialStore, bed: &Bed) -> ClaudeCodeOAuthProvider {
    ClaudeCodeOAuthProvider::with_config(
        store,
        ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
    )
}

/// `HOT_CALLS` resolves of a fresh token, each timed, after a warm-up.
async fn hot(provider: &ClaudeCodeOAuthProvider) -> Vec<Duration> {
    for _ in 0..100 {
        provider.header_value().await.expect("resolve");
    }
    let mut times = Vec::with_capacity(HOT_CALLS);
    for _ in 0..HOT_CALLS {
        let started = Instant::now();
        provider.header_value().await.expect("resolve");
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// `STORM_ROUNDS` storms of `machines` × `tasks` on a freshly expired login: grants per storm
/// (the same every round, or this panics) and the median wall time.
async fn storm(
    server: &RedisServer,
    secret: &Path,
    bed: &Bed,
    machines: usize,
    tasks: usize,
) -> (u64, Duration) {
    let name = format!("bench-storm-{machines}x{tasks}");
    let mut walls = Vec::new();
    let mut grants = None;
    for _ in 0..STORM_ROUNDS {
        let login = bed.endpoint.login();
        let document = serde_json::json!({"claudeAiOauth": {
            "accessToken": login.access_token, "refreshToken": login.refresh_token,
            "expiresAt": now_ms() - 60_000, "scopes": ["user:inference"],
        }});
        redis_store(server, secret, &name)
            .save_document(&document.to_string())
            .await
            .expect("import");
        let fleet: Vec<_> = (0..machines)
            .map(|_| Arc::new(provider(redis_store(server, secret, &name), bed)))
            .collect();
        let before = bed.endpoint.grants_served();
        let started = Instant::now();
        let mut running = Vec::new();
        for machine in &fleet {
            for _ in 0..tasks {
                let machine = machine.clone();
                running.push(tokio::spawn(async move { machine.header_value().await }));
            }
        }
        for task in running {
            task.await.expect("task").expect("resolve");
        }
        walls.push(started.elapsed());
        let spent = bed.endpoint.grants_served() - before;
        assert_eq!(
            *grants.get_or_insert(spent),
            spent,
            "grants differ between storms"
        );
    }
    walls.sort();
    (grants.unwrap_or(0), walls[walls.len() / 2])
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
