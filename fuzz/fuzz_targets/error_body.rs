//! The error-body parser and `ApiError` on arbitrary bytes and statuses: never panic; the
//! `Display` is one line of bounded length; the redaction never lets an `sk-` key through.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower_bearer::fuzzing::{parse_error_body, safe_message};
use tower_bearer::ApiError;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let code = 100 + u16::from_le_bytes([data[0], data[1]]) % 900;
    let body = &data[2..];

    let fields = parse_error_body(body);
    let status = StatusCode::from_u16(code).expect("100..=999 is a valid status");
    let err = ApiError::new(status, HeaderMap::new(), Bytes::copy_from_slice(body));
    assert_eq!(err.message(), fields.message.as_deref());
    let shown = err.to_string();
    let _ = format!("{err:?}");
    assert!(
        !shown.contains(['\n', '\r']),
        "Display is one line: {shown:?}"
    );
    assert!(shown.chars().count() <= 400, "Display is bounded");

    // The redactor on the body as text: bounded, and every word of 8+ characters that starts
    // with `sk-` is gone.
    if let Ok(text) = std::str::from_utf8(body) {
        for max in [0, 7, 300] {
            let safe = safe_message(text, max);
            assert!(safe.chars().count() <= max + 1, "{safe:?}");
        }
        let safe = safe_message(text, 1 << 20);
        for word in text.split(|c: char| c.is_whitespace() || !c.is_ascii_graphic()) {
            // (a word found elsewhere in the text, inside a longer word, may rightly be shown)
            if word.len() >= 8 && word.starts_with("sk-") && text.matches(word).count() == 1 {
                assert!(!safe.contains(word), "{word:?} shown in {safe:?}");
            }
        }
    }
});
