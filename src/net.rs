//! Network facts the layer and the sources share: which hosts are loopback, which schemes
//! keep a secret off the wire in clear text.

use std::net::IpAddr;

/// The one scheme that counts as encrypted: http's standard `https`, whose text is `https`.
/// Everything else (`http`, `ws`, a custom scheme, none at all) may put the key on a plain
/// socket.
///
/// Exactly `https`, not in any case: connectors choose TLS by `uri.scheme() ==
/// Some(&Scheme::HTTPS)`, and a scheme built from the text `HTTPS` (`Uri::builder()
/// .scheme("HTTPS")`) is another scheme to them: hyper-util's `HttpConnector` without
/// `enforce_http` connects it in clear, to port 80. A URI parsed from text (`HTTPS://host`)
/// gets the standard scheme in any case, whose text is `https`.
#[inline(always)]
pub(crate) fn is_secure_scheme(scheme: &str) -> bool {
    scheme == "https"
}

/// Strips one trailing dot (`api.azerion.ai.` is the same host) and IPv6 brackets.
pub(crate) fn normalize_host(host: &str) -> &str {
    let host = host.strip_suffix('.').unwrap_or(host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// 127.0.0.0/8, `::1` (and `::ffff:127.x`), and `localhost`, in any spelling a URI allows,
/// but never with a trailing dot: `localhost.` is a fully qualified name that resolvers send to
/// DNS (glibc does not answer it from `/etc/hosts`), so whoever answers DNS would choose where
/// a plain-http request goes.
#[cfg(any(feature = "vault", feature = "oauth2", test))]
pub(crate) fn is_loopback(host: &str) -> bool {
    !has_trailing_dot(host) && is_loopback_normalized(normalize_host(host))
}

/// Whether `host` (as written, IPv6 brackets and all) ends in a dot.
pub(crate) fn has_trailing_dot(host: &str) -> bool {
    host.ends_with('.')
}

/// [`is_loopback`] for a host already through [`normalize_host`]: normalising twice would
/// take `localhost..` for `localhost`.
pub(crate) fn is_loopback_normalized(host: &str) -> bool {
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

    #[test]
    fn loopback_forms() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
            "localhost",
            "LOCALHOST",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "128.0.0.1",
            "10.0.0.1",
            "localhost.evil.com",
            "127.0.0.1.evil.com",
            "localhost..",
            "127.0.0.1..",
            // a trailing dot sends a name to DNS
            "localhost.",
            "127.0.0.1.",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn only_https_is_secure() {
        assert!(is_secure_scheme("https"));
        // Other cases are the text of another scheme to http and to connectors (see above).
        for s in [
            "HTTPS", "Https", "http", "HTTP", "ws", "wss", "x-plain", "", "httpss", "http s",
        ] {
            assert!(!is_secure_scheme(s), "{s}");
        }
    }
}
