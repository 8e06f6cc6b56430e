//! The token endpoint's answers, from the shapes RFC 6749 prints to the ones servers get wrong.

use std::time::Duration;

use super::*;

fn token(body: &str) -> Result<TokenResponse, TokenError> {
    parse_token_response(body.as_bytes())
}

#[test]
fn the_rfc_example_and_variants() {
    // RFC 6749 section 4.4.3, less the refresh token and the example parameter.
    let t = token(
        r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600}"#,
    );
    assert_eq!(
        t.unwrap_err(),
        TokenError::NotBearer(Some("example".into()))
    );
    let t = token(
        r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600}"#,
    )
    .unwrap();
    assert_eq!(t.access_token.as_str(), "2YotnFZFEjr1zCsicMWpAA");
    assert_eq!(t.expires_in, Some(Duration::from_secs(3600)));
    for kind in ["bearer", "BEARER", " Bearer "] {
        let body = format!(r#"{{"access_token":"t0k3n-t0k3n","token_type":"{kind}"}}"#);
        let t = token(&body).unwrap();
        assert_eq!(t.expires_in, None, "{kind}");
    }
    let t = token(r#"{"access_token":"t","token_type":"Bearer","expires_in":"120"}"#).unwrap();
    assert_eq!(t.expires_in, Some(Duration::from_secs(120)));
    let t = token(r#"{"access_token":"t","token_type":"Bearer","expires_in":59.9}"#).unwrap();
    assert_eq!(t.expires_in, Some(Duration::from_secs(59)));
    let t = token(r#"{"access_token":"t","token_type":"Bearer","expires_in":1e300}"#).unwrap();
    assert_eq!(t.expires_in, Some(MAX_EXPIRES_IN));
    let t =
        token(r#"{"access_token":"t","token_type":"Bearer","expires_in":99999999999999999999}"#)
            .unwrap();
    assert_eq!(t.expires_in, Some(MAX_EXPIRES_IN));
}

#[test]
fn what_is_refused_and_how_it_reads() {
    let cases = [
        ("", "the answer is not a token response: the body is empty"),
        (
            "{\"access_token\": \"sk-leaky-leaky-leaky",
            "the answer is not a token response: not JSON (it ends too early at line 1, column 38)",
        ),
        (
            "<html>sk-leaky-leaky</html>",
            "the answer is not a token response: not JSON (a syntax error at line 1, column 1)",
        ),
        (
            "[\"sk-leaky-leaky-leaky\"]",
            "the answer is not a token response: the body is an array, not an object",
        ),
        (
            r#"{"token_type":"Bearer"}"#,
            "the token response has no access_token",
        ),
        (
            r#"{"access_token":"","token_type":"Bearer"}"#,
            "the token response has an empty access_token",
        ),
        (
            r#"{"access_token":{"v":"sk-leaky-leaky"},"token_type":"Bearer"}"#,
            "the token response has an access_token that is an object, not a string",
        ),
        (
            r#"{"access_token":"sk-leaky-leaky-leaky"}"#,
            "the token response has no token_type (RFC 6749 section 5.1 requires one); \
             this source sends Bearer tokens only",
        ),
        (
            r#"{"access_token":"sk-leaky-leaky-leaky","token_type":"DPoP"}"#,
            "the token endpoint issued a token of type \"DPoP\", not Bearer; this source sends \
             Bearer tokens only",
        ),
        (
            r#"{"access_token":"sk-leaky-leaky-leaky","token_type":"Bearer","expires_in":-5}"#,
            "the token response's expires_in is a negative or fractional number out of range, \
             not a number of seconds",
        ),
        (
            r#"{"access_token":"sk-leaky-leaky-leaky","token_type":"Bearer","expires_in":"soon"}"#,
            "the token response's expires_in is a string that is not digits, not a number of \
             seconds",
        ),
        (
            r#"{"access_token":"sk-leaky-leaky-leaky","token_type":"Bearer","expires_in":[1]}"#,
            "the token response's expires_in is an array, not a number of seconds",
        ),
    ];
    for (body, message) in cases {
        let e = token(body).unwrap_err();
        assert_eq!(e.to_string(), message, "{body}");
        assert!(!e.to_string().contains("leaky"), "{body}");
    }
}

#[test]
fn a_token_type_is_shown_capped_and_redacted() {
    let long = format!(
        r#"{{"access_token":"t","token_type":"{}"}}"#,
        "x".repeat(100)
    );
    let TokenError::NotBearer(Some(shown)) = token(&long).unwrap_err() else {
        panic!("not NotBearer")
    };
    assert_eq!(shown.chars().count(), 41, "{shown}");
    let leaky = r#"{"access_token":"t","token_type":"sk-live-0123456789abcdef"}"#;
    let e = token(leaky).unwrap_err().to_string();
    assert!(!e.contains("0123456789"), "{e}");
}

#[test]
fn error_responses() {
    let e = parse_error_response(
        br#"{"error":"invalid_client","error_description":"Client authentication failed","error_uri":"https://auth.example.com/errors#client"}"#,
    )
    .unwrap();
    assert_eq!(e.code.as_deref(), Some("invalid_client"));
    assert_eq!(
        e.description.as_deref(),
        Some("Client authentication failed")
    );
    assert_eq!(
        e.uri.as_deref(),
        Some("https://auth.example.com/errors#client")
    );
    let e = parse_error_response(br#"{"error":"invalid_scope","error_description":7}"#).unwrap();
    assert_eq!(e.description, None);
    for body in [
        &b""[..],
        b"Internal Server Error",
        br#"{"error":""}"#,
        br#"{"error":{"code":"x"}}"#,
        br#"{"message":"no"}"#,
    ] {
        assert_eq!(parse_error_response(body), None, "{body:?}");
    }
}
