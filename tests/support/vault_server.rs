//! A fixture Vault: hyper 1 on 127.0.0.1, answering with the documented responses of
//! `tests/fixtures/vault/`, byte for byte.
//!
//! It checks what a real Vault checks for the requests the source makes: the `X-Vault-Token`
//! (403 with the documented body otherwise), the `X-Vault-Namespace` when one is configured,
//! the shape of login and renewal payloads against the documented request samples. It serves
//! KV v2 under the mount `secret` and KV v1 under `kv`, AppRole and Kubernetes login, and
//! `renew-self`, and can be switched to answer each failure the source must report.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;

use crate::support::{respond, serve};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vault/",
            $name
        ))
    };
}

pub const KV2_READ: &str = fixture!("kv2_read.json");
pub const KV2_FULL_ENVELOPE: &str = fixture!("derived_kv2_read_full_envelope.json");
pub const KV2_DELETED: &str = fixture!("derived_kv2_404_deleted_version.json");
pub const KV2_DESTROYED: &str = fixture!("derived_kv2_404_destroyed_version.json");
pub const KV1_READ: &str = fixture!("kv1_read.json");
pub const APPROLE_LOGIN_REQUEST: &str = fixture!("approle_login_request.json");
pub const APPROLE_LOGIN: &str = fixture!("approle_login.json");
pub const KUBERNETES_LOGIN_REQUEST: &str = fixture!("kubernetes_login_request.json");
pub const KUBERNETES_LOGIN: &str = fixture!("kubernetes_login.json");
pub const RENEW_SELF_REQUEST: &str = fixture!("token_renew_self_request.json");
pub const RENEW_SELF: &str = fixture!("token_renew_self.json");
pub const LOOKUP_SELF: &str = fixture!("token_lookup_self.json");
pub const DENIED: &str = fixture!("derived_403_permission_denied.json");
pub const DENIED_MULTIERROR: &str = fixture!("derived_403_permission_denied_multierror.json");
pub const EMPTY_404: &str = fixture!("error_empty_404.json");
pub const SEALED: &str = fixture!("derived_503_sealed.json");
pub const RATE_LIMITED: &str = fixture!("derived_429_rate_limited.json");
pub const GENERIC_ERROR: &str = fixture!("error_generic.json");

/// The static token the fixture accepts from the start (a test value, not from the docs).
pub const ROOT_TOKEN: &str = "hvs.fixture-root-token-000000000001";
/// The body AppRole's login answers to a wrong role_id or secret_id (shape of `error_generic`).
pub const INVALID_ROLE_OR_SECRET_ID: &str = r#"{"errors":["invalid role or secret ID"]}"#;

/// The `client_token` of a documented login answer.
pub fn client_token(login_answer: &str) -> String {
    let v: Value = serde_json::from_str(login_answer).unwrap();
    v["auth"]["client_token"].as_str().unwrap().to_owned()
}

/// A string field of a documented request sample.
pub fn request_field(sample: &str, field: &str) -> String {
    let v: Value = serde_json::from_str(sample).unwrap();
    v[field].as_str().unwrap().to_owned()
}

/// A KV v2 read of the documented shape (`kv2_read.json`) whose `data.data` holds
/// `field: value` instead of the sample's `foo: bar`.
pub fn kv2_body(field: &str, value: &Value) -> String {
    let sample = "\"foo\": \"bar\"";
    assert!(KV2_READ.contains(sample));
    KV2_READ.replace(sample, &format!("{}: {}", Value::from(field), value))
}

/// How the fixture answers KV reads (logins and renewals are always answered normally).
#[derive(Clone, Debug)]
pub enum Mode {
    /// Serve the stored secrets.
    Normal,
    /// Answer every read with this status and body.
    Fail(u16, String),
    /// Never answer (for timeouts).
    Hang,
    /// Answer every request with `307` to this `Location`.
    Redirect(String),
}

/// A request the fixture saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub token: Option<String>,
    pub namespace: Option<String>,
    pub vault_request: Option<String>,
    pub body: Bytes,
}

struct State {
    tokens: HashSet<String>,
    namespace: Option<String>,
    /// KV v2 bodies under `secret/data/`, by path.
    kv2: HashMap<String, (u16, String)>,
    /// KV v1 bodies under `kv/`, by path.
    kv1: HashMap<String, String>,
    mode: Mode,
    seen: Vec<Seen>,
    /// The AppRole login answer's `auth.lease_duration`, when not the sample's 1200.
    login_lease: Option<u64>,
    /// The `renew-self` answer, when not the sample.
    renew_answer: Option<String>,
    /// Time each answer takes (a slow Vault).
    delay: std::time::Duration,
    /// Each login hands out a token of its own (`{sample token}-{n}`).
    unique_tokens: bool,
    logins: usize,
}

/// A running fixture Vault. Clones share it.
#[derive(Clone)]
pub struct VaultFixture {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    tls: bool,
}

impl VaultFixture {
    /// Starts a fixture that accepts [`ROOT_TOKEN`], serving the documented samples:
    /// `secret/data/my-secret` (`kv2_read.json`), `secret/data/full` (the full envelope),
    /// `secret/data/deleted` and `secret/data/destroyed` (404 with metadata), and
    /// `kv/my-secret` (`kv1_read.json`).
    pub async fn start() -> VaultFixture {
        VaultFixture::start_with(false).await
    }

    /// The same fixture over https, with the certificate of `tls/server.pem` (for
    /// `127.0.0.1` and `localhost`, signed by the test CA `tls/ca.pem`).
    pub async fn start_tls() -> VaultFixture {
        VaultFixture::start_with(true).await
    }

    async fn start_with(tls: bool) -> VaultFixture {
        let mut kv2 = HashMap::new();
        kv2.insert("my-secret".to_owned(), (200, KV2_READ.to_owned()));
        kv2.insert("full".to_owned(), (200, KV2_FULL_ENVELOPE.to_owned()));
        kv2.insert("deleted".to_owned(), (404, KV2_DELETED.to_owned()));
        kv2.insert("destroyed".to_owned(), (404, KV2_DESTROYED.to_owned()));
        let mut kv1 = HashMap::new();
        kv1.insert("my-secret".to_owned(), KV1_READ.to_owned());
        let state = Arc::new(Mutex::new(State {
            tokens: HashSet::from([ROOT_TOKEN.to_owned()]),
            namespace: None,
            kv2,
            kv1,
            mode: Mode::Normal,
            seen: Vec::new(),
            login_lease: None,
            renew_answer: None,
            delay: std::time::Duration::ZERO,
            unique_tokens: false,
            logins: 0,
        }));
        let handler_state = state.clone();
        let handler = move |req| handle(handler_state.clone(), req);
        let addr = if tls {
            serve_tls(handler).await
        } else {
            serve(handler).await
        };
        VaultFixture { addr, state, tls }
    }

    /// `http://127.0.0.1:PORT` (or `https://` for [`start_tls`](Self::start_tls)).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Requires `X-Vault-Namespace: ns` on every request.
    pub fn require_namespace(&self, ns: &str) {
        self.with(|s| s.namespace = Some(ns.to_owned()));
    }

    /// Stores a KV v2 secret at `secret/data/{path}` with one string field.
    pub fn put_kv2(&self, path: &str, field: &str, value: &str) {
        self.put_kv2_value(path, field, Value::from(value));
    }

    /// Stores a KV v2 secret whose field has any JSON value.
    pub fn put_kv2_value(&self, path: &str, field: &str, value: Value) {
        let body = kv2_body(field, &value);
        self.with(|s| s.kv2.insert(path.to_owned(), (200, body)));
    }

    /// Stores a KV v1 body at `kv/{path}` as it is.
    pub fn put_kv1_body(&self, path: &str, body: &str) {
        self.with(|s| s.kv1.insert(path.to_owned(), body.to_owned()));
    }

    /// AppRole logins grant `secs` of lease instead of the sample's 1200.
    pub fn set_login_lease(&self, secs: u64) {
        self.with(|s| s.login_lease = Some(secs));
    }

    /// `renew-self` answers `body` instead of the sample.
    pub fn set_renew_answer(&self, body: &str) {
        self.with(|s| s.renew_answer = Some(body.to_owned()));
    }

    /// Each login hands out a new token, `{sample token}-{n}` for the n-th login (from 1),
    /// as a real Vault does, instead of the sample's.
    pub fn set_unique_tokens(&self) {
        self.with(|s| s.unique_tokens = true);
    }

    /// Whether `token` is accepted now.
    pub fn accepts(&self, token: &str) -> bool {
        self.with(|s| s.tokens.contains(token))
    }

    /// Every answer takes `delay` (a slow Vault).
    pub fn set_delay(&self, delay: std::time::Duration) {
        self.with(|s| s.delay = delay);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.with(|s| s.mode = mode);
    }

    /// Stops accepting `token` (as `vault token revoke` would).
    pub fn revoke(&self, token: &str) {
        self.with(|s| s.tokens.remove(token));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.with(|s| s.seen.clone())
    }

    /// How many requests went to `path` (e.g. `/v1/auth/approle/login`).
    pub fn count(&self, path: &str) -> usize {
        self.with(|s| s.seen.iter().filter(|r| r.path == path).count())
    }
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn handle(state: Arc<Mutex<State>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let token = header(&req, "x-vault-token");
    let namespace = header(&req, "x-vault-namespace");
    let vault_request = header(&req, "x-vault-request");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (mode, wanted_ns, token_ok, delay) = {
        let mut s = state.lock().unwrap();
        s.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            token: token.clone(),
            namespace: namespace.clone(),
            vault_request,
            body: body.clone(),
        });
        let ok = token.as_ref().is_some_and(|t| s.tokens.contains(t));
        (s.mode.clone(), s.namespace.clone(), ok, s.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await; // a slow Vault, not a synchronisation
    }
    if let Mode::Redirect(location) = &mode {
        let mut r = respond(307, "");
        r.headers_mut()
            .insert(http::header::LOCATION, location.parse().unwrap());
        return r;
    }
    // The token (and the logins' role) belong to the namespace: without it, nothing is found
    // that the token may read.
    if wanted_ns.is_some() && namespace != wanted_ns {
        return respond(403, DENIED);
    }
    match (method, path.as_str()) {
        // Token self-service: answered whatever the mode (the KV reads fail, not these).
        (Method::GET, "/v1/auth/token/lookup-self") => {
            if token_ok {
                respond(200, LOOKUP_SELF)
            } else {
                respond(403, DENIED)
            }
        }
        (Method::POST, "/v1/auth/token/revoke-self") => {
            if !token_ok {
                return respond(403, DENIED);
            }
            state
                .lock()
                .unwrap()
                .tokens
                .remove(token.as_deref().unwrap());
            respond(204, "")
        }
        (Method::POST, "/v1/auth/approle/login") => login(
            &state,
            &body,
            APPROLE_LOGIN_REQUEST,
            APPROLE_LOGIN,
            INVALID_ROLE_OR_SECRET_ID,
        ),
        (Method::POST, "/v1/auth/kubernetes/login") => login(
            &state,
            &body,
            KUBERNETES_LOGIN_REQUEST,
            KUBERNETES_LOGIN,
            DENIED,
        ),
        (Method::POST, "/v1/auth/token/renew-self") => {
            if !token_ok {
                return respond(403, DENIED);
            }
            if !same_shape(&body, RENEW_SELF_REQUEST) {
                return respond(400, GENERIC_ERROR);
            }
            let answer = state.lock().unwrap().renew_answer.clone();
            respond(200, answer.unwrap_or_else(|| RENEW_SELF.to_owned()))
        }
        (Method::GET, p) => {
            if !token_ok {
                return respond(403, DENIED);
            }
            match mode {
                Mode::Fail(status, body) => return respond(status, body),
                Mode::Hang => std::future::pending::<()>().await,
                Mode::Normal | Mode::Redirect(_) => {}
            }
            let s = state.lock().unwrap();
            if let Some(rest) = p.strip_prefix("/v1/secret/data/") {
                if let Some((status, body)) = s.kv2.get(rest) {
                    return respond(*status, body.clone());
                }
            } else if let Some(rest) = p.strip_prefix("/v1/kv/") {
                if let Some(body) = s.kv1.get(rest) {
                    return respond(200, body.clone());
                }
            }
            respond(404, EMPTY_404)
        }
        _ => respond(405, GENERIC_ERROR),
    }
}

/// A login: the payload must have exactly the documented sample's fields, all strings, and
/// the sample's values; then the documented answer, whose token becomes valid.
fn login(
    state: &Mutex<State>,
    body: &[u8],
    sample: &str,
    answer: &'static str,
    refusal: &'static str,
) -> Response<Full<Bytes>> {
    if !same_shape(body, sample) {
        return respond(400, GENERIC_ERROR);
    }
    let got: Value = serde_json::from_slice(body).unwrap();
    let want: Value = serde_json::from_str(sample).unwrap();
    if got != want {
        return respond(if refusal == DENIED { 403 } else { 400 }, refusal);
    }
    let mut s = state.lock().unwrap();
    s.logins += 1;
    let mut v: Value = serde_json::from_str(answer).unwrap();
    let mut token = client_token(answer);
    if s.unique_tokens {
        token = format!("{token}-{}", s.logins);
        v["auth"]["client_token"] = Value::from(token.clone());
    }
    s.tokens.insert(token);
    match s.login_lease {
        Some(secs) if answer == APPROLE_LOGIN => {
            v["auth"]["lease_duration"] = Value::from(secs);
            respond(200, v.to_string())
        }
        _ if !s.unique_tokens => respond(200, answer),
        _ => respond(200, v.to_string()),
    }
}

/// Whether `body` is a JSON object with the same keys as `sample`, every value a string.
fn same_shape(body: &[u8], sample: &str) -> bool {
    let Ok(Value::Object(got)) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(sample) else {
        return false;
    };
    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<BTreeSet<_>>();
    keys(&got) == keys(&want) && got.values().all(Value::is_string)
}

/// The test CA that signed the fixture's https certificate.
pub fn test_ca_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault/tls/ca.pem")
}

/// Like [`serve`], over TLS with the certificate of `tls/server.pem`.
async fn serve_tls<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let certs = rustls_pemfile::certs(&mut &fixture!("tls/server.pem").as_bytes()[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &fixture!("tls/server.key").as_bytes()[..])
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A standby node: answers everything with `307` to the same path on `active`.
pub async fn standby(active: SocketAddr) -> SocketAddr {
    serve(move |req: Request<Incoming>| async move {
        let target = format!(
            "http://{active}{}",
            req.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let mut r = respond(307, "");
        r.headers_mut()
            .insert(http::header::LOCATION, target.parse().unwrap());
        r
    })
    .await
}
