//! The Vault response parsers on arbitrary bytes: the KV read (v1 and v2), the login/renewal
//! answer, and the `errors` strings. None panics; a KV read gives exactly the field's string;
//! and no error depends on a secret: replacing the letters and digits of every secret value in
//! the body (the KV fields' string values, the `client_token`) leaves the error unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;
use serde_json::Value;
use tower_bearer::fuzzing::{parse_auth_response, parse_kv_response, vault_messages, KvSecret};

const FIELDS: [&str; 4] = ["api_key", "foo", "data", ""];

/// `s` with each ASCII letter or digit replaced by `X`: same length, same JSON escapes.
fn masked(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { 'X' } else { c })
        .collect()
}

/// The KV read, with its error as the text a `KeyError` quotes.
fn parse_vault_kv(version: u8, body: &[u8], field: &str) -> Result<KvSecret, String> {
    parse_kv_response(version, body, field).map_err(|e| e.to_string())
}

/// The map of fields a KV read of `version` takes its value from, if the body has one.
fn fields_mut(root: &mut Value, version: u8) -> Option<&mut serde_json::Map<String, Value>> {
    let data = root.get_mut("data")?;
    let fields = if version == 1 {
        data
    } else {
        data.get_mut("data")?
    };
    fields.as_object_mut()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let version = if selector & 1 == 0 { 2 } else { 1 };
    let field = FIELDS[usize::from(selector >> 1) % FIELDS.len()];

    // The KV read.
    let read = parse_vault_kv(version, body, field);
    let parsed = serde_json::from_slice::<Value>(body).ok();
    match (&read, &parsed) {
        (Ok(read), Some(root)) => {
            let want = if version == 1 {
                &root["data"][field]
            } else {
                &root["data"]["data"][field]
            };
            assert_eq!(
                want.as_str(),
                Some(read.value.expose_secret()),
                "the field's own string"
            );
        }
        (Ok(_), None) => panic!("a KV read out of a body that is not JSON"),
        (Err(err), Some(root)) => {
            // Mask every secret value and parse again: the error must be the same.
            let canonical = root.to_string();
            let first = parse_vault_kv(version, canonical.as_bytes(), field).err();
            assert_eq!(first.as_ref(), Some(err), "re-serialised: same answer");
            let mut root = root.clone();
            if let Some(fields) = fields_mut(&mut root, version) {
                for value in fields.values_mut() {
                    if let Value::String(s) = value {
                        *s = masked(s);
                    }
                }
            }
            let again = parse_vault_kv(version, root.to_string().as_bytes(), field).err();
            assert_eq!(
                again.as_ref(),
                Some(err),
                "the error depends on a secret value"
            );
        }
        (Err(_), None) => {}
    }

    // The login / renew-self answer.
    match (parse_auth_response(body), parsed) {
        (Ok(auth), _) => assert!(!auth.client_token.expose_secret().is_empty()),
        (Err(err), Some(mut root)) => {
            assert!(!err.is_empty());
            // Compare like with like: serde's positions in `err` refer to the original layout,
            // and a body with a duplicate field is refused while its `Value` (last one wins)
            // may be accepted.
            if let Some(canonical) = parse_auth_response(root.to_string().as_bytes()).err() {
                if let Some(Value::String(token)) = root.pointer_mut("/auth/client_token") {
                    *token = masked(token);
                }
                let again = parse_auth_response(root.to_string().as_bytes()).err();
                assert_eq!(Some(canonical), again, "the error depends on the token");
            }
        }
        (Err(_), None) => {}
    }

    // Vault's `errors` strings: a few, each capped, no control characters.
    let messages = vault_messages(body);
    assert!(messages.len() <= 4, "{}", messages.len());
    for m in &messages {
        assert!(m.chars().count() <= 201, "{}", m.chars().count());
        assert!(!m.chars().any(char::is_control));
    }
});
