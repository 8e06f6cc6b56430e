//! Where the key may go: the host scope and the cleartext rule.
//!
//! Both are allowlists. A request is secure only when its scheme is `https` (any case); any
//! other scheme, and a request with no scheme at all, may reach the network in clear text, so
//! it gets the key only for a loopback host or with `allow_insecure_http(true)`. With a scope
//! set, the host the request names, in its URI and in every `Host` header, must be in it.

use std::fmt;
use std::sync::Arc;

use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::Request;

use crate::net::{is_loopback_normalized, is_secure_scheme, normalize_host};

/// A request the layer refused to put its key on. Nothing was sent.
///
/// ```
/// # use tower_bearer::ScopeError;
/// # fn check(err: &tower::BoxError) {
/// if let Some(refused) = err.downcast_ref::<ScopeError>() {
///     eprintln!("not sending the key to {:?}: {refused}", refused.host());
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError {
    host: Option<String>,
    /// The scheme of a request refused for cleartext, as it was written.
    scheme: Option<String>,
    reason: Refusal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    OutOfScope,
    NoHost,
    Cleartext,
    /// Origin form (`/v1/models`): where the request goes is up to the connection it is sent on.
    NoOrigin,
    /// The `Host` header names another host than the URI, or cannot be read.
    HostMismatch,
    /// More than one `Host` header.
    DuplicateHost,
}

impl ScopeError {
    /// The host the request was for, if it named one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether the request was refused because it could travel in clear text: a scheme other
    /// than `https` to a host that is not loopback, or no scheme and no host at all.
    pub fn is_cleartext(&self) -> bool {
        matches!(self.reason, Refusal::Cleartext | Refusal::NoOrigin)
    }
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.host.as_deref().unwrap_or("");
        match self.reason {
            Refusal::OutOfScope => write!(
                f,
                "refusing to send the API key to host `{host}`: it is not one of the hosts the \
                 layer is restricted to"
            ),
            Refusal::NoHost => f.write_str(
                "refusing to send the API key: the request names no host (no authority in the \
                 URI and no Host header) and the layer is restricted to certain hosts",
            ),
            Refusal::Cleartext => write!(
                f,
                "refusing to send the API key over {}:// to `{host}`, which is not a loopback \
                 address: only https:// counts as encrypted; use https:// or \
                 allow_insecure_http(true)",
                self.scheme.as_deref().unwrap_or("")
            ),
            Refusal::NoOrigin => f.write_str(
                "refusing to send the API key: the request has no scheme and no host (origin \
                 form), so nothing says it goes over https; use an absolute https:// URI or \
                 allow_insecure_http(true)",
            ),
            Refusal::HostMismatch => write!(
                f,
                "refusing to send the API key to `{host}`: its Host header names another host \
                 or cannot be read"
            ),
            Refusal::DuplicateHost => f.write_str(
                "refusing to send the API key: the request has more than one Host header",
            ),
        }
    }
}

impl std::error::Error for ScopeError {}

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

    /// Checks `req`; one comparison when no scope is set and the scheme is `https`.
    #[inline]
    #[cfg(test)]
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
            if uri.scheme() == Some(&Scheme::HTTPS) || memo.approves(uri) {
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
        let secure = uri.scheme_str().is_some_and(is_secure_scheme);
        let uri_host = uri.host().map(normalize_host);
        let refuse = |reason, host: Option<&str>| {
            Err(ScopeError {
                host: host.map(str::to_owned),
                scheme: (reason == Refusal::Cleartext)
                    .then(|| uri.scheme_str().unwrap_or("").to_owned()),
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
            if !is_loopback_normalized(host) {
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
mod tests {
    use super::*;

    fn req(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    fn with_hosts(uri: &str, hosts: &[&str]) -> Request<()> {
        let mut r = req(uri);
        for h in hosts {
            r.headers_mut().append(HOST, h.parse().unwrap());
        }
        r
    }

    #[test]
    fn only_https_is_secure_without_loopback() {
        let scope = Scope::default();
        assert!(scope.check(&req("https://api.azerion.ai/v1")).is_ok());
        assert!(scope.check(&req("HTTPS://api.azerion.ai/v1")).is_ok());
        assert!(scope.check(&req("http://127.0.0.1:8080/v1")).is_ok());
        assert!(scope.check(&req("http://[::1]:8080/v1")).is_ok());
        assert!(scope.check(&req("ws://localhost/v1")).is_ok());
        for uri in [
            "http://api.azerion.ai/v1",
            "HTTP://api.azerion.ai/v1",
            "ws://remote.example/v1",
            "wss://remote.example/v1",
            "x-plain://remote.example/v1",
            "http://localhost../v1",
        ] {
            let err = scope.check(&req(uri)).unwrap_err();
            assert!(err.is_cleartext(), "{uri}");
            assert!(err.to_string().contains("https://"), "{uri}: {err}");
            let scheme = uri.split("://").next().unwrap().to_ascii_lowercase();
            let message = err.to_string().to_ascii_lowercase();
            assert!(message.contains(&format!("over {scheme}://")), "{err}");
        }
        let upper = Request::builder()
            .uri(
                http::Uri::builder()
                    .scheme("HTTP")
                    .authority("remote.example")
                    .path_and_query("/v1")
                    .build()
                    .unwrap(),
            )
            .body(())
            .unwrap();
        assert!(scope.check(&upper).unwrap_err().is_cleartext());
        let open = Scope {
            allow_insecure_http: true,
            ..Scope::default()
        };
        assert!(open.check(&req("http://api.azerion.ai/v1")).is_ok());
        assert!(open.check(&req("x-plain://api.azerion.ai/v1")).is_ok());
    }

    #[test]
    fn origin_form_is_refused_unless_insecure_is_allowed() {
        let scope = Scope::default();
        let err = scope
            .check(&with_hosts("/v1", &["remote.example"]))
            .unwrap_err();
        assert!(err.is_cleartext());
        assert!(err.to_string().contains("origin form"), "{err}");
        // Even a loopback Host header: the connection, not the header, decides where it goes.
        assert!(scope.check(&with_hosts("/v1", &["127.0.0.1"])).is_err());
        let open = Scope {
            allow_insecure_http: true,
            ..Scope::default()
        };
        assert!(open.check(&with_hosts("/v1", &["remote.example"])).is_ok());
    }

    #[test]
    fn host_scope() {
        let mut scope = Scope::default();
        scope.restrict_to(["API.azerion.ai", "*.internal.example"]);
        assert!(scope.check(&req("https://api.azerion.ai/v1")).is_ok());
        assert!(scope.check(&req("https://api.azerion.ai.:443/v1")).is_ok());
        assert!(scope.check(&req("https://a.internal.example/v1")).is_ok());
        assert!(scope.check(&req("https://internal.example/v1")).is_err());
        let err = scope.check(&req("https://evil.example/v1")).unwrap_err();
        assert_eq!(err.host(), Some("evil.example"));
        assert!(err.to_string().contains("evil.example"));
    }

    #[test]
    fn every_host_header_must_agree_with_the_uri_and_the_scope() {
        let mut scope = Scope::default();
        scope.restrict_to(["api.azerion.ai"]);
        let uri = "https://api.azerion.ai/v1";
        assert!(scope.check(&with_hosts(uri, &["api.azerion.ai"])).is_ok());
        assert!(scope
            .check(&with_hosts(uri, &["API.azerion.ai:443"]))
            .is_ok());
        let err = scope
            .check(&with_hosts(uri, &["evil.example"]))
            .unwrap_err();
        assert_eq!(err.host(), Some("evil.example"));
        assert!(scope
            .check(&with_hosts(uri, &["api.azerion.ai", "evil.example"]))
            .unwrap_err()
            .to_string()
            .contains("more than one Host"));
        assert!(scope
            .check(&with_hosts(uri, &["api.azerion.ai", "api.azerion.ai"]))
            .is_err());
        assert!(scope
            .check(&with_hosts(uri, &["user@api.azerion.ai"]))
            .is_err());
        // Origin form, allowed: the Host header decides, and only one.
        scope.allow_insecure_http = true;
        assert!(scope
            .check(&req("/v1"))
            .unwrap_err()
            .to_string()
            .contains("names no host"));
        assert!(scope.check(&with_hosts("/v1", &["api.azerion.ai"])).is_ok());
        assert!(scope.check(&with_hosts("/v1", &["evil.example"])).is_err());
        assert!(scope
            .check(&with_hosts("/v1", &["api.azerion.ai", "evil.example"]))
            .is_err());
    }

    #[test]
    fn the_loopback_memo_approves_only_the_authority_it_saw() {
        let scope = Scope::default();
        let mut memo = LoopbackMemo::default();
        assert!(!memo.approves(req("http://127.0.0.1:8080/v1").uri()));
        assert!(scope
            .check_with(&req("http://127.0.0.1:8080/v1"), &mut memo)
            .is_ok());
        assert!(memo.approves(req("http://127.0.0.1:8080/other").uri()));
        for other in [
            "http://127.0.0.1:8081/v1",
            "http://127.0.0.1:8080@evil.example/v1",
            "http://evil.example/v1",
            "ws://127.0.0.1:8080/v1",
        ] {
            assert!(!memo.approves(req(other).uri()), "{other}");
        }
        // A refused request leaves the memo as it was.
        assert!(scope
            .check_with(&req("http://evil.example/v1"), &mut memo)
            .unwrap_err()
            .is_cleartext());
        assert!(memo.approves(req("http://127.0.0.1:8080/v1").uri()));
        // Too long to keep inline: checked in full every time, still approved.
        let long = "http://127.0.0.1:8080@127.0.0.1:8080@127.0.0.1/v1";
        let mut fresh = LoopbackMemo::default();
        let _ = scope.check_with(&req(long), &mut fresh);
        assert!(!fresh.approves(req(long).uri()));
    }
}
