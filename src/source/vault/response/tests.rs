//! Tests of the pure parsers, on the documented fixtures and on arbitrary bytes.

use secrecy::ExposeSecret;

use super::*;

const KV2: &str = include_str!("../../../../tests/fixtures/vault/kv2_read.json");
const KV2_FULL: &str =
    include_str!("../../../../tests/fixtures/vault/derived_kv2_read_full_envelope.json");
const KV1: &str = include_str!("../../../../tests/fixtures/vault/kv1_read.json");
const DELETED: &str =
    include_str!("../../../../tests/fixtures/vault/derived_kv2_404_deleted_version.json");
const DESTROYED: &str =
    include_str!("../../../../tests/fixtures/vault/derived_kv2_404_destroyed_version.json");
const APPROLE: &str = include_str!("../../../../tests/fixtures/vault/approle_login.json");
const RENEW: &str = include_str!("../../../../tests/fixtures/vault/token_renew_self.json");
const MULTI: &str =
    include_str!("../../../../tests/fixtures/vault/derived_403_permission_denied_multierror.json");
const GENERIC: &str = include_str!("../../../../tests/fixtures/vault/error_generic.json");

#[test]
fn kv2_trimmed_sample_and_full_envelope() {
    for body in [KV2, KV2_FULL] {
        let s = parse_kv_response(2, body.as_bytes(), "foo").unwrap();
        assert_eq!(s.value.expose_secret(), "bar");
        assert_eq!(s.version, Some(2));
        assert_eq!(s.lease, None);
    }
}

#[test]
fn kv1_sample_gives_its_lease() {
    let s = parse_kv_response(1, KV1.as_bytes(), "foo").unwrap();
    assert_eq!(s.value.expose_secret(), "bar");
    assert_eq!(s.lease, Some(Duration::from_secs(3600)));
}

/// Issue 19 Medium 3: a real KV v1 read always carries the mount's default lease (32 days);
/// without a `ttl` field in the secret it is not a refresh hint.
#[test]
fn kv1_lease_without_ttl_is_no_hint() {
    let body = r#"{"data":{"foo":"bar"},"lease_duration":2764800,"lease_id":"","renewable":false}"#;
    let s = parse_kv_response(1, body.as_bytes(), "foo").unwrap();
    assert_eq!(s.lease, None);
    let body = r#"{"data":{"foo":"bar","ttl":"1m"},"lease_duration":18446744073709551615}"#;
    let s = parse_kv_response(1, body.as_bytes(), "foo").unwrap();
    assert_eq!(
        s.lease,
        Some(Duration::from_secs(u64::MAX)),
        "clamped by the source"
    );
}

#[test]
fn deleted_and_destroyed_versions() {
    let e = parse_kv_response(2, DELETED.as_bytes(), "foo").unwrap_err();
    assert_eq!(
        e.to_string(),
        "version 2 of the secret was deleted at 2018-03-22T02:40:00.000000000Z; \
         undelete it or write a new version"
    );
    let e = parse_kv_response(2, DESTROYED.as_bytes(), "foo").unwrap_err();
    assert_eq!(
        e.to_string(),
        "version 2 of the secret was destroyed; write a new version"
    );
}

#[test]
fn missing_field_lists_names_not_values() {
    let e = parse_kv_response(1, KV1.as_bytes(), "api_key").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the secret has no field \"api_key\" (its fields: foo, ttl)"
    );
    assert!(!e.to_string().contains("bar"));
}

#[test]
fn wrong_version_is_explained() {
    let e = parse_kv_response(2, KV1.as_bytes(), "foo").unwrap_err();
    assert!(e.to_string().contains("kv_version(1)"), "{e}");
    // A v2 body read as v1: `data` has "data" and "metadata", both objects.
    let e = parse_kv_response(1, KV2.as_bytes(), "foo").unwrap_err();
    assert!(matches!(e, KvError::MissingField { .. }), "{e}");
}

#[test]
fn not_a_string() {
    let body = br#"{"data":{"data":{"api_key":42},"metadata":{"version":1}}}"#;
    let e = parse_kv_response(2, body, "api_key").unwrap_err();
    assert_eq!(e.to_string(), "field \"api_key\" is a number, not a string");
}

#[test]
fn malformed_bodies() {
    for body in [
        &b"<html>"[..],
        b"",
        b"[]",
        b"{\"data\": 3}",
        b"{\"data\":{\"da",
    ] {
        let e = parse_kv_response(2, body, "foo").unwrap_err();
        assert!(matches!(e, KvError::Malformed(_)), "{e}");
    }
}

#[test]
fn login_and_renew_bodies() {
    let a = parse_auth_response(APPROLE.as_bytes()).unwrap();
    assert_eq!(
        a.client_token.expose_secret(),
        "5b1a0318-679c-9c45-e5c6-d1b9a9035d49"
    );
    assert_eq!(a.lease, Duration::from_secs(1200));
    assert!(a.renewable);
    assert!(!format!("{a:?}").contains("5b1a"));
    let r = parse_auth_response(RENEW.as_bytes()).unwrap();
    assert_eq!(r.lease, Duration::from_secs(3600));
    assert!(parse_auth_response(KV2.as_bytes()).is_err());
    assert!(parse_auth_response(b"{\"auth\":{}}").is_err());
}

#[test]
fn messages_are_folded_and_capped() {
    assert_eq!(
        vault_messages(MULTI.as_bytes()),
        ["1 error occurred: * permission denied"]
    );
    assert_eq!(
        vault_messages(GENERIC.as_bytes()),
        ["message", "another message"]
    );
    assert!(vault_messages(b"{\"errors\":[]}").is_empty());
    assert!(vault_messages(b"not json").is_empty());
    let long = format!("{{\"errors\":[{:?}]}}", "x".repeat(1000));
    let m = vault_messages(long.as_bytes());
    assert_eq!(m[0].chars().count(), MAX_MESSAGE_CHARS + 1);
    let many = br#"{"errors":["a","b","c","d","e"]}"#;
    assert_eq!(vault_messages(many), ["a", "b", "c", "and 2 more"]);
}

#[test]
fn messages_never_echo_a_token_or_a_key() {
    let body = br#"{"errors":["token hvs.CAESIJlU0123456789abcdef may not read sk-live-0123456789abcdef"]}"#;
    assert_eq!(
        vault_messages(body),
        ["token [redacted] may not read [redacted]"]
    );
}
