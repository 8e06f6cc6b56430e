//! Where the key may go: the host scope and the cleartext rule.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::uri::{Authority, Scheme};
use http::{header::HOST, Request};

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
    reason: Refusal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    OutOfScope,
    NoHost,
    Cleartext,
}

impl ScopeError {
    /// The host the request was for, if it named one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether the request was refused for plain `http://` to a host that is not loopback
    /// (rather than for its host being out of scope).
    pub fn is_cleartext(&self) -> bool {
        self.reason == Refusal::Cleartext
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
                "refusing to send the API key over plain http:// to `{host}`, which is not a \
                 loopback address; use https:// or allow_insecure_http(true)"
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
                let h = normalize(&h.into()).to_owned();
                match h.strip_prefix("*.") {
                    Some(rest) => HostPattern::Subdomains(format!(".{rest}").into()),
                    None => HostPattern::Exact(h.into()),
                }
            })
            .collect();
        self.hosts = Some(patterns);
    }

    /// Checks `req`; cheap when no scope is set and the scheme is https.
    #[inline]
    pub(crate) fn check<B>(&self, req: &Request<B>) -> Result<(), ScopeError> {
        let uri = req.uri();
        let cleartext = !self.allow_insecure_http && uri.scheme() == Some(&Scheme::HTTP);
        if self.hosts.is_none() && !cleartext {
            return Ok(());
        }
        self.check_slow(req, cleartext)
    }

    fn check_slow<B>(&self, req: &Request<B>, cleartext: bool) -> Result<(), ScopeError> {
        // Origin-form requests (`GET /path` with a Host header) name their host in the header.
        let from_header;
        let host = match req.uri().host() {
            Some(host) => Some(host),
            None => {
                from_header = req
                    .headers()
                    .get(HOST)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<Authority>().ok());
                from_header.as_ref().map(Authority::host)
            }
        };
        let host = host.map(normalize);
        if let Some(patterns) = &self.hosts {
            let Some(host) = host else {
                return Err(ScopeError {
                    host: None,
                    reason: Refusal::NoHost,
                });
            };
            if !patterns.iter().any(|p| p.matches(host)) {
                return Err(ScopeError {
                    host: Some(host.to_owned()),
                    reason: Refusal::OutOfScope,
                });
            }
        }
        if cleartext {
            let host = host.unwrap_or("");
            if !is_loopback(host) {
                return Err(ScopeError {
                    host: Some(host.to_owned()),
                    reason: Refusal::Cleartext,
                });
            }
        }
        Ok(())
    }
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

/// Strips a trailing dot (`api.azerion.ai.` is the same host) and IPv6 brackets.
fn normalize(host: &str) -> &str {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// 127.0.0.0/8, ::1 (and ::ffff:127.x), and `localhost`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = normalize(host);
    // The common spellings first: parsing an address costs more than the rest of the check.
    if host == "127.0.0.1" || host == "::1" || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).unwrap()
    }

    #[test]
    fn loopback_forms() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
            "localhost",
            "LOCALHOST",
            "localhost.",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "128.0.0.1",
            "10.0.0.1",
            "localhost.evil.com",
            "127.0.0.1.evil.com",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn cleartext_rule() {
        let scope = Scope::default();
        assert!(scope.check(&req("https://api.azerion.ai/v1")).is_ok());
        assert!(scope.check(&req("http://127.0.0.1:8080/v1")).is_ok());
        assert!(scope.check(&req("http://[::1]:8080/v1")).is_ok());
        let err = scope.check(&req("http://api.azerion.ai/v1")).unwrap_err();
        assert!(err.is_cleartext());
        assert!(err.to_string().contains("api.azerion.ai"));
        let open = Scope {
            allow_insecure_http: true,
            ..Scope::default()
        };
        assert!(open.check(&req("http://api.azerion.ai/v1")).is_ok());
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
        // origin form: the Host header decides
        let mut r = req("/v1/models");
        assert!(scope
            .check(&r)
            .unwrap_err()
            .to_string()
            .contains("names no host"));
        r.headers_mut()
            .insert(HOST, "api.azerion.ai:443".parse().unwrap());
        assert!(scope.check(&r).is_ok());
        r.headers_mut()
            .insert(HOST, "evil.example".parse().unwrap());
        assert!(scope.check(&r).is_err());
    }
}
