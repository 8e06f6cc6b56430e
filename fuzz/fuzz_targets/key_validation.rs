//! `ApiKey::new` on arbitrary input: never panics; accepts exactly the keys the rules allow;
//! an accepted key's header is `Bearer <key>`; its `Debug`, `Display` and fingerprint show at
//! most 7 characters of a key of 16 or more; a refusal's message is one of the fixed
//! templates (so it cannot echo the key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_bearer::{ApiKey, KeyErrorKind, MAX_KEY_LEN};

/// Whether `text` contains any run of 8 consecutive characters of `secret`.
fn shows_more_than_7_chars(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8)
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

/// `message` with every run of digits replaced by `N`.
fn template(message: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

fn is_known_template(t: &str) -> bool {
    const FIXED: &[&str] = &[
        "the key is empty",
        "the key is only whitespace",
        "the key is N bytes long, over the limit of N bytes",
        "the key starts with a pasted \"Bearer \" prefix; give the key alone",
        "the key is not a valid header value",
    ];
    const WHAT: &[&str] = &[
        "a carriage return (CR)",
        "a line feed (LF)",
        "a NUL byte",
        "a tab",
        "a DEL character",
        "a space",
        "a control character",
        "a non-ASCII character",
    ];
    FIXED.contains(&t)
        || WHAT.iter().any(|what| {
            t == format!("the key contains {what} at byte N; keys are visible ASCII only")
        })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let valid =
        !raw.is_empty() && raw.len() <= MAX_KEY_LEN && raw.bytes().all(|b| b.is_ascii_graphic());
    match ApiKey::new(raw) {
        Ok(key) => {
            assert!(valid, "accepted a key that breaks a rule");
            assert_eq!(key.expose_secret(), raw);
            let header = key.header_value();
            assert!(header.is_sensitive());
            assert_eq!(header.as_bytes(), format!("Bearer {raw}").as_bytes());
            let fp = key.fingerprint();
            if raw.len() >= 16 {
                assert!(!shows_more_than_7_chars(fp, raw), "{fp}");
                assert_eq!(fp.chars().count(), 8, "3 + … + 4: {fp}");
            } else {
                assert!(fp.starts_with('#') && fp.len() == 9, "{fp}");
            }
            // Debug and Display are built from the fingerprint alone.
            assert_eq!(format!("{key}"), fp);
            assert_eq!(
                format!("{key:?}"),
                format!("ApiKey {{ fingerprint: {fp:?}, refresh_after: None }}")
            );
        }
        Err(err) => {
            assert!(!valid, "refused a valid key: {err}");
            assert_eq!(err.kind(), KeyErrorKind::Invalid);
            let message = err.to_string();
            assert!(
                is_known_template(&template(&message)),
                "not a fixed message: {message:?}"
            );
            assert_eq!(
                format!("{err:?}"),
                format!(
                    "KeyError {{ kind: Invalid, origin: None, cause: {message:?}, source: None }}"
                )
            );
        }
    }
});
