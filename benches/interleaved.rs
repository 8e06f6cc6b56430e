//! Interleaved timing of the cached-key hot path, for ratios that a noisy machine cannot skew:
//! each round times a batch of requests through every stack in turn (rotating the order), and
//! the ratio to tower-http is taken within the round. Prints the median ratio and its spread.
//!
//! `cargo bench --bench interleaved` (about 10 s); `-- --rounds N` for more or fewer rounds.
//!
//! Requests are built fresh for each call and sent with `poll_ready`, `call` and one poll of a
//! future that is ready at once (no runtime), so the batch holds nothing but the stack.

mod common;

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::Service;

use common::*;

const BATCH: u32 = 2_000;

trait Stack {
    fn run(&mut self, make: fn() -> Request<Full<Bytes>>, n: u32);
}

struct Driven<S>(S);

impl<S, E> Stack for Driven<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    #[inline(never)]
    fn run(&mut self, make: fn() -> Request<Full<Bytes>>, n: u32) {
        for _ in 0..n {
            drop(black_box(send_now(&mut self.0, make())));
        }
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn quantile(v: &[f64], q: f64) -> f64 {
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map_or(400, |n| n.parse().unwrap());
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with("--") && a.parse::<u32>().is_err())
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| "interleaved".contains(f.as_str())) {
        return;
    }

    for (label, make) in [
        (
            "no headers of its own",
            request as fn() -> Request<Full<Bytes>>,
        ),
        ("2 headers of its own", request_with_headers),
    ] {
        let mut stacks: Vec<(&str, Box<dyn Stack>)> = vec![
            ("bare", Box::new(Driven(bare()))),
            ("tower_http", Box::new(Driven(tower_http()))),
            (
                "tower_bearer_retry_on",
                Box::new(Driven(tower_bearer(true))),
            ),
            (
                "tower_bearer_retry_off",
                Box::new(Driven(tower_bearer(false))),
            ),
        ];
        let k = stacks.len();
        let mut ns: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); k];
        for (_, s) in stacks.iter_mut() {
            s.run(make, BATCH); // warm up
        }
        for round in 0..rounds {
            for j in 0..k {
                let i = (round + j) % k;
                let start = Instant::now();
                stacks[i].1.run(make, BATCH);
                ns[i].push(start.elapsed().as_nanos() as f64 / BATCH as f64);
            }
        }
        println!("\nrequest with {label}: {rounds} rounds of {BATCH} requests per stack");
        println!(
            "{:<24} {:>9} {:>10} {:>22} {:>12}",
            "stack", "ns/req", "vs bare", "vs tower_http (IQR)", "added ns"
        );
        let th = 1;
        for i in 0..k {
            let mut ratio_bare: Vec<f64> = (0..rounds).map(|r| ns[i][r] / ns[0][r]).collect();
            let mut ratio_th: Vec<f64> = (0..rounds).map(|r| ns[i][r] / ns[th][r]).collect();
            let mut added: Vec<f64> = (0..rounds).map(|r| ns[i][r] - ns[0][r]).collect();
            let m_th = median(&mut ratio_th);
            println!(
                "{:<24} {:>9.1} {:>9.3}x {:>8.3}x ({:.3}-{:.3}) {:>12.1}",
                stacks[i].0,
                median(&mut ns[i].clone()),
                median(&mut ratio_bare),
                m_th,
                quantile(&ratio_th, 0.25),
                quantile(&ratio_th, 0.75),
                median(&mut added),
            );
        }
    }
}
