//! Properties of the pure parsers over any body: what a read gives, and that no error depends
//! on (or shows) a secret. The fuzz target `vault_response` checks the same on raw bytes.

use proptest::prelude::*;
use secrecy::ExposeSecret;
use serde_json::json;

use super::*;
use crate::redact::shows_more_than_7_chars;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The KV read, with its error as the text a `KeyError` quotes.
fn kv(version: u8, body: &[u8], field: &str) -> Result<KvSecret, String> {
    parse_kv_response(version, body, field).map_err(|e| e.to_string())
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_bytes_give_a_field_of_the_json_a_token_or_a_reason(
        body in prop::collection::vec(any::<u8>(), 0..512),
        version in 1u8..=2,
        field in "[a-z_]{0,8}",
    ) {
        if let Ok(read) = kv(version, &body, &field) {
            let root: Value = serde_json::from_slice(&body).expect("a KV read out of JSON only");
            let want = if version == 1 { &root["data"][&field] } else { &root["data"]["data"][&field] };
            prop_assert_eq!(want.as_str(), Some(read.value.expose_secret()));
        }
        match parse_auth_response(&body) {
            Ok(auth) => prop_assert!(!auth.client_token.expose_secret().is_empty()),
            Err(why) => prop_assert!(!why.is_empty()),
        }
        let messages = vault_messages(&body);
        prop_assert!(messages.len() <= MAX_MESSAGES + 1);
    }

    #[test]
    fn a_kv_read_gives_the_field_and_errors_never_depend_on_secret_values(
        (version, body, fields) in kv_body(),
        pick in any::<usize>(),
    ) {
        let field = pick_field(&fields, pick);
        let text = body.to_string();
        match kv(version, text.as_bytes(), &field) {
            Ok(read) => {
                let want = if version == 1 { &body["data"][&field] } else { &body["data"]["data"][&field] };
                prop_assert_eq!(want.as_str(), Some(read.value.expose_secret()));
            }
            Err(err) => {
                // Mask every string value of the fields: the error must not change.
                let masked_body = text_with_masked_values(&body, version);
                let again = kv(version, masked_body.as_bytes(), &field).err();
                prop_assert_eq!(again.as_deref(), Some(err.as_str()));
                for value in fields.values().filter_map(Value::as_str) {
                    prop_assert!(!shows_more_than_7_chars(&err, value) || field.contains(value),
                        "{err} shows {value}");
                }
            }
        }
    }

    #[test]
    fn an_error_never_shows_a_neighbour_fields_value(
        secret in "[a-zA-Z0-9]{12,40}",
        other in "[a-z]{1,8}",
    ) {
        // The wanted field is absent, and the secret sits in a neighbour field.
        let body = format!(r#"{{"data":{{"data":{{"{other}_x":"{secret}"}}}}}}"#);
        let e = parse_kv_response(2, body.as_bytes(), "api_key").unwrap_err();
        prop_assert!(!e.to_string().contains(&secret));
        let e = parse_kv_response(2, body.as_bytes(), &format!("{other}_x"));
        prop_assert!(e.is_ok());
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
        match parse_auth_response(body.to_string().as_bytes()) {
            Ok(auth) => prop_assert_eq!(auth.client_token.expose_secret(), token.as_str()),
            Err(err) => {
                let mut masked_body = body.clone();
                for pointer in ["/auth/client_token", "/data/client_token", "/0/client_token"] {
                    if let Some(Value::String(t)) = masked_body.pointer_mut(pointer) {
                        *t = masked(t);
                    }
                }
                let again = parse_auth_response(masked_body.to_string().as_bytes()).unwrap_err();
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
