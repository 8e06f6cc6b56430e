//! Unit tests of the transport's pure parts.

use std::path::Path;

use http::{HeaderValue, Uri};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::body::append;
use super::tls::root_store;
use super::url::{cleartext_refusal, redirect_target, Origin};
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
