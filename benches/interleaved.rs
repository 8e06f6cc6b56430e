//! Interleaved timing, for ratios a noisy machine cannot skew: each round times a batch
//! through every variant in turn (rotating the order), and ratios are taken within the round.
//! Prints the median ratio and its interquartile range. BENCHMARKS.md quotes this binary.
//!
//! `cargo bench --bench interleaved` runs every section (about 40 s); name sections to run
//! only those: `cargo bench --bench interleaved -- hot body threads e2e`.
//!
//! - `hot`: bare vs tower-http vs tower-bearer (retry on and off), requests built fresh for
//!   each call and sent with `poll_ready`, `call` and one poll of a future that is ready at
//!   once (no runtime), for a request with no headers of its own and one with two;
//! - `body`: tower-http vs tower-bearer with `Full<Bytes>` bodies of 0 B to 1 MiB;
//! - `threads`: 2 threads on their own clones vs 1 thread, for the same requests per thread;
//! - `e2e`: hyper-util client to hyper server on loopback, with and without the layer.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder};

use common::*;

trait Stack {
    fn run(&mut self, make: &dyn Fn() -> Request<Full<Bytes>>, n: u32);
}

struct Driven<S>(S);

impl<S, E> Stack for Driven<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    #[inline(never)]
    fn run(&mut self, make: &dyn Fn() -> Request<Full<Bytes>>, n: u32) {
        for _ in 0..n {
            drop(black_box(send_now(&mut self.0, make())));
        }
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Median and interquartile range.
fn stats(v: Vec<f64>) -> (f64, f64, f64) {
    let v = sorted(v);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (q(0.5), q(0.25), q(0.75))
}

/// Times `rounds` batches of `batch` calls to each of `timed` (one closure per variant, each
/// returning the seconds its batch took), rotating the order every round.
fn interleave(rounds: usize, timed: &mut [&mut dyn FnMut() -> f64]) -> Vec<Vec<f64>> {
    let k = timed.len();
    for f in timed.iter_mut() {
        f(); // warm up
    }
    let mut out = vec![Vec::with_capacity(rounds); k];
    for round in 0..rounds {
        for j in 0..k {
            let i = (round + j) % k;
            out[i].push(timed[i]());
        }
    }
    out
}

fn hot(rounds: usize) {
    const BATCH: u32 = 2_000;
    for (label, make) in [
        (
            "no headers of its own",
            &request as &dyn Fn() -> Request<Full<Bytes>>,
        ),
        ("2 headers of its own", &request_with_headers),
    ] {
        let mut stacks: Vec<(&str, Box<dyn Stack>)> = vec![
            ("bare", Box::new(Driven(bare()))),
            ("tower_http", Box::new(Driven(tower_http()))),
            (
                "tower_bearer (retry on)",
                Box::new(Driven(tower_bearer(true))),
            ),
            (
                "tower_bearer retry off",
                Box::new(Driven(tower_bearer(false))),
            ),
        ];
        let names: Vec<&str> = stacks.iter().map(|s| s.0).collect();
        let mut closures: Vec<Box<dyn FnMut() -> f64 + '_>> = stacks
            .iter_mut()
            .map(|(_, s)| {
                Box::new(move || {
                    let start = Instant::now();
                    s.run(make, BATCH);
                    start.elapsed().as_nanos() as f64 / BATCH as f64
                }) as Box<dyn FnMut() -> f64>
            })
            .collect();
        let mut refs: Vec<&mut dyn FnMut() -> f64> =
            closures.iter_mut().map(|c| &mut **c as _).collect();
        let ns = interleave(rounds, &mut refs);
        println!("\nhot path, request with {label}: {rounds} rounds of {BATCH} requests");
        println!(
            "{:<26} {:>8} {:>9} {:>26} {:>9}",
            "stack", "ns/req", "vs bare", "vs tower_http (IQR)", "added ns"
        );
        for i in 0..names.len() {
            let per_round = |f: &dyn Fn(usize) -> f64| (0..rounds).map(f).collect::<Vec<_>>();
            let (vs_bare, _, _) = stats(per_round(&|r| ns[i][r] / ns[0][r]));
            let (vs_th, lo, hi) = stats(per_round(&|r| ns[i][r] / ns[1][r]));
            let (added, _, _) = stats(per_round(&|r| ns[i][r] - ns[0][r]));
            println!(
                "{:<26} {:>8.1} {:>8.3}x {:>9.3}x ({:.3}-{:.3}) {:>9.1}",
                names[i],
                stats(ns[i].clone()).0,
                vs_bare,
                vs_th,
                lo,
                hi,
                added
            );
        }
    }
}

fn body(rounds: usize) {
    const BATCH: u32 = 1_000;
    println!("\nbody size (Full<Bytes>, POST, retry on): {rounds} rounds of {BATCH} requests");
    println!(
        "{:>9} {:>14} {:>16} {:>26} {:>9}",
        "body", "tower_http ns", "tower_bearer ns", "vs tower_http (IQR)", "added ns"
    );
    for size in BODY_SIZES {
        let body = body_of(size);
        let make = || request_with_body(&body);
        let mut http = Driven(tower_http());
        let mut bearer = Driven(tower_bearer(true));
        let mut a = || {
            let start = Instant::now();
            http.run(&make, BATCH);
            start.elapsed().as_nanos() as f64 / BATCH as f64
        };
        let mut b = || {
            let start = Instant::now();
            bearer.run(&make, BATCH);
            start.elapsed().as_nanos() as f64 / BATCH as f64
        };
        let ns = interleave(rounds, &mut [&mut a, &mut b]);
        let (ratio, lo, hi) = stats((0..rounds).map(|r| ns[1][r] / ns[0][r]).collect());
        let (added, _, _) = stats((0..rounds).map(|r| ns[1][r] - ns[0][r]).collect());
        println!(
            "{:>9} {:>14.1} {:>16.1} {:>9.3}x ({:.3}-{:.3}) {:>9.1}",
            size,
            stats(ns[0].clone()).0,
            stats(ns[1].clone()).0,
            ratio,
            lo,
            hi,
            added
        );
    }
}

fn threads(rounds: usize) {
    const PER_THREAD: u64 = 20_000;
    println!(
        "\nthreads: {rounds} rounds; each run sends {PER_THREAD} requests per thread, \
         each thread on its own clone"
    );
    println!(
        "{:<14} {:>14} {:>15} {:>26}",
        "stack", "1 thread ns/req", "2 threads ns/req", "2 threads / 1 (IQR)"
    );
    let http = tower_http();
    let bearer = tower_bearer(true);
    let row = |name: &str, one: &mut dyn FnMut() -> Duration, two: &mut dyn FnMut() -> Duration| {
        let mut a = || one().as_nanos() as f64 / PER_THREAD as f64;
        let mut b = || two().as_nanos() as f64 / PER_THREAD as f64;
        let ns = interleave(rounds, &mut [&mut a, &mut b]);
        let (ratio, lo, hi) = stats((0..rounds).map(|r| ns[1][r] / ns[0][r]).collect());
        println!(
            "{:<14} {:>14.1} {:>15.1} {:>9.3}x ({:.3}-{:.3})",
            name,
            stats(ns[0].clone()).0,
            stats(ns[1].clone()).0,
            ratio,
            lo,
            hi
        );
    };
    row(
        "tower_http",
        &mut || run_threads(&http, 1, PER_THREAD),
        &mut || run_threads(&http, 2, PER_THREAD),
    );
    row(
        "tower_bearer",
        &mut || run_threads(&bearer, 1, PER_THREAD),
        &mut || run_threads(&bearer, 2, PER_THREAD),
    );
}

fn e2e(rounds: usize) {
    const SEQUENTIAL: usize = 100;
    const CONCURRENCY: usize = 32;
    const BATCHES: usize = 4;
    let rt = runtime();
    let addr = rt.block_on(loopback_server());
    let url = format!("http://{addr}/v1/models");
    let make = || {
        Request::get(url.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let mut plain = client();
    let mut layered = ServiceBuilder::new().layer(layer(true)).service(client());

    println!(
        "\nend to end over loopback (hyper-util client, hyper server, one current-thread \
         runtime): {rounds} rounds"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>26}",
        "", "without req/s", "with req/s", "with / without (IQR)"
    );
    let report = |name: &str, ns: Vec<Vec<f64>>| {
        // throughput ratio: time without / time with
        let (ratio, lo, hi) = stats((0..rounds).map(|r| ns[0][r] / ns[1][r]).collect());
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>9.3}x ({:.3}-{:.3})",
            name,
            1e9 / stats(ns[0].clone()).0,
            1e9 / stats(ns[1].clone()).0,
            ratio,
            lo,
            hi
        );
    };

    macro_rules! sequential {
        ($svc:expr) => {
            || {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..SEQUENTIAL {
                        let fut = call_now($svc, make());
                        fut.await.unwrap().into_body().collect().await.unwrap();
                    }
                    start.elapsed().as_nanos() as f64 / SEQUENTIAL as f64
                })
            }
        };
    }
    let ns = {
        let mut a = sequential!(&mut plain);
        let mut b = sequential!(&mut layered);
        interleave(rounds, &mut [&mut a, &mut b])
    };
    report("sequential", ns);

    macro_rules! concurrent {
        ($svc:expr) => {
            || {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..BATCHES {
                        let futs: Vec<_> =
                            (0..CONCURRENCY)
                                .map(|_| {
                                    let fut = call_now($svc, make());
                                    async move {
                                        fut.await.unwrap().into_body().collect().await.unwrap()
                                    }
                                })
                                .collect();
                        join_all(futs).await;
                    }
                    start.elapsed().as_nanos() as f64 / (BATCHES * CONCURRENCY) as f64
                })
            }
        };
    }
    let ns = {
        let mut a = concurrent!(&mut plain);
        let mut b = concurrent!(&mut layered);
        interleave(rounds, &mut [&mut a, &mut b])
    };
    report("32 concurrent", ns);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = |default: usize| {
        args.iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1))
            .map_or(default, |n| n.parse().unwrap())
    };
    let names: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    let sections = ["hot", "body", "threads", "e2e"];
    let chosen: Vec<&str> = if names.is_empty() || names.contains(&"interleaved") {
        sections.to_vec()
    } else {
        sections
            .iter()
            .copied()
            .filter(|s| names.contains(s))
            .collect()
    };
    println!(
        "machine: {} cpus, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    for s in chosen {
        match s {
            "hot" => hot(rounds(400)),
            "body" => body(rounds(200)),
            "threads" => threads(rounds(60)),
            "e2e" => e2e(rounds(60)),
            _ => unreachable!(),
        }
    }
}
