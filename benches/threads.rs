//! Scaling over threads: each thread drives its own clone of the service, as a multi-threaded
//! client's connections or tasks do. `cargo bench --bench threads`.
//!
//! `threads/<stack>/1` times `n` requests on one thread; `threads/<stack>/2` times `n`
//! requests on each of two threads at once (wall time, from a common start to the last
//! finish). Perfect scaling gives the same time; a reference count shared by the clones
//! (the same cache line written by both threads) shows as a higher one. Target: at most 1.3x.
//!
//! The threads run the requests without a runtime (the inner service is ready at once), so
//! nothing but the stacks shares the cores. The machine has to have two idle cores for the
//! 2-thread numbers to mean anything: see BENCHMARKS.md.

mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

use common::*;

/// Runs at least 10 000 requests per thread, so the threads overlap for milliseconds (a short
/// run would let one finish before the other starts), and scales the time to `iters`.
fn scaled(iters: u64, run: impl Fn(u64) -> Duration) -> Duration {
    let n = iters.max(10_000);
    run(n).mul_f64(iters as f64 / n as f64)
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    let http = tower_http();
    let bearer = tower_bearer(true);
    for n in [1, 2] {
        group.bench_function(BenchmarkId::new("tower_http", n), |b| {
            b.iter_custom(|iters| scaled(iters, |k| run_threads(&http, n, k)))
        });
        group.bench_function(BenchmarkId::new("tower_bearer", n), |b| {
            b.iter_custom(|iters| scaled(iters, |k| run_threads(&bearer, n, k)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = threads
}
criterion_main!(benches);
