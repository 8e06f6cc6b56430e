//! A real OAuth2 authorization server on 127.0.0.1: oxide-auth's client-credentials flow (the
//! token endpoint) and its resource flow (an API that checks the bearer token against the
//! issued tokens), behind axum through oxide-auth-axum.
//!
//! What is ours: the wiring (one client registered, the token lifetime, credentials in the body
//! allowed or not), a plain-text password policy in place of oxide-auth's Argon2 (64 MiB per
//! check: seconds per token request in a debug build), counters, a switch that makes the token
//! endpoint answer 503 or go away entirely (connections refused, open ones cut), and
//! revocation. Every protocol decision (client authentication, grant type, token issue, expiry,
//! error bodies, token checks) is oxide-auth's.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use oxide_auth::endpoint::{OwnerConsent, Solicitation};
use oxide_auth::frontends::simple::endpoint::{
    client_credentials_flow, resource_flow, FnSolicitor,
};
use oxide_auth::primitives::generator::RandomGenerator;
use oxide_auth::primitives::issuer::TokenMap;
use oxide_auth::primitives::registrar::{Client, ClientMap, RegisteredUrl};
use oxide_auth::primitives::scope::Scope;
use oxide_auth_axum::{OAuthRequest, OAuthResource, WebError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod net;

use net::{acceptor, form_urlencoded, spawn, PlainPasswords};

/// The registered client.
pub const CLIENT_ID: &str = "billing-service";
/// Its secret at the start (letters and digits only: oxide-auth does not form-urldecode
/// Basic credentials, see `OAuth2ClientAuth::Basic`).
pub const CLIENT_SECRET: &str = "Kq7vN2xR9mLp4sT8wY3z";
/// The scope the client is granted, and the one the API asks for.
pub const SCOPE: &str = "invoices";

/// How the server is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    /// How long a token lives (oxide-auth's `TokenMap::valid_for`); its `expires_in` is the
    /// whole seconds left when it answers.
    pub lifetime: Duration,
    /// Whether `client_id`/`client_secret` in the body are accepted besides HTTP Basic.
    pub credentials_in_body: bool,
    /// The client's secret at the start.
    pub secret: String,
    /// Serves the token endpoint over https, with the test certificate of
    /// `tests/fixtures/vault/tls/` (for 127.0.0.1, signed by `ca.pem`).
    pub tls: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            lifetime: Duration::from_secs(3600),
            credentials_in_body: false,
            secret: CLIENT_SECRET.to_owned(),
            tls: false,
        }
    }
}

/// A token request as it arrived, and what became of it.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub at: Instant,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The form body, decoded.
    pub form: Vec<(String, String)>,
    pub status: u16,
    /// The token issued, with when it expires on the server.
    pub issued: Option<(String, Instant)>,
}

struct Shared {
    registrar: Mutex<ClientMap>,
    issuer: Mutex<TokenMap<RandomGenerator>>,
    lifetime: Duration,
    credentials_in_body: bool,
    requests: Mutex<Vec<TokenRequest>>,
    count: watch::Sender<usize>,
    outage: Mutex<Option<(u16, Option<String>)>>,
    api_ok: AtomicUsize,
    api_refused: AtomicUsize,
    /// The bearer tokens the API was shown, in order.
    api_seen: Mutex<Vec<String>>,
}

/// The server: a token endpoint and an API, on two ports of 127.0.0.1.
pub struct AuthServer {
    token_addr: SocketAddr,
    tls: bool,
    api_addr: SocketAddr,
    shared: Arc<Shared>,
    token_task: Mutex<Option<JoinHandle<()>>>,
    api_task: JoinHandle<()>,
}

fn registrar(secret: &str) -> ClientMap {
    let mut clients = ClientMap::new();
    clients.set_password_policy(PlainPasswords);
    clients.register_client(Client::confidential(
        CLIENT_ID,
        RegisteredUrl::Semantic("https://billing.example.com/unused".parse().unwrap()),
        SCOPE.parse().unwrap(),
        secret.as_bytes(),
    ));
    clients
}

impl AuthServer {
    pub async fn start(setup: Setup) -> AuthServer {
        let mut issuer = TokenMap::new(RandomGenerator::new(24));
        issuer.valid_for(chrono::Duration::from_std(setup.lifetime).unwrap());
        let shared = Arc::new(Shared {
            registrar: Mutex::new(registrar(&setup.secret)),
            issuer: Mutex::new(issuer),
            lifetime: setup.lifetime,
            credentials_in_body: setup.credentials_in_body,
            requests: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            outage: Mutex::new(None),
            api_ok: AtomicUsize::new(0),
            api_refused: AtomicUsize::new(0),
            api_seen: Mutex::new(Vec::new()),
        });
        let token_app = Router::new()
            .route("/oauth2/token", post(token))
            .with_state(shared.clone());
        let api_app = Router::new()
            .route("/v1/invoices", get(api))
            .with_state(shared.clone());
        let acceptor = setup.tls.then(acceptor);
        let (token_addr, token_task) = spawn(token_app, acceptor).await;
        let (api_addr, api_task) = spawn(api_app, None).await;
        AuthServer {
            token_addr,
            tls: setup.tls,
            api_addr,
            shared,
            token_task: Mutex::new(Some(token_task)),
            api_task,
        }
    }

    /// `http://127.0.0.1:{port}/oauth2/token` (`https://` with [`Setup::tls`]).
    pub fn token_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/oauth2/token", self.token_addr)
    }

    /// The CA that signed the https certificate.
    pub fn ca_cert() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault/tls/ca.pem")
    }

    /// `http://127.0.0.1:{port}/v1/invoices`: 200 with a valid token, 401 otherwise.
    pub fn api_url(&self) -> String {
        format!("http://{}/v1/invoices", self.api_addr)
    }

    /// Token requests so far (answered or not).
    pub fn token_requests(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Waits until `n` token requests have arrived; panics after `within`.
    pub async fn wait_for_token_requests(&self, n: usize, within: Duration) {
        let mut rx = self.shared.count.subscribe();
        tokio::time::timeout(within, rx.wait_for(|c| *c >= n))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{n} token requests within {within:?}: {}",
                    self.token_requests()
                )
            })
            .unwrap();
    }

    /// Every token request so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The tokens issued so far, in order.
    pub fn issued(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter_map(|r| r.issued.map(|(t, _)| t))
            .collect()
    }

    /// Revokes a token: the API refuses it from now on.
    pub fn revoke(&self, token: &str) {
        self.shared.issuer.lock().unwrap().revoke(token);
    }

    /// Gives the client a new secret; the old one is refused from now on.
    pub fn rotate_secret(&self, secret: &str) {
        *self.shared.registrar.lock().unwrap() = registrar(secret);
    }

    /// Makes the token endpoint answer `status` (with `Retry-After` when given) until
    /// [`recover`](Self::recover).
    pub fn fail_with(&self, status: u16, retry_after: Option<&str>) {
        *self.shared.outage.lock().unwrap() = Some((status, retry_after.map(str::to_owned)));
    }

    pub fn recover(&self) {
        *self.shared.outage.lock().unwrap() = None;
    }

    /// Takes the token endpoint down for good: its port refuses connections, and the
    /// connections open to it are cut. The API stays up.
    pub fn take_token_endpoint_down(&self) {
        if let Some(task) = self.token_task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Requests the API answered 200 / 401.
    pub fn api_ok(&self) -> usize {
        self.shared.api_ok.load(Ordering::SeqCst)
    }
    pub fn api_refused(&self) -> usize {
        self.shared.api_refused.load(Ordering::SeqCst)
    }
    /// The bearer tokens the API was shown, in order.
    pub fn api_seen(&self) -> Vec<String> {
        self.shared.api_seen.lock().unwrap().clone()
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.take_token_endpoint_down();
        self.api_task.abort();
    }
}

async fn token(State(shared): State<Arc<Shared>>, req: axum::extract::Request) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut record = TokenRequest {
        at,
        authorization: header(http::header::AUTHORIZATION),
        content_type: header(http::header::CONTENT_TYPE),
        form: form_urlencoded(&body),
        status: 0,
        issued: None,
    };
    let outage = shared.outage.lock().unwrap().clone();
    let response = match outage {
        Some((status, retry_after)) => {
            let mut response = (
                http::StatusCode::from_u16(status).unwrap(),
                [(http::header::CONTENT_TYPE, "application/json")],
                r#"{"error":"temporarily_unavailable","error_description":"down for maintenance"}"#,
            )
                .into_response();
            if let Some(after) = retry_after {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, after.parse().unwrap());
            }
            response
        }
        None => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(body));
            match OAuthRequest::from_request(req, &()).await {
                Err(e) => e.into_response(),
                Ok(request) => issue(&shared, request),
            }
        }
    };
    record.status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    if record.status == 200 {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let token = json["access_token"].as_str().unwrap().to_owned();
        record.issued = Some((token, at + shared.lifetime));
    }
    shared.requests.lock().unwrap().push(record);
    shared.count.send_modify(|c| *c += 1);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// oxide-auth's client-credentials flow.
fn issue(shared: &Shared, request: OAuthRequest) -> Response {
    let registrar = shared.registrar.lock().unwrap();
    let mut issuer = shared.issuer.lock().unwrap();
    let mut solicitor = FnSolicitor(|_: &mut OAuthRequest, solicitation: Solicitation<'_>| {
        OwnerConsent::Authorized(solicitation.pre_grant().client_id.clone())
    });
    let mut flow = client_credentials_flow(&*registrar, &mut *issuer, &mut solicitor);
    flow.allow_credentials_in_body(shared.credentials_in_body);
    match flow.execute(request) {
        Ok(response) => response.into_response(),
        Err(e) => WebError::from(e).into_response(),
    }
}

/// oxide-auth's resource flow: 200 for a valid token with the scope, 401 otherwise.
async fn api(State(shared): State<Arc<Shared>>, resource: OAuthResource) -> Response {
    if let Some(token) = resource
        .authorization_header()
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        shared.api_seen.lock().unwrap().push(token.to_owned());
    }
    let scopes: Vec<Scope> = vec![SCOPE.parse().unwrap()];
    let result = {
        let mut issuer = shared.issuer.lock().unwrap();
        resource_flow(&mut *issuer, &scopes).execute(OAuthRequest::from(resource))
    };
    match result {
        Ok(grant) => {
            shared.api_ok.fetch_add(1, Ordering::SeqCst);
            (
                http::StatusCode::OK,
                format!("invoices of {}", grant.owner_id),
            )
                .into_response()
        }
        Err(Ok(response)) => {
            shared.api_refused.fetch_add(1, Ordering::SeqCst);
            response.into_response()
        }
        Err(Err(e)) => WebError::from(e).into_response(),
    }
}
