//! Interleaved timing, for ratios a noisy machine cannot skew: each round times a batch
//! through every variant in turn (rotating the order), and ratios are taken within the round
//! (median over rounds). As the same binary gives run-to-run differences of several percent
//! (address-space layout, heap state), each section runs in several processes and the table
//! shows the median over processes, with the lowest and highest for ratios. BENCHMARKS.md
//! quotes this binary.
//!
//! `cargo bench --bench interleaved` runs every section in 5 processes each (about a minute);
//! name sections to run only those, e.g. `cargo bench --bench interleaved -- hot threads`;
//! `--processes N` and `--rounds N` change the defaults.
//!
//! - `awaited`: what callers run: `svc.ready().await?.call(req).await` in a current-thread
//!   tokio runtime, for bare, tower-http and tower-bearer over a rotating source (replay on and
//!   off), a `FileKeySource` (the default, with its 60 s refresh hint) and a `StaticKey`. The
//!   headline of BENCHMARKS.md and the README; and the same stacks again over an inner service
//!   whose future holds nothing, where a layer's own future is all that moves at each `.await`;
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
use tower::{Service, ServiceBuilder, ServiceExt};

use common::*;
use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};

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

/// A stack driven as callers drive it: awaited in a current-thread runtime.
struct Awaited<S> {
    svc: S,
    rt: tokio::runtime::Runtime,
}

impl<S, E> Stack for Awaited<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    #[inline(never)]
    fn run(&mut self, make: &dyn Fn() -> Request<Full<Bytes>>, n: u32) {
        let svc = &mut self.svc;
        self.rt.block_on(async {
            for _ in 0..n {
                let res = svc.ready().await.unwrap().call(make()).await.unwrap();
                black_box(res);
            }
        });
    }
}

fn awaited<S>(svc: S) -> Box<Awaited<S>> {
    Box::new(Awaited { svc, rt: runtime() })
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

/// Runs `stacks` interleaved on requests from `make` and reports ns per request and ratios
/// (against the first stack, "bare", and the second, "tower_http").
fn compare(
    rounds: usize,
    batch: u32,
    table: &str,
    make: &dyn Fn() -> Request<Full<Bytes>>,
    stacks: &mut [(&str, Box<dyn Stack>)],
) {
    let names: Vec<&str> = stacks.iter().map(|s| s.0).collect();
    let mut closures: Vec<Box<dyn FnMut() -> f64 + '_>> = stacks
        .iter_mut()
        .map(|(_, s)| {
            Box::new(move || {
                let start = Instant::now();
                s.run(make, batch);
                start.elapsed().as_nanos() as f64 / batch as f64
            }) as Box<dyn FnMut() -> f64>
        })
        .collect();
    let mut refs: Vec<&mut dyn FnMut() -> f64> =
        closures.iter_mut().map(|c| &mut **c as _).collect();
    let ns = interleave(rounds, &mut refs);
    for i in 0..names.len() {
        let per_round = |f: &dyn Fn(usize) -> f64| (0..rounds).map(f).collect::<Vec<_>>();
        let (vs_bare, _, _) = stats(per_round(&|r| ns[i][r] / ns[0][r]));
        let (vs_th, _, _) = stats(per_round(&|r| ns[i][r] / ns[1][r]));
        let (added, _, _) = stats(per_round(&|r| ns[i][r] - ns[0][r]));
        report(
            table,
            names[i],
            &[
                ("ns/req", stats(ns[i].clone()).0),
                ("added ns", added),
                ("x vs bare", vs_bare),
                ("x vs tower_http", vs_th),
            ],
        );
    }
}

fn awaited_section(rounds: usize) {
    let key_file = KeyFile::new();
    for (label, make) in [
        (
            "no headers of its own",
            &request as &dyn Fn() -> Request<Full<Bytes>>,
        ),
        ("plain http to 127.0.0.1", &request_loopback),
    ] {
        let mut stacks: Vec<(&str, Box<dyn Stack>)> = vec![
            ("bare", awaited(bare())),
            ("tower_http", awaited(tower_http())),
            ("tower_bearer (retry on)", awaited(tower_bearer(true))),
            ("tower_bearer retry off", awaited(tower_bearer(false))),
            (
                "tower_bearer FileKeySource",
                awaited(tower_bearer_file(&key_file)),
            ),
            ("tower_bearer StaticKey", awaited(tower_bearer_static())),
        ];
        let table = format!("awaited in a runtime, request with {label} (ns per request, ratios)");
        compare(rounds, 2_000, &table, make, &mut stacks);
    }
    awaited_tiny_section(rounds);
}

/// The awaited stacks again over [`tiny`], an inner service whose future holds nothing: the
/// layers' own futures (tower-http's adds nothing to it; tower-bearer's adds the 401 record) are
/// all that is written and moved at each `.await`.
fn awaited_tiny_section(rounds: usize) {
    let key_file = KeyFile::new();
    let static_key = || BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()));
    let file = || BearerAuthLayer::new(tower_bearer::FileKeySource::new(&key_file.0));
    let mut stacks: Vec<(&str, Box<dyn Stack>)> = vec![
        ("bare", awaited(tiny())),
        ("tower_http", awaited(tower_http_over(tiny()))),
        (
            "tower_bearer (retry on)",
            awaited(tower_bearer_over(&layer(true), tiny())),
        ),
        (
            "tower_bearer retry off",
            awaited(tower_bearer_over(&layer(false), tiny())),
        ),
        (
            "tower_bearer FileKeySource",
            awaited(tower_bearer_over(&file(), tiny())),
        ),
        (
            "tower_bearer StaticKey",
            awaited(tower_bearer_over(&static_key(), tiny())),
        ),
    ];
    let table = "awaited in a runtime, over an inner service whose future holds nothing (ns per request, ratios)";
    compare(rounds, 2_000, table, &request, &mut stacks);
}

fn hot(rounds: usize) {
    const BATCH: u32 = 2_000;
    for (label, make) in [
        (
            "no headers of its own",
            &request as &dyn Fn() -> Request<Full<Bytes>>,
        ),
        ("2 headers of its own", &request_with_headers),
        ("plain http to 127.0.0.1", &request_loopback),
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
            (
                "tower_bearer StaticKey",
                Box::new(Driven(tower_bearer_static())),
            ),
        ];
        let table = format!("hot path, request with {label} (ns per request, ratios)");
        compare(rounds, BATCH, &table, make, &mut stacks);
    }
}

fn body(rounds: usize) {
    const BATCH: u32 = 1_000;
    let table = "body size: POST with a Full<Bytes> body, retry on (ns per request)";
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
        let (ratio, _, _) = stats((0..rounds).map(|r| ns[1][r] / ns[0][r]).collect());
        let (added, _, _) = stats((0..rounds).map(|r| ns[1][r] - ns[0][r]).collect());
        report(
            table,
            &format!("{size} B"),
            &[
                ("tower_http", stats(ns[0].clone()).0),
                ("tower_bearer", stats(ns[1].clone()).0),
                ("added ns", added),
                ("x vs tower_http", ratio),
            ],
        );
    }
}

fn threads(rounds: usize) {
    const PER_THREAD: u64 = 20_000;
    let table = "threads: 20000 requests per thread, each thread on its own clone (ns per request)";
    let http = tower_http();
    let bearer = tower_bearer(true);
    let row = |name: &str, one: &mut dyn FnMut() -> Duration, two: &mut dyn FnMut() -> Duration| {
        let mut a = || one().as_nanos() as f64 / PER_THREAD as f64;
        let mut b = || two().as_nanos() as f64 / PER_THREAD as f64;
        let ns = interleave(rounds, &mut [&mut a, &mut b]);
        let (ratio, _, _) = stats((0..rounds).map(|r| ns[1][r] / ns[0][r]).collect());
        report(
            table,
            name,
            &[
                ("1 thread", stats(ns[0].clone()).0),
                ("2 threads", stats(ns[1].clone()).0),
                ("x 2 threads / 1", ratio),
            ],
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
    const SEQUENTIAL: usize = 150;
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
    // With plain http allowed, the scope check skips the loopback test of the host (it parses
    // the host as an IP address on each request to http://127.0.0.1).
    let mut open = ServiceBuilder::new()
        .layer(layer(true).allow_insecure_http(true))
        .service(client());

    let table = "end to end over loopback: hyper-util client, hyper server, one current-thread \
                 runtime (requests per second)";
    let row = |name: &str, ns: Vec<Vec<f64>>| {
        // throughput ratios: time without / time with
        let ratio = |i: usize| stats((0..rounds).map(|r| ns[0][r] / ns[i][r]).collect()).0;
        report(
            table,
            name,
            &[
                ("without layer", 1e9 / stats(ns[0].clone()).0),
                ("with layer", 1e9 / stats(ns[1].clone()).0),
                ("x with / without", ratio(1)),
                ("x with, no loopback check", ratio(2)),
            ],
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
        let mut c = sequential!(&mut open);
        interleave(rounds, &mut [&mut a, &mut b, &mut c])
    };
    row("sequential", ns);

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
        let mut c = concurrent!(&mut open);
        interleave(rounds, &mut [&mut a, &mut b, &mut c])
    };
    row("32 concurrent", ns);
}

/// Runs `section` in `processes` child processes and prints the median of each value over
/// them; for ratios (`x ...`), also the lowest and highest process.
fn aggregate(section: &str, processes: usize, rounds: Option<usize>) {
    let exe = std::env::current_exe().unwrap();
    let collected = collect(processes, || {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--child").arg(section);
        if let Some(r) = rounds {
            cmd.arg("--rounds").arg(r.to_string());
        }
        cmd
    });
    let widths = Widths {
        row: 26,
        ratio: 30,
        other: 14,
    };
    for (table, rows) in collected.tables {
        println!("\n{table}; median of {processes} processes (lowest-highest process for ratios)");
        print_rows(&rows, &widths);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse::<usize>().unwrap())
    };
    let sections = ["awaited", "hot", "body", "threads", "e2e"];
    let default_rounds = |s: &str| match s {
        "awaited" | "hot" => 300,
        "body" => 150,
        "threads" => 40,
        _ => 80,
    };
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let section = args[i + 1].as_str();
        let rounds = value("--rounds").unwrap_or(default_rounds(section));
        match section {
            "awaited" => awaited_section(rounds),
            "hot" => hot(rounds),
            "body" => body(rounds),
            "threads" => threads(rounds),
            "e2e" => e2e(rounds),
            other => panic!("unknown section {other}"),
        }
        return;
    }
    let names: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    let chosen: Vec<&str> = if names.is_empty() || names.contains(&"interleaved") {
        sections.to_vec()
    } else {
        sections
            .iter()
            .copied()
            .filter(|s| names.contains(s))
            .collect()
    };
    let processes = value("--processes").unwrap_or(5);
    println!(
        "machine: {} cpus; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    for s in chosen {
        aggregate(s, processes, value("--rounds"));
    }
    println!("\nload average after: {}", load_average());
}
