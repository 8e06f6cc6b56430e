//! The fleet simulation: N independent instances (default 500; `TOWER_BEARER_FLEET_N` sets
//! another), each a layer with its own `VaultKeySource` (its own token, its own connection
//! pool), all reading one OpenBao server, as N service instances would. Reads are counted at
//! the server through the counting proxy. Prints its numbers (run with `--nocapture`); they
//! are published in BENCHMARKS.md.
//!
//! (a) A rotation with the old key revoked at once, every instance sending 4 requests at that
//!     instant: each instance reads the store exactly once; the fleet's heal time.
//! (b) Refresh-ahead with jitter (hint 30 s): the refreshes spread over the last tenth of the
//!     hint instead of repeating the spike of (a); peak reads per second against N.
//! (c) The store rate-limited to a fifth of the fleet's demand at a rotation (N/5 reads per
//!     second: 100 for 500), and another rotation: every instance still ends with the new key,
//!     and the requests to the store stay within the bound below.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use tokio::time::Instant;
use tower_bearer::{ApiKey, KeyHandle, VaultKeySource};

use crate::harness::{layered, send, Api, Client};
use crate::openbao::proxy::{token_digest, Hit, Proxy};
use crate::openbao::OpenBao;

const KEYS: [&str; 3] = [
    "sk-openbao-fleet-key-0001",
    "sk-openbao-fleet-key-0002",
    "sk-openbao-fleet-key-0003",
];
const READ: &str = "fleet/data/app";
/// The refresh hint of every instance: refreshed between 27 and 30 s after each load.
const REFRESH: Duration = Duration::from_secs(30);
/// How often each instance sends a request in (b) and (c): what drives refreshes and reloads.
const PERIOD: Duration = Duration::from_millis(200);
/// Requests each instance sends at the instant of the rotation in (a).
const AT_ONCE: usize = 4;
/// The store's quota in (c), in reads per second, is the fleet's size over this.
const DEMAND_OVER_RATE: usize = 5;
/// The bound on (c)'s requests to the store, per instance on average: see `rate_limited`.
const C_BOUND_PER_INSTANCE: usize = 4;

struct Instance {
    client: Client,
    handle: KeyHandle,
    token: u64,
}

fn fleet_size() -> usize {
    std::env::var("TOWER_BEARER_FLEET_N")
        .ok()
        .map(|n| n.parse().expect("TOWER_BEARER_FLEET_N: a number"))
        .unwrap_or(500)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Counts per instance (by token) of `reads`.
fn per_instance(reads: &[Hit]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for read in reads {
        *counts.entry(read.token).or_insert(0) += 1;
    }
    counts
}

/// The most of `times` (sorted) within any window of `width`.
fn peak(times: &[Duration], width: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Sends a request every [`PERIOD`] (from a random phase) until `done` says so after a
/// request; returns how many it sent.
async fn drive(
    instance: &Instance,
    done: impl Fn(&Instance, Result<u16, String>) -> bool,
) -> usize {
    let phase = Duration::from_millis(fastrand::u64(0..PERIOD.as_millis() as u64));
    let mut tick = tokio::time::interval_at(Instant::now() + phase, PERIOD);
    let mut sent = 0;
    loop {
        tick.tick().await;
        sent += 1;
        if done(instance, send(&instance.client).await) {
            return sent;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenBao: BAO_BIN=$(.ci/install-openbao); prints numbers with --nocapture"]
async fn a_fleet_of_independent_instances_against_one_openbao() {
    let n = fleet_size();
    let load_before = load_average();
    let bao = OpenBao::start();
    let proxy = Proxy::start(bao.addr).await;
    bao.mount_kv("fleet", 2).await;
    bao.kv2_put("fleet", "app", json!({ "api_key": KEYS[0] }))
        .await;
    bao.policy(
        "reader",
        &format!(r#"path "{READ}" {{ capabilities = ["read"] }}"#),
    )
    .await;
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let made = join_all(chunk.iter().map(|_| bao.token(&["reader"], true))).await;
        tokens.extend(made);
    }
    let api = Api::new(&[KEYS[0]]);
    let fleet: Vec<Instance> = tokens
        .iter()
        .map(|token| {
            let source = VaultKeySource::builder()
                .address(proxy.url())
                .token(token)
                .mount("fleet")
                .path("app")
                .field("api_key")
                .refresh_after(REFRESH)
                .build()
                .unwrap();
            let (client, handle, _) = layered(source, &api);
            Instance {
                client,
                handle,
                token: token_digest(token),
            }
        })
        .collect();

    // Cold start: every instance's first request at once.
    let started = Instant::now();
    let first = join_all(fleet.iter().map(|i| send(&i.client))).await;
    assert!(
        first.iter().all(|r| *r == Ok(200)),
        "{:?}",
        first.iter().find(|r| **r != Ok(200))
    );
    let cold = started.elapsed();
    assert_eq!(proxy.reads(READ).len(), n);

    let a = rotation(&bao, &proxy, &api, &fleet).await;
    let b = refresh_ahead(&proxy, &fleet, &a).await;
    let c = rate_limited(&bao, &proxy, &api, &fleet).await;

    println!(
        "fleet: N = {n} instances, each with its own VaultKeySource (own token, own connection \
         pool), one OpenBao dev server, reads counted at the server; load average before \
         {load_before}, after {}",
        load_average()
    );
    println!("cold start: {n} first reads, fleet ready in {}", secs(cold));
    println!("{a}\n{b}\n{c}");
}

/// (a)'s numbers, and when each instance read the new key.
struct Rotation {
    n: usize,
    heal: Duration,
    median: Duration,
    store_span: Duration,
    reads_by: HashMap<u64, Duration>,
}

impl std::fmt::Display for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "(a) rotation, old key revoked at once, {AT_ONCE} requests per instance at that \
             instant: reads of the store per instance: exactly 1 ({} in all); the fleet healed \
             in {} (median instance {}); the store served the {} reads within {}",
            self.n,
            secs(self.heal),
            secs(self.median),
            self.n,
            secs(self.store_span)
        )
    }
}

async fn rotation(bao: &OpenBao, proxy: &Proxy, api: &Api, fleet: &[Instance]) -> Rotation {
    bao.kv2_put("fleet", "app", json!({ "api_key": KEYS[1] }))
        .await;
    let from = proxy.now();
    api.accept(&[KEYS[1]]);
    let started = Instant::now();
    let mut healed = join_all(fleet.iter().map(|i| async move {
        let replies = join_all((0..AT_ONCE).map(|_| send(&i.client))).await;
        assert!(replies.iter().all(|r| *r == Ok(200)), "{replies:?}");
        started.elapsed()
    }))
    .await;
    healed.sort_unstable();
    let reads: Vec<Hit> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at >= from)
        .collect();
    let counts = per_instance(&reads);
    assert_eq!(counts.len(), fleet.len(), "every instance read the store");
    assert!(
        counts.values().all(|&c| c == 1),
        "exactly one read each: {counts:?}"
    );
    assert!(reads.iter().all(|h| h.status == 200));
    assert_eq!(
        proxy.hits().iter().filter(|h| h.at >= from).count(),
        fleet.len(),
        "reads only"
    );
    Rotation {
        n: fleet.len(),
        heal: *healed.last().unwrap(),
        median: healed[healed.len() / 2],
        store_span: reads.last().unwrap().at - reads[0].at,
        reads_by: reads.iter().map(|h| (h.token, h.at)).collect(),
    }
}

/// (b): every instance sends a request every [`PERIOD`] until it has refreshed once.
async fn refresh_ahead(proxy: &Proxy, fleet: &[Instance], a: &Rotation) -> String {
    let from = proxy.now();
    let window = tokio::time::timeout(
        REFRESH * 2,
        join_all(fleet.iter().map(|i| {
            let before = i.handle.status().loads();
            drive(i, move |i, reply| {
                assert_eq!(reply, Ok(200));
                i.handle.status().loads() > before
            })
        })),
    );
    window
        .await
        .expect("every instance refreshed within twice its hint");
    let reads: Vec<Hit> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at >= from)
        .collect();
    let counts = per_instance(&reads);
    assert!(
        counts.values().all(|&c| c == 1),
        "one refresh each: {counts:?}"
    );
    assert_eq!(counts.len(), fleet.len());
    let rotation_at = a.reads_by.values().min().copied().unwrap();
    let mut times: Vec<Duration> = reads.iter().map(|h| h.at - rotation_at).collect();
    times.sort_unstable();
    let ages: Vec<Duration> = reads.iter().map(|h| h.at - a.reads_by[&h.token]).collect();
    let (young, old) = (ages.iter().min().unwrap(), ages.iter().max().unwrap());
    assert!(
        *young >= REFRESH.mul_f64(0.9) - Duration::from_millis(50),
        "{young:?}"
    );
    // Late only by the time a load takes under the herd and a request's period.
    assert!(*old <= REFRESH.mul_f64(1.1), "{old:?}");
    let n = fleet.len();
    let (per_second, per_tenth) = (
        peak(&times, Duration::from_secs(1)),
        peak(&times, Duration::from_millis(100)),
    );
    let spread = *times.last().unwrap() - times[0];
    // Spread over the last tenth of the hint (3 s): about N/3 in any second, not N at once.
    assert!(
        per_second * 2 <= n,
        "a spike: {per_second} of {n} reads within 1 s"
    );
    assert!(spread >= REFRESH / 20, "{spread:?}");
    format!(
        "(b) refresh-ahead, hint {} jittered over its last tenth: the {n} refreshes came \
         {} to {} after the rotation (spread {}), each {} to {} after its instance's last \
         load; peak {per_second} reads in any 1 s ({:.2} N), {per_tenth} in any 100 ms; the \
         reads they replace came {n} within {}",
        secs(REFRESH),
        secs(times[0]),
        secs(*times.last().unwrap()),
        secs(spread),
        secs(*young),
        secs(*old),
        per_second as f64 / n as f64,
        secs(a.store_span),
    )
}

/// (c): the store answers at most N/[`DEMAND_OVER_RATE`] reads per second (with
/// `Retry-After`), and the key is rotated with the old one revoked at once; every instance sends a request every
/// [`PERIOD`] until one succeeds.
///
/// The bound: the layer reloads after a 401 at most once per backoff window (0.5 s, doubling,
/// ±20%, or the store's `Retry-After` when longer), however many requests get a 401; so an
/// instance that gets the key H seconds after the rotation made at most
/// 1 + log2(1 + H/0.4) reads (5 for H under 12.4 s), which is asserted per instance. The
/// store serves N/5 reads per second, so most instances are served within 5 s of the
/// rotation, with fewer reads: on average at most [`C_BOUND_PER_INSTANCE`] per instance is
/// asserted too, against one per request (5 per second per instance) without the backoff.
async fn rate_limited(bao: &OpenBao, proxy: &Proxy, api: &Api, fleet: &[Instance]) -> String {
    let rate = (fleet.len() / DEMAND_OVER_RATE).max(1);
    bao.rate_limit_headers(true).await;
    bao.kv2_put("fleet", "app", json!({ "api_key": KEYS[2] }))
        .await;
    bao.rate_limit(
        "fleet",
        json!({ "path": "fleet/", "rate": rate, "interval": "1s" }),
    )
    .await;
    let from = proxy.now();
    api.accept(&[KEYS[2]]);
    let started = Instant::now();
    let outcome = join_all(fleet.iter().map(|i| async move {
        let sent = drive(i, |_, reply| reply == Ok(200)).await;
        (started.elapsed(), sent, i.token)
    }));
    let mut healed = tokio::time::timeout(Duration::from_secs(120), outcome)
        .await
        .expect("every instance got the new key within 2 minutes");
    bao.remove_rate_limit("fleet").await;
    let n = fleet.len();
    let new = ApiKey::new(KEYS[2]).unwrap();
    assert!(fleet
        .iter()
        .all(|i| i.handle.fingerprint().as_deref() == Some(new.fingerprint())));
    healed.sort_unstable_by_key(|(waited, ..)| *waited);
    let requests: usize = healed.iter().map(|(_, sent, _)| sent).sum();
    let reads: Vec<Hit> = proxy
        .reads(READ)
        .into_iter()
        .filter(|h| h.at >= from)
        .collect();
    let counts = per_instance(&reads);
    let ok = reads.iter().filter(|h| h.status == 200).count();
    let limited = reads.iter().filter(|h| h.status == 429).count();
    assert_eq!(ok, n, "one successful read per instance");
    assert_eq!(ok + limited, reads.len(), "200 or 429 only");
    let most = counts.values().max().copied().unwrap_or(0);
    for (waited, _, token) in &healed {
        // Backoff windows of at least 0.4 s, doubling: k reads take 0.4 * (2^(k-1) - 1) s.
        let bound = 1 + (1.0 + waited.as_secs_f64() / 0.4).log2().floor() as usize;
        let mine: Vec<_> = reads
            .iter()
            .filter(|h| h.token == *token)
            .map(|h| (h.at - from, h.status))
            .collect();
        assert!(
            mine.len() <= bound,
            "{} reads in {waited:?}, more than {bound}: {mine:?}",
            mine.len()
        );
    }
    assert!(
        reads.len() <= C_BOUND_PER_INSTANCE * n,
        "{} reads for {n} instances",
        reads.len()
    );
    let mut waits: Vec<&str> = reads
        .iter()
        .filter_map(|h| h.retry_after.as_deref())
        .collect();
    waits.sort_unstable();
    waits.dedup();
    format!(
        "(c) store limited to {rate} reads/s (Retry-After on), rotation with the old key \
         revoked at once: every instance ended with the new key, the last after {} (median \
         {}); {} requests to the store ({:.2} per instance, at most {most} for one): {ok} \
         answered 200, {limited} answered 429 (Retry-After: {} s), while the instances sent \
         {requests} requests to the API; bound: {} ({C_BOUND_PER_INSTANCE} N)",
        secs(healed.last().unwrap().0),
        secs(healed[n / 2].0),
        reads.len(),
        reads.len() as f64 / n as f64,
        waits.join(", "),
        C_BOUND_PER_INSTANCE * n,
    )
}
