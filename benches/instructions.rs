//! Instruction counts per request, for A/B comparisons a noisy machine cannot skew: run one
//! stack awaited in a current-thread runtime for N requests under callgrind, twice (N and 2N),
//! and take the difference over N. `cargo bench --bench instructions` runs that for every stack
//! when valgrind is installed; `-- --child STACK N` is one run.

mod common;

use std::hint::black_box;
use std::process::Command;

use tower::{Service, ServiceExt};

use common::*;
use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};

async fn drive<S>(mut svc: S, n: u64)
where
    S: Service<http::Request<http_body_util::Full<bytes::Bytes>>>,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let res = svc.ready().await.unwrap().call(request()).await.unwrap();
        black_box(res);
    }
}

fn child(stack: &str, n: u64) {
    let key_file = KeyFile::new();
    // Built (and warmed, on a runtime of their own) before the runtime that drives them.
    let rt = runtime();
    match stack {
        "bare" => rt.block_on(drive(bare(), n)),
        "tower_http" => rt.block_on(drive(tower_http(), n)),
        "retry_on" => rt.block_on(drive(tower_bearer(true), n)),
        "retry_off" => rt.block_on(drive(tower_bearer(false), n)),
        "file" => rt.block_on(drive(tower_bearer_file(&key_file), n)),
        "static" => rt.block_on(drive(tower_bearer_static(), n)),
        // The same over an inner service whose future holds nothing (see `common::tiny`).
        "tiny_bare" => rt.block_on(drive(tiny(), n)),
        "tiny_tower_http" => rt.block_on(drive(tower_http_over(tiny()), n)),
        "tiny_retry_on" => rt.block_on(drive(tower_bearer_over(&layer(true), tiny()), n)),
        "tiny_retry_off" => rt.block_on(drive(tower_bearer_over(&layer(false), tiny()), n)),
        "tiny_file" => {
            let layer = BearerAuthLayer::new(tower_bearer::FileKeySource::new(&key_file.0));
            rt.block_on(drive(tower_bearer_over(&layer, tiny()), n))
        }
        "tiny_static" => {
            let layer = BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap()));
            rt.block_on(drive(tower_bearer_over(&layer, tiny()), n))
        }
        other => panic!("unknown stack {other}"),
    }
}

fn instructions(stack: &str, n: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["--child", stack, &n.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("Collected :"))?;
    line.rsplit(':')
        .next()?
        .trim()
        .replace(',', "")
        .parse()
        .ok()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    if instructions("bare", 1).is_none() {
        println!("valgrind not found: no instruction counts");
        return;
    }
    const N: u64 = 20_000;
    println!("instructions per request, awaited in a current-thread runtime (callgrind, (count(2N) - count(N)) / N, N = {N})");
    let mut base = None;
    for stack in [
        "bare",
        "tower_http",
        "retry_on",
        "retry_off",
        "file",
        "static",
        "tiny_bare",
        "tiny_tower_http",
        "tiny_retry_on",
        "tiny_retry_off",
        "tiny_file",
        "tiny_static",
    ] {
        let (Some(one), Some(two)) = (instructions(stack, N), instructions(stack, 2 * N)) else {
            println!("{stack}: valgrind failed");
            continue;
        };
        let per = (two - one) as f64 / N as f64;
        if stack == "tower_http" || stack == "tiny_tower_http" {
            base = Some(per);
        }
        let ratio = base.map_or(String::new(), |b| format!("{:.3}x tower_http", per / b));
        println!("{stack:>12} {per:>8.1} {ratio}");
    }
}
