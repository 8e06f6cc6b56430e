//! HTTPS to a credential server (Vault, an OAuth2 token endpoint), shared by the sources that
//! need one: hyper-util's pooled client over rustls, one deadline per load, 307/308 redirects
//! (same origin only unless other origins are named, never from https to http, the clear-text
//! rule re-checked at each hop), and a cap on how much of an answer is read, into a buffer zeroed
//! when dropped.
//!
//! Nothing here knows the server's API: a source names its server with a [`Peer`] (for
//! messages), builds its own URLs and headers, and reads the [`Reply`].

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use zeroize::Zeroizing;

mod body;
mod load;
mod tls;
mod url;

use body::read_body;
pub(crate) use load::{json_type, within_budget};
pub(crate) use tls::root_store;
#[cfg(feature = "oauth2")]
pub(crate) use url::quote_url;
use url::redirect_target;
pub(crate) use url::{cleartext_refusal, show, Origin};

/// Who is at the other end, for messages: what a redirect comes from, what would cross the wire
/// in clear text, and how to allow a redirect to another origin.
#[derive(Debug)]
pub(crate) struct Peer {
    /// `Vault`: "a redirect from Vault has no Location header".
    pub(crate) name: &'static str,
    /// `the Vault token`: "plain http:// to … would send the Vault token in clear text".
    pub(crate) credential: &'static str,
    /// Added to the refusal of a redirect to another origin, when there is a way to allow one.
    pub(crate) redirect_hint: Option<&'static str>,
}

/// The most of an answer that is read: a KV secret, a login or a token is a few KiB at most.
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
    /// A credential cannot be sent (not a valid header value). Never holds the credential.
    #[cfg_attr(not(feature = "vault"), allow(dead_code))] // Vault's token header
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

/// An answer, after redirects, body read in full.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    /// The `Retry-After` header as sent (capped, made fit for a message).
    pub(crate) retry_after: Option<String>,
    /// Zeroed when the reply is dropped: it may hold the key or a token.
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Reply {
    /// How long the server asked to wait, from [`retry_after`](Reply::retry_after) (seconds or
    /// an HTTP date, read by [`parse_retry_after`](crate::retry::parse_retry_after)).
    pub(crate) fn retry_after_wait(&self) -> Option<Duration> {
        let text = self.retry_after.as_deref()?;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(text).ok()?);
        crate::retry::parse_retry_after(&headers, SystemTime::now())
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One pooled client per source; cheap to share.
#[derive(Clone)]
pub(crate) struct Transport {
    client: HttpsClient,
    peer: &'static Peer,
    timeout: Duration,
    allow_insecure_http: bool,
    /// Origins besides the request's own that a redirect may go to.
    redirect_origins: Arc<[Origin]>,
}

impl Transport {
    /// A client trusting the certificates of `ca_cert` (PEM) alone, or the webpki roots.
    pub(crate) fn new(
        peer: &'static Peer,
        timeout: Duration,
        allow_insecure_http: bool,
        ca_cert: Option<&Path>,
        redirect_origins: Vec<Origin>,
    ) -> Result<Transport, String> {
        let roots = root_store(ca_cert)?;
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
            peer,
            timeout,
            allow_insecure_http,
            redirect_origins: redirect_origins.into(),
        })
    }

    /// Sends one request (following redirects) and reads the answer, all before `deadline`
    /// (the load's, shared by all its requests). `headers` are sent as they are (credentials
    /// among them, marked sensitive); a body without a `Content-Type` among them is sent as
    /// `application/json`.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Uri,
        headers: HeaderMap,
        body: Option<Bytes>,
        deadline: Instant,
    ) -> Result<Reply, TransportError> {
        let request = self.follow(method, url, headers, body);
        match tokio::time::timeout_at(deadline, request).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(self.timeout)),
        }
    }

    /// Whether a redirect from `from` (the request's first URL) to `next` may be followed.
    fn redirect_refusal(&self, from: &Uri, next: &Uri) -> Option<String> {
        if from.scheme() == Some(&Scheme::HTTPS) && next.scheme() != Some(&Scheme::HTTPS) {
            return Some("it leaves https for clear text".into());
        }
        let origin = Origin::of(next)?;
        if Origin::of(from).as_ref() == Some(&origin) || self.redirect_origins.contains(&origin) {
            return cleartext_refusal(next, self.allow_insecure_http, self.peer);
        }
        let mut why = String::from("it goes to another origin than the request's");
        if let Some(hint) = self.peer.redirect_hint {
            why.push_str("; ");
            why.push_str(hint);
        }
        Some(why)
    }

    async fn follow(
        &self,
        method: Method,
        mut url: Uri,
        mut headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, TransportError> {
        if body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let body = body.unwrap_or_default();
        let first = url.clone();
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
                let next = redirect_target(&url, response.headers().get(LOCATION), self.peer)?;
                if let Some(why) = self.redirect_refusal(&first, &next) {
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
                .map(|v| crate::redact::safe_message(v, 40));
            let body = read_body(response, status).await?;
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

impl Transport {
    /// The budget of one load (the builder's `timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer.name)
            .field("timeout", &self.timeout)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish_non_exhaustive()
    }
}

/// hyper's error chain, e.g. `cannot connect to 127.0.0.1:8200: tcp connect error: Connection
/// refused (os error 111)`. Errors of the connector never hold headers or bodies, so never a
/// credential.
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
mod tests;
