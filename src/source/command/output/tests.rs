use super::*;

const TOKEN: &str = "tok-0123456789abcdefSECRET";

fn now() -> SystemTime {
    // 2030-01-01T00:00:00Z: a fixed "now" for the expiry arithmetic.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000)
}

fn ok(stdout: &str) -> ApiKey {
    parse(stdout.as_bytes(), now(), Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{stdout:?}: {e}"))
}

fn err(stdout: &[u8]) -> KeyError {
    let err = parse(stdout, now(), None).expect_err("an error");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("0123456789"), "{shown} shows the output");
    assert!(!shown.contains("SECRET"), "{shown} shows the output");
    err
}

fn exec(status: &str) -> String {
    format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{status}}}"#
    )
}

#[test]
fn plain_text_is_one_trimmed_line_with_the_refresh_hint() {
    for out in [
        TOKEN.to_owned(),
        format!("{TOKEN}\n"),
        format!("\r\n  {TOKEN} \r\n\n"),
    ] {
        let key = ok(&out);
        assert_eq!(key.expose_secret(), TOKEN);
        assert_eq!(key.refresh_hint(), Some(Duration::from_secs(30)));
        assert_eq!(key.expiry(), None);
    }
}

#[test]
fn exec_credential_v1_and_v1beta1_give_the_token_and_its_expiry() {
    for version in EXEC_CREDENTIAL_VERSIONS {
        let out = format!(
            r#"  {{"kind":"ExecCredential","apiVersion":"{version}","spec":{{"interactive":false}},
               "status":{{"token":"{TOKEN}","expirationTimestamp":"2030-01-01T01:00:00Z"}}}}"#
        );
        let key = ok(&out);
        assert_eq!(key.expose_secret(), TOKEN);
        assert_eq!(key.expiry(), Some(now() + Duration::from_secs(3600)));
        assert_eq!(
            key.refresh_hint(),
            None,
            "an expiry replaces the refresh hint"
        );
    }
    let no_expiry = ok(&exec(&format!(r#"{{"token":"{TOKEN}"}}"#)));
    assert_eq!(no_expiry.expiry(), None);
    assert_eq!(no_expiry.refresh_hint(), Some(Duration::from_secs(30)));
    let null_expiry = ok(&exec(&format!(
        r#"{{"token":"{TOKEN}","expirationTimestamp":null}}"#
    )));
    assert_eq!(null_expiry.expiry(), None);
}

#[test]
fn oauth2_expires_in_counts_from_now() {
    for expires_in in ["3600", "\"3600\"", "3600.0"] {
        let out = format!(
            r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":{expires_in}}}"#
        );
        let key = ok(&out);
        assert_eq!(key.expose_secret(), TOKEN);
        assert_eq!(key.expiry(), Some(now() + Duration::from_secs(3600)));
    }
    let forever = ok(&format!(r#"{{"access_token":"{TOKEN}"}}"#));
    assert_eq!(forever.expiry(), None);
    assert_eq!(forever.refresh_hint(), Some(Duration::from_secs(30)));
}

#[test]
fn every_bad_output_has_its_kind_and_never_shows_the_output() {
    use KeyErrorKind::*;
    let cases: Vec<(Vec<u8>, KeyErrorKind, &str)> = vec![
        (b"".to_vec(), Missing, "printed nothing"),
        (b" \n\t\r\n".to_vec(), Missing, "printed nothing"),
        (format!("{TOKEN}\n{TOKEN}\n").into_bytes(), Invalid, "more than one line"),
        (format!("{TOKEN}\r{TOKEN}").into_bytes(), Invalid, "more than one line"),
        (b"tok-0123456789\xff".to_vec(), Unreadable, "not UTF-8 text (invalid byte at offset 14)"),
        (b"tok 0123456789abcdefSECRET".to_vec(), Invalid, "a space at byte 3"),
        (
            format!("{{\"access_token\": \"{TOKEN}\",\n \"expires_in\": }}").into_bytes(),
            Invalid,
            "malformed JSON (a syntax error at line 2, column 16)",
        ),
        (
            format!("{{\"access_token\": \"{TOKEN}").into_bytes(),
            Invalid,
            "malformed JSON (it ends too early at line 1",
        ),
        (
            format!("{{\"access_token\": \"{TOKEN}\"}} trailing").into_bytes(),
            Invalid,
            "malformed JSON (a syntax error",
        ),
        (b"{}".to_vec(), Missing, "neither a Kubernetes ExecCredential"),
        (
            exec(r#"{"expirationTimestamp":"2031-01-01T00:00:00Z"}"#).into_bytes(),
            Missing,
            "without status.token",
        ),
        (
            exec(r#"{"clientCertificateData":"-----BEGIN","clientKeyData":"k"}"#).into_bytes(),
            Missing,
            "client certificate",
        ),
        (exec(r#"{"token":42}"#).into_bytes(), Invalid, "status.token is not a string"),
        (
            br#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"}"#.to_vec(),
            Missing,
            "without a status",
        ),
        (
            format!(r#"{{"apiVersion":"client.authentication.k8s.io/v1alpha1","kind":"ExecCredential","status":{{"token":"{TOKEN}"}}}}"#).into_bytes(),
            Invalid,
            "apiVersion this source does not read",
        ),
        (
            format!(r#"{{"apiVersion":"v1","kind":"Secret","status":{{"token":"{TOKEN}"}}}}"#).into_bytes(),
            Invalid,
            "not kind \"ExecCredential\"",
        ),
        (
            exec(&format!(r#"{{"token":"{TOKEN}","expirationTimestamp":"tomorrow 0123456789"}}"#)).into_bytes(),
            Invalid,
            "expirationTimestamp is not an RFC 3339 time",
        ),
        (
            exec(&format!(r#"{{"token":"{TOKEN}","expirationTimestamp":1893456000}}"#)).into_bytes(),
            Invalid,
            "expirationTimestamp is not a string",
        ),
        (
            exec(&format!(r#"{{"token":"{TOKEN}","expirationTimestamp":"2029-12-31T23:59:00Z"}}"#)).into_bytes(),
            Expired,
            "expired 60 s ago",
        ),
        (
            exec(&format!(r#"{{"token":"{TOKEN}","expirationTimestamp":"2030-01-01T00:00:00Z"}}"#)).into_bytes(),
            Expired,
            "expired 0 s ago",
        ),
        (
            format!(r#"{{"access_token":"{TOKEN}","expires_in":0}}"#).into_bytes(),
            Expired,
            "expired 0 s ago",
        ),
        (format!(r#"{{"access_token":12,"x":"{TOKEN}"}}"#).into_bytes(), Invalid, "access_token is not a string"),
        (
            format!(r#"{{"access_token":"{TOKEN}","token_type":"mac"}}"#).into_bytes(),
            Invalid,
            "token_type is not Bearer",
        ),
        (
            br#"{"error":"invalid_grant","error_description":"refresh token 0123456789abcdef revoked"}"#.to_vec(),
            Denied,
            "an OAuth2 error response (invalid_grant) instead of a token",
        ),
        (
            br#"{"error":"0123456789abcdefSECRET"}"#.to_vec(),
            Denied,
            "an OAuth2 error response instead of a token",
        ),
    ];
    for expires_in in [
        "-1",
        "1.5",
        "1e300",
        "18446744073709551615",
        "315360001",
        "\"-5\"",
        "\"\"",
        "\"3600s\"",
        "true",
        "[]",
    ] {
        let out = format!(r#"{{"access_token":"{TOKEN}","expires_in":{expires_in}}}"#);
        let err = err(out.as_bytes());
        assert_eq!(err.kind(), Invalid, "{expires_in}");
        assert!(
            err.to_string().contains("expires_in is not a whole number"),
            "{err}"
        );
    }
    for (out, kind, needle) in cases {
        let err = err(&out);
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }
}

#[test]
fn an_expiry_that_overflows_the_clock_is_an_error_not_a_panic() {
    let late = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    let out = format!(r#"{{"access_token":"{TOKEN}","expires_in":315360000}}"#);
    match parse(out.as_bytes(), late, None) {
        Ok(key) => assert!(key.expiry().is_some()),
        Err(e) => assert!(e.to_string().contains("out of range"), "{e}"),
    }
}
