//! Where the key may go: the host scope and the cleartext rule.
//!
//! Both are allowlists. A request is secure only when its scheme is http's own `https`
//! (`Scheme::HTTPS`, as connectors choose TLS; see `net::is_secure_scheme`); any other
//! scheme, and a request with no scheme at all, may reach the network in clear text, so
//! it gets the key only for a loopback host or with `allow_insecure_http(true)`. With a scope
//! set, the host the request names, in its URI and in every `Host` header, must be in it.

use std::sync::Arc;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::Request;

use crate::net::{has_trailing_dot, is_loopback_normalized, is_secure_scheme, normalize_host};

mod error;

use error::Refusal;
pub use error::ScopeError;

#[derive(Clone, Debug)]
enum HostPattern {
    /// `api.azerion.ai`
    Exact(Box<str>),
    /// `*.azerion.ai`, stored as `.azerion.ai`
    Subdomains(Box<str>),
}

/// The rules a request must pass before the key is put on it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Scope {
    hosts: Option<Arc<[HostPattern]>>,
    pub(crate) allow_insecure_http: bool,
    /// Where origin-form requests (`/pkg.Service/Method`) go: `BearerAuthLayer::origin`.
    origin: Option<Origin>,
}

/// The destination of origin-form requests, as the layer was told; the scope and the cleartext
/// rule judge it as they judge an absolute URI.
#[derive(Clone, Debug)]
enum Origin {
    Valid {
        scheme: Box<str>,
        host: Box<str>,
    },
    /// Not an absolute URI with a scheme and a host only: every origin-form request is
    /// refused, saying why (never the value: it may hold a password).
    Invalid(&'static str),
}

impl Scope {
    pub(crate) fn restrict_to<I, S>(&mut self, hosts: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns = hosts
            .into_iter()
            .map(|h| {
                let h = normalize_host(&h.into()).to_owned();
                match h.strip_prefix("*.") {
                    Some(rest) => HostPattern::Subdomains(format!(".{rest}").into()),
                    None => HostPattern::Exact(h.into()),
                }
            })
            .collect();
        self.hosts = Some(patterns);
    }

    /// Sets where origin-form requests go. The value must be `scheme://host[:port]`, with
    /// nothing else (a path of `/` is accepted).
    pub(crate) fn set_origin(&mut self, origin: &str) {
        self.origin = Some(match origin.parse::<http::Uri>() {
            Err(_) => Origin::Invalid("it does not parse as a URI"),
            Ok(uri) => match (uri.scheme_str(), uri.authority()) {
                (Some(scheme), Some(authority)) => {
                    let path = uri.path_and_query().map_or("", |p| p.as_str());
                    if authority.as_str().contains('@') {
                        Origin::Invalid("it holds user information")
                    } else if !(path.is_empty() || path == "/") {
                        Origin::Invalid("it has a path or a query; give scheme://host[:port]")
                    } else {
                        // As written (less case): the trailing dot matters to the cleartext
                        // rule; the scope match normalises.
                        Origin::Valid {
                            scheme: scheme.to_ascii_lowercase().into(),
                            host: authority.host().to_ascii_lowercase().into(),
                        }
                    }
                }
                _ => Origin::Invalid("it has no scheme or no host; give scheme://host[:port]"),
            },
        });
    }

    /// Checks `req`; one comparison when no scope is set and the scheme is `https`.
    #[inline]
    pub(crate) fn check<B>(&self, req: &Request<B>) -> Result<(), ScopeError> {
        self.check_with(req, &mut LoopbackMemo::default())
    }

    /// Checks `req`; `memo` is the caller's own (one per clone of the service), so a plain
    /// `http` request to the loopback authority it approved last costs a comparison, not a
    /// parse: no worse than `https`.
    #[inline(always)]
    pub(crate) fn check_with<B>(
        &self,
        req: &Request<B>,
        memo: &mut LoopbackMemo,
    ) -> Result<(), ScopeError> {
        if self.hosts.is_none() {
            let uri = req.uri();
            // `scheme_str`, inline, where `Scheme`'s `==` is a call: the same answer for
            // every scheme http can build (`is_secure_scheme`), 9 instructions fewer.
            if uri.scheme_str().is_some_and(is_secure_scheme) || memo.approves(uri) {
                return Ok(());
            }
        }
        self.check_slow(req)?;
        if self.hosts.is_none() {
            memo.remember(req.uri());
        }
        Ok(())
    }

    #[cold]
    fn check_slow<B>(&self, req: &Request<B>) -> Result<(), ScopeError> {
        let uri = req.uri();
        // An origin-form request goes where the layer was told it goes, if it was told.
        let origin_form = uri.scheme().is_none() && uri.authority().is_none();
        let (scheme, raw_host) = match (&self.origin, origin_form) {
            (Some(Origin::Valid { scheme, host }), true) => (Some(&**scheme), Some(&**host)),
            (Some(Origin::Invalid(why)), true) => {
                return Err(ScopeError {
                    host: None,
                    scheme: None,
                    reason: Refusal::BadOrigin(why),
                })
            }
            _ => (uri.scheme_str(), uri.host()),
        };
        let uri_host = raw_host.map(normalize_host);
        let secure = scheme.is_some_and(is_secure_scheme);
        let refuse = |reason, host: Option<&str>| {
            Err(ScopeError {
                host: host.map(str::to_owned),
                scheme: (reason == Refusal::Cleartext).then(|| scheme.unwrap_or("").to_owned()),
                reason,
            })
        };
        if uri_host.is_none() && !self.allow_insecure_http {
            return refuse(Refusal::NoOrigin, None);
        }
        let host = match &self.hosts {
            None => uri_host,
            Some(patterns) => {
                let host = match (uri_host, host_header(req)?) {
                    (Some(uri), Some(header)) if !uri.eq_ignore_ascii_case(&header) => {
                        return refuse(Refusal::HostMismatch, Some(&header));
                    }
                    (Some(uri), _) => uri.to_owned(),
                    (None, Some(header)) => header,
                    (None, None) => return refuse(Refusal::NoHost, None),
                };
                if !patterns.iter().any(|p| p.matches(&host)) {
                    return refuse(Refusal::OutOfScope, Some(&host));
                }
                uri_host
            }
        };
        if !secure && !self.allow_insecure_http {
            let host = host.unwrap_or("");
            // The trailing dot of a name sends it to DNS, whatever it spells.
            if raw_host.is_some_and(has_trailing_dot) || !is_loopback_normalized(host) {
                return refuse(Refusal::Cleartext, Some(host));
            }
        }
        Ok(())
    }
}

/// The last `http://` authority a clone's scope approved (a loopback one, or any with
/// `allow_insecure_http`), inline: a later request to the very same authority, byte for byte,
/// is approved by comparison. Only for layers with no host scope, where the URI alone decides.
#[derive(Clone, Copy, Default)]
pub(crate) struct LoopbackMemo {
    len: u8,
    authority: [u8; LoopbackMemo::CAP],
}

impl LoopbackMemo {
    /// Room for `127.255.255.255:65535`, `[::ffff:127.0.0.1]:65535` and `localhost:65535`.
    const CAP: usize = 30;

    #[inline(always)]
    fn approves(&self, uri: &http::Uri) -> bool {
        self.len != 0
            && uri.scheme() == Some(&Scheme::HTTP)
            && uri
                .authority()
                .is_some_and(|a| a.as_str().as_bytes() == &self.authority[..usize::from(self.len)])
    }

    #[cold]
    fn remember(&mut self, uri: &http::Uri) {
        if uri.scheme() != Some(&Scheme::HTTP) {
            return;
        }
        let Some(authority) = uri.authority() else {
            return;
        };
        let bytes = authority.as_str().as_bytes();
        if let (Ok(len), true) = (u8::try_from(bytes.len()), bytes.len() <= Self::CAP) {
            self.authority[..bytes.len()].copy_from_slice(bytes);
            self.len = len;
        }
    }
}

/// The host of the request's one `Host` header, normalised; more than one is refused.
fn host_header<B>(req: &Request<B>) -> Result<Option<String>, ScopeError> {
    let mut values = req.headers().get_all(HOST).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ScopeError {
            host: None,
            scheme: None,
            reason: Refusal::DuplicateHost,
        });
    }
    match parse_host(value) {
        Some(host) => Ok(Some(host)),
        None => Err(ScopeError {
            host: None,
            scheme: None,
            reason: Refusal::HostMismatch,
        }),
    }
}

fn parse_host(value: &HeaderValue) -> Option<String> {
    let authority = value.to_str().ok()?.parse::<Authority>().ok()?;
    // A Host header is `host[:port]`: userinfo has no place in it.
    if authority.as_str().contains('@') {
        return None;
    }
    Some(normalize_host(authority.host()).to_owned())
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host.as_bytes()[host.len() - suffix.len()..]
                        .eq_ignore_ascii_case(suffix.as_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests;
