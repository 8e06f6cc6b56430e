//! Heap allocations per request, counted by a global allocator: bare service, tower-http's
//! static header, and tower-bearer with a cached key (retry on and off), for a request with no
//! headers of its own and one with two. Prints a table; `cargo bench --bench allocs`.
//!
//! `cargo bench --bench allocs -- loop <variant> <n>` instead sends `n` requests through one
//! variant in `measured_loop`, for `valgrind --tool=callgrind --toggle-collect=...measured_loop`.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::Service;

use common::*;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const N: u64 = 10_000;

/// Allocations (count, bytes) per request: building it, sending it, dropping the response.
fn count<S, E>(svc: &mut S, make: Make) -> (f64, f64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    for _ in 0..100 {
        drop(send_now(svc, make()));
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..N {
        drop(send_now(svc, make()));
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / N as f64, (b1 - b0) as f64 / N as f64)
}

/// The size of `svc`'s response future: what every request writes and moves at each `.await`.
fn future_size<S: Service<Request<Full<Bytes>>>>(_: &S) -> usize {
    std::mem::size_of::<S::Future>()
}

/// Allocations per request when each request goes through a fresh clone of `svc`
/// (`svc.clone().oneshot(req)`, as handlers holding a shared client often do).
fn count_cloned<S, E>(svc: &S, make: Make) -> (f64, f64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    for _ in 0..100 {
        drop(send_now(&mut svc.clone(), make()));
    }
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..N {
        drop(send_now(&mut svc.clone(), make()));
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / N as f64, (b1 - b0) as f64 / N as f64)
}

/// Allocations of building the request alone.
fn count_build(make: Make) -> (f64, f64) {
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    for _ in 0..N {
        drop(std::hint::black_box(make()));
    }
    let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / N as f64, (b1 - b0) as f64 / N as f64)
}

#[inline(never)]
fn measured_loop<S, E>(svc: &mut S, make: Make, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E>,
    E: std::fmt::Debug,
{
    for _ in 0..n {
        drop(std::hint::black_box(send_now(svc, make())));
    }
}

#[inline(never)]
fn cloned_loop<S, E>(svc: &S, make: Make, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    measured_loop_cloned(svc, make, n)
}

#[inline(never)]
fn measured_loop_cloned<S, E>(svc: &S, make: Make, n: u64)
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = E> + Clone,
    E: std::fmt::Debug,
{
    for _ in 0..n {
        drop(std::hint::black_box(send_now(&mut svc.clone(), make())));
    }
}

fn run_loop(variant: &str, n: u64) {
    let (name, make): (&str, Make) = match variant.strip_suffix("+headers") {
        Some(name) => (name, request_with_headers),
        None => (variant, request),
    };
    match name {
        "build" => {
            // the request alone, to subtract
            let mut svc = tower::service_fn(|req: Request<Full<Bytes>>| {
                std::hint::black_box(req);
                std::future::ready(Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                    Bytes::new(),
                ))))
            });
            measured_loop(&mut svc, make, n)
        }
        "bare" => measured_loop(&mut bare(), make, n),
        "tower_http" => measured_loop(&mut tower_http(), make, n),
        "retry_on" => measured_loop(&mut tower_bearer(true), make, n),
        "retry_off" => measured_loop(&mut tower_bearer(false), make, n),
        "static" => measured_loop(&mut tower_bearer_static(), make, n),
        "tower_http_cloned" => cloned_loop(&tower_http(), make, n),
        "retry_on_cloned" => cloned_loop(&tower_bearer(true), make, n),
        other => {
            panic!("unknown variant {other}: build, bare, tower_http, retry_on, retry_off, static")
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("loop") {
        let variant = args.get(1).map_or("retry_on", String::as_str);
        let n = args.get(2).map_or(100_000, |n| n.parse().unwrap());
        run_loop(variant, n);
        return;
    }
    if !args.is_empty() && !args.iter().any(|a| "allocs".contains(a.as_str())) {
        return; // filtered out by `cargo bench <filter>`
    }

    println!("heap allocations per request (built, sent, response dropped); {N} requests each");
    let key_file = KeyFile::new();
    println!(
        "response future: bare {} B, tower-http {} B, tower-bearer {} B (any source)",
        future_size(&bare()),
        future_size(&tower_http()),
        future_size(&tower_bearer(true)),
    );
    for (label, make) in [
        ("no headers of its own", request as Make),
        ("2 headers of its own", request_with_headers),
    ] {
        let build = count_build(make);
        let rows = [
            ("bare service_fn", count(&mut bare(), make)),
            (
                "tower-http AddAuthorization",
                count(&mut tower_http(), make),
            ),
            (
                "tower-bearer, retry on",
                count(&mut tower_bearer(true), make),
            ),
            (
                "tower-bearer, retry off",
                count(&mut tower_bearer(false), make),
            ),
            (
                "tower-bearer, FileKeySource",
                count(&mut tower_bearer_file(&key_file), make),
            ),
            (
                "tower-bearer, StaticKey",
                count(&mut tower_bearer_static(), make),
            ),
            (
                "tower-http, clone per request",
                count_cloned(&tower_http(), make),
            ),
            (
                "tower-bearer file, clone/req.",
                count_cloned(&tower_bearer_file(&key_file), make),
            ),
            (
                "tower-bearer, clone per req.",
                count_cloned(&tower_bearer(true), make),
            ),
        ];
        let (bare, tower_http) = (rows[0].1, rows[1].1);
        println!(
            "\nrequest with {label} (building it: {:.2} allocs, {:.0} B)",
            build.0, build.1
        );
        println!(
            "{:<30} {:>8} {:>9} {:>13} {:>15}",
            "stack", "allocs", "bytes", "vs bare", "vs tower-http"
        );
        for (name, (allocs, bytes)) in rows {
            println!(
                "{name:<30} {allocs:>8.2} {bytes:>9.0} {:>+13.2} {:>+15.2}",
                allocs - bare.0,
                allocs - tower_http.0
            );
        }
    }
}
