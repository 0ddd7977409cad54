//! The figures criterion does not give, measured call by call on the same bed for both crates:
//! p50 and p99 of a hot resolve and of a refresh round trip, the throughput of 64 concurrent
//! resolves, the resident-set growth of one provider and one resolve (each in a fresh process),
//! and the component's size. Prints a Markdown table and writes it, with the raw percentiles and
//! a latency plot, to `bench/results/`.
//!
//! ```text
//! cargo bench -p claude-code-auth-bench --bench report
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_code_auth_bench::{Bed, Floor, percentile, resolve_64, runtime};
use entelix_auth_claude_code::{
    ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, FileCredentialStore,
};
use entelix_core::auth::CredentialProvider;

const HOT_CALLS: usize = 20_000;
const REFRESH_CALLS: usize = 200;
const CONCURRENT_ROUNDS: usize = 300;
const PROBE_ENV: &str = "CLAUDE_CODE_AUTH_RSS_PROBE";

fn provider(name: &str, bed: &Bed) -> Arc<dyn CredentialProvider> {
    match name {
        "ours" => Arc::new(ClaudeCodeOAuthProvider::with_config(
            FileCredentialStore::with_path(&bed.path),
            ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
        )),
        _ => Arc::new(original::ClaudeCodeOAuthProvider::with_config(
            original::FileCredentialStore::with_path(&bed.path),
            original::ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
        )),
    }
}

/// `calls` resolves, each timed, after `warmup` untimed ones; `prepare` runs before each.
async fn timed(
    provider: &Arc<dyn CredentialProvider>,
    calls: usize,
    warmup: usize,
    prepare: impl Fn(),
) -> Vec<Duration> {
    for _ in 0..warmup {
        prepare();
        provider.resolve().await.expect("resolve");
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        prepare();
        let started = Instant::now();
        provider.resolve().await.expect("resolve");
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// `calls` refreshes at the floor (see [`Floor`]), each timed, after `warmup` untimed ones.
async fn floor(bed: &Bed, calls: usize, warmup: usize) -> Vec<Duration> {
    let mut floor = Floor::new(bed);
    for _ in 0..warmup {
        floor.refresh(bed).await;
    }
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        floor.refresh(bed).await;
        times.push(started.elapsed());
    }
    times.sort();
    times
}

/// Resolves per second, median over rounds of 64 concurrent resolves.
async fn concurrent(provider: &Arc<dyn CredentialProvider>) -> f64 {
    let mut rates = Vec::with_capacity(CONCURRENT_ROUNDS);
    for _ in 0..CONCURRENT_ROUNDS {
        let started = Instant::now();
        resolve_64(provider).await;
        rates.push(64.0 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// In a child process: resident-set growth from creating a provider and resolving once.
fn rss_probe(name: &str) {
    let rt = runtime();
    let bed = rt.block_on(Bed::new());
    let before = rss_bytes();
    let provider = provider(name, &bed);
    rt.block_on(provider.resolve()).expect("resolve");
    println!("{}", rss_bytes().saturating_sub(before));
}

fn rss_growth(name: &str) -> u64 {
    let output = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env(PROBE_ENV, name)
        .output()
        .expect("probe");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("probe said {:?}", String::from_utf8_lossy(&output.stderr)))
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ratio(ours: f64, original: f64) -> String {
    format!("{:.2}×", ours / original)
}

/// A CDF of both latency samples on a log time axis.
fn plot(samples: &[(&str, &[Duration])], path: &Path) {
    let (width, height, margin) = (640.0, 360.0, 50.0);
    let all = samples.iter().flat_map(|(_, s)| s.iter());
    let (lo, hi) = all.fold((f64::MAX, 0.0_f64), |(lo, hi), d| {
        let us = d.as_secs_f64() * 1e6;
        (lo.min(us), hi.max(us))
    });
    let (lo, hi) = (lo.max(0.1).log10().floor(), hi.log10().ceil());
    let x = |us: f64| margin + (us.max(0.1).log10() - lo) / (hi - lo) * (width - 2.0 * margin);
    let y = |q: f64| height - margin - q * (height - 2.0 * margin);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    let _ = write!(
        svg,
        r#"<text x="{margin}" y="20">Hot resolve latency, cumulative (log scale)</text>"#
    );
    let mut decade = lo;
    while decade <= hi {
        let us = 10f64.powf(decade);
        let _ = write!(
            svg,
            r##"<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" stroke="#ddd"/><text x="{0}" y="{3}" text-anchor="middle">{4} µs</text>"##,
            x(us),
            y(0.0),
            y(1.0),
            y(0.0) + 16.0,
            us
        );
        decade += 1.0;
    }
    for (i, (name, sample)) in samples.iter().enumerate() {
        let color = ["#1f77b4", "#d62728"][i % 2];
        let step = (sample.len() / 400).max(1);
        let points: Vec<String> = sample
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(k, d)| {
                format!(
                    "{:.1},{:.1}",
                    x(d.as_secs_f64() * 1e6),
                    y(k as f64 / sample.len() as f64)
                )
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/><text x="{}" y="{}" fill="{color}">{name}</text>"#,
            points.join(" "),
            width - margin - 60.0,
            margin + 16.0 * i as f64
        );
    }
    svg.push_str("</svg>\n");
    let _ = std::fs::write(path, svg);
}

/// What one run measured: for `ours` and `original` in that order, hot resolves and refreshes
/// (sorted), concurrent rates and RSS growth; and the floor of our refresh.
struct Figures {
    hot: Vec<Vec<Duration>>,
    refresh: Vec<Vec<Duration>>,
    rates: Vec<f64>,
    floors: Vec<Duration>,
    rss: [u64; 2],
}

fn main() {
    if let Ok(name) = std::env::var(PROBE_ENV) {
        return rss_probe(&name);
    }
    // `cargo bench` passes `--bench`; anything else selecting benchmarks is not ours to run.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    let figures = measure();
    let table = table(&figures);
    println!("\n{table}");

    let results = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    let _ = std::fs::create_dir_all(&results);
    let _ = std::fs::write(results.join("report.md"), &table);
    plot(
        &[("ours", &figures.hot[0]), ("original", &figures.hot[1])],
        &results.join("hot-resolve-latency.svg"),
    );
}

/// Every figure, ours and the original's on the same machine in the same run.
fn measure() -> Figures {
    let rt = runtime();
    let mut hot = Vec::new();
    let mut refresh = Vec::new();
    let mut rates = Vec::new();
    let mut floors = Vec::new();
    for name in ["ours", "original"] {
        let bed = rt.block_on(Bed::new());
        let provider = provider(name, &bed);
        hot.push(rt.block_on(timed(&provider, HOT_CALLS, 1_000, || {})));
        rates.push(rt.block_on(concurrent(&provider)));
        // Refreshes and their floor in alternating batches, so both see the same machine.
        let mut ours = Vec::new();
        for _ in 0..4 {
            ours.extend(rt.block_on(timed(&provider, REFRESH_CALLS / 4, 3, || bed.expire())));
            if name == "ours" {
                floors.extend(rt.block_on(floor(&bed, REFRESH_CALLS / 4, 3)));
            }
        }
        ours.sort();
        refresh.push(ours);
    }
    floors.sort();
    Figures {
        hot,
        refresh,
        rates,
        floors,
        rss: [rss_growth("ours"), rss_growth("original")],
    }
}

/// The README's table of `figures`.
fn table(figures: &Figures) -> String {
    let Figures {
        hot,
        refresh,
        rates,
        floors,
        rss,
    } = figures;
    let mut table = String::from(
        "| figure | ours | original | ratio | target |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut row = |what: &str, samples: &[Vec<Duration>], p: f64, target: &str| {
        let (ours, orig) = (percentile(&samples[0], p), percentile(&samples[1], p));
        let _ = writeln!(
            table,
            "| {what} | {} | {} | {} | {target} |",
            micros(ours),
            micros(orig),
            ratio(ours.as_secs_f64(), orig.as_secs_f64())
        );
    };
    row("hot resolve p50", hot, 0.5, "≤ 1.0×");
    row("hot resolve p99", hot, 0.99, "—");
    row("refresh round trip p50", refresh, 0.5, "≤ 1.2×");
    row("refresh round trip p99", refresh, 0.99, "—");
    let _ = writeln!(
        table,
        "| refresh round trip p50, against its floor (one HTTP exchange + one durable atomic write, same run) | {} | floor {} | {} | ≤ 1.5× the floor |",
        micros(percentile(&refresh[0], 0.5)),
        micros(percentile(floors, 0.5)),
        ratio(
            percentile(&refresh[0], 0.5).as_secs_f64(),
            percentile(floors, 0.5).as_secs_f64()
        )
    );
    let _ = writeln!(
        table,
        "| 64 concurrent resolves | {:.0} /s | {:.0} /s | {} | ≥ 1.0× |",
        rates[0],
        rates[1],
        ratio(rates[0], rates[1])
    );
    let _ = writeln!(
        table,
        "| RSS growth, one provider + one resolve | {:.1} MiB | {:.1} MiB | {} | ≤ 15 MiB |",
        rss[0] as f64 / 1048576.0,
        rss[1] as f64 / 1048576.0,
        ratio(rss[0] as f64, rss[1].max(1) as f64)
    );
    let _ = writeln!(
        table,
        "| component `.wasm` | {:.0} KiB | — | — | ≤ 500 KiB |",
        entelix_auth_claude_code::COMPONENT_WASM.len() as f64 / 1024.0
    );
    table
}
