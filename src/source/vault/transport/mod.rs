//! HTTP to Vault: the shared HTTPS transport (`crate::source::https`: hyper-util over rustls,
//! redirects, the clear-text rule, body cap) with Vault's own headers: `X-Vault-Request`,
//! `X-Vault-Namespace`, and the token in `X-Vault-Token`.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::source::https::Peer;
pub(crate) use crate::source::https::{Origin, Reply, Transport, TransportError};

/// Vault, as the shared transport names it in messages.
pub(crate) static VAULT: Peer = Peer {
    name: "Vault",
    credential: "the Vault token",
    redirect_hint: Some("name the Vault nodes it may go to with allow_redirects_to([..])"),
};

/// Why `url` must not carry the Vault token, or `None` when it may (see
/// [`crate::source::https::cleartext_refusal`]).
pub(crate) fn cleartext_refusal(url: &Uri, allow_insecure_http: bool) -> Option<String> {
    crate::source::https::cleartext_refusal(url, allow_insecure_http, &VAULT)
}

/// A Vault server: the transport, the address, and the headers every request carries
/// (`X-Vault-Request: true`, `X-Vault-Namespace` when set).
#[derive(Debug, Clone)]
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

    /// The budget of one load (the builder's `timeout`).
    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.transport.timeout()
    }

    /// Sends a request with the token, if any, in a sensitive `X-Vault-Token` header.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: Uri,
        token: Option<&SecretString>,
        body: Option<Bytes>,
        deadline: Instant,
    ) -> Result<Reply, TransportError> {
        let mut headers = self.headers.clone();
        if let Some(token) = token {
            headers.insert("x-vault-token", token_header(token)?);
        }
        self.transport
            .send(method, url, headers, body, deadline)
            .await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_header_is_sensitive() {
        let value = token_header(&SecretString::from("hvs.abc".to_owned())).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("hvs.abc"));
        assert!(token_header(&SecretString::from("a\nb".to_owned())).is_err());
    }

    #[test]
    fn cleartext_refusals_name_the_vault_token() {
        let uri: Uri = "http://vault.internal:8200".parse().unwrap();
        let why = cleartext_refusal(&uri, false).unwrap();
        assert!(
            why.contains("would send the Vault token in clear text"),
            "{why}"
        );
    }
}
