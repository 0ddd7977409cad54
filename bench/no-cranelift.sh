#!/usr/bin/env bash
# Whether a build without Cranelift would halve what a consumer pays (issue 20): a clean release
# build of the wasmtime stack this library links (wasmtime, wasmtime-wasi, wasmtime-wasi-http at
# the versions and features of the workspace), once with Cranelift as shipped and once with the
# Pulley interpreter instead (what a crate shipping a precompiled component would need), one
# after the other in one run, each in a target directory of its own. The difference is the most
# a no-Cranelift feature could take off `bench/consumer-build.sh`'s figure for this library.
# Appends its rows to bench/results/consumer-build.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
toolchain="$(sed -n 's/^channel = "\(.*\)"/\1/p' "$root/rust-toolchain.toml")"
version="$(sed -n 's/^wasmtime = { version = "\([^"]*\)".*/\1/p' "$root/Cargo.toml")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

stack() { # name, wasmtime features
    mkdir -p "$scratch/$1/src"
    cat > "$scratch/$1/Cargo.toml" <<TOML
[package]
name = "stack-$1"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
wasmtime = { version = "$version", default-features = false, features = [$2] }
wasmtime-wasi = { version = "$version", default-features = false, features = ["p2"] }
wasmtime-wasi-http = { version = "$version", default-features = false, features = ["p2"] }

[workspace]
TOML
    cat > "$scratch/$1/src/main.rs" <<'RUST'
fn main() {
    let engine = wasmtime::Engine::default();
    let mut linker = wasmtime::component::Linker::<()>::new(&engine);
    let _ = &mut linker;
    println!("{}", std::env::args().count());
}
RUST
}

stack cranelift '"runtime", "cranelift", "component-model", "async", "std", "parallel-compilation"'
stack pulley '"runtime", "pulley", "component-model", "async", "std"'

rows=""
for name in cranelift pulley; do
    dir="$scratch/$name"
    (cd "$dir" && cargo "+$toolchain" fetch -q)
    start=$(date +%s.%N)
    (cd "$dir" && CARGO_INCREMENTAL=0 cargo "+$toolchain" build --release --target-dir "$dir/target" 2> "$dir/build.log")
    end=$(date +%s.%N)
    seconds=$(echo "$end - $start" | bc)
    crates=$(grep -c '^ *Compiling ' "$dir/build.log")
    bytes=$(stat -c %s "$dir/target/release/stack-$name")
    rows="$rows| wasmtime $version stack, $name | $(printf '%.0f' "$seconds") s | $crates | $((bytes / 1024 / 1024)) MiB |\n"
    echo "$name: ${seconds}s, $crates crates, $bytes bytes"
done

out="$root/bench/results/consumer-build.md"
{
    echo
    echo "## Without Cranelift"
    echo
    echo "\`bench/no-cranelift.sh\`, $(date -u +%Y-%m-%d), $(nproc) cores, Rust $toolchain: the wasmtime stack"
    echo "alone (wasmtime, wasmtime-wasi, wasmtime-wasi-http), clean release builds, with Cranelift as"
    echo "this library links it and with the Pulley interpreter in its place."
    echo
    echo "| build of | time | crates compiled | binary |"
    echo "|---|---|---|---|"
    printf "%b" "$rows"
} >> "$out"
echo "appended to $out"
