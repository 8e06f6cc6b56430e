//! Which URLs may carry a credential: the clear-text rule, redirect targets, origins.

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};

use super::{Peer, TransportError};
use crate::net::is_loopback;

/// An origin a redirect may go to: scheme, lowercased host, port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of an absolute URL, `None` without scheme or host.
    pub(crate) fn of(url: &Uri) -> Option<Origin> {
        let scheme = url.scheme_str()?.to_ascii_lowercase();
        let host = url.host()?.to_ascii_lowercase();
        let port = url
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some(Origin { scheme, host, port })
    }
}

/// Why `url` must not carry `peer`'s credential, or `None` when it may: https always; plain
/// http only to loopback unless allowed.
pub(crate) fn cleartext_refusal(
    url: &Uri,
    allow_insecure_http: bool,
    peer: &Peer,
) -> Option<String> {
    match url.scheme_str() {
        Some("https") => None,
        Some("http") => {
            let host = url.host().unwrap_or("");
            if allow_insecure_http || is_loopback(host) {
                None
            } else {
                Some(format!(
                    "plain http:// to {host}, which is not loopback, would send {} in clear \
                     text; use https:// or allow_insecure_http(true)",
                    peer.credential
                ))
            }
        }
        other => Some(format!(
            "the scheme must be http or https, not {}",
            other.unwrap_or("(none)")
        )),
    }
}

pub(super) fn redirect_target(
    from: &Uri,
    location: Option<&HeaderValue>,
    peer: &Peer,
) -> Result<Uri, TransportError> {
    let bad = |why: &str| TransportError::Redirect(format!("a redirect from {} {why}", peer.name));
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
    // Never the user information (`user:password@`): it is a credential.
    let authority = url.authority().map_or("", Authority::as_str);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{}://{host}{}", url.scheme_str().unwrap_or("?"), url.path())
}

/// `text` as given for a URL, for a message: not shown when it may hold user information.
#[cfg(feature = "oauth2")]
pub(crate) fn quote_url(text: &str) -> String {
    match text.contains('@') {
        true => "(not shown: it holds an @, maybe user information)".to_owned(),
        false => format!("{text:?}"),
    }
}
