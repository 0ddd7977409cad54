//! Criterion, ours against the original crate on the same file and endpoint: a resolve with a
//! fresh token, a refresh round trip, and 64 concurrent resolves.

use std::sync::Arc;

use claude_code_auth_bench::{Bed, resolve_64, runtime};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use entelix_auth_claude_code::{
    ClaudeCodeOAuthConfig, ClaudeCodeOAuthProvider, FileCredentialStore,
};
use entelix_core::auth::CredentialProvider;

fn ours(bed: &Bed) -> Arc<dyn CredentialProvider> {
    Arc::new(ClaudeCodeOAuthProvider::with_config(
        FileCredentialStore::with_path(&bed.path),
        ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
    ))
}

fn original(bed: &Bed) -> Arc<dyn CredentialProvider> {
    Arc::new(original::ClaudeCodeOAuthProvider::with_config(
        original::FileCredentialStore::with_path(&bed.path),
        original::ClaudeCodeOAuthConfig::new().with_token_url(bed.endpoint.url()),
    ))
}

type Make = fn(&Bed) -> Arc<dyn CredentialProvider>;
const CONTENDERS: [(&str, Make); 2] = [("ours", ours), ("original", original)];

fn hot_resolve(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("hot resolve (fresh token)");
    for (name, make) in CONTENDERS {
        let bed = rt.block_on(Bed::new());
        let provider = make(&bed);
        rt.block_on(provider.resolve()).expect("resolve");
        group.bench_function(name, |b| b.to_async(&rt).iter(|| provider.resolve()));
    }
    group.finish();
}

fn refresh_round_trip(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("refresh round trip");
    group.sample_size(30);
    for (name, make) in CONTENDERS {
        let bed = rt.block_on(Bed::new());
        let provider = make(&bed);
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || bed.expire(),
                |()| {
                    let provider = provider.clone();
                    async move { provider.resolve().await.expect("refresh") }
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn concurrent_64(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("64 concurrent resolves");
    group.throughput(criterion::Throughput::Elements(64));
    for (name, make) in CONTENDERS {
        let bed = rt.block_on(Bed::new());
        let provider = make(&bed);
        rt.block_on(provider.resolve()).expect("resolve");
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let provider = provider.clone();
                async move { resolve_64(&provider).await }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, hot_resolve, refresh_round_trip, concurrent_64);
criterion_main!(benches);
