//! Per-request cost, awaited as callers run it, of tower-bearer next to tower-http's static
//! `AddAuthorizationLayer` and kube-client's refreshable-token `AuthLayer` (the one kube builds
//! for a `token_file`), all over the same do-nothing inner service.
//!
//! The harness is the `awaited` section of the main crate's `benches/interleaved.rs`: each stack
//! owns a current-thread tokio runtime; a batch is 2,000 requests of
//! `svc.ready().await.unwrap().call(make()).await.unwrap()` inside one `block_on`; every round
//! times one batch of each stack (all of them, both body types, in one process), rotating the
//! order each round; ratios are taken within the round and the median over rounds is reported.
//! The whole run is repeated in several child processes and the table shows the median over
//! processes, with the lowest and highest process for ratios.
//!
//! `cargo run --release` (from this directory); `-- --processes N --rounds N` change the
//! defaults (5 and 300).

use std::fmt::Debug;
use std::future::Future;
use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use kube_client::client::{Body as KubeBody, ConfigExt};
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_bearer::{ApiKey, BearerAuthLayer, StaticKey};

// The main crate's bench constructors (stacks, requests, key file, runtime), shared.
#[path = "../../common/report.rs"]
mod report;
#[path = "../../common/stacks.rs"]
mod stacks;
use report::*;
use stacks::*;

/// The inner service of the third table: [`tiny`], failing with a `BoxError` as kube's layer
/// needs (see [`ok_boxed`]), so that every stack of that table is over the same service.
fn tiny_boxed() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, BoxError>> + Send,
> + Clone
       + Send {
    service_fn(|req: Request<Full<Bytes>>| {
        drop(black_box(req));
        async { Ok(Response::new(Full::new(Bytes::new()))) }
    })
}

/// kube's `AuthLayer` over [`tiny_boxed`], with the token already cached.
fn kube_tiny(
    file: &KeyFile,
) -> impl Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = BoxError> + Send {
    let mut svc = ServiceBuilder::new()
        .layer(kube_auth_layer(file))
        .service(tiny_boxed());
    warm(&mut svc);
    svc
}

// ---------------------------------------------------------------------------------------------
// kube-client

/// The do-nothing inner service of the kube stacks: `ok`, but failing with a `BoxError`.
/// kube's `AuthLayer` is a tower `Either` of tower-http's `AddAuthorization` (error: the inner
/// service's) and an `AsyncFilter` (error: `BoxError`), and tower 0.5's `Either` is a service
/// only if both errors are the same type: over an `Infallible` inner service it is no service.
async fn ok_boxed<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, BoxError> {
    black_box(&req);
    Ok(Response::new(Full::new(Bytes::new())))
}

/// The same GET (same URI, empty body) over kube-client's body type.
#[inline(never)]
fn kube_request() -> Request<KubeBody> {
    Request::get(URL).body(KubeBody::empty()).unwrap()
}

/// The `AuthLayer` kube-client builds for a kubeconfig user with a `token_file` (its
/// `RefreshableToken::File`, behind tower's `AsyncFilterLayer`): a tokio `RwLock` around the
/// cached token, re-read from the file once the token is 50 s old (60 s lifetime, 10 s margin).
fn kube_auth_layer(file: &KeyFile) -> kube_client::client::middleware::AuthLayer {
    let mut config = kube_client::Config::new("https://api.azerion.ai".parse().unwrap());
    config.auth_info.token_file = Some(file.0.to_str().unwrap().to_owned());
    config
        .auth_layer()
        .expect("kube-client reads the token file")
        .expect("a token_file gives an AuthLayer")
}

/// kube's `AuthLayer` over the do-nothing inner service, for any body type (its predicate takes
/// any `http_body::Body + Send + 'static`), with the token already cached.
fn kube_auth<B>(
    file: &KeyFile,
    make: fn() -> Request<B>,
) -> impl Service<Request<B>, Response = Response<Full<Bytes>>, Error = BoxError> + Send
where
    B: http_body::Body + Send + 'static,
{
    let mut svc = ServiceBuilder::new()
        .layer(kube_auth_layer(file))
        .service(service_fn(ok_boxed::<B>));
    warm_with(&mut svc, make);
    svc
}

/// tower-http's static header over kube-client's body type and the same inner service as the
/// kube stacks (`ok_boxed`): the like-for-like baseline.
fn tower_http_kube_body(
) -> impl Service<Request<KubeBody>, Response = Response<Full<Bytes>>, Error = BoxError> + Send {
    ServiceBuilder::new()
        .layer(tower_http::auth::AddAuthorizationLayer::bearer(KEY))
        .service(service_fn(ok_boxed::<KubeBody>))
}

/// Sends one request through `layer` over an inner service that returns the `Authorization`
/// header it saw.
fn header_sent<L, B>(layer: L, make: fn() -> Request<B>) -> Result<String, String>
where
    L: tower::Layer<
        tower::util::ServiceFn<
            fn(Request<B>) -> std::future::Ready<Result<Response<String>, BoxError>>,
        >,
    >,
    L::Service: Service<Request<B>, Response = Response<String>>,
    <L::Service as Service<Request<B>>>::Error: std::fmt::Display,
{
    fn echo<B>(req: Request<B>) -> std::future::Ready<Result<Response<String>, BoxError>> {
        let h = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        std::future::ready(Ok(Response::new(h)))
    }
    let svc = layer.layer(service_fn(echo::<B> as fn(_) -> _));
    runtime().block_on(async {
        svc.oneshot(make())
            .await
            .map(Response::into_body)
            .map_err(|e| e.to_string())
    })
}

/// Checks the kube stacks send the header the others do, and what a key file ending in a
/// newline (as `KeyFile::new` writes, and `FileKeySource` trims) does to kube's layer.
fn check_kube() {
    let want = format!("Bearer {KEY}");
    let file = KeyFile::with_contents(KEY);
    for got in [
        header_sent(kube_auth_layer(&file), request),
        header_sent(kube_auth_layer(&file), kube_request),
    ] {
        assert_eq!(got.as_deref(), Ok(want.as_str()), "kube AuthLayer's header");
    }
    let newline = KeyFile::new();
    match header_sent(kube_auth_layer(&newline), kube_request) {
        Ok(h) => println!("note: kube-client with a token file ending in \\n sent {h:?}"),
        Err(e) => println!(
            "note: kube-client with a token file ending in \\n (as tower-bearer's FileKeySource \
             stack reads it) fails every request: {e}; its stacks here read a file without one"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// The harness: the `awaited` section of benches/interleaved.rs, over either body type.

trait Stack {
    fn run(&mut self, n: u32);
}

/// A stack driven as callers drive it: awaited in a current-thread runtime.
struct Awaited<S, B> {
    svc: S,
    rt: tokio::runtime::Runtime,
    make: fn() -> Request<B>,
}

impl<S, B> Stack for Awaited<S, B>
where
    S: Service<Request<B>>,
    S::Error: Debug,
{
    #[inline(never)]
    fn run(&mut self, n: u32) {
        let svc = &mut self.svc;
        let make = self.make;
        self.rt.block_on(async {
            for _ in 0..n {
                let res = svc.ready().await.unwrap().call(make()).await.unwrap();
                black_box(res);
            }
        });
    }
}

fn awaited<S, B>(svc: S, make: fn() -> Request<B>) -> Box<dyn Stack>
where
    S: Service<Request<B>> + 'static,
    S::Error: Debug,
    B: 'static,
{
    Box::new(Awaited {
        svc,
        rt: runtime(),
        make,
    })
}

fn median(v: Vec<f64>) -> f64 {
    let v = sorted(v);
    v[(v.len() - 1) / 2]
}

/// Times `rounds` batches of `batch` requests through each stack, rotating the order every
/// round; returns ns per request, per stack and round.
fn interleave(rounds: usize, batch: u32, stacks: &mut [Box<dyn Stack>]) -> Vec<Vec<f64>> {
    let k = stacks.len();
    for s in stacks.iter_mut() {
        s.run(batch); // warm up
    }
    let mut out = vec![Vec::with_capacity(rounds); k];
    for round in 0..rounds {
        for j in 0..k {
            let i = (round + j) % k;
            let start = Instant::now();
            stacks[i].run(batch);
            out[i].push(start.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    out
}

const BATCH: u32 = 2_000;

const TABLE_FULL: &str = "awaited in a runtime, Request<Full<Bytes>> (tower-bearer's bench body); \
                          ratios against bare and tower_http over Full<Bytes> (their inner \
                          service's error is Infallible; kube's row needs BoxError's)";
const TABLE_TINY: &str = "awaited in a runtime, Request<Full<Bytes>>, over an inner service \
whose future holds nothing (error BoxError for every stack, as kube's layer needs): like for like";
const TABLE_KUBE: &str = "awaited in a runtime, Request<kube_client::client::Body> (kube's own \
                          body type); ratios against bare and tower_http over kube's Body and \
                          the same BoxError inner service: like for like";

fn child(rounds: usize) {
    check_kube();
    let key_file = KeyFile::new();
    // kube-client sends the file's contents verbatim, so its file holds no trailing newline
    let kube_file = KeyFile::with_contents(KEY);
    // (table, row, stack); the first two rows of each table are its bare and tower_http
    let mut rows: Vec<(&str, &str, Box<dyn Stack>)> = vec![
        (TABLE_FULL, "bare", awaited(bare(), request)),
        (TABLE_FULL, "tower_http", awaited(tower_http(), request)),
        (
            TABLE_FULL,
            "tower_bearer StaticKey",
            awaited(tower_bearer_static(), request),
        ),
        (
            TABLE_FULL,
            "tower_bearer (retry on)",
            awaited(tower_bearer(true), request),
        ),
        (
            TABLE_FULL,
            "tower_bearer FileKeySource",
            awaited(tower_bearer_file(&key_file), request),
        ),
        (
            TABLE_FULL,
            "kube AuthLayer (token_file)",
            awaited(kube_auth(&kube_file, request), request),
        ),
        (TABLE_TINY, "bare", awaited(tiny_boxed(), request)),
        (
            TABLE_TINY,
            "tower_http",
            awaited(tower_http_over(tiny_boxed()), request),
        ),
        (
            TABLE_TINY,
            "tower_bearer StaticKey",
            awaited(
                tower_bearer_over(
                    &BearerAuthLayer::new(StaticKey::new(ApiKey::new(KEY).unwrap())),
                    tiny_boxed(),
                ),
                request,
            ),
        ),
        (
            TABLE_TINY,
            "tower_bearer (retry on)",
            awaited(tower_bearer_over(&layer(true), tiny_boxed()), request),
        ),
        (
            TABLE_TINY,
            "tower_bearer FileKeySource",
            awaited(
                tower_bearer_over(
                    &BearerAuthLayer::new(tower_bearer::FileKeySource::new(&key_file.0)),
                    tiny_boxed(),
                ),
                request,
            ),
        ),
        (
            TABLE_TINY,
            "kube AuthLayer (token_file)",
            awaited(kube_tiny(&kube_file), request),
        ),
        (
            TABLE_KUBE,
            "bare",
            awaited(service_fn(ok_boxed::<KubeBody>), kube_request),
        ),
        (
            TABLE_KUBE,
            "tower_http",
            awaited(tower_http_kube_body(), kube_request),
        ),
        (
            TABLE_KUBE,
            "kube AuthLayer (token_file)",
            awaited(kube_auth(&kube_file, kube_request), kube_request),
        ),
    ];
    let mut stacks: Vec<Box<dyn Stack>> = Vec::new();
    let labels: Vec<(&str, &str)> = rows
        .drain(..)
        .map(|(t, r, s)| {
            stacks.push(s);
            (t, r)
        })
        .collect();
    let ns = interleave(rounds, BATCH, &mut stacks);
    for (i, &(table, row)) in labels.iter().enumerate() {
        let bare = labels.iter().position(|l| l.0 == table).unwrap();
        let th = bare + 1;
        let per_round = |f: &dyn Fn(usize) -> f64| median((0..rounds).map(f).collect());
        report(
            table,
            row,
            &[
                ("ns/req", median(ns[i].clone())),
                ("added ns vs bare", per_round(&|r| ns[i][r] - ns[bare][r])),
                ("x vs tower_http", per_round(&|r| ns[i][r] / ns[th][r])),
                ("x vs bare", per_round(&|r| ns[i][r] / ns[bare][r])),
            ],
        );
    }
}

/// Runs the child in `processes` processes and prints the median of each value over them; for
/// ratios (`x ...`), also the lowest and highest process.
fn aggregate(processes: usize, rounds: usize) {
    let exe = std::env::current_exe().unwrap();
    let collected = collect(processes, || {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--child").arg("--rounds").arg(rounds.to_string());
        cmd
    });
    for note in collected.notes {
        println!("{note}");
    }
    let widths = Widths {
        row: 29,
        ratio: 26,
        other: 18,
    };
    for (table, rows) in collected.tables {
        println!(
            "\n{table}\n{rounds} rounds x {BATCH} requests per stack per process; median of \
             {processes} processes (lowest-highest process for ratios)"
        );
        print_rows(&rows, &widths);
    }
}

/// The version of `name` in this crate's Cargo.lock.
fn locked_version(name: &str) -> &'static str {
    let lock = include_str!("../Cargo.lock");
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| {
            let rest = &lock[i + needle.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .unwrap_or("?")
}

/// Today's date (UTC), from the system clock.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = secs.div_euclid(86_400) + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let tod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        tod / 3600,
        tod % 3600 / 60
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse::<usize>().unwrap())
    };
    let rounds = value("--rounds").unwrap_or(300);
    if args.iter().any(|a| a == "--child") {
        child(rounds);
        return;
    }
    let processes = value("--processes").unwrap_or(5);
    println!(
        "{}; kube-client {}, tower-http {}, tokio {}",
        utc_now(),
        locked_version("kube-client"),
        locked_version("tower-http"),
        locked_version("tokio"),
    );
    println!(
        "machine: {} cpus; load average before: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    aggregate(processes, rounds);
    println!("\nload average after: {}", load_average());
}
