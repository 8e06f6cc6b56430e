//! Property tests of the parsers the fuzz targets in `fuzz/` exercise, so CI checks the same
//! properties on stable Rust: key validation, the Retry-After parser, the error-body parser
//! (and the redaction `ApiError` applies to it). 256 cases each: quick enough for `cargo test`.

use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Empty;
use proptest::prelude::*;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bearer::__fuzz::{parse_error_body, safe_message};
use tower_bearer::errors::{parse_retry_after, MAX_RETRY_AFTER};
use tower_bearer::{ApiError, ApiKey, BearerAuthLayer, KeyErrorKind, StaticKey, MAX_KEY_LEN};

/// Whether `text` shows any run of 8 consecutive characters of `secret`.
fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any string: mostly visible ASCII (so many are valid keys), with the characters the rules
/// refuse mixed in: controls, spaces, look-alikes, zero-width and non-ASCII letters.
fn any_key_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        8 => "[!-~]{1,24}",
        1 => Just(" ".to_owned()),
        1 => Just("\t".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\0".to_owned()),
        1 => Just("\u{7f}".to_owned()),
        1 => Just("\u{200b}".to_owned()),
        1 => Just("\u{a0}".to_owned()),
        1 => Just("а".to_owned()), // Cyrillic a
        1 => Just("ｓｋ".to_owned()), // fullwidth s k
        1 => Just("Bearer ".to_owned()),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// A valid `sk-` key: visible ASCII only, any punctuation included.
fn sk_key() -> impl Strategy<Value = String> {
    "[!-~]{13,60}".prop_map(|body| format!("sk-{body}"))
}

/// The rules, restated: non-empty, at most 4 KiB, visible ASCII only.
fn is_valid(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.bytes().all(|b| b.is_ascii_graphic())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn key_validation_accepts_exactly_the_valid_keys(raw in any_key_text()) {
        match ApiKey::new(raw.as_str()) {
            Ok(key) => {
                prop_assert!(is_valid(&raw), "accepted {raw:?}");
                prop_assert_eq!(key.expose_secret(), raw.as_str());
            }
            Err(err) => {
                prop_assert!(!is_valid(&raw), "refused {raw:?}: {err}");
                prop_assert_eq!(err.kind(), KeyErrorKind::Invalid);
            }
        }
    }

    #[test]
    fn key_errors_never_contain_the_key(
        key in "[!-~]{8,40}",
        bad in prop_oneof![
            Just(" "), Just("\n"), Just("\r"), Just("\t"), Just("\0"), Just("\u{7f}"),
            Just("\u{1b}"), Just("\u{200b}"), Just("é"), Just("а"),
        ],
        at in 0usize..=40,
    ) {
        let at = at.min(key.len());
        let raw = format!("{}{bad}{}", &key[..at], &key[at..]);
        let err = ApiKey::new(raw.as_str()).unwrap_err();
        for text in [err.to_string(), format!("{err:?}")] {
            prop_assert!(!shows_more_than_7_chars(&text, &key), "{text}");
        }
        let prefixed = ApiKey::new(format!("Bearer {key}")).unwrap_err();
        prop_assert!(prefixed.to_string().contains("Bearer"));
        prop_assert!(!shows_more_than_7_chars(&prefixed.to_string(), &key));
        let long = ApiKey::new(key.repeat(MAX_KEY_LEN / key.len() + 1)).unwrap_err();
        let long_text = format!("{long} {long:?}");
        prop_assert!(!shows_more_than_7_chars(&long_text, &key));
    }

    #[test]
    fn valid_keys_show_at_most_7_characters(key in "[!-~]{16,200}") {
        let key_ = ApiKey::new(key.as_str()).unwrap();
        for text in [
            key_.fingerprint().to_owned(),
            format!("{key_:?}"),
            format!("{key_:#?}"),
            key_.to_string(),
        ] {
            prop_assert!(!shows_more_than_7_chars(&text, &key), "{text}");
        }
    }

    #[test]
    fn valid_keys_round_trip_into_a_bearer_header(key in "[!-~]{1,100}") {
        let api_key = ApiKey::new(key.as_str()).unwrap();
        let want = format!("Bearer {key}");
        prop_assert_eq!(api_key.header_value().as_bytes(), want.as_bytes());
        prop_assert!(api_key.header_value().is_sensitive());
        // And through the layer: the header the inner service gets.
        let seen = runtime().block_on(async {
            let svc = ServiceBuilder::new()
                .layer(BearerAuthLayer::new(StaticKey::new(api_key)))
                .service(service_fn(|req: Request<Empty<Bytes>>| async move {
                    let header = req.headers()[http::header::AUTHORIZATION].clone();
                    Ok::<_, Infallible>(Response::new(header))
                }));
            let req = Request::get("https://api.azerion.ai/v1/models").body(Empty::new()).unwrap();
            svc.oneshot(req).await.unwrap().into_body()
        });
        prop_assert_eq!(seen.as_bytes(), want.as_bytes());
        prop_assert!(seen.is_sensitive());
    }

    #[test]
    fn retry_after_never_panics_and_stays_under_the_cap(
        ms in prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        secs in prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        now in 0u64..(1 << 36),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in [("retry-after-ms", ms), ("retry-after", secs)] {
            if let Some(Ok(value)) = value.map(|v| HeaderValue::from_bytes(&v)) {
                headers.insert(name, value);
            }
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        if let Some(wait) = parse_retry_after(&headers, now) {
            prop_assert!(wait <= MAX_RETRY_AFTER, "{wait:?}");
        }
    }

    #[test]
    fn retry_after_numbers_and_dates_parse_exactly(
        secs in 0u64..=4000,
        frac in prop::option::of(0u32..1000),
        ahead in 0u64..=8000,
        now in 0u64..(1 << 34),
    ) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
        let mut headers = HeaderMap::new();
        let text = match frac {
            Some(f) => format!("{secs}.{f:03}"),
            None => secs.to_string(),
        };
        headers.insert("retry-after", text.parse().unwrap());
        let want = Duration::from_secs(secs) + Duration::from_millis(frac.unwrap_or(0).into());
        let got = parse_retry_after(&headers, now);
        if want <= MAX_RETRY_AFTER {
            let got = got.expect("a number under the cap parses");
            prop_assert!(got.abs_diff(want) < Duration::from_micros(1), "{got:?} vs {want:?}");
        } else {
            prop_assert_eq!(got, Some(MAX_RETRY_AFTER), "a longer wait reads as the cap");
        }
        let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
        headers.insert("retry-after", date.parse().unwrap());
        let got = parse_retry_after(&headers, now);
        let ahead = Duration::from_secs(ahead);
        prop_assert_eq!(got, Some(ahead.min(MAX_RETRY_AFTER)));
    }

    #[test]
    fn error_body_parser_never_panics(
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
        let _ = format!("{err:?}");
    }

    #[test]
    fn error_body_parser_never_panics_on_json(value in json_value(), code in 400u16..600) {
        let body = value.to_string();
        let fields = parse_error_body(body.as_bytes());
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
        inner.insert(name.into(), echoed.clone().into());
        let body = serde_json::json!({ "error": inner }).to_string();
        let err = ApiError::new(StatusCode::UNAUTHORIZED, HeaderMap::new(), Bytes::from(body));
        let shown = err.to_string();
        let debug = format!("{err:?}");
        prop_assert!(!shows_more_than_7_chars(&shown, &key), "{shown}");
        prop_assert!(!shows_more_than_7_chars(&debug, &key), "{debug}");
        // `Debug` escapes `"` and `\`: look for the escaped key too.
        let escaped = format!("{key:?}");
        prop_assert!(!shows_more_than_7_chars(&debug, &escaped[1..escaped.len() - 1]), "{debug}");
        let safe = safe_message(&echoed, 300);
        prop_assert!(!shows_more_than_7_chars(&safe, &key), "{safe}");
    }

    #[test]
    fn the_redaction_is_bounded_and_total(text in any::<String>(), max in 0usize..400) {
        let safe = safe_message(&text, max);
        prop_assert!(safe.chars().count() <= max + 1);
        prop_assert!(!safe.chars().any(char::is_control), "{safe:?}");
    }
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The Vault KV read parser, the login-answer parser and the `errors` strings.
#[cfg(feature = "vault")]
mod vault {
    use proptest::prelude::*;
    use serde_json::{json, Map, Value};
    use tower_bearer::__fuzz::{parse_vault_auth, parse_vault_kv, vault_messages};

    fn config() -> ProptestConfig {
        super::config()
    }

    /// `s` with each ASCII letter or digit replaced by `X`: same length, same JSON escapes.
    fn masked(s: &str) -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { 'X' } else { c })
            .collect()
    }

    /// A field's value: mostly secret-like strings, sometimes another JSON type.
    fn field_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => "[A-Za-z0-9._~+/=-]{12,48}".prop_map(Value::String),
            1 => Just(Value::Null),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => prop::collection::vec("[a-z]{1,8}", 0..3).prop_map(|v| json!(v)),
            1 => Just(json!({"nested": "value-AAAAAAAAAAAA"})),
        ]
    }

    /// A KV body of either version: fields with any names and values, sometimes a broken
    /// envelope (no `data`, `data.data` of the wrong type or null, a deleted version).
    fn kv_body() -> impl Strategy<Value = (u8, Value, Map<String, Value>)> {
        let fields = prop::collection::btree_map("[a-z_]{1,10}", field_value(), 0..12)
            .prop_map(|m| m.into_iter().collect::<Map<String, Value>>());
        (1u8..=2, fields, 0u8..8).prop_map(|(version, fields, shape)| {
            let data = Value::Object(fields.clone());
            let body = match (version, shape) {
                (_, 0) => json!({"request_id": "r"}),
                (_, 1) => json!({"data": null}),
                (_, 2) => json!({"data": [data]}),
                (2, 3) => json!({"data": {"data": null, "metadata": {"version": 3, "deletion_time": "2026-01-01T00:00:00Z", "destroyed": false}}}),
                (2, 4) => json!({"data": {"data": "flat", "metadata": {}}}),
                (2, 5) => json!({"data": fields.clone()}),
                (1, _) => json!({"lease_duration": 60, "data": data}),
                _ => json!({"data": {"data": data, "metadata": {"version": 7}}}),
            };
            (version, body, fields)
        })
    }

    fn pick_field(fields: &Map<String, Value>, pick: usize) -> String {
        match fields.keys().nth(pick % (fields.len() + 1)) {
            Some(name) => name.clone(),
            None => "api_key".into(),
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn the_kv_parser_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..512),
            version in 1u8..=2,
            field in "[a-z_]{0,8}",
        ) {
            let _ = parse_vault_kv(version, &body, &field);
            let _ = parse_vault_auth(&body);
            let messages = vault_messages(&body);
            prop_assert!(messages.len() <= 4);
        }

        #[test]
        fn a_kv_read_gives_the_field_and_errors_never_depend_on_secret_values(
            (version, body, fields) in kv_body(),
            pick in any::<usize>(),
        ) {
            let field = pick_field(&fields, pick);
            let text = body.to_string();
            match parse_vault_kv(version, text.as_bytes(), &field) {
                Ok(read) => {
                    let want = if version == 1 { &body["data"][&field] } else { &body["data"]["data"][&field] };
                    prop_assert_eq!(want.as_str(), Some(read.value.as_str()));
                }
                Err(err) => {
                    // Mask every string value of the fields: the error must not change.
                    let masked_body = text_with_masked_values(&body, version);
                    let again = parse_vault_kv(version, masked_body.as_bytes(), &field).err();
                    prop_assert_eq!(again.as_deref(), Some(err.as_str()));
                    for value in fields.values().filter_map(Value::as_str) {
                        prop_assert!(!super::shows_more_than_7_chars(&err, value) || field.contains(value),
                            "{err} shows {value}");
                    }
                }
            }
        }

        #[test]
        fn a_login_answer_error_never_shows_the_token(
            token in "[A-Za-z0-9.]{0,40}",
            lease in prop_oneof![Just(json!(3600)), Just(json!("soon")), Just(json!(-1)), Just(Value::Null)],
            renewable in prop_oneof![Just(json!(true)), Just(json!("yes")), Just(Value::Null)],
            shape in 0u8..4,
        ) {
            let auth = json!({"client_token": token, "lease_duration": lease, "renewable": renewable});
            let body = match shape {
                0 => json!({"auth": auth}),
                1 => json!({"auth": null}),
                2 => json!({"data": auth}),
                _ => json!([auth]),
            };
            match parse_vault_auth(body.to_string().as_bytes()) {
                Ok((got, _, _)) => prop_assert_eq!(got, token),
                Err(err) => {
                    let mut masked_body = body.clone();
                    for pointer in ["/auth/client_token", "/data/client_token", "/0/client_token"] {
                        if let Some(Value::String(t)) = masked_body.pointer_mut(pointer) {
                            *t = masked(t);
                        }
                    }
                    let again = parse_vault_auth(masked_body.to_string().as_bytes()).unwrap_err();
                    prop_assert_eq!(&again, &err);
                    if token.len() >= 8 {
                        prop_assert!(!err.contains(&token), "{err}");
                    }
                }
            }
        }

        #[test]
        fn vault_messages_are_few_short_and_one_line(
            errors in prop::collection::vec(any::<String>(), 0..10),
            warnings in prop::collection::vec(any::<String>(), 0..3),
        ) {
            let body = json!({"errors": errors, "warnings": warnings}).to_string();
            let messages = vault_messages(body.as_bytes());
            prop_assert!(messages.len() <= 4);
            for m in &messages {
                prop_assert!(m.chars().count() <= 201);
                prop_assert!(!m.chars().any(char::is_control), "{m:?}");
            }
        }
    }

    fn text_with_masked_values(body: &Value, version: u8) -> String {
        let mut body = body.clone();
        let fields = match version {
            1 => body.pointer_mut("/data"),
            _ => body.pointer_mut("/data/data"),
        };
        if let Some(Value::Object(fields)) = fields {
            for value in fields.values_mut() {
                if let Value::String(s) = value {
                    *s = masked(s);
                }
            }
        }
        body.to_string()
    }
}
