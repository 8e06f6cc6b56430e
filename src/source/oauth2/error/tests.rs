//! Kinds and messages for every answer the token endpoint may give.

use std::time::Duration;

use http::StatusCode;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::*;

fn reply(status: u16, retry_after: Option<&str>, body: &str) -> Reply {
    Reply {
        status: StatusCode::from_u16(status).unwrap(),
        retry_after: retry_after.map(str::to_owned),
        body: Zeroizing::new(body.as_bytes().to_vec()),
    }
}

fn secret() -> SecretString {
    SecretString::from("s3cr3t+v@lue/42".to_owned())
}

fn error(status: u16, body: &str) -> KeyError {
    status_error(&reply(status, None, body), &secret())
}

#[test]
fn kinds_by_code() {
    let cases = [
        ("invalid_client", 401, KeyErrorKind::Denied),
        ("invalid_client", 400, KeyErrorKind::Denied),
        ("unauthorized_client", 400, KeyErrorKind::Denied),
        ("access_denied", 403, KeyErrorKind::Denied),
        ("invalid_scope", 400, KeyErrorKind::Config),
        ("invalid_grant", 400, KeyErrorKind::Config),
        ("unsupported_grant_type", 400, KeyErrorKind::Config),
        ("invalid_request", 400, KeyErrorKind::Config),
        ("temporarily_unavailable", 400, KeyErrorKind::Unavailable),
        ("server_error", 400, KeyErrorKind::Unavailable),
        ("invalid_client", 503, KeyErrorKind::Unavailable),
        ("invalid_client", 429, KeyErrorKind::Unavailable),
        ("custom_code", 400, KeyErrorKind::Config),
        ("custom_code", 401, KeyErrorKind::Denied),
        ("custom_code", 418, KeyErrorKind::Other),
    ];
    for (code, status, kind) in cases {
        let e = error(status, &format!(r#"{{"error":"{code}"}}"#));
        assert_eq!(e.kind(), kind, "{code} {status}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("({code})")), "{msg}");
        assert!(msg.contains(&format!("(HTTP {status}")), "{msg}");
    }
}

#[test]
fn kinds_by_status_without_a_code() {
    for (status, kind) in [
        (400, KeyErrorKind::Config),
        (401, KeyErrorKind::Denied),
        (403, KeyErrorKind::Denied),
        (404, KeyErrorKind::Config),
        (405, KeyErrorKind::Config),
        (429, KeyErrorKind::Unavailable),
        (500, KeyErrorKind::Unavailable),
        (502, KeyErrorKind::Unavailable),
        (503, KeyErrorKind::Unavailable),
        (302, KeyErrorKind::Other),
        (418, KeyErrorKind::Other),
    ] {
        assert_eq!(error(status, "<html>oops</html>").kind(), kind, "{status}");
    }
}

#[test]
fn full_messages() {
    let e = error(
        401,
        r#"{"error":"invalid_client","error_description":"Client authentication failed","error_uri":"https://auth.example.com/docs/errors"}"#,
    );
    assert_eq!(
        e.to_string(),
        "client authentication failed (invalid_client): Client authentication failed \
         (HTTP 401; see https://auth.example.com/docs/errors; check the client_id, the client \
         secret and the client authentication method (Basic or body))"
    );
    let e = error(400, r#"{"error":"invalid_scope"}"#);
    assert_eq!(
        e.to_string(),
        "a requested scope is invalid, unknown or not allowed to this client (invalid_scope) \
         (HTTP 400; check .scope(..))"
    );
    let e = error(500, "Internal Server Error");
    assert_eq!(e.to_string(), "server error (HTTP 500)");
}

#[test]
fn retry_after_is_honoured_for_transient_answers_only() {
    let e = status_error(&reply(429, Some("17"), "{}"), &secret());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(17)));
    assert_eq!(e.to_string(), "rate limited (HTTP 429, Retry-After 17 s)");
    let e = status_error(&reply(503, Some("2"), ""), &secret());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    let e = status_error(&reply(503, Some("whenever"), ""), &secret());
    assert_eq!(e.retry_after(), None);
    let e = status_error(
        &reply(401, Some("5"), r#"{"error":"invalid_client"}"#),
        &secret(),
    );
    assert_eq!(
        e.retry_after(),
        None,
        "a refusal is not made transient by a header"
    );
}

#[test]
fn the_secret_and_tokens_never_show() {
    let bodies = [
        r#"{"error":"invalid_client","error_description":"secret s3cr3t+v@lue/42 is wrong"}"#,
        r#"{"error":"invalid_client","error_description":"got client_secret=s3cr3t%2Bv%40lue%2F42"}"#,
        r#"{"error":"invalid_client","error_uri":"https://x.example/?s=s3cr3t+v@lue/42"}"#,
        r#"{"error":"s3cr3t+v@lue/42"}"#,
        r#"{"error":"invalid_request","error_description":"token sk-live-0123456789abcdef was revoked"}"#,
        r#"{"error":"invalid_request","error_description":"Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig"}"#,
    ];
    for body in bodies {
        let msg = format!("{:?} {}", error(400, body), error(400, body));
        for leak in ["s3cr3t", "v@lue", "v%40lue", "0123456789", "eyJhbGci"] {
            assert!(!msg.contains(leak), "{leak} in {msg}");
        }
    }
    let long = format!(
        r#"{{"error":"invalid_client","error_description":"{}"}}"#,
        "é".repeat(500)
    );
    let msg = error(401, &long).to_string();
    assert!(msg.chars().count() < 400, "{msg}");
    let weird = error(400, r#"{"error":"bad\"code\\"}"#).to_string();
    assert!(
        weird.contains("(an error code RFC 6749 does not allow)"),
        "{weird}"
    );
}

#[test]
fn token_errors_and_disguised_error_responses() {
    assert_eq!(
        token_error(&TokenError::NotBearer(Some("mac".into()))).kind(),
        KeyErrorKind::Invalid
    );
    assert_eq!(
        token_error(&TokenError::NoToken("has no access_token".into())).kind(),
        KeyErrorKind::Unreadable
    );
    assert!(is_error_response(&reply(
        200,
        None,
        r#"{"error":"invalid_client"}"#
    )));
    assert!(!is_error_response(&reply(
        200,
        None,
        r#"{"access_token":"x"}"#
    )));
}

mod echoed_secret {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::redact::shows_more_than_7_chars;

    /// The client secret as a server may echo it back: as sent in the form (form-encoded), as
    /// given, or inside a query string.
    fn echo(secret: &str, how: u8) -> String {
        let encoded = crate::source::oauth2::form::encode(secret);
        match how % 3 {
            0 => secret.to_owned(),
            1 => encoded.to_string(),
            _ => format!("https://idp.example/err?client_secret={}", encoded.as_str()),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Wherever the token endpoint echoes the client secret (the error code, its
        /// description, its URI), with any text around it and any status, the error shows no
        /// 8 characters of it.
        #[test]
        fn an_echoed_client_secret_never_reaches_the_error(
            secret in "[A-Za-z0-9+/=_.~-]{12,40}",
            before in "[a-z ]{0,30}",
            after in "[a-z ]{0,30}",
            how in any::<u8>(),
            member in 0u8..3,
            status in prop_oneof![Just(400u16), Just(401), Just(403), Just(429), Just(500), Just(502)],
        ) {
            let echoed = format!("{before}{}{after}", echo(&secret, how));
            let body = match member {
                0 => json!({"error": echoed}),
                1 => json!({"error": "invalid_client", "error_description": echoed}),
                _ => json!({"error": "invalid_client", "error_uri": echoed}),
            };
            let secret_string = SecretString::from(secret.clone());
            let err = status_error(&reply(status, None, &body.to_string()), &secret_string);
            let shown = format!("{err} {err:?}");
            prop_assert!(!shows_more_than_7_chars(&shown, &secret), "{} shows {}", shown, secret);
        }
    }
}
