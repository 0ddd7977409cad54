#!/usr/bin/env bash
# What a consumer pays: a clean release build of the same minimal consumer (a provider over a
# credential file, one resolve) against this checkout's library and against the original crate
# 0.6.1 from crates.io, one after the other in one run, each in a target directory of its own:
# wall time, crates compiled, binary size. Writes bench/results/consumer-build.md.
# Needs crates.io (or a warm ~/.cargo registry); downloads are done before the timed builds.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
toolchain="$(sed -n 's/^channel = "\(.*\)"/\1/p' "$root/rust-toolchain.toml")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

consumer() { # name, dependency line
    mkdir -p "$scratch/$1/src"
    cat > "$scratch/$1/Cargo.toml" <<TOML
[package]
name = "consumer-$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
$2
entelix-core = "0.6.1"
tokio = { version = "1", features = ["rt", "macros"] }

[workspace]
TOML
    cat > "$scratch/$1/src/main.rs" <<'RUST'
use entelix_auth_claude_code::{ClaudeCodeOAuthProvider, FileCredentialStore};
use entelix_core::auth::CredentialProvider;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| ".credentials.json".into());
    let provider = ClaudeCodeOAuthProvider::new(FileCredentialStore::with_path(path));
    match provider.resolve().await {
        Ok(_) => println!("resolved"),
        Err(error) => eprintln!("{error}"),
    }
}
RUST
}

consumer ours "entelix-auth-claude-code = { path = \"$root/host\" }"
consumer original 'entelix-auth-claude-code = "=0.6.1"'

rows=""
for name in ours original; do
    dir="$scratch/$name"
    (cd "$dir" && cargo "+$toolchain" fetch -q)
    start=$(date +%s.%N)
    (cd "$dir" && CARGO_INCREMENTAL=0 cargo "+$toolchain" build --release --target-dir "$dir/target" 2> "$dir/build.log")
    end=$(date +%s.%N)
    seconds=$(echo "$end - $start" | bc)
    crates=$(grep -c '^ *Compiling ' "$dir/build.log")
    bytes=$(stat -c %s "$dir/target/release/consumer-$name")
    stripped=$(strip -o "$dir/stripped" "$dir/target/release/consumer-$name" && stat -c %s "$dir/stripped")
    rows="$rows| $name | $(printf '%.0f' "$seconds") s | $crates | $((bytes / 1024 / 1024)) MiB | $((stripped / 1024 / 1024)) MiB |\n"
    echo "$name: ${seconds}s, $crates crates, $bytes bytes ($stripped stripped)"
done

out="$root/bench/results/consumer-build.md"
{
    echo "# What a consumer pays"
    echo
    echo "\`bench/consumer-build.sh\`, $(date -u +%Y-%m-%d), $(nproc) cores, Rust $toolchain: a clean"
    echo "\`cargo build --release\` of the same minimal consumer (a provider over a credential file, one"
    echo "resolve; entelix-core 0.6.1 and tokio beside it), against this library (ours) and the original"
    echo "crate 0.6.1, one after the other in one run, each in a target directory of its own, sources"
    echo "downloaded beforehand."
    echo
    echo "| consumer of | build | crates compiled | binary | stripped |"
    echo "|---|---|---|---|---|"
    printf "%b" "$rows"
} > "$out"
echo "wrote $out"
