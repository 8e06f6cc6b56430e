//! HTTP to Vault: hyper-util's pooled client over rustls, a timeout per request, 307 redirects
//! from standby nodes (bounded, with the clear-text rule re-checked at each hop), and a cap
//! on how much of an answer is read.

use std::fmt;

use crate::auth::is_loopback;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret, SecretString};

/// The most of an answer that is read: a KV secret or a login is a few KiB at most.
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// The most redirects one request follows (a standby points at the active node: one hop).
pub(crate) const MAX_REDIRECTS: usize = 3;

/// What went wrong below HTTP status codes. `Display` is a cause for a `KeyError`.
#[derive(Debug)]
pub(crate) enum TransportError {
    /// No answer (headers and body) within the timeout.
    Timeout(Duration),
    /// Could not connect or send: refused, DNS, TLS, reset. The text is hyper's error chain.
    Connect(String, hyper_util::client::legacy::Error),
    /// A redirect that is not followed: too many, no `Location`, or to clear text.
    Redirect(String),
    /// The answer was bigger than [`MAX_BODY`], or its body broke off.
    Body(String),
    /// The token cannot be sent (not a valid header value). Never holds the token.
    Token(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Timeout(t) => write!(f, "no answer within {t:?}"),
            TransportError::Connect(msg, _) => f.write_str(msg),
            TransportError::Redirect(msg)
            | TransportError::Body(msg)
            | TransportError::Token(msg) => f.write_str(msg),
        }
    }
}

/// An answer from Vault, after redirects, body read in full.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Bytes,
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One pooled client per source; cheap to share.
#[derive(Clone)]
pub(crate) struct Transport {
    client: HttpsClient,
    timeout: Duration,
    allow_insecure_http: bool,
}

impl Transport {
    /// A client trusting the webpki roots plus the certificates of `ca_cert` (PEM).
    pub(crate) fn new(
        timeout: Duration,
        allow_insecure_http: bool,
        ca_cert: Option<&Path>,
    ) -> Result<Transport, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_cert {
            add_pem_certs(&mut roots, path)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http() // plain http is vetted by `cleartext_refusal`, at build and each hop
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Transport {
            client,
            timeout,
            allow_insecure_http,
        })
    }

    /// Sends one request (following redirects) and reads the answer, all within the timeout.
    /// `headers` are sent as they are (the token among them, marked sensitive).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Uri,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, TransportError> {
        match tokio::time::timeout(self.timeout, self.follow(method, url, headers, body)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(self.timeout)),
        }
    }

    async fn follow(
        &self,
        method: Method,
        mut url: Uri,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, TransportError> {
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let body = body.unwrap_or_default();
        for _hop in 0..=MAX_REDIRECTS {
            let mut request = Request::new(Full::new(body.clone()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = url.clone();
            *request.headers_mut() = headers.clone();
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| TransportError::Connect(connect_message(&url, &e), e))?;
            let status = response.status();
            if status == StatusCode::TEMPORARY_REDIRECT || status == StatusCode::PERMANENT_REDIRECT
            {
                let next = redirect_target(&url, response.headers().get(LOCATION))?;
                if let Some(why) = cleartext_refusal(&next, self.allow_insecure_http) {
                    return Err(TransportError::Redirect(format!(
                        "not following the redirect ({status}) to {}: {why}",
                        show(&next)
                    )));
                }
                url = next;
                continue;
            }
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|v| super::response::cap(v, 40));
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        TransportError::Body(format!(
                            "the answer ({status}) is larger than {} KiB",
                            MAX_BODY / 1024
                        ))
                    } else {
                        TransportError::Body(format!("the answer ({status}) broke off: {e}"))
                    }
                })?
                .to_bytes();
            return Ok(Reply {
                status,
                retry_after,
                body,
            });
        }
        Err(TransportError::Redirect(format!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }
}

/// A Vault server: the transport, the address, and the headers every request carries
/// (`X-Vault-Request: true`, `X-Vault-Namespace` when set).
#[derive(Debug)]
pub(crate) struct Endpoint {
    transport: Transport,
    address: String,
    headers: HeaderMap,
}

impl Endpoint {
    /// `address` is scheme, authority and an optional path prefix, without a trailing `/`.
    pub(crate) fn new(
        transport: Transport,
        address: String,
        namespace: Option<HeaderValue>,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("x-vault-request", HeaderValue::from_static("true"));
        if let Some(ns) = namespace {
            headers.insert("x-vault-namespace", ns);
        }
        Endpoint {
            transport,
            address,
            headers,
        }
    }

    /// The URL of an API path such as `secret/data/azerion` (already percent-encoded).
    pub(crate) fn url(&self, api_path: &str) -> Result<Uri, String> {
        format!("{}/v1/{api_path}", self.address)
            .parse()
            .map_err(|e| format!("{}/v1/{api_path} is not a valid URL: {e}", self.address))
    }

    /// Sends a request with the token, if any, in a sensitive `X-Vault-Token` header.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Uri,
        token: Option<&SecretString>,
        body: Option<Bytes>,
    ) -> Result<Reply, TransportError> {
        let mut headers = self.headers.clone();
        if let Some(token) = token {
            headers.insert("x-vault-token", token_header(token)?);
        }
        self.transport.send(method, url, headers, body).await
    }
}

/// The `X-Vault-Token` value, marked sensitive: its `Debug` shows no value, and header
/// compression would never index it.
fn token_header(token: &SecretString) -> Result<HeaderValue, TransportError> {
    let mut value = HeaderValue::from_str(token.expose_secret())
        .map_err(|_| TransportError::Token("the Vault token is not a valid header value".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

fn add_pem_certs(roots: &mut rustls::RootCertStore, path: &Path) -> Result<(), String> {
    let shown = path.display();
    let file = File::open(path).map_err(|e| format!("CA certificate file {shown}: {e}"))?;
    let mut count = 0;
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| format!("CA certificate file {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("CA certificate file {shown}: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err(format!(
            "CA certificate file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(())
}

/// Why `url` must not carry the token, or `None` when it may: https always; plain http only
/// to loopback unless allowed.
pub(crate) fn cleartext_refusal(url: &Uri, allow_insecure_http: bool) -> Option<String> {
    match url.scheme_str() {
        Some("https") => None,
        Some("http") => {
            let host = url.host().unwrap_or("");
            if allow_insecure_http || is_loopback(host) {
                None
            } else {
                Some(format!(
                    "plain http:// to {host}, which is not loopback, would send the Vault token \
                     in clear text; use https:// or allow_insecure_http(true)"
                ))
            }
        }
        other => Some(format!(
            "the scheme must be http or https, not {}",
            other.unwrap_or("(none)")
        )),
    }
}

fn redirect_target(from: &Uri, location: Option<&HeaderValue>) -> Result<Uri, TransportError> {
    let bad = |why: &str| TransportError::Redirect(format!("a redirect from Vault {why}"));
    let location = location
        .ok_or_else(|| bad("has no Location header"))?
        .to_str()
        .map_err(|_| bad("has a Location that is not text"))?;
    let target: Uri = location
        .parse()
        .map_err(|_| bad("has a Location that is not a URL"))?;
    if target.scheme().is_some() {
        if target.authority().is_none() {
            return Err(bad("has a Location with no host"));
        }
        return Ok(target);
    }
    // A path only ("/v1/…"): same scheme and authority.
    let mut parts = target.into_parts();
    parts.scheme = Some(from.scheme().cloned().unwrap_or(Scheme::HTTPS));
    parts.authority = from.authority().cloned();
    Uri::from_parts(parts).map_err(|_| bad("has a Location that is not a path"))
}

/// A URL for messages: scheme, authority and path, no query.
pub(crate) fn show(url: &Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("?"),
        url.authority().map_or("", Authority::as_str),
        url.path()
    )
}

/// hyper's error chain, e.g. `cannot connect to 127.0.0.1:8200: tcp connect error: Connection
/// refused (os error 111)`. Errors of the connector never hold headers, so never the token.
fn connect_message(url: &Uri, e: &hyper_util::client::legacy::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = err.source();
    }
    let chain = if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    };
    let authority = url.authority().map_or("", Authority::as_str);
    if e.is_connect() {
        format!("cannot connect to {authority}: {chain}")
    } else {
        format!("the request to {authority} failed: {chain}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleartext_rule() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert!(cleartext_refusal(&u("https://vault.example.com"), false).is_none());
        assert!(cleartext_refusal(&u("http://127.0.0.1:8200"), false).is_none());
        assert!(cleartext_refusal(&u("http://[::1]:8200"), false).is_none());
        assert!(cleartext_refusal(&u("http://localhost:8200"), false).is_none());
        let why = cleartext_refusal(&u("http://vault.internal:8200"), false).unwrap();
        assert!(
            why.contains("vault.internal") && why.contains("clear text"),
            "{why}"
        );
        assert!(cleartext_refusal(&u("http://vault.internal:8200"), true).is_none());
        assert!(cleartext_refusal(&u("ftp://vault.internal"), true).is_some());
    }

    #[test]
    fn token_header_is_sensitive() {
        let value = token_header(&SecretString::from("hvs.abc".to_owned())).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("hvs.abc"));
        assert!(token_header(&SecretString::from("a\nb".to_owned())).is_err());
    }

    #[test]
    fn redirect_targets() {
        let from: Uri = "http://127.0.0.1:8201/v1/secret/data/a".parse().unwrap();
        let abs = HeaderValue::from_static("http://127.0.0.1:8200/v1/secret/data/a");
        assert_eq!(
            redirect_target(&from, Some(&abs)).unwrap().to_string(),
            "http://127.0.0.1:8200/v1/secret/data/a"
        );
        let rel = HeaderValue::from_static("/v1/secret/data/b");
        assert_eq!(
            redirect_target(&from, Some(&rel)).unwrap().to_string(),
            "http://127.0.0.1:8201/v1/secret/data/b"
        );
        assert!(redirect_target(&from, None).is_err());
    }
}
