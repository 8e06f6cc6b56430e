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

use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::Service;

use common::*;

/// Wall time for `threads` threads, each sending `iters` requests through its own clone.
pub fn run_threads<S, E>(svc: &S, threads: usize, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E> + Clone + Send,
    E: std::fmt::Debug,
{
    let mut clones: Vec<S> = (0..threads).map(|_| svc.clone()).collect();
    for clone in &mut clones {
        warm(clone); // fills the clone's own copy of the key, as its first request would
    }
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = clones
            .into_iter()
            .map(|mut clone| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..iters {
                        drop(std::hint::black_box(send_now(&mut clone, request())));
                    }
                    (start, Instant::now())
                })
            })
            .collect();
        barrier.wait();
        let spans: Vec<(Instant, Instant)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        let start = spans.iter().map(|s| s.0).min().unwrap();
        let end = spans.iter().map(|s| s.1).max().unwrap();
        end - start
    })
}

fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    let http = tower_http();
    let bearer = tower_bearer(true);
    for n in [1, 2] {
        group.bench_function(BenchmarkId::new("tower_http", n), |b| {
            b.iter_custom(|iters| run_threads(&http, n, iters))
        });
        group.bench_function(BenchmarkId::new("tower_bearer", n), |b| {
            b.iter_custom(|iters| run_threads(&bearer, n, iters))
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
