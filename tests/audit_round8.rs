//! Round-8 audit of 705d713 (one pool per pooled type, `pooled!`), c83dbe8 (a kept box keeps
//! its `Parts`, cleared, and the next copy writes only what differs), d497f4d
//! (`send_with_key!` uses the request as a place) and d1c3d24 (`clear` inlined). Stale data,
//! replay fidelity, memory held by kept boxes, panics and reentrancy in `of`/`clear`.
//!
//! Findings (tests named `finding_*`, failing on d1c3d24):
//!
//! - Low (secret hygiene): the bytes of a request's headers (a sensitive value too) stay in
//!   the kept box's inline buffer after the request and its future are gone, for as long as
//!   the box is kept (process lifetime in the overflow). Not a regression in effect (the
//!   `Box<Option<Parts>>` of 8b17f58 kept the stale buffer as well), but `clear` now states
//!   "nothing of it can be read back" while a heap dump still can.
//! - Low (replay fidelity, predates these commits): an absolute URI whose path-and-query is
//!   `*` (`Uri::from_parts`) is replayed to another host (`api.example*`): the packed text
//!   `authority` + `*` parses back as a different authority.
//!
//! Both findings also fail on 8b17f58 (before the audited commits), and all the holds pass
//! there: no regression was found in 705d713, c83dbe8, d497f4d or d1c3d24.
//!
//! Holds (`holds_*`): no method, version, header (value, order, duplicates, sensitivity),
//! URI byte, extension or body of an earlier request reaches a later replay, on one thread
//! across body types, after spilled and cloned heads, unpolled drops, panicking extension
//! clones and the replay's own `into_request`, nor through tower's `Buffer` on a multi-thread
//! runtime; kept boxes hold no body, extension or `ReplayableBody` after the future is gone; a
//! body `Drop` that panics in `clear` frees the box (the next copy is clean); a body `Drop`
//! that sends through the same layer from `clear` works; the first request (key loaded in the
//! future, `Cold::Loading`) replays like the others; the replay carries exactly one
//! `Authorization`, the new key's, also when the caller's own was overridden.
//!
//! Fixed (both): `clear` zeroes the bytes a copy packed (`src/replay/packed.rs`); a URI whose
//! path-and-query after an authority starts with neither `/` nor `?` is cloned, not packed as
//! text; and a replay's copy is checked against the layer's scope again before the new key
//! goes on it (`Sent::into_replay`), so that no packing slip can send a key off scope.
//!
//! Not memory unsafety: the crate is `forbid(unsafe_code)`. The only `unsafe` here is this
//! binary's tracking allocator and its heap scan (reads of live allocations under the lock
//! that every `dealloc` takes before freeing).

mod support;

use std::cell::Cell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use support::sources::{Fresh, Steered};
use support::{call_now, poll_once, Grenade};
use tower::buffer::Buffer;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_bearer::{BearerAuthLayer, ReplayableBody};

// ---------------------------------------------------------------------------------------------
// Plumbing: a global allocator that can list the live allocations a thread made
// ---------------------------------------------------------------------------------------------

/// Forwards to `System`; allocations made by a thread with `TRACK` set are recorded (address
/// and size) until freed, by any thread, so that a test can scan what is still alive.
struct Tracking;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
}

const SLOTS: usize = 1 << 15;
const EMPTY: usize = 0;
const GONE: usize = 1;
static LOCK: AtomicBool = AtomicBool::new(false);
static TRACKED: AtomicUsize = AtomicUsize::new(0);
static PTRS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(EMPTY) }; SLOTS];
static SIZES: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

fn lock() {
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn unlock() {
    LOCK.store(false, Ordering::Release);
}

fn slot_of(ptr: usize) -> usize {
    (ptr >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) % SLOTS
}

fn record(ptr: *mut u8, size: usize) {
    if ptr.is_null() || !TRACK.try_with(Cell::get).unwrap_or(false) {
        return;
    }
    lock();
    let start = slot_of(ptr as usize);
    for i in 0..SLOTS {
        let at = (start + i) % SLOTS;
        let here = PTRS[at].load(Ordering::Relaxed);
        if here == EMPTY || here == GONE {
            PTRS[at].store(ptr as usize, Ordering::Relaxed);
            SIZES[at].store(size, Ordering::Relaxed);
            TRACKED.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    unlock();
}

/// Forgets `ptr` (before it is freed: a scan holding the lock never reads freed memory).
fn forget(ptr: *mut u8) {
    if TRACKED.load(Ordering::Relaxed) == 0 {
        return;
    }
    lock();
    let start = slot_of(ptr as usize);
    for i in 0..SLOTS {
        let at = (start + i) % SLOTS;
        let here = PTRS[at].load(Ordering::Relaxed);
        if here == EMPTY {
            break;
        }
        if here == ptr as usize {
            PTRS[at].store(GONE, Ordering::Relaxed);
            TRACKED.fetch_sub(1, Ordering::Relaxed);
            break;
        }
    }
    unlock();
}

unsafe impl std::alloc::GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        record(ptr, layout.size());
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        let ptr = unsafe { std::alloc::System.alloc_zeroed(layout) };
        record(ptr, layout.size());
        ptr
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        forget(ptr);
        let new = unsafe { std::alloc::System.realloc(ptr, layout, size) };
        if new.is_null() {
            record(ptr, layout.size());
        } else {
            record(new, size);
        }
        new
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        forget(ptr);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

/// Whether `needle` is in any live allocation recorded so far (by any tracking thread).
/// Allocates nothing (a `dealloc` here would wait for the lock held).
fn live_heap_contains(needle: &[u8]) -> bool {
    lock();
    let mut found = false;
    for at in 0..SLOTS {
        let ptr = PTRS[at].load(Ordering::Relaxed);
        if ptr == EMPTY || ptr == GONE {
            continue;
        }
        let size = SIZES[at].load(Ordering::Relaxed);
        let mut matched = 0;
        for i in 0..size {
            // Volatile: a byte of padding may never have been written.
            let byte = unsafe { std::ptr::read_volatile((ptr as *const u8).add(i)) };
            matched = if byte == needle[matched] {
                matched + 1
            } else {
                usize::from(byte == needle[0])
            };
            if matched == needle.len() {
                found = true;
                break;
            }
        }
        if found {
            break;
        }
    }
    unlock();
    found
}

/// Runs `f` on a thread of its own (fresh spares), its allocations tracked.
fn tracked<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        TRACK.with(|t| t.set(true));
        let out = f();
        TRACK.with(|t| t.set(false));
        out
    })
    .join()
    .unwrap()
}

/// Runs `f` on a thread of its own (fresh spares).
fn fresh<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Plumbing: a recorder that answers 401 to the first sending of each request
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct Tag(u32);

#[derive(Clone, Debug, PartialEq, Eq)]
struct Other(&'static str);

/// Everything the inner service saw of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    method: Method,
    uri: String,
    host: Option<String>,
    version: Version,
    /// Name, value, sensitive; in `HeaderMap` iteration order; `authorization` apart.
    headers: Vec<(String, Vec<u8>, bool)>,
    authorization: Vec<String>,
    extensions: usize,
    tag: Option<u32>,
    other: Option<&'static str>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<(String, Seen)>>>;

/// Records each request under its `x-id`; answers 401 the first time an id is seen unless it
/// is listed in `pass`, 200 after.
fn recorder<B>(
    log: Log,
    pass: Arc<Mutex<Vec<String>>>,
) -> impl Service<
    Request<B>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<String>, BoxError>> + Send,
> + Clone
       + Send
       + Sync
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    service_fn(move |req: Request<B>| {
        let (log, pass) = (log.clone(), pass.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map_err(Into::into)?
                .to_bytes()
                .to_vec();
            let id = parts
                .headers
                .get("x-id")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                host: parts.uri.host().map(str::to_owned),
                version: parts.version,
                headers: parts
                    .headers
                    .iter()
                    .filter(|(n, _)| **n != AUTHORIZATION)
                    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec(), v.is_sensitive()))
                    .collect(),
                authorization: parts
                    .headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect(),
                extensions: parts.extensions.len(),
                tag: parts.extensions.get::<Tag>().map(|t| t.0),
                other: parts.extensions.get::<Other>().map(|o| o.0),
                body,
            };
            let mut log = log.lock().unwrap();
            let first = !log.iter().any(|(seen_id, _)| *seen_id == id);
            log.push((id.clone(), seen));
            let mut res = Response::new(String::new());
            if first && !pass.lock().unwrap().contains(&id) {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok::<_, BoxError>(res)
        }
    })
}

/// Asserts that request `id` was sent twice, the second time (the replay) as the first but
/// for the key, with exactly one `Authorization`, and returns the first sending.
fn replayed_as_sent(log: &Log, id: &str) -> Seen {
    let log = log.lock().unwrap();
    let mine: Vec<&Seen> = log
        .iter()
        .filter(|(i, _)| i == id)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(mine.len(), 2, "request {id}: sent, then replayed once");
    let (sent, replay) = (mine[0].clone(), mine[1].clone());
    assert_eq!(sent.authorization.len(), 1, "request {id}: one key sent");
    assert_eq!(
        replay.authorization.len(),
        1,
        "request {id}: one key replayed"
    );
    assert_ne!(
        sent.authorization, replay.authorization,
        "request {id}: the replay has the new key"
    );
    let strip = |s: &Seen| Seen {
        authorization: Vec::new(),
        ..s.clone()
    };
    assert_eq!(
        strip(&replay),
        strip(&sent),
        "request {id}: the replay differs from what was sent"
    );
    sent
}

/// A request of shape `n % 8`, each unlike the others in method, version, URI, headers,
/// extensions; `id` in `x-id`.
fn shaped<B>(n: u32, id: &str, body: B) -> Request<B> {
    let mut req = Request::new(body);
    req.headers_mut()
        .insert("x-id", HeaderValue::from_str(id).unwrap());
    match n % 8 {
        // Everything set, spilled past 124 bytes, an allocated extension method.
        0 => {
            *req.method_mut() = Method::from_bytes(b"A-VERY-LONG-EXTENSION-METHOD").unwrap();
            *req.version_mut() = Version::HTTP_2;
            *req.uri_mut() = "https://earlier.example:8443/a/long/path/to/spill?q=1&r=2"
                .parse()
                .unwrap();
            let h = req.headers_mut();
            h.append("x-dup", HeaderValue::from_static("1"));
            h.append("accept", HeaderValue::from_static("*/*"));
            h.append("x-dup", HeaderValue::from_static("2"));
            let mut secret = HeaderValue::from_static("earlier-secret");
            secret.set_sensitive(true);
            h.append("x-secret", secret);
            h.append("x-pad", HeaderValue::from_str(&"p".repeat(200)).unwrap());
            req.extensions_mut().insert(Tag(n));
            req.extensions_mut().insert(Other("earlier"));
        }
        // Nothing but the id: GET, HTTP/1.1, `/`.
        1 | 5 => {}
        // A head too long for u16 lengths (`Head::Cloned`), HTTP/1.0, PUT.
        2 => {
            *req.method_mut() = Method::PUT;
            *req.version_mut() = Version::HTTP_10;
            *req.uri_mut() = "http://127.0.0.1:1/huge".parse().unwrap();
            req.headers_mut().insert(
                "x-huge",
                HeaderValue::from_str(&"h".repeat(70_000)).unwrap(),
            );
            req.extensions_mut().insert(Tag(n));
        }
        // Another scheme, DELETE, a sensitive header, inline.
        3 => {
            *req.method_mut() = Method::DELETE;
            *req.uri_mut() = "custom+scheme://h/p".parse().unwrap();
            let mut v = HeaderValue::from_static("s");
            v.set_sensitive(true);
            req.headers_mut().insert("x-s", v);
        }
        // Short https URI, one header, one extension, HTTP/3.
        4 => {
            *req.version_mut() = Version::HTTP_3;
            *req.uri_mut() = "https://b.example/v1".parse().unwrap();
            req.headers_mut()
                .insert("accept", HeaderValue::from_static("application/json"));
            req.extensions_mut().insert(Other("later"));
        }
        // Authority form (CONNECT).
        6 => {
            *req.method_mut() = Method::CONNECT;
            *req.uri_mut() = "proxy.example:443".parse().unwrap();
        }
        // Origin form, POST, an empty header value.
        _ => {
            *req.method_mut() = Method::POST;
            *req.uri_mut() = "/v1/chat?x".parse().unwrap();
            req.headers_mut()
                .insert("x-empty", HeaderValue::from_static(""));
        }
    }
    req
}

/// The layer, letting every URI form of [`shaped`] have the key (origin-form, authority-form,
/// cleartext and other schemes).
fn open(layer: BearerAuthLayer) -> BearerAuthLayer {
    layer
        .allow_insecure_http(true)
        .origin("https://api.example")
}

fn body_of(id: &str) -> Bytes {
    Bytes::from(format!("body of {id}"))
}

// ---------------------------------------------------------------------------------------------
// Stale data and fidelity
// ---------------------------------------------------------------------------------------------

/// On one thread, boxes go from request to request across all four body types, every shape
/// (spilled, cloned heads, extension methods, versions, extensions, sensitive and duplicate
/// headers, URI forms), futures dropped unpolled, copies taken apart by `into_request` (every
/// request here is replayed), and a copy whose extension clone panicked in `of`. Every replay
/// is exactly its original (but for the key), and a plain request after a rich one shows
/// nothing of it. The first request takes the `Cold::Loading` path (the copy is made in the
/// future, after the load).
#[test]
fn holds_replays_equal_their_originals_whatever_came_before() {
    fresh(|| {
        let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-")));
        let log = Log::default();
        let pass = Arc::new(Mutex::new(Vec::new()));
        let mut full = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass.clone()));
        let mut text = layer.layer(recorder::<String>(log.clone(), pass.clone()));
        let mut empty = layer.layer(recorder::<Empty<Bytes>>(log.clone(), pass.clone()));
        let mut stream = layer.layer(recorder::<ReplayableBody>(log.clone(), pass.clone()));
        let rt = runtime();
        let armed = Arc::new(AtomicBool::new(true));
        let mut ids = Vec::new();
        for round in 0..3u32 {
            for n in 0..8u32 {
                let id = format!("{round}-{n}");
                // A copy dropped unpolled, then one whose `of` panicked, before each.
                let dropped = shaped(n + 3, &format!("dropped-{id}"), Full::new(body_of(&id)));
                drop(call_now(&mut full, dropped));
                let mut doomed = shaped(n + 1, &format!("doomed-{id}"), Full::new(body_of(&id)));
                doomed.extensions_mut().insert(Grenade(armed.clone()));
                let panicked = catch_unwind(AssertUnwindSafe(|| call_now(&mut full, doomed)));
                // (The very first request loads its key: its copy is made later, in the
                // future, which is dropped unpolled here.)
                assert!(panicked.is_err() || (round, n) == (0, 0));
                let status = match (n + round) % 4 {
                    0 => {
                        let req = shaped(n, &id, Full::new(body_of(&id)));
                        rt.block_on(call_now(&mut full, req)).unwrap().status()
                    }
                    1 => {
                        let req = shaped(n, &id, String::from_utf8(body_of(&id).to_vec()).unwrap());
                        rt.block_on(call_now(&mut text, req)).unwrap().status()
                    }
                    2 => {
                        let req = shaped(n, &id, Empty::new());
                        rt.block_on(call_now(&mut empty, req)).unwrap().status()
                    }
                    _ => {
                        let body = ReplayableBody::new(Full::new(body_of(&id)));
                        let req = shaped(n, &id, body);
                        rt.block_on(call_now(&mut stream, req)).unwrap().status()
                    }
                };
                assert_eq!(status, StatusCode::OK, "request {id}");
                ids.push((id, n));
            }
        }
        for (id, n) in ids {
            let sent = replayed_as_sent(&log, &id);
            let expected = shaped(n, &id, ());
            assert_eq!(sent.method, *expected.method(), "request {id}");
            assert_eq!(sent.version, expected.version(), "request {id}");
            assert_eq!(sent.uri, expected.uri().to_string(), "request {id}");
            assert_eq!(sent.extensions, expected.extensions().len(), "request {id}");
        }
        let log = log.lock().unwrap();
        assert!(
            log.iter()
                .all(|(id, _)| !id.starts_with("dropped-") && !id.starts_with("doomed-")),
            "a dropped or failed request reached the API"
        );
    });
}

/// Futures made by a `Buffer`'s worker and driven and dropped by tasks of a multi-thread
/// runtime (boxes taken on one thread, cleared on others, through the overflow): every replay
/// is exactly its original. (Every request rotates the key here, so a 401 whose key is
/// generations old is sometimes not replayed, by design (`is_new_key`): such a request is
/// checked to have been sent once, and at least half must have been replayed.)
#[test]
fn holds_replays_through_a_buffer_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-mt-")));
    let log = Log::default();
    let pass = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass));
    let ids = rt.block_on(async move {
        let buffer = Buffer::new(svc, 64);
        let mut tasks = Vec::new();
        for task in 0..4u32 {
            let mut buffer = buffer.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..40u32 {
                    let id = format!("mt-{task}-{i}");
                    let req = shaped(i + task, &id, Full::new(body_of(&id)));
                    // Every third future is dropped before it is polled.
                    let fut = buffer.ready().await.unwrap().call(req);
                    if i % 3 == 2 {
                        drop(fut);
                        continue;
                    }
                    // A 401 comes back unreplayed when its key's generation is too old to
                    // tell from the new one (every request here rotates the key): counted.
                    let status = fut.await.unwrap().status();
                    ids.push((id, i + task, status));
                    tokio::task::yield_now().await;
                }
                ids
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        ids
    });
    assert_eq!(ids.len(), 4 * 27);
    let replayed: Vec<_> = ids.iter().filter(|(.., s)| *s == StatusCode::OK).collect();
    assert!(
        replayed.len() >= ids.len() / 2,
        "{} replayed",
        replayed.len()
    );
    for (id, _, status) in &ids {
        if *status != StatusCode::OK {
            assert_eq!(*status, StatusCode::UNAUTHORIZED);
            let log = log.lock().unwrap();
            assert_eq!(log.iter().filter(|(i, _)| i == id).count(), 1);
        }
    }
    for (id, n, _) in replayed {
        let (id, n) = (id.clone(), *n);
        let sent = replayed_as_sent(&log, &id);
        assert_eq!(sent.body, body_of(&id).to_vec());
        assert_eq!(sent.method, *shaped(n, &id, ()).method());
    }
}

/// The caller's own `Authorization`, overridden by the layer (`override_existing`): the copy
/// holds the caller's header, and the replay carries the new key only, once.
#[test]
fn holds_an_overridden_caller_header_is_replaced_in_the_replay() {
    fresh(|| {
        let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-ov-"))).override_existing(true);
        let log = Log::default();
        let pass = Arc::new(Mutex::new(Vec::new()));
        let mut svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass));
        let rt = runtime();
        for i in 0..3 {
            let id = format!("ov-{i}");
            let mut req = shaped(0, &id, Full::new(body_of(&id)));
            let h = req.headers_mut();
            h.append(
                AUTHORIZATION,
                HeaderValue::from_static("Bearer callers-own-1"),
            );
            h.append(
                AUTHORIZATION,
                HeaderValue::from_static("Bearer callers-own-2"),
            );
            let res = rt.block_on(call_now(&mut svc, req)).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let sent = replayed_as_sent(&log, &id);
            assert!(sent.authorization[0].starts_with("Bearer sk-round8-ov-"));
        }
    });
}

/// **Low (replay fidelity; predates the audited commits).** A request whose URI has an
/// authority and the path-and-query `*` (built with `Uri::from_parts`, e.g. `OPTIONS *` to a
/// given host) is replayed to another host: `api.example*` instead of `api.example`, with the
/// new key on it, and the layer's scope is not checked again for the replay.
///
/// Why: `Head::fill` packs the URI as `authority` + `path_and_query` text; for a
/// path-and-query that does not start with `/` (`*`; `?q` is normalised harmlessly) the text
/// parses back as a longer authority.
///
/// Fix: pack a separator (or the lengths of authority and path apart) and rebuild with
/// `Uri::from_parts`, or fall back to `Head::Cloned` when the path-and-query does not start
/// with `/` and there is an authority; check `copy.uri() == original.uri()` in a debug
/// assertion.
#[test]
fn finding_an_asterisk_path_with_an_authority_is_replayed_to_another_host() {
    fresh(|| {
        let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-star-")));
        let log = Log::default();
        let pass = Arc::new(Mutex::new(Vec::new()));
        let mut svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass));
        let rt = runtime();
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(Authority::from_static("api.example"));
        parts.path_and_query = Some(PathAndQuery::from_static("*"));
        let uri = Uri::from_parts(parts).unwrap();
        assert_eq!(uri.host(), Some("api.example"));
        let mut req = shaped(1, "star", Full::new(Bytes::new()));
        *req.method_mut() = Method::OPTIONS;
        *req.uri_mut() = uri;
        let res = rt.block_on(call_now(&mut svc, req)).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let log = log.lock().unwrap();
        let hosts: Vec<_> = log.iter().map(|(_, s)| s.host.clone()).collect();
        assert_eq!(
            hosts,
            [
                Some("api.example".to_owned()),
                Some("api.example".to_owned())
            ],
            "sent to api.example, replayed elsewhere"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// What kept boxes hold
// ---------------------------------------------------------------------------------------------

/// Something whose clones are counted: alive while any is.
#[derive(Clone, Debug)]
struct Counted(#[allow(dead_code)] Arc<()>);

/// A body owner that runs `on_drop` when dropped.
struct Owner {
    alive: Arc<()>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}
impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        b"owned body"
    }
}
impl Drop for Owner {
    fn drop(&mut self) {
        let _ = &self.alive;
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// After the futures are gone (answered, replayed, dropped unpolled), on the calling thread
/// and through a `Buffer` (cleared on other threads), nothing of the requests' bodies,
/// extensions or `ReplayableBody` buffers is held by a kept box.
#[test]
fn holds_kept_boxes_hold_no_body_or_extension() {
    let alive = Arc::new(());
    let owned = || {
        Full::new(Bytes::from_owner(Owner {
            alive: alive.clone(),
            on_drop: None,
        }))
    };
    let log = Log::default();
    let pass = Arc::new(Mutex::new(Vec::new()));
    let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-hold-")));
    let mut full = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass.clone()));
    let mut stream = layer.layer(recorder::<ReplayableBody>(log.clone(), pass.clone()));
    let rt = runtime();
    for i in 0..10 {
        let id = format!("hold-{i}");
        let mut req = shaped(i, &id, owned());
        req.extensions_mut().insert(Counted(alive.clone()));
        if i % 2 == 0 {
            pass.lock().unwrap().push(id.clone()); // answered 200 at once: no replay
        }
        if i == 3 {
            drop(call_now(&mut full, req));
            continue;
        }
        assert_eq!(
            rt.block_on(call_now(&mut full, req)).unwrap().status(),
            StatusCode::OK
        );
        let mut req = shaped(i, &format!("{id}-s"), ReplayableBody::new(owned()));
        req.extensions_mut().insert(Counted(alive.clone()));
        assert_eq!(
            rt.block_on(call_now(&mut stream, req)).unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "the calling thread's spares hold values"
    );
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass.clone()));
    let alive2 = alive.clone();
    mt.block_on(async move {
        let buffer = Buffer::new(svc, 16);
        let tasks: Vec<_> = (0..20u32)
            .map(|i| {
                let mut buffer = buffer.clone();
                let alive = alive2.clone();
                tokio::spawn(async move {
                    let id = format!("hold-mt-{i}");
                    let body = Full::new(Bytes::from_owner(Owner {
                        alive: alive.clone(),
                        on_drop: None,
                    }));
                    let mut req = shaped(i, &id, body);
                    req.extensions_mut().insert(Counted(alive));
                    let res = buffer.ready().await.unwrap().call(req).await.unwrap();
                    assert_eq!(res.status(), StatusCode::OK);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    drop(mt);
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "spares on other threads hold values"
    );
}

/// **Low (secret hygiene).** A request's header bytes, a value marked sensitive among them,
/// stay in the heap after the request and its response future are gone: in the replay copy's
/// kept box, whose inline buffer is never cleared, and whose later reuses overwrite only as
/// many bytes as their own head takes. A box lives on in this thread's spares or in the
/// process-wide overflow (up to 1024 of them), so a caller's bearer token, cookie or API key
/// sent on a request stays readable by a core dump or heap-inspection until a longer head
/// overwrites it. With the replay off the same request leaves nothing behind (checked first).
///
/// Why: `pooled!(Parts, ..)`'s `clear` resets the method, extensions, body and a spilled head
/// but leaves `Head::Inline { len, buf }` as it is, by design (c83dbe8: "no zeroed buffer");
/// `Pooled::clear` documents "nothing of it can be read back". (8b17f58's `Box<Option<Parts>>`
/// set to `None` left the same bytes: not a regression in effect.)
///
/// Fix: in `clear`, zero `buf[..len]` (a `len`-byte `fill(0)`, cheap: the head was just
/// written) and set `len = 0`; or zero only when a header value was sensitive (a flag set by
/// `pack`).
#[test]
fn finding_a_sensitive_header_outlives_its_request_in_a_kept_box() {
    /// Sends one request carrying `secret` (static bytes: the only heap copy is the layer's),
    /// then three plain ones, through a layer with the replay `on` or off; all answered 200
    /// and dropped. Whether `secret` is still in a live allocation made by this thread.
    fn lingers(on: bool, secret: &'static str) -> bool {
        tracked(move || {
            let layer = BearerAuthLayer::new(Steered::new("sk-round8-lingers", None))
                .retry_on_unauthorized(on);
            let inner = service_fn(|_req: Request<Full<Bytes>>| {
                std::future::ready(Ok::<_, BoxError>(Response::new(Full::new(Bytes::new()))))
            });
            let mut svc = layer.layer(inner);
            let rt = runtime();
            let plain = || {
                Request::get("https://api.example/v1/models")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            };
            rt.block_on(call_now(&mut svc, plain())).unwrap();
            let mut value = HeaderValue::from_static(secret);
            value.set_sensitive(true);
            let req = Request::post("https://api.example/v1/chat")
                .header("content-type", "application/json")
                .header("x-api-key", value)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            assert_eq!(poll_once(call_now(&mut svc, req)).unwrap().status(), 200);
            for _ in 0..3 {
                assert_eq!(
                    poll_once(call_now(&mut svc, plain())).unwrap().status(),
                    200
                );
            }
            drop(svc);
            drop(rt);
            live_heap_contains(secret.as_bytes())
        })
    }
    assert!(
        !lingers(false, "caller-secret-OFF-7d1f0a9c"),
        "control: with the replay off nothing of the request is left"
    );
    assert!(
        !lingers(true, "caller-secret-ON-3b8e44d2"),
        "the caller's sensitive header value is still in the heap after its request, in a \
         kept replay box"
    );
}

// ---------------------------------------------------------------------------------------------
// User code in `clear`: a body's Drop
// ---------------------------------------------------------------------------------------------

/// The copy holds the last reference to a body whose owner's `Drop` panics (the inner service
/// dropped its own): `clear` panics out of the future's drop after the body, before the
/// extensions and method. The box is freed, not kept half-cleared: the copy's extension clone
/// is dropped (not held), and a plain request's replay after it shows none of the panicked
/// request's method, version, extensions or headers.
#[test]
fn holds_a_body_drop_that_panics_in_clear() {
    fresh(|| {
        let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-bomb-")));
        let log = Log::default();
        let pass = Arc::new(Mutex::new(Vec::new()));
        let mut svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass.clone()));
        let rt = runtime();
        let warm = shaped(1, "warm", Full::new(Bytes::new()));
        assert_eq!(rt.block_on(call_now(&mut svc, warm)).unwrap().status(), 200);
        let alive = Arc::new(());
        for i in 0..3 {
            let id = format!("bomb-{i}");
            pass.lock().unwrap().push(id.clone());
            let body = Full::new(Bytes::from_owner(Owner {
                alive: alive.clone(),
                on_drop: Some(Box::new(|| panic!("a body's Drop panics"))),
            }));
            let mut req = shaped(0, &id, body);
            req.extensions_mut().insert(Counted(alive.clone()));
            let mut fut = Box::pin(call_now(&mut svc, req));
            let res = poll_once(fut.as_mut()).unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert!(catch_unwind(AssertUnwindSafe(move || drop(fut))).is_err());
        }
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "a half-cleared box holds values"
        );
        for i in 0..3 {
            let id = format!("after-bomb-{i}");
            let req = shaped(1, &id, Full::new(body_of(&id)));
            assert_eq!(rt.block_on(call_now(&mut svc, req)).unwrap().status(), 200);
            let sent = replayed_as_sent(&log, &id);
            assert_eq!(sent.method, Method::GET);
            assert_eq!(sent.extensions, 0);
            assert_eq!(sent.headers.len(), 1);
        }
    });
}

/// A body's `Drop`, run by `clear`, sends a request (replayed after a 401 in its turn) through
/// the same layer: the nested copy takes another box while the outer one is out; both
/// answered, the nested replay equals its original, and later replays too.
#[test]
fn holds_a_body_drop_that_sends_through_the_layer() {
    fresh(|| {
        let layer = open(BearerAuthLayer::new(Fresh::new("sk-round8-nest-")));
        let log = Log::default();
        let pass = Arc::new(Mutex::new(Vec::new()));
        let mut svc = layer.layer(recorder::<Full<Bytes>>(log.clone(), pass.clone()));
        let rt = Arc::new(runtime());
        let warm = shaped(1, "warm", Full::new(Bytes::new()));
        assert_eq!(rt.block_on(call_now(&mut svc, warm)).unwrap().status(), 200);
        let nested = Arc::new(Mutex::new(svc.clone()));
        let answered = Arc::new(AtomicUsize::new(0));
        for i in 0..5 {
            let id = format!("outer-{i}");
            let (nested, answered, rt2) = (nested.clone(), answered.clone(), rt.clone());
            let on_drop = Box::new(move || {
                let id = format!("nested-{i}");
                let req = shaped(i + 2, &id, Full::new(body_of(&id)));
                let fut = call_now(&mut *nested.lock().unwrap(), req);
                assert_eq!(rt2.block_on(fut).unwrap().status(), 200);
                answered.fetch_add(1, Ordering::SeqCst);
            });
            let body = Full::new(Bytes::from_owner(Owner {
                alive: Arc::new(()),
                on_drop: Some(on_drop),
            }));
            let mut req = shaped(i, &id, body);
            req.extensions_mut().insert(Tag(i));
            // Answered at once (no replay): the copy holds the last reference to the body,
            // dropped here, outside the runtime (the nested request blocks on it).
            pass.lock().unwrap().push(id);
            let mut fut = Box::pin(call_now(&mut svc, req));
            assert_eq!(poll_once(fut.as_mut()).unwrap().status(), 200);
            drop(fut);
        }
        assert_eq!(answered.load(Ordering::SeqCst), 5);
        for i in 0..5u32 {
            let sent = replayed_as_sent(&log, &format!("nested-{i}"));
            assert_eq!(sent.method, *shaped(i + 2, "", ()).method());
        }
        for i in 0..3 {
            let id = format!("after-nest-{i}");
            let req = shaped(1, &id, Full::new(body_of(&id)));
            assert_eq!(rt.block_on(call_now(&mut svc, req)).unwrap().status(), 200);
            assert_eq!(replayed_as_sent(&log, &id).extensions, 0);
        }
    });
}
