//! Tests of the redactor: what it redacts, what it shows, and that its work is linear.

use proptest::prelude::*;

use super::*;

#[test]
fn safe_message_truncates_on_char_boundaries() {
    let long = "é".repeat(1000);
    let shown = safe_message(&long, 10);
    assert_eq!(shown, format!("{}…", "é".repeat(10)));
    assert_eq!(safe_message("short", 10), "short");
    assert_eq!(safe_message("exactly", 7), "exactly");
    assert_eq!(
        safe_message(&"x".repeat(50), 10),
        format!("{}…", "x".repeat(10))
    );
    assert_eq!(
        safe_message("line\nbreak\u{1b}[31m", 100),
        "line break [31m"
    );
}

#[test]
fn safe_message_redacts_keys() {
    assert_eq!(
        safe_message(
            "Incorrect API key provided: sk-proj-abcd1234efgh. Get one at x.",
            200
        ),
        "Incorrect API key provided: [redacted] Get one at x."
    );
    assert_eq!(
        safe_message("got header Bearer abcdefgh123 here", 200),
        "got header Bearer [redacted] here"
    );
    assert_eq!(safe_message("sk-x is short", 200), "sk-x is short");
    assert_eq!(
        safe_message("bearer tokens are fine", 200),
        "bearer tokens are fine"
    );
}

#[test]
fn safe_message_redacts_keys_with_punctuation_whole() {
    // Keys may hold any visible ASCII; the redaction must not stop at the first character
    // that is not a token character and show the rest.
    assert_eq!(
        safe_message(
            "Incorrect API key provided: sk-a!bcdefghijklmnop. Retry.",
            200
        ),
        "Incorrect API key provided: [redacted] Retry."
    );
    assert_eq!(
        safe_message("key 'sk-live:0123\"456789' refused", 200),
        "key '[redacted] refused"
    );
    assert_eq!(
        safe_message("Bearer ab#cdefghijkl sent", 200),
        "Bearer [redacted] sent"
    );
    assert_eq!(safe_message("sk-a! short", 200), "sk-a! short");
}

#[test]
fn safe_message_redacts_keys_inside_a_token() {
    assert_eq!(
        safe_message(
            "Invalid URL (GET /v1/models?api_key=sk-live-0123456789)",
            200
        ),
        "Invalid URL (GET /v1/models?api_key=[redacted]"
    );
    assert_eq!(
        safe_message("authorization=sk_abc!def0123456789 rest", 200),
        "authorization=[redacted] rest"
    );
    assert_eq!(
        safe_message("task-runner disk_usage my-sk-x", 200),
        "task-runner disk_usage my-sk-x"
    );
}

#[test]
fn safe_message_redacts_vault_tokens() {
    assert_eq!(
        safe_message("token hvs.CAESIJlU0123456789 may not read x", 200),
        "token [redacted] may not read x"
    );
    assert_eq!(
        safe_message("X-Vault-Token=hvb.AAAAAQ0123456789 refused", 200),
        "X-Vault-Token=[redacted] refused"
    );
    assert_eq!(
        safe_message("legacy s.Nk4v2Zq9Xc8Vb1Nd6Lm3Po7W token", 200),
        "legacy [redacted] token"
    );
    assert_eq!(
        safe_message("see hvs.x or s.t.a.r.s", 200),
        "see hvs.x or s.t.a.r.s"
    );
}

#[test]
fn safe_message_redacts_jwts() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    for (text, want) in [
        (format!("token {jwt} expired"), "token [redacted] expired"),
        (format!("id_token={jwt}&x=1"), "id_token=[redacted]"),
        (format!("got '{jwt}'"), "got '[redacted]"),
        (format!("jwt:{jwt}"), "jwt:[redacted]"),
    ] {
        assert_eq!(safe_message(&text, 500), want, "{text}");
    }
}

#[test]
fn safe_message_redacts_bearer_whatever_the_separator() {
    for text in [
        "Authorization: Bearer abcdefgh12345678",
        "Authorization: Bearer: abcdefgh12345678",
        "Authorization: Bearer:abcdefgh12345678",
        "Authorization: Bearer \"abcdefgh12345678\"",
        "Authorization: bearer 'abcdefgh12345678'",
        "Authorization: Bearer=abcdefgh12345678",
        "{\"Bearer\": \"abcdefgh12345678\"}",
        "bad header Basic abcdefgh12345678==",
        "Authorization: basic abcdefgh12345678",
    ] {
        let safe = safe_message(text, 500);
        assert!(!safe.contains("abcdefgh"), "{text} -> {safe}");
        assert!(safe.contains("[redacted]"), "{text} -> {safe}");
    }
    assert_eq!(
        safe_message("Bearer: token missing", 200),
        "Bearer: token missing"
    );
}

#[test]
fn safe_message_redacts_legacy_vault_tokens() {
    for token in [
        "s.Nk4v2Zq9Xc8Vb1Nd6Lm3Po7W",
        "b.AAAAAQKcP9mKqLzXn2Vb8Ws4Tr7YhUeJdFg1Oi0",
        "r.Nk4v2Zq9Xc8Vb1Nd6Lm3Po7W",
        "s.Nk4v2Zq9Xc8Vb1Nd6Lm3Po7W.AbCdE",
        "hvr.CAESIJlU0123456789",
        "hvb.AAAAAQ0123456789",
    ] {
        for text in [
            format!("token {token} may not read x"),
            format!("X-Vault-Token={token} refused"),
            format!("(\"{token}\")"),
        ] {
            let safe = safe_message(&text, 500);
            assert!(!safe.contains(&token[2..12]), "{text} -> {safe}");
        }
    }
    assert_eq!(
        safe_message("see r.example.com or b.a.b.y", 200),
        "see r.example.com or b.a.b.y"
    );
}

#[test]
fn safe_message_redacts_secret_query_params() {
    assert_eq!(
        safe_message(
            "GET /v1/x?key=AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv&alt=json refused",
            500
        ),
        "GET /v1/x?key=[redacted] refused"
    );
    assert_eq!(
        safe_message("bad AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv", 500),
        "bad [redacted]"
    );
    for text in [
        "?access_token=0123456789abcdef",
        "&client_secret=0123456789abcdef",
        "?api-key=0123456789abcdef",
        "?password=hunter2hunter2",
        "sig=0123456789abcdef",
    ] {
        let safe = safe_message(text, 500);
        assert!(safe.ends_with("=[redacted]"), "{text} -> {safe}");
    }
    assert_eq!(
        safe_message("?model=gpt-4o-mini&monkey=1", 500),
        "?model=gpt-4o-mini&monkey=1"
    );
    assert_eq!(
        safe_message("error code=invalid_request_error", 500),
        "error code=invalid_request_error"
    );
}

/// Inputs built to make a redactor that rescans (per token, per candidate) quadratic.
fn hostile(n: usize) -> Vec<String> {
    let fill = |unit: &str| unit.repeat(n / unit.len());
    vec![
        fill("a!"),
        fill("!sk-"),
        fill("sk-!"),
        fill("x="),
        fill("key=a!"),
        fill("s."),
        fill("s.aaaaaaaaaaaaaaaaaaa."),
        fill("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa="),
        fill("Bearer "),
        fill("Bearer:"),
        fill("eyJ."),
        fill("é!"),
        fill("a\u{1}"),
        "a".repeat(n),
        "=".repeat(n),
        format!("{}{}", "a!".repeat(n / 4), "sk-".repeat(n / 6)),
    ]
}

#[test]
fn the_work_is_linear_in_the_input() {
    // No clock: the redactor counts the bytes it looks at. A rescan of the word per token (as
    // the redactor before this one did) makes `a!a!a!…` cost n²/4 steps: 2.7e11 for 1 MiB.
    const N: usize = 1 << 20;
    const STEPS_PER_BYTE: usize = 40;
    for text in hostile(N) {
        for max in [300, usize::MAX] {
            let (safe, steps) = Redactor::new(&text, max).run();
            assert!(
                steps <= STEPS_PER_BYTE * text.len().max(1),
                "{} steps for {} bytes starting {:?}",
                steps,
                text.len(),
                &safe.chars().take(20).collect::<String>()
            );
        }
    }
    // And the work per byte does not grow with the input: 16 times the input, the same steps
    // per byte (give or take the bounded look-ahead at either end), where a quadratic pass
    // would take 16 times as many.
    for (small, big) in hostile(N / 16).iter().zip(hostile(N)) {
        let (_, a) = Redactor::new(small, usize::MAX).run();
        let (_, b) = Redactor::new(&big, usize::MAX).run();
        let per_byte = |steps: usize, text: &str| steps as f64 / text.len().max(1) as f64;
        assert!(
            per_byte(b, &big) <= 1.01 * per_byte(a, small) + 0.01,
            "{a} steps for {} bytes, {b} for {}: not linear",
            small.len(),
            big.len()
        );
    }
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

proptest! {
    #![proptest_config(config())]

    #[test]
    fn an_echoed_key_never_survives(
        key in sk_key(),
        before in prop_oneof![
            Just("Incorrect API key provided: "), Just("key '"), Just("Bearer "),
            Just("(\""), Just(""), Just("token:"),
        ],
        after in prop_oneof![Just(""), Just("."), Just("' is revoked"), Just("\") x"), Just(" and more")],
        padding in 0usize..320,
    ) {
        let echoed = format!("{}{before}{key}{after}", "x ".repeat(padding / 2));
        let safe = safe_message(&echoed, 300);
        prop_assert!(!shows_more_than_7_chars(&safe, &key), "{safe}");
    }

    #[test]
    fn the_redaction_is_bounded_and_one_line(text in any::<String>(), max in 0usize..400) {
        let safe = safe_message(&text, max);
        prop_assert!(safe.chars().count() <= max + 1);
        prop_assert!(!safe.chars().any(char::is_control), "{safe:?}");
    }
}
