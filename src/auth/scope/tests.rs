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
    // A scheme built from the text `HTTPS` is not http's `https`: connectors put it on a plain
    // socket (hyper-util's `HttpConnector` without `enforce_http`, to port 80).
    let built = |scheme: &str| {
        http::Uri::builder()
            .scheme(scheme)
            .authority("remote.example")
            .path_and_query("/v1")
            .build()
            .unwrap()
    };
    for scheme in ["HTTPS", "Https", "hTTPS"] {
        let uri = built(scheme);
        assert_ne!(uri.scheme(), Some(&Scheme::HTTPS), "{scheme}");
        let err = scope.check(&Request::builder().uri(uri).body(()).unwrap());
        assert!(err.unwrap_err().is_cleartext(), "{scheme}");
    }
}

/// The scope's test of `https` agrees with `Scheme`'s `==` (what connectors use to choose TLS)
/// for every way of building a URI: parsed in any case, built from a scheme's text, from parts.
#[test]
fn secure_means_the_standard_https_scheme() {
    let mut uris: Vec<http::Uri> = [
        "https://a.example/",
        "HTTPS://a.example/",
        "Https://a.example/",
        "http://a.example/",
        "x-https://a.example/",
        "/path",
    ]
    .iter()
    .map(|u| u.parse().unwrap())
    .collect();
    for scheme in [
        "https", "HTTPS", "Https", "http", "HTTP", "x-https", "httpss",
    ] {
        uris.push(
            http::Uri::builder()
                .scheme(scheme)
                .authority("a.example")
                .path_and_query("/")
                .build()
                .unwrap(),
        );
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(scheme.parse().unwrap());
        parts.authority = Some("a.example".parse().unwrap());
        parts.path_and_query = Some("/".parse().unwrap());
        uris.push(http::Uri::from_parts(parts).unwrap());
    }
    for uri in uris {
        let standard = uri.scheme() == Some(&Scheme::HTTPS);
        assert_eq!(
            uri.scheme_str().is_some_and(is_secure_scheme),
            standard,
            "{uri}"
        );
        let ok = Scope::default().check(&Request::builder().uri(&uri).body(()).unwrap());
        if standard {
            assert!(ok.is_ok(), "{uri}");
        } else if uri.host().is_some() {
            assert!(ok.unwrap_err().is_cleartext(), "{uri}");
        }
    }
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
