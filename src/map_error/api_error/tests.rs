//! Unit tests of `ApiError` and `ApiErrorKind`, and properties of `ApiError` over any body.

use proptest::prelude::*;

use super::*;
use crate::redact::shows_more_than_7_chars;

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

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A valid `sk-` key: visible ASCII only, any punctuation included.
fn sk_key() -> impl Strategy<Value = String> {
    "[!-~]{13,60}".prop_map(|body| format!("sk-{body}"))
}

/// JSON values shaped like error bodies: the keys the parser looks for, any value types.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        Just("error"),
        Just("message"),
        Just("msg"),
        Just("detail"),
        Just("errors"),
        Just("type"),
        Just("code"),
        Just("param"),
        Just("title"),
        Just("loc"),
        Just("other"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_body_gives_the_parsed_message_and_one_bounded_line(
        body in prop::collection::vec(any::<u8>(), 0..512),
        code in 100u16..1000,
    ) {
        let fields = parse_error_body(&body);
        let status = StatusCode::from_u16(code).unwrap();
        let err = ApiError::new(status, HeaderMap::new(), Bytes::from(body));
        prop_assert_eq!(err.message(), fields.message.as_deref());
        let shown = err.to_string();
        prop_assert!(!shown.contains(['\n', '\r']), "{shown:?}");
        prop_assert!(shown.chars().count() <= 400);
        let debug = format!("{err:?}");
        prop_assert!(debug.starts_with("ApiError {"), "{debug}");
    }

    #[test]
    fn a_json_body_gives_the_parsed_message_never_a_blank_one(
        value in json_value(),
        code in 400u16..600,
    ) {
        let body = value.to_string();
        let fields = parse_error_body(body.as_bytes());
        if let Some(message) = &fields.message {
            prop_assert!(!message.trim().is_empty(), "{body}");
        }
        let err = ApiError::new(StatusCode::from_u16(code).unwrap(), HeaderMap::new(), Bytes::from(body));
        prop_assert_eq!(err.message(), fields.message.as_deref());
        prop_assert!(err.to_string().chars().count() <= 400);
    }

    #[test]
    fn an_echoed_key_never_reaches_display_or_debug(
        key in sk_key(),
        before in prop_oneof![
            Just("Incorrect API key provided: "), Just("key '"), Just("Bearer "),
            Just("(\""), Just(""), Just("token:"),
        ],
        after in prop_oneof![Just(""), Just("."), Just("' is revoked"), Just("\") x"), Just(" and more")],
        field in 0usize..4,
        padding in 0usize..320,
    ) {
        let echoed = format!("{}{before}{key}{after}", "x ".repeat(padding / 2));
        let mut inner = serde_json::Map::new();
        inner.insert("message".into(), "Invalid API key".into());
        let name = ["message", "type", "code", "param"][field];
        inner.insert(name.into(), echoed.into());
        let body = serde_json::json!({ "error": inner }).to_string();
        let err = ApiError::new(StatusCode::UNAUTHORIZED, HeaderMap::new(), Bytes::from(body));
        let shown = err.to_string();
        let debug = format!("{err:?}");
        prop_assert!(!shows_more_than_7_chars(&shown, &key), "{shown}");
        prop_assert!(!shows_more_than_7_chars(&debug, &key), "{debug}");
        // `Debug` escapes `"` and `\`: look for the escaped key too.
        let escaped = format!("{key:?}");
        prop_assert!(!shows_more_than_7_chars(&debug, &escaped[1..escaped.len() - 1]), "{debug}");
    }
}
