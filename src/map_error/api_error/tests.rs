//! Unit tests of `ApiError` and `ApiErrorKind`.

use super::*;

#[test]
fn kinds_cover_every_status() {
    for code in 100..=999u16 {
        let status = StatusCode::from_u16(code).unwrap();
        let kind = ApiErrorKind::from_status(status);
        if (500..=599).contains(&code) {
            assert!(matches!(kind, ApiErrorKind::Server | ApiErrorKind::Timeout));
        }
        assert_eq!(
            is_transient_status(status),
            matches!(code, 408 | 409 | 429) || ((500..=599).contains(&code) && code != 501),
            "{code}"
        );
    }
}

#[test]
fn secret_headers_are_redacted_in_debug() {
    let mut headers = HeaderMap::new();
    headers.insert("set-cookie", "session=s3cr3t".parse().unwrap());
    headers.insert("x-request-id", "req_1".parse().unwrap());
    let mut custom = http::HeaderValue::from_static("t0ps3cr3t");
    custom.set_sensitive(true);
    headers.insert("x-custom-token", custom);
    let err = ApiError::new(StatusCode::BAD_GATEWAY, headers, Bytes::new());
    let debug = format!("{err:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(!debug.contains("t0ps3cr3t"), "{debug}");
    assert!(debug.contains("req_1"), "{debug}");
    assert!(err.headers()["set-cookie"].is_sensitive());
    assert_eq!(err.to_string(), "HTTP 502 Bad Gateway (server error)");
}

#[test]
fn a_key_echoed_in_type_code_or_param_is_redacted_in_debug() {
    let body = r#"{"error":{"message":"bad key","type":"sk-live-0123456789abcdef","code":"Bearer abcdefgh12345678","param":"sk-proj-!0123456789"}}"#;
    let err = ApiError::new(
        StatusCode::UNAUTHORIZED,
        HeaderMap::new(),
        Bytes::from(body),
    );
    assert_eq!(
        err.error_type(),
        Some("sk-live-0123456789abcdef"),
        "raw in the accessor"
    );
    let debug = format!("{err:?}");
    for secret in ["0123456789", "abcdefgh1234"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(
        debug.contains(r#"error_type: Some("[redacted]")"#),
        "{debug}"
    );
    assert!(
        debug.contains(r#"code: Some("Bearer [redacted]")"#),
        "{debug}"
    );
}

#[test]
fn a_key_echoed_in_any_header_is_redacted_in_debug() {
    let mut headers = HeaderMap::new();
    headers.insert("x-echo", "Bearer k3y!0123456789abcdef".parse().unwrap());
    headers.insert("x-url", "/v1?api_key=sk-live-0123456789".parse().unwrap());
    headers.insert("x-request-id", "req_1".parse().unwrap());
    let err = ApiError::new(StatusCode::UNAUTHORIZED, headers, Bytes::new());
    let debug = format!("{err:?}");
    assert!(!debug.contains("0123456789"), "{debug}");
    assert!(
        debug.contains(r#""x-echo": "Bearer [redacted]""#),
        "{debug}"
    );
    assert!(debug.contains(r#""x-request-id": "req_1""#), "{debug}");
}

#[test]
fn the_request_id_is_redacted_and_cut_in_debug() {
    // A request id is the server's text like any other: a key echoed there is redacted, and a
    // hostile one cannot flood a log line.
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", "sk-live-0123456789abcdef".parse().unwrap());
    let err = ApiError::new(StatusCode::BAD_GATEWAY, headers, Bytes::new());
    let debug = format!("{err:?}");
    assert!(!debug.contains("0123456789"), "{debug}");
    assert!(
        debug.contains(r#"request_id: Some("[redacted]")"#),
        "{debug}"
    );
    assert_eq!(
        err.request_id(),
        Some("sk-live-0123456789abcdef"),
        "raw in the accessor"
    );

    let mut headers = HeaderMap::new();
    headers.insert("request-id", "r".repeat(5000).parse().unwrap());
    let err = ApiError::new(StatusCode::BAD_GATEWAY, headers, Bytes::new());
    let debug = format!("{err:?}");
    assert!(debug.len() < 2000, "{} bytes", debug.len());
    assert!(debug.contains(&format!(r#"request_id: Some("{}…")"#, "r".repeat(300))));
}
