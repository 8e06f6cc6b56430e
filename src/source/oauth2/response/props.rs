//! Properties of the token endpoint's parsers over any body: what a token response gives, and
//! that no error shows or depends on the token (the vault parsers have the same, in
//! `vault/response/props.rs`).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::redact::shows_more_than_7_chars;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A member's value: mostly strings, sometimes another JSON type.
fn member() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[ -~]{0,24}".prop_map(Value::String),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| json!(f)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!(["Bearer"])),
        1 => Just(json!({"nested": "value"})),
    ]
}

/// A token response around `token`: a `token_type` of any kind (Bearer in any case most of the
/// time), an `expires_in` of any kind, and other members.
fn token_body() -> impl Strategy<Value = (String, Value)> {
    let token_type = prop_oneof![
        4 => prop_oneof![Just("Bearer"), Just("bearer"), Just(" BEARER ")].prop_map(|s| json!(s)),
        1 => member(),
    ];
    let expires_in = prop_oneof![
        3 => (0u64..=10_000_000).prop_map(|n| json!(n)),
        1 => "[0-9]{1,25}".prop_map(|s| json!(s)),
        1 => member(),
    ];
    let others = prop::collection::btree_map("[a-z_]{1,10}", member(), 0..4);
    (
        "[A-Za-z0-9._~+/=-]{12,64}",
        token_type,
        expires_in,
        any::<bool>(),
        others,
    )
        .prop_map(|(token, kind, expires, with_expiry, others)| {
            let mut body: serde_json::Map<String, Value> = others.into_iter().collect();
            body.insert("access_token".into(), json!(token));
            body.insert("token_type".into(), kind);
            if with_expiry {
                body.insert("expires_in".into(), expires);
            }
            (token, Value::Object(body))
        })
}

/// `s` with each ASCII letter or digit replaced by `X`: same length, same JSON escapes.
fn masked(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { 'X' } else { c })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// Any bytes: no panic; a token taken is exactly the body's `access_token`, with an
    /// `expires_in` within the cap; an error response's members are the body's strings.
    #[test]
    fn any_bytes_give_the_token_of_the_json_or_a_reason(
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        match parse_token_response(&body) {
            Ok(token) => {
                let root: Value = serde_json::from_slice(&body).expect("a token out of JSON only");
                prop_assert_eq!(root["access_token"].as_str(), Some(token.access_token.as_str()));
                prop_assert!(token.expires_in.is_none_or(|d| d <= MAX_EXPIRES_IN));
            }
            Err(why) => prop_assert!(!why.to_string().is_empty()),
        }
        if let Some(error) = parse_error_response(&body) {
            let root: Value = serde_json::from_slice(&body).expect("an error out of JSON only");
            prop_assert_eq!(root["error"].as_str(), error.code.as_deref());
        }
    }

    /// Token responses of every shape: the token read is the one sent, and an error neither
    /// shows the token nor changes when the token's letters and digits do.
    #[test]
    fn a_token_is_read_as_sent_and_errors_never_depend_on_it((token, body) in token_body()) {
        let text = body.to_string();
        match parse_token_response(text.as_bytes()) {
            Ok(read) => prop_assert_eq!(read.access_token.as_str(), token.as_str()),
            Err(err) => {
                let err = err.to_string();
                prop_assert!(!shows_more_than_7_chars(&err, &token), "{} shows the token", err);
                let again = text.replace(&token, &masked(&token));
                let again = parse_token_response(again.as_bytes()).err().map(|e| e.to_string());
                prop_assert_eq!(again.as_deref(), Some(err.as_str()));
            }
        }
    }
}
