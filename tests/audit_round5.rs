//! Round-5 audit of the new code: the OAuth2 client-credentials source over the shared https
//! transport (`src/source/oauth2/`, `src/source/https/`), `BearerAuthLayer::origin` and
//! `rejected_when` (`src/auth/scope/`, `src/auth/rejection.rs`), and the loopback memo
//! (`LoopbackMemo`).
//!
//! Tests named `finding_*` show a real problem and fail on the audited code (be5e692): 8 of
//! them, each doc comment giving the severity, what happens, why it matters and the suggested
//! fix. Tests named `holds_*` (9) are attacks the code withstood.
//!
//! Real components only: token endpoints and APIs are hyper servers on loopback, secrets are
//! real files, FIFOs and variables; only the scope checks use an in-process recorder as the
//! inner service (a refused request never reaches it). No sleeps as synchronisation: a test
//! waits for what it checks, or for a timeout the source itself enforces.

#![cfg(all(unix, feature = "oauth2"))]

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use support::sources::Steered;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_bearer::{
    ApiKey, BearerAuthLayer, KeyError, KeyErrorKind, KeySource, OAuth2ClientAuth,
    OAuth2ClientCredentials, OAuth2ClientCredentialsBuilder, Rejection, ScopeError,
};

const CLIENT_ID: &str = "audit5-client";
const SECRET: &str = "Zq7vN3pLw9Xk2Rt5Hm8c";
const OLD: &str = "sk-audit5-old-key-000000";
const NEW: &str = "sk-audit5-new-key-111111";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A request a loopback server got.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    authorization: Option<String>,
    body: String,
}

type Hits = Arc<Mutex<Vec<Hit>>>;

/// A server on 127.0.0.1 that records each request and answers `answer(n, &hit)` to the n-th
/// (from 0).
async fn server<F>(answer: F) -> (SocketAddr, Hits)
where
    F: Fn(usize, &Hit) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let hits: Hits = Arc::default();
    let sink = hits.clone();
    let addr = support::serve(move |req: Request<hyper::body::Incoming>| {
        let (sink, answer) = (sink.clone(), answer.clone());
        async move {
            let (head, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let hit = Hit {
                path: head.uri.path().to_owned(),
                authorization: head
                    .headers
                    .get(AUTHORIZATION)
                    .map(|v| v.to_str().unwrap_or("?").to_owned()),
                body: String::from_utf8_lossy(&body).into_owned(),
            };
            let n = {
                let mut hits = sink.lock().unwrap();
                hits.push(hit.clone());
                hits.len() - 1
            };
            answer(n, &hit)
        }
    })
    .await;
    (addr, hits)
}

fn json(status: u16, body: impl Into<String>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.into())))
        .unwrap()
}

/// A distinct Bearer token per `n`, for an hour.
fn token(n: usize) -> Response<Full<Bytes>> {
    json(
        200,
        format!(
            r#"{{"access_token":"tok-audit5-{n:06}","token_type":"Bearer","expires_in":3600}}"#
        ),
    )
}

/// A source for the token endpoint at `addr`, path `path`, with the client secret [`SECRET`].
fn oauth(addr: SocketAddr, path: &str) -> OAuth2ClientCredentialsBuilder {
    OAuth2ClientCredentials::builder()
        .token_url(format!("http://{addr}{path}"))
        .client_id(CLIENT_ID)
        .client_secret(SECRET)
        .timeout(Duration::from_secs(3))
}

/// Builds the source and loads a key once.
async fn load(builder: OAuth2ClientCredentialsBuilder) -> Result<ApiKey, KeyError> {
    builder.build().unwrap().load().await
}

/// `application/x-www-form-urlencoded`, decoded.
fn form(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let (mut out, b) = (Vec::new(), s.as_bytes());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("name=value");
            (decode(k), decode(v))
        })
        .collect()
}

fn scope_error(err: BoxError) -> ScopeError {
    *err.downcast::<ScopeError>()
        .unwrap_or_else(|e| panic!("not a ScopeError: {e}"))
}

/// An inner service that records the URI and bearer token of each request it gets, and
/// answers 200: for scope checks, where what matters is what reached it.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

type Inner = tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;

fn recorder() -> (Seen, Inner) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let svc = service_fn(move |req: Request<Full<Bytes>>| {
        sink.lock()
            .unwrap()
            .push((req.uri().to_string(), support::bearer(&req)));
        std::future::ready(Ok(Response::new(Full::default())))
    });
    (seen, Inner::new(svc))
}

/// Sends `req` on `svc` itself (not a clone): its loopback memo carries over.
async fn send<S>(svc: &mut S, req: Request<Full<Bytes>>) -> Result<S::Response, BoxError>
where
    S: Service<Request<Full<Bytes>>, Error = BoxError>,
{
    svc.ready().await?.call(req).await
}

/// A POST with a small replayable body.
fn post(uri: String) -> Request<Full<Bytes>> {
    Request::post(uri).body(Full::from("{}")).unwrap()
}

fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri.parse::<Uri>().unwrap())
        .body(Full::default())
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Findings
// ------------------------------------------------------------------------------------------

/// **Medium.** A client secret file that is a FIFO (or a device that blocks) strands a thread of
/// tokio's blocking pool for ever, one more at every load.
///
/// `ClientSecret::read` opens the file with a plain `File::open` inside `spawn_blocking`: on a
/// FIFO with no writer, `open` blocks until one comes. The load's timeout fires (so the load
/// reports `Timeout`, every time, never "wrong file"), but the thread stays blocked; the next
/// load (the layer retries with backoff) strands another. When the pool's cap is reached (512
/// by default; 1 here, to show it in one step), every `spawn_blocking` of the process waits
/// behind them: other file sources, `tokio::fs`, and hyper's DNS resolver (`GaiResolver`), so
/// every outgoing connection by name. `FileKeySource` was fixed for exactly this in an earlier
/// round (`O_NONBLOCK`, then refusing what is not a regular file); the OAuth2 secret file (and
/// the Vault credential file, `vault/auth/credential.rs`, the same code) did not get the fix.
///
/// Fix: share `FileKeySource`'s opening: `O_NONBLOCK`, `fstat`, refuse a non-regular file with
/// `Unreadable` ("not a regular file"), and at most one blocking read in flight per source.
#[test]
fn finding_a_fifo_secret_file_strands_a_blocking_thread_at_each_load() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let good = dir.path().join("secret");
    std::fs::write(&good, SECRET).unwrap();
    let (stuck, after) = rt.block_on(async {
        let (addr, _) = server(|n, _| token(n)).await;
        let on_fifo = oauth(addr, "/token")
            .client_secret_file(&fifo)
            .timeout(ms(300));
        let stuck = on_fifo.build().unwrap().load().await.map(drop);
        // Another source, a regular secret file: it needs a blocking thread too.
        let regular = oauth(addr, "/token")
            .client_secret_file(&good)
            .build()
            .unwrap();
        (stuck, regular.load().await.map(drop))
    });
    // Let the stranded thread go (a writer opens and closes the FIFO), then end the runtime.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo);
    rt.shutdown_background();
    let stuck = stuck.unwrap_err();
    if let Err(err) = after {
        panic!("the FIFO load ({stuck}) left no blocking thread for the next load: {err}");
    }
    assert_ne!(
        stuck.kind(),
        KeyErrorKind::Timeout,
        "a FIFO should be refused at once, not waited on: {stuck}"
    );
}

/// **Medium.** `localhost.` (a trailing dot) counts as loopback (`net::normalize_host` strips
/// the dot before `is_loopback_normalized`), so the layer puts the key on `http://localhost.:…`
/// and the OAuth2 source (`https::cleartext_refusal`) sends the client secret there in clear
/// text. But the system resolver does not answer `localhost.` from `/etc/hosts`: on glibc
/// (Debian 12's 2.36, `hosts: files dns`) `getent ahosts localhost` is 127.0.0.1 and
/// `getent ahosts localhost.` asks the DNS server. Whoever answers DNS (a hostile network, a
/// spoofed reply) picks where the key and the secret go, over plain http: the very case the
/// cleartext rule exists for. Here the lookup fails (the DNS server has no answer), so the load
/// shows hyper's "dns error" rather than a refusal.
///
/// Fix: take only `localhost` (any case, no trailing dot) and literal loopback addresses as
/// loopback in `is_loopback_normalized`'s callers (the layer and `cleartext_refusal`);
/// `localhost.` is then a name like any other. Keep the trailing-dot normalisation for scope
/// matching only.
#[tokio::test]
async fn finding_localhost_with_a_trailing_dot_is_loopback_to_the_rule_but_not_to_dns() {
    let (addr, _) = server(|n, _| token(n)).await;
    let dotted = format!("http://localhost.:{}", addr.port());
    let layer = BearerAuthLayer::new(Steered::new(OLD, None));
    let sent = layer
        .layer(support::client::<Full<Bytes>>())
        .oneshot(get(&format!("{dotted}/v1/x")))
        .await;
    let layer_refused = matches!(&sent, Err(e) if e.is::<ScopeError>());
    let source = OAuth2ClientCredentials::builder()
        .token_url(format!("{dotted}/token"))
        .client_id(CLIENT_ID)
        .client_secret(SECRET)
        .build();
    let loaded = match &source {
        Ok(source) => format!("built; the load: {:?}", source.load().await.map(drop)),
        Err(err) => format!("refused: {err}"),
    };
    assert!(
        layer_refused && source.is_err(),
        "the layer approved the key for it ({:?}); the OAuth2 source was {loaded}",
        sent.map(|r| r.status())
    );
}

/// **Medium.** A key the API keeps rejecting (a token for the wrong audience, a client whose
/// grant lacks a role) makes every request cost one token request and one replay, for ever.
///
/// An OAuth2 source returns a new token at every load, so `KeyCache::reject` never sees "the
/// same key back" and never backs off; the replay's own 401 (the fresh token rejected too)
/// goes back to the caller without telling the cache. N requests make N+1 token requests and
/// 2N API requests. Token endpoints rate-limit and bill per token (Auth0 M2M quotas, Entra ID
/// throttling per client): one misconfiguration turns API traffic into token-endpoint traffic,
/// which can get the client id throttled for every instance that shares it.
///
/// Fix: report a rejected replay to the cache: a key rejected on the replay that its own
/// reload produced says the key is not the problem; back off rejection-driven reloads
/// (exponentially, as for the same key back) until a request with a key succeeds.
#[tokio::test]
async fn finding_a_persistent_401_turns_every_request_into_a_token_request() {
    let (token_addr, tokens) = server(|n, _| token(n)).await;
    let (api, api_hits) = server(|_, _| json(401, r#"{"error":"wrong audience"}"#)).await;
    let layer = BearerAuthLayer::new(oauth(token_addr, "/token").build().unwrap());
    let client = layer.layer(support::client::<Full<Bytes>>());
    let requests = 8;
    for _ in 0..requests {
        let res = client.clone().oneshot(post(format!("http://{api}/v1/x")));
        let res = res.await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let (tokens, api_hits) = (tokens.lock().unwrap().len(), api_hits.lock().unwrap().len());
    assert!(
        tokens <= 3,
        "{requests} rejected requests made {tokens} token requests and {api_hits} API requests"
    );
}

/// **Low.** A token URL with user information (`https://svc:password@login.example/token`) is
/// accepted, never used (hyper sends no userinfo), and printed whole in every error's origin,
/// `source.origin()`, `describe()` (so logs, metrics labels and health pages) and both `Debug`s;
/// the builder's `Debug` prints the raw URL, its query too, though messages elsewhere
/// (`show`) leave the query out.
///
/// A password pasted into the URL is exactly what `BearerAuthLayer::origin` refuses ("it
/// holds user information", never echoing the value); the token URL should get the same rule.
///
/// Fix: refuse userinfo in `token_url` at `build` (`Config`, without quoting it), and make the
/// builder's `Debug` show the URL through `show` (no userinfo, no query).
#[tokio::test]
async fn finding_a_token_url_with_a_password_is_shown_in_errors_and_debug() {
    let (addr, _) = server(|_, _| json(401, r#"{"error":"invalid_client"}"#)).await;
    let password = "hunter2hunter2";
    let builder = oauth(addr, "/token").token_url(format!("http://svc:{password}@{addr}/token"));
    let mut shown = format!("{builder:?}");
    match builder.build() {
        Err(err) => shown.push_str(&format!("{err} {err:?}")),
        Ok(source) => {
            let err = source.load().await.unwrap_err();
            shown.push_str(&format!(
                "{err} {err:?} {source:?} {} {:?}",
                source.origin(),
                source.describe()
            ));
        }
    }
    assert!(!shown.contains(password), "{shown}");
}

/// **Low.** A token endpoint that quotes the `Authorization: Basic` value it got in its
/// `error_description` ("malformed credentials: Basic YXVk…") puts the client secret, base64
/// encoded, into the `KeyError` and so into every log line of the failure.
///
/// `server_text` takes the secret out as it is and form-urlencoded, but not in the one encoding
/// the source itself sends it in by default (Basic), and `safe_message` redacts the word after
/// `Bearer`, not after `Basic`.
///
/// Fix: in `server_text`, also cut out the base64 of `urlencode(id):urlencode(secret)` (the
/// whole credential); in `safe_message`, treat the word after `Basic` as after `Bearer`.
#[tokio::test]
async fn finding_an_error_description_quoting_the_basic_credentials_leaks_the_secret() {
    let (addr, hits) = server(|_, hit: &Hit| {
        let sent = hit.authorization.clone().unwrap_or_default();
        json(
            401,
            format!(r#"{{"error":"invalid_client","error_description":"bad header {sent}"}}"#),
        )
    })
    .await;
    let err = load(oauth(addr, "/token")).await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Denied);
    let sent = hits.lock().unwrap()[0].authorization.clone().unwrap();
    let basic = sent.strip_prefix("Basic ").unwrap(); // base64 of "audit5-client:Zq7v…"
    let text = format!("{err} {err:?}");
    assert!(!text.contains(basic), "{text}");
}

/// **Low.** Server text outside the RFC 6749 error members is quoted into the error without the
/// secret scrub that `error`, `error_description` and `error_uri` get (`server_text`): the
/// `Retry-After` header (capped at 40 characters and through `safe_message`, nothing more) and
/// the `Location` of a refused redirect (through `show`, userinfo included). A server that
/// echoes the client secret there puts it in the error and every log line of it.
///
/// Defence in depth, as the source's docs promise ("the client secret is cut out of them
/// wherever the server echoed it"); the same server echoing into `error_description` is handled.
///
/// Fix: show the parsed wait (`Retry-After 30 s`) rather than the raw text; show a refused
/// redirect's target without userinfo (or pass both through `server_text` with the secret).
#[tokio::test]
async fn finding_retry_after_and_redirect_targets_are_not_scrubbed_of_the_secret() {
    let (addr, _) = server(|_, hit: &Hit| {
        if hit.path == "/moved" {
            return Response::builder()
                .status(307)
                .header(
                    "location",
                    format!("http://{CLIENT_ID}:{SECRET}@127.0.0.2:9/token"),
                )
                .body(Full::default())
                .unwrap();
        }
        let mut res = json(429, r#"{"error":"slow_down"}"#);
        res.headers_mut()
            .insert("retry-after", SECRET.parse().unwrap());
        res
    })
    .await;
    let limited = load(oauth(addr, "/token")).await.unwrap_err();
    assert_eq!(limited.kind(), KeyErrorKind::Unavailable);
    let moved = load(oauth(addr, "/moved")).await.unwrap_err();
    assert_eq!(moved.kind(), KeyErrorKind::Config);
    for err in [moved, limited] {
        let text = format!("{err} {err:?}");
        assert!(!text.contains(SECRET), "{text}");
    }
}

/// **Low.** With `default_lifetime` of `Duration::MAX` (accepted by `build`, which checks only
/// for zero), a token response without `expires_in` panics the load: `sent_at + lifetime`
/// overflows `SystemTime`. `expires_in` itself is capped at ten years (`MAX_EXPIRES_IN`); the
/// default is not. Through the layer the panic becomes a failed load at every request, with a
/// panic message in the log, for a configuration `build` said was fine.
///
/// Fix: cap `default_lifetime` at `MAX_EXPIRES_IN` too (or refuse more at `build`), and use
/// `checked_add` for the expiry.
#[tokio::test]
async fn finding_a_huge_default_lifetime_panics_the_load() {
    let (addr, _) = server(|_, _| {
        json(
            200,
            r#"{"access_token":"tok-audit5-no-expiry","token_type":"Bearer"}"#,
        )
    })
    .await;
    let Ok(source) = oauth(addr, "/token")
        .default_lifetime(Duration::MAX)
        .build()
    else {
        return; // refused at build: fixed
    };
    let loaded = tokio::spawn(async move { source.load().await }).await;
    let key = loaded.expect("the load panicked").unwrap();
    let ten_years = Duration::from_secs(10 * 366 * 86_400);
    assert!(key.expiry().unwrap() <= SystemTime::now() + ten_years);
}

/// **Low.** `rejected_when([Status401, GrpcUnauthenticated])`, the set the docs show for a tonic
/// client, does not see a `403` that carries `grpc-status: 16`: `matches_any` decides a 401 or
/// 403 by the status alone and returns before it reads `grpc-status`. A gateway in front of a
/// gRPC service that answers a revoked token with 403 and UNAUTHENTICATED (the very signal the
/// caller opted into; tonic's `infer_grpc_status` reads `grpc-status` before the HTTP status, so
/// the caller sees UNAUTHENTICATED) gets no reload and no replay. The
/// same for a 401 with `grpc-status: 16` when only `GrpcUnauthenticated` is asked for.
///
/// Fix: when the status is 401/403 and its own signal is not in the set, fall through to the
/// `grpc-status` check instead of returning `false`.
#[tokio::test]
async fn finding_a_403_with_grpc_status_16_is_not_a_rejection() {
    let (addr, hits) = server(|_, hit: &Hit| {
        if hit.authorization.as_deref() == Some(&format!("Bearer {NEW}")) {
            return json(200, "ok");
        }
        Response::builder()
            .status(403)
            .header("content-type", "application/grpc")
            .header("grpc-status", "16")
            .body(Full::default())
            .unwrap()
    })
    .await;
    let source = Steered::new(OLD, None);
    let layer = BearerAuthLayer::new(source.clone())
        .rejected_when([Rejection::Status401, Rejection::GrpcUnauthenticated]);
    let svc = layer.layer(support::client::<Full<Bytes>>());
    layer.handle().ready().await.unwrap(); // OLD is the key
    source.set(Some(NEW)); // the next load gives the key the server takes
    let res = svc.oneshot(post(format!("http://{addr}/pkg.Svc/Call")));
    let res = res.await.unwrap();
    let seen: Vec<_> = hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.authorization.clone())
        .collect();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "not healed; the server saw {seen:?}"
    );
}

// ------------------------------------------------------------------------------------------
// Holds
// ------------------------------------------------------------------------------------------

/// The loopback memo approves only the very authority it saw, byte for byte: a neighbour that
/// differs by userinfo, a suffix, a doubled dot, another address or a scheme goes through the
/// full check, and a clone that copies the memo copies its config with it (there is no setter
/// on a built service), so nothing leaks across.
#[tokio::test]
async fn holds_the_loopback_memo_approves_only_the_same_authority() {
    let (seen, inner) = recorder();
    let mut svc = BearerAuthLayer::new(Steered::new(OLD, None)).layer(inner);
    let mut refused = 0;
    for (approved, neighbours) in [
        (
            "http://127.0.0.1:8080/",
            &[
                "http://127.0.0.1:8080@evil.example/",
                "http://127.0.0.1.evil.example:8080/",
                "http://evil.example:8080/",
                "ws://evil.example:8080/",
            ][..],
        ),
        (
            "http://localhost:8080/",
            &[
                "http://localhost.evil.example:8080/",
                "http://localhost..:8080/",
                "http://localhost@evil.example:8080/",
                "http://user:pw@evil.example:8080/",
            ],
        ),
        (
            "http://[::1]:8080/",
            &["http://[::2]:8080/", "http://[::1]@evil.example:8080/"],
        ),
    ] {
        for _ in 0..2 {
            send(&mut svc, get(approved)).await.unwrap();
        }
        let mut clone = svc.clone();
        for target in [&mut svc, &mut clone] {
            for uri in neighbours {
                let Ok(_) = uri.parse::<Uri>() else { continue };
                refused += 1;
                let err = scope_error(send(target, get(uri)).await.unwrap_err());
                assert!(err.is_cleartext(), "{uri}: {err}");
            }
        }
    }
    assert_eq!(refused, 20, "every neighbour is a URI");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 6, "only the approved got through: {seen:?}");
}

/// Origin-form requests are judged by the origin in any spelling (uppercase, a trailing dot),
/// a `Host` header naming another host is refused under a scope, a doubled trailing dot is not
/// the host, and an absolute-form request after origin-form ones on the same service is judged
/// by its own URI (and the other way round).
#[tokio::test]
async fn holds_origin_form_is_judged_by_the_origin_in_any_spelling() {
    let (seen, inner) = recorder();
    let scoped = BearerAuthLayer::new(Steered::new(OLD, None))
        .restrict_to_hosts(["grpc.example.com"])
        .origin("HTTPS://GRPC.EXAMPLE.COM.:443");
    let judge = |layer: &BearerAuthLayer, hosts: &[&str]| {
        let mut req = get("/pkg.Svc/Call");
        for host in hosts {
            req.headers_mut().append(HOST, host.parse().unwrap());
        }
        layer.layer(inner.clone()).oneshot(req)
    };
    judge(&scoped, &[]).await.unwrap();
    let err = scope_error(judge(&scoped, &["evil.example"]).await.unwrap_err());
    assert_eq!(err.host(), Some("evil.example"), "{err}");
    let two = judge(&scoped, &["grpc.example.com", "evil.example"]).await;
    scope_error(two.unwrap_err());
    let dotted = scoped.clone().origin("https://grpc.example.com..");
    scope_error(judge(&dotted, &[]).await.unwrap_err());
    let key = BearerAuthLayer::new(Steered::new(OLD, None));
    for remote in [
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "ws://a.example",
    ] {
        let err = scope_error(judge(&key.clone().origin(remote), &[]).await.unwrap_err());
        assert!(err.is_cleartext(), "{remote}: {err}");
    }

    let mut mixed = key.origin("http://127.0.0.1:50051").layer(inner.clone());
    for (uri, ok) in [
        ("/a", true),
        ("http://evil.example/b", false),
        ("/c", true),
        ("http://127.0.0.1:50051/d", true),
        ("http://evil.example:50051/e", false),
        ("/f", true),
    ] {
        let res = send(&mut mixed, get(uri)).await;
        assert_eq!(res.is_ok(), ok, "{uri}");
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert!(seen.iter().all(|(u, _)| !u.contains("evil")), "{seen:?}");
}

/// One replay per request, never with the rejected key: an API that rejects every key gets
/// the request twice (old key, then new), and a source that gives the same key back gets no
/// replay at all. Two `grpc-status` headers, or a status other than 16/7, are no rejection.
#[tokio::test]
async fn holds_one_replay_per_request_never_with_the_rejected_key() {
    let (addr, hits) = server(|_, _| json(401, "no")).await;
    let source = Steered::new(OLD, None);
    let layer = BearerAuthLayer::new(source.clone());
    let svc = layer.layer(support::client::<Full<Bytes>>());
    layer.handle().ready().await.unwrap();
    source.set(Some(NEW));
    let url = format!("http://{addr}/v1/x");
    for _ in 0..2 {
        let res = svc.clone().oneshot(post(url.clone())).await.unwrap();
        assert_eq!(res.status(), 401);
    }
    // The second request: NEW rejected, reloaded, NEW again: not replayed.
    let sent: Vec<_> = hits
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.authorization.clone())
        .collect();
    let [old, new] = [OLD, NEW].map(|k| Some(format!("Bearer {k}")));
    assert_eq!(sent, [old, new.clone(), new]);

    let (grpc, grpc_hits) = server(|n, _| {
        let mut res = json(200, "");
        let statuses: &[&str] = [&["16", "16"][..], &["16", "7"], &["016"], &["0"]][n % 4];
        for s in statuses {
            res.headers_mut().append("grpc-status", s.parse().unwrap());
        }
        res
    })
    .await;
    let source = Steered::new(OLD, None);
    let layer = BearerAuthLayer::new(source.clone()).rejected_when([
        Rejection::GrpcUnauthenticated,
        Rejection::GrpcPermissionDenied,
    ]);
    let svc = layer.layer(support::client::<Full<Bytes>>());
    for _ in 0..4 {
        let url = format!("http://{grpc}/pkg.Svc/Call");
        svc.clone().oneshot(post(url)).await.unwrap();
    }
    assert_eq!(source.loads(), 1, "no reload");
    assert_eq!(grpc_hits.lock().unwrap().len(), 4, "no replay");
}

/// Form encoding: `&`, `=`, `+`, `%`, a newline and non-ASCII in the client id, the secret, a
/// parameter's name or value come out as the same values on the server, with no extra
/// parameter; a scope with `&` is refused at `build`; a control character in the id too.
#[tokio::test]
async fn holds_form_values_cannot_inject_parameters() {
    let (addr, hits) = server(|n, _| token(n)).await;
    let id = "id&grant_type=password+x";
    let secret = "s&client_id=evil=%0A\nü+";
    let source = oauth(addr, "/token")
        .client_id(id)
        .client_secret(secret)
        .client_auth(OAuth2ClientAuth::RequestBody)
        .scope("a+b c=d")
        .param("audience", "x&client_secret=leak\r\nHost: evil")
        .param("x=y&z", "1")
        .build()
        .unwrap();
    source.load().await.unwrap();
    let got = form(&hits.lock().unwrap()[0].body);
    let want: Vec<(String, String)> = [
        ("grant_type", "client_credentials"),
        ("scope", "a+b c=d"),
        ("audience", "x&client_secret=leak\r\nHost: evil"),
        ("x=y&z", "1"),
        ("client_id", id),
        ("client_secret", secret),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    for bad in [
        oauth(addr, "/t").scope("a&b\""),
        oauth(addr, "/t").client_id("id\r\nx"),
    ] {
        assert_eq!(bad.build().unwrap_err().kind(), KeyErrorKind::Config);
    }
    for reserved in ["grant_type", "client_secret", "client_id", "scope"] {
        let err = oauth(addr, "/t").param(reserved, "x").build().unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Config, "{reserved}");
    }
}

/// A token answer of 2 MiB is cut off at 1 MiB, and one that never ends (headers, then a
/// trickle that stops) ends the load at its timeout: no unbounded memory, no hung load.
#[tokio::test]
async fn holds_a_huge_or_endless_token_answer_is_cut_off() {
    let (addr, _) = server(|_, _| {
        let pad = "x".repeat(2 << 20);
        json(
            200,
            format!(r#"{{"access_token":"tok-audit5-huge","token_type":"Bearer","pad":"{pad}"}}"#),
        )
    })
    .await;
    let err = load(oauth(addr, "/token")).await.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("larger than 1024 KiB"), "{err}");

    let endless = support::serve_raw(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 4096\r\n\r\n{\"access_token\":\"tok-",
        true,
    )
    .await;
    let started = tokio::time::Instant::now();
    let err = load(oauth(endless, "/token").timeout(ms(400)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Redirects never take the secret elsewhere: a 307/308 to another port, another spelling of
/// the host, to userinfo that hides another host, or a 302/301 anywhere, is not followed and the other
/// server gets nothing; a scheme-relative `//evil.example/…` stays on the same origin as a path.
#[tokio::test]
async fn holds_redirects_never_carry_the_secret_elsewhere() {
    let (elsewhere, elsewhere_hits) = server(|n, _| token(n)).await;
    let (addr, hits) = server(move |n, hit: &Hit| {
        let to = |status: u16, location: String| {
            Response::builder()
                .status(status)
                .header("location", location)
                .body(Full::default())
                .unwrap()
        };
        let port = elsewhere.port();
        match hit.path.as_str() {
            "/port" => to(307, format!("http://127.0.0.1:{port}/token")),
            "/name" => to(308, format!("http://localhost:{port}/token")),
            "/user" => to(307, format!("http://127.0.0.1@127.0.0.2:{port}/token")),
            "/found" => to(302, format!("http://127.0.0.1:{port}/token")),
            "/moved" => to(301, format!("http://127.0.0.1:{port}/token")),
            "/relative" => to(307, "//evil.example/token".into()),
            _ => token(n),
        }
    })
    .await;
    for path in ["/port", "/name", "/user", "/found", "/moved"] {
        let err = load(oauth(addr, path)).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains(SECRET), "{err}");
    }
    assert_eq!(elsewhere_hits.lock().unwrap().len(), 0);
    load(oauth(addr, "/relative")).await.unwrap();
    assert_eq!(
        hits.lock().unwrap().last().unwrap().path,
        "//evil.example/token"
    );
}

/// The https transport, moved to `src/source/https/`, still refuses plain http to anything but
/// loopback, in every spelling, at `build` (and so before any secret is read).
#[test]
fn holds_clear_text_to_a_remote_token_endpoint_is_refused() {
    let build = |url: &str| {
        OAuth2ClientCredentials::builder()
            .token_url(url)
            .client_id(CLIENT_ID)
            .client_secret_env("AUDIT5_NEVER_READ")
            .build()
    };
    for remote in [
        "http://auth.example/token",
        "HTTP://AUTH.EXAMPLE/token",
        "http://localhost.evil.example/token",
        "http://127.0.0.1.nip.io/token",
        "http://0.0.0.0/token",
        "http://2130706433/token",
        "http://[::ffff:10.0.0.1]/token",
        "ws://127.0.0.1/token",
        "ftp://127.0.0.1/token",
    ] {
        let err = build(remote).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Config, "{remote}: {err}");
    }
    for local in [
        "http://127.0.0.1:1/t",
        "http://[::1]:1/t",
        "http://LOCALHOST:1/t",
        "https://auth.example/t",
    ] {
        build(local).unwrap_or_else(|e| panic!("{local}: {e}"));
    }
}

/// `expires_in`, `token_type` and `access_token` tricks: each is refused with a fitting kind, or
/// read sensibly (a string of digits, a fraction floored, a huge value capped at ten years), and
/// no error quotes the token.
#[tokio::test]
async fn holds_token_response_tricks_are_refused_or_bounded() {
    use KeyErrorKind::{Expired, Invalid, Unreadable};
    const TEN_YEARS: u64 = 10 * 365 * 86_400;
    let exp = |member: &str| {
        format!(
            r#"{{"access_token":"tok-audit5-expiry","token_type":"Bearer","expires_in":{member}}}"#
        )
    };
    let typed = |token: &str, kind: &str| format!(r#"{{"access_token":"{token}"{kind}}}"#);
    let cases: Vec<(String, Result<u64, KeyErrorKind>)> = vec![
        (exp("0"), Err(Expired)),
        (exp("-1"), Err(Unreadable)),
        (exp("0.5"), Err(Expired)),
        (exp("90.9"), Ok(90)),
        (exp(r#""120""#), Ok(120)),
        (exp(r#""12e2""#), Err(Unreadable)),
        (exp("true"), Err(Unreadable)),
        (exp("1e300"), Ok(TEN_YEARS)),
        (exp("18446744073709551615"), Ok(TEN_YEARS)),
        (exp("99999999999999999999999"), Ok(TEN_YEARS)),
        (exp("1e999"), Err(Unreadable)),
        (
            typed("tok-audit5-mac-type-01", r#","token_type":"mac""#),
            Err(Invalid),
        ),
        (
            typed("tok-audit5-nul-type-02", r#","token_type":"Bearer\u0000""#),
            Err(Invalid),
        ),
        (typed("tok-audit5-no-type-003", ""), Err(Invalid)),
        (
            typed(r"tok-audit5-lf\n-000004", r#","token_type":"Bearer""#),
            Err(Invalid),
        ),
        (
            typed(r"tok-audit5-\u00fc-00005", r#","token_type":"Bearer""#),
            Err(Invalid),
        ),
        (
            typed("Bearer tok-audit5-0006", r#","token_type":"Bearer""#),
            Err(Invalid),
        ),
        (
            typed("tok-audit5-spaced-007", r#","token_type":" bEaReR ""#),
            Ok(3600),
        ),
    ];
    let served: Vec<String> = cases.iter().map(|(body, _)| body.clone()).collect();
    let (addr, _) = server(move |_, hit: &Hit| {
        let i: usize = hit.path.trim_start_matches("/t").parse().unwrap();
        json(200, served[i].clone())
    })
    .await;
    for (i, (body, want)) in cases.into_iter().enumerate() {
        let got = load(oauth(addr, &format!("/t{i}"))).await;
        match (got, want) {
            (Ok(key), Ok(lifetime)) => {
                let left = key.expiry().unwrap().duration_since(SystemTime::now());
                let left = left.unwrap().as_secs();
                assert!(left <= lifetime && left + 5 >= lifetime, "{body}: {left}");
            }
            (Err(err), Err(kind)) => {
                assert_eq!(err.kind(), kind, "{body}: {err}");
                let text = format!("{err} {err:?}");
                assert!(!text.contains("tok-audit5"), "{body}: {text}");
            }
            (got, want) => panic!("{body}: {:?} but {want:?}", got.map(drop)),
        }
    }
}

/// The secret file and variable: a huge file is refused without quoting it, a variable unset
/// between loads is `Missing` at the next one and read again once set.
#[tokio::test]
async fn holds_secret_files_and_variables_are_bounded_and_read_per_load() {
    let (addr, hits) = server(|n, _| token(n)).await;
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge");
    std::fs::write(&huge, SECRET.repeat(8 << 10)).unwrap();
    let err = load(oauth(addr, "/token").client_secret_file(&huge)).await;
    let err = err.unwrap_err();
    assert_eq!(err.kind(), KeyErrorKind::Unreadable, "{err}");
    assert!(!format!("{err} {err:?}").contains(SECRET));

    let _env = support::env_lock().await;
    let var = "AUDIT5_CLIENT_SECRET";
    let source = oauth(addr, "/token")
        .client_secret_env(var)
        .build()
        .unwrap();
    std::env::set_var(var, SECRET);
    source.load().await.unwrap();
    std::env::remove_var(var);
    assert_eq!(
        source.load().await.unwrap_err().kind(),
        KeyErrorKind::Missing
    );
    std::env::set_var(var, format!(" {SECRET}\n"));
    source.load().await.unwrap();
    std::env::remove_var(var);
    assert_eq!(hits.lock().unwrap().len(), 2, "no request without a secret");
}
