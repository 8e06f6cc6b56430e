//! Unit tests of the transport's pure parts.

use std::path::Path;

use http::{HeaderValue, Uri};
use zeroize::Zeroizing;

use super::body::append;
use super::tls::root_store;
use super::url::{cleartext_refusal, redirect_target, Origin};
use super::*;

const PEER: Peer = Peer {
    name: "the server",
    credential: "the credential",
    redirect_hint: None,
};

#[test]
fn cleartext_rule() {
    let u = |s: &str| s.parse::<Uri>().unwrap();
    let refusal = |s: &str, allow| cleartext_refusal(&u(s), allow, &PEER);
    assert!(refusal("https://vault.example.com", false).is_none());
    assert!(refusal("http://127.0.0.1:8200", false).is_none());
    assert!(refusal("http://[::1]:8200", false).is_none());
    assert!(refusal("http://localhost:8200", false).is_none());
    let why = refusal("http://vault.internal:8200", false).unwrap();
    assert!(
        why.contains("vault.internal") && why.contains("would send the credential in clear text"),
        "{why}"
    );
    assert!(refusal("http://vault.internal:8200", true).is_none());
    assert!(refusal("ftp://vault.internal", true).is_some());
}

#[test]
fn retry_after_waits() {
    let reply = |after: Option<&str>| Reply {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: after.map(str::to_owned),
        body: Zeroizing::new(Vec::new()),
    };
    assert_eq!(
        reply(Some("7")).retry_after_wait(),
        Some(Duration::from_secs(7))
    );
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let wait = reply(Some(&later)).retry_after_wait().unwrap();
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
    assert_eq!(reply(Some("soon")).retry_after_wait(), None);
    assert_eq!(reply(None).retry_after_wait(), None);
}

#[test]
fn redirect_targets() {
    let from: Uri = "http://127.0.0.1:8201/v1/secret/data/a".parse().unwrap();
    let abs = HeaderValue::from_static("http://127.0.0.1:8200/v1/secret/data/a");
    assert_eq!(
        redirect_target(&from, Some(&abs), &PEER)
            .unwrap()
            .to_string(),
        "http://127.0.0.1:8200/v1/secret/data/a"
    );
    let rel = HeaderValue::from_static("/v1/secret/data/b");
    assert_eq!(
        redirect_target(&from, Some(&rel), &PEER)
            .unwrap()
            .to_string(),
        "http://127.0.0.1:8201/v1/secret/data/b"
    );
    let err = redirect_target(&from, None, &PEER).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a redirect from the server has no Location header"
    );
}

/// Issue 19 Low 12: a CA file replaces the public roots instead of adding to them.
#[test]
fn a_ca_file_replaces_the_roots() {
    let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault/tls/ca.pem");
    assert_eq!(root_store(Some(&ca)).unwrap().len(), 1);
    assert!(root_store(None).unwrap().len() > 100);
}

#[test]
fn origins_compare_scheme_host_and_port() {
    let o = |s: &str| Origin::of(&s.parse::<Uri>().unwrap()).unwrap();
    assert_eq!(
        o("https://Vault.example.com/v1/x"),
        o("https://vault.example.com:443/")
    );
    assert_ne!(
        o("https://vault.example.com"),
        o("http://vault.example.com")
    );
    assert_ne!(o("http://127.0.0.1:8200"), o("http://127.0.0.1:8201"));
}

#[test]
fn appending_keeps_the_bytes() {
    let mut buf = Zeroizing::new(Vec::with_capacity(2));
    for chunk in [&b"ab"[..], b"cde", b"", b"fghijk"] {
        append(&mut buf, chunk);
    }
    assert_eq!(&buf[..], b"abcdefghijk");
}
